// A client frame body as im-connector handles it (connector/dispatcher): parse the Envelope
// (wire::parse_body), route it by the session's login state (dispatch), and check a Login before
// its token is looked up (check_login, then the token hash and cache key).
//
// Input: [session state][8 bytes: the session's user id][the frame body...]. Properties:
// - Ping is always answered; before login only Login (once, while awaiting it) gets anywhere;
// - a request is only forwarded for an active session, to a valid one-to-one conversation the
//   session's user takes part in (derived from the user and never from a sender field of the
//   payload), or to a valid group the payload names (its owner checks membership);
// - refusals carry an error code and a message;
// - a Login that passes check_login has a well-formed device id and token.
#include <google/protobuf/stubs/logging.h>

#include <cctype>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "dispatcher.hpp"
#include "fuzz_check.hpp"
#include "im/proto/client.pb.h"
#include "im/server/token_format.hpp"
#include "im/wire/frame_codec.hpp"
#include "im/wire/ids.hpp"

namespace {

using namespace im;
using connector::Route;
using connector::SessionState;

void check_decision(SessionState state, std::uint64_t user, const client::Envelope& env,
                    const connector::Decision& d) {
    using client::Envelope;
    const auto body = env.body_case();
    const bool active = state == SessionState::active;
    if (body == Envelope::kPing) FUZZ_CHECK(d.route == Route::pong);
    switch (d.route) {
        case Route::pong:
            FUZZ_CHECK(body == Envelope::kPing);
            break;
        case Route::login:
            FUZZ_CHECK(state == SessionState::awaiting_login && body == Envelope::kLogin);
            break;
        case Route::to_owner: {
            FUZZ_CHECK(active);
            const bool group = valid_group_id(d.conversation_id);
            FUZZ_CHECK(group || (valid_conversation_id(d.conversation_id) && is_participant(d.conversation_id, user)));
            std::uint64_t expected = 0;
            if (body == Envelope::kSend)
                expected = send_conversation(user, env.send().peer_user_id(), env.send().group_id());
            else if (body == Envelope::kTyping)
                expected = send_conversation(user, env.typing().peer_user_id(), env.typing().group_id());
            else if (body == Envelope::kReceipt)
                expected = env.receipt().conversation_id();
            else if (body == Envelope::kSyncMessages)
                expected = env.sync_messages().conversation_id();
            else if (body == Envelope::kReadBy)
                expected = env.read_by().conversation_id();
            FUZZ_CHECK(expected != 0 && d.conversation_id == expected);
            if (group && body == Envelope::kSend) FUZZ_CHECK(env.send().peer_user_id() == 0);
            if (body == Envelope::kReadBy) FUZZ_CHECK(group);
            FUZZ_CHECK(shard_of(d.conversation_id) < kShardCount);
            break;
        }
        case Route::to_any:
            FUZZ_CHECK(active && body == Envelope::kSyncConversations);
            break;
        case Route::drop:
            FUZZ_CHECK(active && (body == Envelope::kTyping || body == Envelope::kReceipt));
            break;
        case Route::error:
            FUZZ_CHECK(d.code != client::ERROR_NONE);
            FUZZ_CHECK(d.message != nullptr && d.message[0] != '\0');
            break;
    }
}

void check_login(const client::Login& login) {
    const auto refusal = connector::check_login(login);
    if (refusal) {
        FUZZ_CHECK(refusal->code != client::ERROR_NONE && refusal->message[0] != '\0');
        return;
    }
    FUZZ_CHECK(login.protocol_version() <= 1);
    const auto& device = login.device_id();
    FUZZ_CHECK(!device.empty() && device.size() <= 64);
    for (char c : device) {
        FUZZ_CHECK(std::isalnum(static_cast<unsigned char>(c)) ||
                   std::strchr("._:-", c) != nullptr);
    }
    FUZZ_CHECK(tokens::token_shape_ok(login.token()) && login.token().size() == 43);
    // What the connector computes next: the token's hash and its Redis key.
    const auto hash = tokens::hash_token(login.token());
    FUZZ_CHECK(hash.size() == 32);
    const auto key = tokens::cache_key("im:", hash);
    FUZZ_CHECK(key.size() == 3 + 4 + 64 && key.rfind("im:tok:", 0) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    google::protobuf::SetLogHandler(nullptr);  // refused invalid UTF-8 strings are logged
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 9) return 0;
    const auto state = static_cast<SessionState>(data[0] % 4);
    std::uint64_t user = 0;
    std::memcpy(&user, data + 1, sizeof user);
    // Mostly the ids a session really has (1..2^31-1), sometimes anything.
    if (data[0] & 0x80) user = 1 + user % kMaxUserId;
    const std::string_view body(reinterpret_cast<const char*>(data + 9), size - 9);

    client::Envelope env;
    if (wire::parse_body(body, env) != wire::FrameError::none)
        return 0;  // BAD_FRAME, session closed
    const auto d = connector::dispatch(state, user, env);
    check_decision(state, user, env, d);
    if (d.route == Route::login) check_login(env.login());
    return 0;
}

#include "dispatcher.hpp"

#include <cctype>

#include "im/server/token_format.hpp"
#include "im/wire/ids.hpp"

namespace im::connector {

Decision dispatch(SessionState state, std::uint64_t user_id, const client::Envelope& env) {
    using client::Envelope;
    const auto body = env.body_case();
    if (body == Envelope::kPing) return {Route::pong};
    if (state != SessionState::active) {
        if (body == Envelope::kLogin) {
            if (state == SessionState::awaiting_login) return {Route::login};
            return {Route::error, 0, client::ALREADY_LOGGED_IN, "a login is already in progress"};
        }
        return {Route::error, 0, client::NOT_LOGGED_IN, "log in first"};
    }
    switch (body) {
        case Envelope::kLogin:
            return {Route::error, 0, client::ALREADY_LOGGED_IN, "already logged in"};
        case Envelope::kSend: {
            // The conversation comes from the session's user, never from the payload.
            // A group send names the group (its owner checks membership); a one-to-one send the peer.
            const auto& s = env.send();
            const auto conv = send_conversation(user_id, s.peer_user_id(), s.group_id());
            if (conv == 0) {
                return {Route::error, 0, client::BAD_REQUEST,
                        s.group_id() != 0 ? "group_id must be a valid group id (and peer_user_id 0)"
                                          : "peer_user_id must be another valid user"};
            }
            return {Route::to_owner, conv};
        }
        case Envelope::kTyping: {
            const auto conv = send_conversation(user_id, env.typing().peer_user_id(), env.typing().group_id());
            if (conv == 0) return {Route::drop};
            return {Route::to_owner, conv};
        }
        case Envelope::kReceipt:
            // A group's receipt goes to its owner, which ignores it from a non-member.
            if (!is_participant(env.receipt().conversation_id(), user_id) &&
                !valid_group_id(env.receipt().conversation_id()))
                return {Route::drop};
            return {Route::to_owner, env.receipt().conversation_id()};
        case Envelope::kSyncMessages:
            if (!is_participant(env.sync_messages().conversation_id(), user_id) &&
                !valid_group_id(env.sync_messages().conversation_id())) {
                return {Route::error, 0, client::NOT_FOUND, "no such conversation"};
            }
            return {Route::to_owner, env.sync_messages().conversation_id()};
        case Envelope::kReadBy:
            if (!valid_group_id(env.read_by().conversation_id())) {
                return {Route::error, 0, client::NOT_FOUND, "no such group"};
            }
            return {Route::to_owner, env.read_by().conversation_id()};
        case Envelope::kSyncConversations:
            return {Route::to_any};
        case Envelope::BODY_NOT_SET:
            return {Route::error, 0, client::UNKNOWN_BODY, "empty frame body"};
        default:
            return {Route::error, 0, client::UNKNOWN_BODY, "this frame type is not accepted from clients"};
    }
}

bool valid_device_id(std::string_view d) {
    if (d.empty() || d.size() > 64) return false;
    for (char c : d) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '-')) {
            return false;
        }
    }
    return true;
}

std::optional<LoginRefusal> check_login(const client::Login& login) {
    if (login.protocol_version() > 1) {
        return LoginRefusal{client::VERSION_UNSUPPORTED, "protocol_version 1 is the newest supported"};
    }
    if (!valid_device_id(login.device_id())) {
        return LoginRefusal{client::BAD_REQUEST, "device_id must be 1-64 characters of [A-Za-z0-9._:-]"};
    }
    if (!tokens::token_shape_ok(login.token())) return LoginRefusal{client::UNAUTHENTICATED, "invalid token"};
    return std::nullopt;
}

}  // namespace im::connector

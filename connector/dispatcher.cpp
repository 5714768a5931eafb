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
            const auto conv = conversation_id(user_id, env.send().peer_user_id());
            if (conv == 0) return {Route::error, 0, client::BAD_REQUEST, "peer_user_id must be another valid user"};
            return {Route::to_owner, conv};
        }
        case Envelope::kTyping: {
            const auto conv = conversation_id(user_id, env.typing().peer_user_id());
            if (conv == 0) return {Route::drop};
            return {Route::to_owner, conv};
        }
        case Envelope::kReceipt:
            if (!is_participant(env.receipt().conversation_id(), user_id)) return {Route::drop};
            return {Route::to_owner, env.receipt().conversation_id()};
        case Envelope::kSyncMessages:
            if (!is_participant(env.sync_messages().conversation_id(), user_id)) {
                return {Route::error, 0, client::NOT_FOUND, "no such conversation"};
            }
            return {Route::to_owner, env.sync_messages().conversation_id()};
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

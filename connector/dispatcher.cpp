#include "dispatcher.hpp"

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

}  // namespace im::connector

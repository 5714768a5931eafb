#include "imclient/types.hpp"

namespace imclient {

const char* to_string(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::none:
            return "none";
        case ErrorCode::bad_request:
            return "bad_request";
        case ErrorCode::unauthenticated:
            return "unauthenticated";
        case ErrorCode::not_logged_in:
            return "not_logged_in";
        case ErrorCode::already_logged_in:
            return "already_logged_in";
        case ErrorCode::forbidden:
            return "forbidden";
        case ErrorCode::blocked:
            return "blocked";
        case ErrorCode::not_found:
            return "not_found";
        case ErrorCode::out_of_order:
            return "out_of_order";
        case ErrorCode::rate_limited:
            return "rate_limited";
        case ErrorCode::frame_too_large:
            return "frame_too_large";
        case ErrorCode::bad_frame:
            return "bad_frame";
        case ErrorCode::unknown_body:
            return "unknown_body";
        case ErrorCode::unavailable:
            return "unavailable";
        case ErrorCode::timeout:
            return "timeout";
        case ErrorCode::internal:
            return "internal";
        case ErrorCode::version_unsupported:
            return "version_unsupported";
        case ErrorCode::overloaded:
            return "overloaded";
        case ErrorCode::message_too_large:
            return "message_too_large";
        case ErrorCode::io_error:
            return "io_error";
        case ErrorCode::integrity:
            return "integrity";
        case ErrorCode::outbox_full:
            return "outbox_full";
        case ErrorCode::closed:
            return "closed";
        case ErrorCode::unreachable:
            return "unreachable";
        case ErrorCode::rest_error:
            return "rest_error";
        case ErrorCode::kicked:
            return "kicked";
        case ErrorCode::invalid_argument:
            return "invalid_argument";
        case ErrorCode::state_locked:
            return "state_locked";
        case ErrorCode::other_user:
            return "other_user";
    }
    return "unknown";
}

const char* to_string(State state) noexcept {
    switch (state) {
        case State::idle:
            return "idle";
        case State::connecting:
            return "connecting";
        case State::connected:
            return "connected";
        case State::reconnecting:
            return "reconnecting";
        case State::kicked:
            return "kicked";
        case State::auth_failed:
            return "auth_failed";
        case State::closed:
            return "closed";
    }
    return "unknown";
}

const char* to_string(GroupRole role) noexcept {
    switch (role) {
        case GroupRole::member:
            return "member";
        case GroupRole::admin:
            return "admin";
        case GroupRole::owner:
            return "owner";
        default:
            return "unspecified";
    }
}

const char* to_string(GroupEventKind kind) noexcept {
    switch (kind) {
        case GroupEventKind::created:
            return "created";
        case GroupEventKind::members_added:
            return "members_added";
        case GroupEventKind::member_removed:
            return "member_removed";
        case GroupEventKind::member_left:
            return "member_left";
        case GroupEventKind::renamed:
            return "renamed";
        case GroupEventKind::role_changed:
            return "role_changed";
        case GroupEventKind::owner_changed:
            return "owner_changed";
        case GroupEventKind::deleted:
            return "deleted";
        default:
            return "unspecified";
    }
}

std::size_t ReadByResult::delivered_count() const noexcept {
    std::size_t n = 0;
    for (const auto& m : members)
        n += m.delivered_seq >= seq ? 1 : 0;
    return n;
}

std::size_t ReadByResult::read_count() const noexcept {
    std::size_t n = 0;
    for (const auto& m : members)
        n += m.read_seq >= seq ? 1 : 0;
    return n;
}

}  // namespace imclient

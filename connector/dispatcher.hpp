#pragma once
// The login state machine and the routing of client frames, in one place (not per handler):
// before a successful Login only Login and Ping pass; after it, each request goes to the transfer
// that owns its conversation (or to any transfer for per-user requests). Pure: unit-tested alone.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "im/proto/client.pb.h"

namespace im::connector {

enum class SessionState : std::uint8_t {
    awaiting_login,  // connected, no Login yet
    authenticating,  // Login received, token being checked
    active,          // logged in
    closing,
};

enum class Route : std::uint8_t {
    login,       // start authentication
    pong,        // answer Ping locally
    to_owner,    // forward to the owner of `conversation_id`
    to_any,      // forward to any transfer (per-user request)
    error,       // answer Error{code, message}; the session stays
    drop,        // ignore silently (a receipt for a conversation the user is not in)
};

struct Decision {
    Route route = Route::error;
    std::uint64_t conversation_id = 0;
    client::ErrorCode code = client::ERROR_NONE;
    const char* message = "";
};

Decision dispatch(SessionState state, std::uint64_t user_id, const client::Envelope& env);

// Device ids: 1-64 characters of [A-Za-z0-9._:-].
bool valid_device_id(std::string_view d);

// The checks of a Login before its token is looked up (protocol version, device id, token shape):
// nullopt when it may go on, otherwise why it is refused (the session then closes).
struct LoginRefusal {
    client::ErrorCode code = client::ERROR_NONE;
    const char* message = "";
};
std::optional<LoginRefusal> check_login(const client::Login& login);

}  // namespace im::connector

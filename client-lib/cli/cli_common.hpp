#pragma once
// What every im-cli command shares: the resolved session and settings.

#include <cstdint>
#include <memory>
#include <string>

#include <imclient/imclient.hpp>

#include "args.hpp"
#include "session_file.hpp"

namespace imcli {

// A command that failed for a reason already explained in the message: main prints it, exits 1.
struct CommandFailed : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline constexpr const char* kDefaultRestUrl = "http://127.0.0.1:8080";

// --rest, else $IM_REST_URL, else the session's (if any), else http://127.0.0.1:8080.
std::string rest_url_of(const Args& args, const std::string& from_session);

// Client options for one of the two devices of a saved session ("chat" or "cmd"), with its
// state directory (unsent messages, cursors) next to the session file unless --no-persist.
imclient::Options client_options(const Args& args, const SessionFile& file, const SessionData& s,
                                 const std::string& kind);

// Connects with the saved token of `kind`; NotLoggedIn when the token is refused, CommandFailed
// when no connector answers in time.
imclient::LoginInfo connect(imclient::Client& client, const SessionData& s, const std::string& kind,
                            std::chrono::seconds timeout);

// "14:03:27" (local time) and "2026-11-28 14:03:27" of a time in ms since the epoch.
std::string clock_of(std::int64_t ms);
std::string date_time_of(std::int64_t ms);

}  // namespace imcli

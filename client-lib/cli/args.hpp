#pragma once
// im-cli's command line: global options anywhere, then a command and its words. Pure (no I/O),
// so it is unit-tested alone.

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace imcli {

// A wrong command line: main prints it with the usage and exits 2.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Args {
    std::string command;             // register, login, logout, chat, send, history, friends, chats
    std::vector<std::string> words;  // what follows the command ("add", "bob"; the text to send)
    std::string user;
    std::string password;
    std::string display_name;
    std::string to;                       // send --to
    std::string with;                     // history --with
    std::string message;                  // friends add --message
    std::string rest_url;                 // empty: the session file's, IM_REST_URL, or the default
    std::vector<std::string> connectors;  // overrides the login answer
    std::string home;                     // where session files live (empty: IM_CLI_HOME, ...)
    std::optional<unsigned> limit;        // history --limit
    unsigned timeout_s = 30;              // send: how long to wait for SENT
    bool persist = true;  // keep the outbox and cursors in a state directory (--no-persist: no)
    bool help = false;
    bool version = false;
};

// Throws UsageError. No command and no help: "chat" (the interactive session).
Args parse_args(const std::vector<std::string>& argv);

// The usage text printed by --help and after a UsageError.
const char* usage_text();

// Usernames as im-rest accepts them (3-32 of a-z 0-9 . _ -, first a letter or digit), lowercased.
// Also a safe file name. Throws UsageError.
std::string checked_username(const std::string& name, const char* what);

}  // namespace imcli

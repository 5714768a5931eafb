#pragma once
// What `im-cli login` keeps for later commands: one small key=value file per user, readable by
// its owner only (0600, in a 0700 directory), written atomically.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace imcli {

// No usable session (no file, or it was refused): main prints it and exits 3.
struct NotLoggedIn : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct SessionData {
    std::string username;
    std::uint64_t user_id = 0;
    std::string rest_url;
    std::vector<std::string> connectors;  // from the login answer
    // Two sessions (devices): the interactive chat, and the one-shot commands (send), so a
    // `send` from a script never replaces (kicks) a running chat of the same user.
    std::string chat_token, chat_device;
    std::string cmd_token, cmd_device;
};

// --home, else $IM_CLI_HOME, else $XDG_CONFIG_HOME/im-cli, else $HOME/.config/im-cli.
std::string cli_home(const std::string& flag);

class SessionFile {
  public:
    SessionFile(std::string home, std::string username);

    const std::string& path() const noexcept { return path_; }
    // Where the Client keeps its cursors, per device kind ("chat", "cmd").
    std::string cursor_path(const std::string& kind) const;

    // Throws NotLoggedIn when absent; std::runtime_error when malformed or readable by others.
    SessionData load() const;
    void save(const SessionData& data) const;  // creates the directory (0700); throws on failure
    bool remove() const;                       // the session and cursor files; false if none

    // Pure: the text form and back (nullopt when a required key is missing or malformed).
    static std::string format(const SessionData& data);
    static std::optional<SessionData> parse(const std::string& text);

  private:
    std::string dir_;
    std::string username_;
    std::string path_;
};

}  // namespace imcli

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
    // Where the Client of a device kind ("chat", "cmd") keeps its unsent messages and cursors
    // (imclient::Options::state_dir): <home>/<user>.<kind>/.
    std::string state_dir(const std::string& kind) const;

    // Throws NotLoggedIn when absent; std::runtime_error when malformed or readable by others.
    SessionData load() const;
    void save(const SessionData& data) const;  // creates the directory (0700); throws on failure
    // The session file and the state directories (unsent messages included); false if there was
    // no session file.
    bool remove() const;
    // The cursor files of earlier im-cli versions (<user>.<kind>.cursors), no longer used.
    void remove_old_cursor_files() const;

    // Pure: the text form and back (nullopt when a required key is missing or malformed).
    static std::string format(const SessionData& data);
    static std::optional<SessionData> parse(const std::string& text);

  private:
    std::string dir_;
    std::string username_;
    std::string path_;
};

}  // namespace imcli

#include "session_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace imcli {
namespace {

std::runtime_error sys_error(const std::string& what, const std::string& path) {
    return std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos <= s.size()) {
        const auto comma = std::min(s.find(',', pos), s.size());
        if (comma > pos) out.push_back(s.substr(pos, comma - pos));
        pos = comma + 1;
    }
    return out;
}

// mkdir -p with mode 0700 for what it creates.
void make_dirs(const std::string& dir) {
    std::string partial;
    std::size_t pos = 0;
    while (pos != std::string::npos) {
        pos = dir.find('/', pos + 1);
        partial = dir.substr(0, pos);
        if (partial.empty()) continue;
        if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
            throw sys_error("cannot create directory", partial);
        }
    }
}

}  // namespace

std::string cli_home(const std::string& flag) {
    if (!flag.empty()) return flag;
    if (const char* v = std::getenv("IM_CLI_HOME"); v && *v) return v;
    if (const char* v = std::getenv("XDG_CONFIG_HOME"); v && *v) return std::string(v) + "/im-cli";
    if (const char* v = std::getenv("HOME"); v && *v) return std::string(v) + "/.config/im-cli";
    throw std::runtime_error(
        "no place for the session file: set HOME or IM_CLI_HOME, or pass --home");
}

SessionFile::SessionFile(std::string home, std::string username)
    : dir_(std::move(home)),
      username_(std::move(username)),
      path_(dir_ + "/" + username_ + ".session") {}

std::string SessionFile::state_dir(const std::string& kind) const {
    return dir_ + "/" + username_ + "." + kind;
}

std::string SessionFile::format(const SessionData& d) {
    std::string list;
    for (const auto& c : d.connectors)
        list += (list.empty() ? "" : ",") + c;
    std::ostringstream out;
    out << "# im-cli session: secret, keep it 0600\n"
        << "username=" << d.username << "\n"
        << "user_id=" << d.user_id << "\n"
        << "rest_url=" << d.rest_url << "\n"
        << "connectors=" << list << "\n"
        << "chat_device=" << d.chat_device << "\n"
        << "chat_token=" << d.chat_token << "\n"
        << "cmd_device=" << d.cmd_device << "\n"
        << "cmd_token=" << d.cmd_token << "\n";
    return out.str();
}

std::optional<SessionData> SessionFile::parse(const std::string& text) {
    SessionData d;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        const auto eq = line.find('=');
        if (eq == std::string::npos) return std::nullopt;
        const auto key = line.substr(0, eq);
        const auto value = line.substr(eq + 1);
        if (key == "username")
            d.username = value;
        else if (key == "user_id")
            d.user_id = std::strtoull(value.c_str(), nullptr, 10);
        else if (key == "rest_url")
            d.rest_url = value;
        else if (key == "connectors")
            d.connectors = split_list(value);
        else if (key == "chat_device")
            d.chat_device = value;
        else if (key == "chat_token")
            d.chat_token = value;
        else if (key == "cmd_device")
            d.cmd_device = value;
        else if (key == "cmd_token")
            d.cmd_token = value;
    }
    if (d.username.empty() || d.user_id == 0 || d.rest_url.empty() || d.chat_token.empty() ||
        d.chat_device.empty() || d.cmd_token.empty() || d.cmd_device.empty()) {
        return std::nullopt;
    }
    return d;
}

SessionData SessionFile::load() const {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) {
        if (errno == ENOENT) {
            throw NotLoggedIn("not logged in as " + username_ + ": run im-cli login --user " +
                              username_ + " --password ...");
        }
        throw sys_error("cannot read", path_);
    }
    if ((st.st_mode & 077) != 0) {
        throw std::runtime_error(path_ +
                                 " is readable by others (it holds a token): chmod 600 it, "
                                 "or log in again");
    }
    std::ifstream in(path_);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) throw sys_error("cannot read", path_);
    auto d = parse(text.str());
    if (!d || d->username != username_) {
        throw std::runtime_error(path_ + " is malformed: log in again");
    }
    return *d;
}

void SessionFile::save(const SessionData& data) const {
    make_dirs(dir_);
    const std::string tmp = path_ + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw sys_error("cannot write", tmp);
    const std::string text = format(data);
    // fchmod: an older file of that name may have had wider permissions.
    bool ok = ::fchmod(fd, 0600) == 0;
    std::size_t done = 0;
    while (ok && done < text.size()) {
        const auto n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        if (ok) done += static_cast<std::size_t>(n);
    }
    ok = ok && ::fsync(fd) == 0;
    const auto err = errno;
    ::close(fd);
    errno = err;
    if (!ok || ::rename(tmp.c_str(), path_.c_str()) != 0) {
        auto e = sys_error("cannot write", path_);
        ::unlink(tmp.c_str());
        throw e;
    }
}

bool SessionFile::remove() const {
    const bool had = ::unlink(path_.c_str()) == 0;
    for (const char* kind : {"chat", "cmd"}) {
        std::error_code ec;
        std::filesystem::remove_all(state_dir(kind), ec);
    }
    remove_old_cursor_files();
    return had;
}

void SessionFile::remove_old_cursor_files() const {
    for (const char* kind : {"chat", "cmd"})
        ::unlink((dir_ + "/" + username_ + "." + kind + ".cursors").c_str());
}

}  // namespace imcli

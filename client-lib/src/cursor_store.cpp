#include "imclient/cursor_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace imclient {

// ---- MemoryCursorStore ---------------------------------------------------------------------

std::uint64_t MemoryCursorStore::owner() const {
    std::lock_guard lock(mu_);
    return owner_;
}

void MemoryCursorStore::set_owner(std::uint64_t user_id) {
    std::lock_guard lock(mu_);
    if (owner_ == user_id) return;
    owner_ = user_id;
    dirty_ = true;
}

void MemoryCursorStore::clear() {
    std::lock_guard lock(mu_);
    owner_ = 0;
    cursor_ = 0;
    marks_.clear();
    dirty_ = true;
}

std::uint64_t MemoryCursorStore::sync_cursor() const {
    std::lock_guard lock(mu_);
    return cursor_;
}

void MemoryCursorStore::set_sync_cursor(std::uint64_t cursor) {
    std::lock_guard lock(mu_);
    if (cursor_ == cursor) return;
    cursor_ = cursor;
    dirty_ = true;
}

std::uint64_t MemoryCursorStore::delivered(std::uint64_t conversation_id) const {
    std::lock_guard lock(mu_);
    const auto it = marks_.find(conversation_id);
    return it == marks_.end() ? 0 : it->second.delivered;
}

void MemoryCursorStore::set_delivered(std::uint64_t conversation_id, std::uint64_t seq) {
    std::lock_guard lock(mu_);
    auto& m = marks_[conversation_id];
    if (seq <= m.delivered) return;
    m.delivered = seq;
    dirty_ = true;
}

std::uint64_t MemoryCursorStore::read(std::uint64_t conversation_id) const {
    std::lock_guard lock(mu_);
    const auto it = marks_.find(conversation_id);
    return it == marks_.end() ? 0 : it->second.read;
}

void MemoryCursorStore::set_read(std::uint64_t conversation_id, std::uint64_t seq) {
    std::lock_guard lock(mu_);
    auto& m = marks_[conversation_id];
    if (seq <= m.read) return;
    m.read = seq;
    dirty_ = true;
}

std::vector<ConversationCursor> MemoryCursorStore::conversations() const {
    std::lock_guard lock(mu_);
    std::vector<ConversationCursor> out;
    out.reserve(marks_.size());
    for (const auto& [id, m] : marks_)
        out.push_back({id, m.delivered, m.read});
    return out;
}

// ---- FileCursorStore -----------------------------------------------------------------------
// Format (text, one record per line):
//   imclient-cursors 1
//   owner <user id>
//   cursor <sync cursor>
//   conv <conversation id> <delivered> <read>

namespace {

constexpr const char* kMagic = "imclient-cursors";

[[noreturn]] void malformed(const std::string& path, int line) {
    throw std::runtime_error("imclient: cursor file " + path + " is malformed at line " +
                             std::to_string(line));
}

bool write_all(int fd, const std::string& data) {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return true;
}

std::string directory_of(const std::string& path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

}  // namespace

FileCursorStore::FileCursorStore(std::string path) : path_(std::move(path)) {
    std::ifstream in(path_);
    if (!in) {
        if (errno == ENOENT) return;  // a first start: nothing stored yet
        throw std::runtime_error("imclient: cannot read cursor file " + path_ + ": " +
                                 std::strerror(errno));
    }
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (line.empty()) continue;
        std::istringstream fields(line);
        std::string kind;
        fields >> kind;
        if (n == 1) {
            int version = 0;
            if (kind != kMagic || !(fields >> version) || version != 1) malformed(path_, n);
            continue;
        }
        if (kind == "owner") {
            if (!(fields >> owner_)) malformed(path_, n);
        } else if (kind == "cursor") {
            if (!(fields >> cursor_)) malformed(path_, n);
        } else if (kind == "conv") {
            std::uint64_t id = 0;
            Marks m;
            if (!(fields >> id >> m.delivered >> m.read)) malformed(path_, n);
            marks_[id] = m;
        } else {
            malformed(path_, n);
        }
    }
    if (n == 0) malformed(path_, 1);  // an empty file is never written by flush()
}

bool FileCursorStore::flush() {
    std::string data;
    {
        std::lock_guard lock(mu_);
        if (!dirty_) return true;
        std::ostringstream out;
        out << kMagic << " 1\nowner " << owner_ << "\ncursor " << cursor_ << '\n';
        for (const auto& [id, m] : marks_) {
            out << "conv " << id << ' ' << m.delivered << ' ' << m.read << '\n';
        }
        data = out.str();
        dirty_ = false;
    }
    const std::string tmp = path_ + ".tmp";
    bool ok = false;
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ok = write_all(fd, data) && ::fsync(fd) == 0;
        ok = ::close(fd) == 0 && ok;
        ok = ok && ::rename(tmp.c_str(), path_.c_str()) == 0;
    }
    if (ok) {
        // The rename is durable only once the directory entry is.
        const int dir = ::open(directory_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir >= 0) {
            ::fsync(dir);
            ::close(dir);
        }
    } else {
        std::lock_guard lock(mu_);
        dirty_ = true;  // try again at the next flush
    }
    return ok;
}

}  // namespace imclient

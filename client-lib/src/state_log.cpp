#include "state_log.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "imclient/types.hpp"
#include "state_record.hpp"

namespace imclient::detail {

namespace {

constexpr std::size_t kCopyChunk = 1u << 20;
// How long add() waits for a compaction to make room (then it appends anyway: a disk that slow
// should not stop the app from sending).
constexpr std::chrono::seconds kRoomWait{5};
constexpr std::uint64_t kValueRecordBytes = state::kFrameBytes + 1 + 8;
constexpr std::uint64_t kMarksRecordBytes = state::kFrameBytes + 1 + 24;

[[noreturn]] void io_failure(const std::string& what, const std::string& path, int err) {
    throw Error(ErrorCode::io_error,
                "imclient: cannot " + what + " " + path + ": " + std::strerror(err));
}

bool pwrite_all(int fd, const char* data, std::size_t size, std::uint64_t offset) {
    while (size > 0) {
        const ssize_t n = ::pwrite(fd, data, size, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;
            return false;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
        offset += static_cast<std::uint64_t>(n);
    }
    return true;
}

bool pread_all(int fd, char* data, std::size_t size, std::uint64_t offset) {
    while (size > 0) {
        const ssize_t n = ::pread(fd, data, size, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;  // shorter than it should be
            return false;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
        offset += static_cast<std::uint64_t>(n);
    }
    return true;
}

// mkdir -p; what it creates gets 0700 (the directory holds unsent messages).
void make_dirs(const std::string& dir) {
    for (std::size_t pos = dir.find('/', 1);; pos = dir.find('/', pos + 1)) {
        const std::string partial = dir.substr(0, pos);
        if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
            io_failure("create the state directory", partial, errno);
        }
        if (pos == std::string::npos) break;
    }
}

void sync_dir(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

std::string read_file(int fd, const std::string& path) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) io_failure("read", path, errno);
    std::string data(static_cast<std::size_t>(st.st_size), '\0');
    if (!data.empty() && !pread_all(fd, data.data(), data.size(), 0))
        io_failure("read", path, errno);
    return data;
}

}  // namespace

StateLog::StateLog(std::string dir) : StateLog(std::move(dir), Config{}) {}

StateLog::StateLog(std::string dir, Config config)
    : config_(config),
      dir_(dir.empty() ? std::string(".") : std::move(dir)),
      path_(dir_ + "/state.log"),
      compact_floor_(config.compact_min_bytes) {
    make_dirs(dir_);
    const std::string lock_path = dir_ + "/lock";
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) io_failure("open", lock_path, errno);
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        char pid[32] = {};
        const ssize_t n = ::pread(lock_fd_, pid, sizeof pid - 1, 0);
        ::close(lock_fd_);
        if (err != EWOULDBLOCK) io_failure("lock", lock_path, err);
        std::string holder(pid, n > 0 ? static_cast<std::size_t>(n) : 0);
        while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' '))
            holder.pop_back();
        throw Error(ErrorCode::state_locked,
                    "imclient: the state directory " + dir_ + " is in use by another client" +
                        (holder.empty() ? std::string() : " (pid " + holder + ")"));
    }
    const std::string me = std::to_string(::getpid()) + "\n";
    if (::ftruncate(lock_fd_, 0) != 0 || !pwrite_all(lock_fd_, me.data(), me.size(), 0)) {
        // The pid is only for the message of whoever finds the directory locked.
    }
    try {
        open_log();
    } catch (...) {
        if (fd_ >= 0) ::close(fd_);
        ::close(lock_fd_);
        throw;
    }
    thread_ = std::thread([this] { run(); });
}

StateLog::~StateLog() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
    ::close(fd_);
    ::close(lock_fd_);  // releases the lock
}

void StateLog::open_log() {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0 && errno != ENOENT) io_failure("open", path_, errno);
    if (fd_ < 0) {
        // A new log: the header goes to a temporary file first, so state.log never exists
        // without one, whatever moment a crash picks.
        const std::string tmp = path_ + ".tmp";
        const std::string head = state::header();
        const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) io_failure("create", tmp, errno);
        if (!pwrite_all(fd, head.data(), head.size(), 0) || ::fdatasync(fd) != 0 ||
            ::rename(tmp.c_str(), path_.c_str()) != 0) {
            const int err = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            io_failure("create", path_, err);
        }
        sync_dir(dir_);
        fd_ = fd;
        end_ = head.size();
        return;
    }
    ::unlink((path_ + ".tmp").c_str());  // a rewrite a crash interrupted: state.log is whole
    const std::string data = read_file(fd_, path_);
    const std::string head = state::header();
    if (data.size() < head.size() && head.compare(0, data.size(), data) == 0) {
        // Empty, or a header cut short: nothing was ever stored in it.
        if (!pwrite_all(fd_, head.data(), head.size(), 0) ||
            ::ftruncate(fd_, static_cast<off_t>(head.size())) != 0 || ::fdatasync(fd_) != 0) {
            io_failure("repair", path_, errno);
        }
        end_ = head.size();
        return;
    }
    if (!state::valid_header(data)) {
        throw Error(ErrorCode::io_error, "imclient: " + path_ +
                                             " is not a state log of this imclient version: "
                                             "move it away to start afresh");
    }
    std::size_t valid_end = state::kHeaderBytes;
    replay(data, valid_end);
    if (valid_end < data.size()) {
        // A torn or corrupt tail: cut it off, or the next records would follow garbage.
        stats_.dropped_bytes = data.size() - valid_end;
        if (::ftruncate(fd_, static_cast<off_t>(valid_end)) != 0 || ::fdatasync(fd_) != 0) {
            io_failure("repair", path_, errno);
        }
    }
    end_ = valid_end;
}

void StateLog::replay(const std::string& data, std::size_t& valid_end) {
    std::map<std::uint64_t, OutMessage> queued;  // by offset
    std::size_t pos = state::kHeaderBytes;
    while (auto p = state::parse(data, pos)) {
        state::Record& r = p->record;
        switch (r.kind) {
            case state::Kind::add:
            case state::Kind::add_group:  // parse() reports both as add
                if (!offset_of_.contains(r.message.client_msg_id)) {
                    note_add(pos, static_cast<std::uint32_t>(p->bytes), r.message);
                    queued.emplace(pos, std::move(r.message));
                }
                break;
            case state::Kind::done:
                if (const auto it = offset_of_.find(r.message.client_msg_id);
                    it != offset_of_.end()) {
                    queued.erase(it->second);
                    note_done(r.message.client_msg_id);
                }
                break;
            case state::Kind::login:
                note_login(r.value);
                for (auto& [offset, m] : queued) {
                    if (m.owner == 0) m.owner = r.value;
                }
                break;
            case state::Kind::cursor_owner:
                note_cursors({false, r.value, std::nullopt, {}});
                break;
            case state::Kind::cursor_clear:
                note_cursors({true, std::nullopt, std::nullopt, {}});
                break;
            case state::Kind::sync_cursor:
                note_cursors({false, std::nullopt, r.value, {}});
                break;
            case state::Kind::marks:
                note_cursors({false, std::nullopt, std::nullopt, {{r.value, r.delivered, r.read}}});
                break;
        }
        pos += p->bytes;
    }
    valid_end = pos;
    for (auto& [offset, m] : queued)
        restored_.push_back(std::move(m));
    restored_cursors_ = cursors_;
}

std::vector<OutMessage> StateLog::take_restored() {
    std::lock_guard lock(mu_);
    return std::exchange(restored_, {});
}

// ---- appends -----------------------------------------------------------------------------------

bool StateLog::append(const std::string& records) {
    if (broken_ || records.empty()) return false;
    if (!pwrite_all(fd_, records.data(), records.size(), end_)) {
        const int err = errno;
        // Cut the partial record off: a record after it would be lost to the next replay.
        if (::ftruncate(fd_, static_cast<off_t>(end_)) != 0) broken_ = true;
        errno = err;
        return false;
    }
    end_ += records.size();
    ++appended_;
    wake_.notify_one();
    return true;
}

void StateLog::add(const OutMessage& m) {
    std::string rec;
    state::append_add(rec, m);
    std::unique_lock lock(mu_);
    if (end_ >= size_limit()) {
        wake_.notify_one();
        room_.wait_for(lock, kRoomWait, [&] { return end_ < size_limit() || broken_ || stop_; });
    }
    const std::uint64_t offset = end_;
    if (!append(rec)) {
        throw Error(ErrorCode::io_error,
                    "imclient: cannot write the message to " + path_ + ": " +
                        (broken_ ? std::string("an earlier write failed") : std::strerror(errno)));
    }
    note_add(offset, static_cast<std::uint32_t>(rec.size()), m);
}

void StateLog::done(const std::vector<std::string>& client_msg_ids) {
    if (client_msg_ids.empty()) return;
    std::string recs;
    for (const auto& id : client_msg_ids)
        state::append_done(recs, id);
    std::lock_guard lock(mu_);
    append(recs);
    // Forgotten either way: a compaction must not bring them back (a lost done record only
    // means a resend the server dedupes; a kept one would mean a resend after every start).
    for (const auto& id : client_msg_ids)
        note_done(id);
}

void StateLog::login(std::uint64_t user) {
    std::string rec;
    state::append_value(rec, state::Kind::login, user);
    std::lock_guard lock(mu_);
    append(rec);
    note_login(user);
}

bool StateLog::save_cursors(const CursorChanges& c) {
    std::string recs;
    if (c.clear) state::append_clear(recs);
    if (c.owner) state::append_value(recs, state::Kind::cursor_owner, *c.owner);
    if (c.sync_cursor) state::append_value(recs, state::Kind::sync_cursor, *c.sync_cursor);
    for (const auto& m : c.marks)
        state::append_marks(recs, m.conversation_id, m.delivered, m.read);
    if (recs.empty()) return true;
    std::lock_guard lock(mu_);
    if (!append(recs)) return false;
    note_cursors(c);
    return true;
}

void StateLog::note_add(std::uint64_t offset, std::uint32_t bytes, const OutMessage& m) {
    live_[offset] = Live{m.client_msg_id, bytes, m.owner};
    offset_of_[m.client_msg_id] = offset;
    live_message_bytes_ += bytes;
}

void StateLog::note_done(const std::string& id) {
    const auto it = offset_of_.find(id);
    if (it == offset_of_.end()) return;
    const auto live = live_.find(it->second);
    live_message_bytes_ -= live->second.bytes;
    live_.erase(live);
    offset_of_.erase(it);
}

void StateLog::note_login(std::uint64_t user) {
    for (auto& [offset, l] : live_) {
        if (l.owner == 0) l.owner = user;
    }
}

void StateLog::note_cursors(const CursorChanges& c) {
    if (c.clear) cursors_ = Cursors{};
    if (c.owner) cursors_.owner = *c.owner;
    if (c.sync_cursor) cursors_.sync_cursor = *c.sync_cursor;
    for (const auto& m : c.marks) {
        auto& mark = cursors_.marks[m.conversation_id];
        mark.conversation_id = m.conversation_id;
        mark.delivered = std::max(mark.delivered, m.delivered);
        mark.read = std::max(mark.read, m.read);
    }
}

// ---- durability and size -----------------------------------------------------------------------

void StateLog::sync() {
    std::unique_lock lock(mu_);
    const std::uint64_t target = appended_;
    wake_.notify_one();
    synced_.wait(lock, [&] { return synced_upto_ >= target || stop_; });
}

StateLog::Stats StateLog::stats() const {
    std::lock_guard lock(mu_);
    Stats s = stats_;
    s.file_bytes = end_;
    s.live_bytes = live_estimate();
    return s;
}

std::uint64_t StateLog::live_estimate() const {
    return state::kHeaderBytes + 2 * kValueRecordBytes + cursors_.marks.size() * kMarksRecordBytes +
           live_message_bytes_;
}

bool StateLog::compact_due() const {
    return !broken_ && end_ >= compact_floor_ && end_ > 2 * live_estimate();
}

std::uint64_t StateLog::size_limit() const {
    return 2 * std::max<std::uint64_t>(compact_floor_, 2 * live_estimate());
}

void StateLog::run() {
    std::unique_lock lock(mu_);
    for (;;) {
        wake_.wait(lock, [&] { return stop_ || appended_ != synced_upto_ || compact_due(); });
        if (appended_ != synced_upto_) {
            // One fdatasync for everything appended so far; appends go on meanwhile.
            const std::uint64_t target = appended_;
            const int fd = fd_;  // only this thread replaces it
            lock.unlock();
            const bool ok = ::fdatasync(fd) == 0;
            lock.lock();
            ++stats_.syncs;
            if (!ok) ++stats_.sync_failures;
            synced_upto_ = std::max(synced_upto_, target);
            synced_.notify_all();
        }
        if (stop_) {
            room_.notify_all();
            if (appended_ == synced_upto_) break;
            continue;  // the last records, then out
        }
        // Between two syncs, also under a steady stream of appends (it would starve otherwise).
        if (compact_due()) compact(lock);
    }
    synced_.notify_all();
}

void StateLog::compact(std::unique_lock<std::mutex>& lock) {
    // What is live now; the records appended from snapshot_end on are copied at the end.
    const std::vector<std::pair<std::uint64_t, Live>> live(live_.begin(), live_.end());
    const Cursors cursors = cursors_;
    const std::uint64_t snapshot_end = end_;
    const int old_fd = fd_;
    lock.unlock();

    const std::string tmp = path_ + ".tmp";
    std::map<std::uint64_t, std::uint64_t> moved;  // old offset -> new offset
    std::uint64_t out_end = 0;
    int out = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = out >= 0;
    std::string buf = state::header();
    auto flush_buf = [&] {
        ok = ok && pwrite_all(out, buf.data(), buf.size(), out_end);
        out_end += buf.size();
        buf.clear();
    };
    if (ok) {
        state::append_value(buf, state::Kind::cursor_owner, cursors.owner);
        state::append_value(buf, state::Kind::sync_cursor, cursors.sync_cursor);
        for (const auto& [conv, m] : cursors.marks)
            state::append_marks(buf, conv, m.delivered, m.read);
        std::string rec;
        for (const auto& [offset, l] : live) {
            rec.resize(l.bytes);
            ok = ok && pread_all(old_fd, rec.data(), rec.size(), offset);
            auto parsed = ok ? state::parse(rec, 0) : std::nullopt;
            ok = ok && parsed && parsed->record.kind == state::Kind::add;
            if (!ok) break;
            parsed->record.message.owner = l.owner;  // adopted by a login since
            moved[offset] = out_end + buf.size();
            state::append_add(buf, parsed->record.message);
            if (buf.size() >= kCopyChunk) flush_buf();
        }
        flush_buf();
        ok = ok && ::fdatasync(out) == 0;
    }

    lock.lock();
    if (ok && end_ > snapshot_end) {
        // Appended meanwhile: copy it as is (its records apply on top of the snapshot).
        const std::uint64_t tail = end_ - snapshot_end;
        for (std::uint64_t done = 0; ok && done < tail;) {
            buf.resize(static_cast<std::size_t>(std::min<std::uint64_t>(kCopyChunk, tail - done)));
            ok = pread_all(old_fd, buf.data(), buf.size(), snapshot_end + done) &&
                 pwrite_all(out, buf.data(), buf.size(), out_end + done);
            done += buf.size();
        }
    }
    ok = ok && ::rename(tmp.c_str(), path_.c_str()) == 0;
    if (!ok) {
        if (out >= 0) ::close(out);
        ::unlink(tmp.c_str());
        compact_floor_ = end_ + config_.compact_min_bytes;  // not again before it grew more
        room_.notify_all();
        return;
    }
    // Switch to the new file; re-index the queued messages at their new offsets.
    const std::uint64_t tail_start = out_end;
    std::map<std::uint64_t, Live> relocated;
    for (auto& [offset, l] : live_) {
        const std::uint64_t at =
            offset >= snapshot_end ? tail_start + (offset - snapshot_end) : moved.at(offset);
        offset_of_[l.id] = at;
        relocated.emplace(at, std::move(l));
    }
    live_ = std::move(relocated);
    fd_ = out;
    end_ = tail_start + (end_ - snapshot_end);
    ++appended_;  // the copied tail and the rename still need their fdatasync
    ++stats_.compactions;
    compact_floor_ = config_.compact_min_bytes;
    ::close(old_fd);
    room_.notify_all();
    lock.unlock();
    sync_dir(dir_);
    lock.lock();
}

}  // namespace imclient::detail

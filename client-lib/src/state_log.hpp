#pragma once
// The client's persistent state (Options::state_dir, docs/CLIENT.md "Persistent state"): the
// unacknowledged messages of the outbox and the cursors in one append-only log, so that an app
// crash loses no message handed to send_*() and a restart does not download history again.
//
//   <dir>/lock       flock()ed exclusively while the StateLog lives (the kernel drops the lock when
//                    the process dies, also by kill -9): a second StateLog on the directory, in
//                    this process or another, gets Error{state_locked}. It holds the owner's pid.
//   <dir>/state.log  a header and records (state_record.hpp).
//
// Durability. Every append is one pwrite(2) under the mutex: once it returned, its records survive
// a crash of the process at any moment. A background thread fdatasync()s the file whenever
// something was appended since its last fdatasync (one covers everything appended meanwhile, so
// there is no fsync per message and none on the caller's thread); a record survives a crash of the
// machine once that ran. A failed or short write is cut off again (ftruncate), so the file never
// holds a torn record before a good one; opening drops a torn or corrupt tail (a crash of the
// machine mid-write) and truncates the file there: nothing but that tail is ever lost.
//
// Size. Once the file is larger than Config::compact_min_bytes and twice what is live (the queued
// messages and the cursors), the background thread writes the live state to state.log.tmp and
// fdatasyncs it without holding the mutex; then, holding it, copies what was appended meanwhile,
// renames the new file over state.log and appends there from then on. Appenders wait at most for
// that last copy and the rename. Should add() outrun the compactions (tens of MB/s of messages),
// it waits (at most kRoomWait) while the file is more than twice the size that starts one; the
// client's I/O thread never waits there (done() and save_cursors() do not).

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "imclient/cursor_store.hpp"
#include "outbox.hpp"

namespace imclient::detail {

class StateLog {
  public:
    struct Config {
        std::size_t compact_min_bytes = 1u << 20;  // never rewritten below this size
    };
    struct Cursors {
        std::uint64_t owner = 0;
        std::uint64_t sync_cursor = 0;
        std::map<std::uint64_t, ConversationCursor> marks;  // by conversation
    };
    // A CursorStore's changes since its last flush, applied in this order.
    struct CursorChanges {
        bool clear = false;
        std::optional<std::uint64_t> owner;
        std::optional<std::uint64_t> sync_cursor;
        std::vector<ConversationCursor> marks;
    };
    struct Stats {
        std::uint64_t file_bytes = 0;
        std::uint64_t live_bytes = 0;  // what a rewrite would keep
        std::uint64_t compactions = 0;
        std::uint64_t dropped_bytes = 0;  // a torn or corrupt tail cut off when opened
        std::uint64_t syncs = 0;          // fdatasyncs of the log
        std::uint64_t sync_failures = 0;
    };

    // Creates the directory (0700) and the files as needed, takes the lock, reads the log.
    // Throws Error{state_locked} while another StateLog holds the directory, Error{io_error} when
    // it cannot be created, read or written, or holds something else than a state log of this
    // version.
    explicit StateLog(std::string dir);
    StateLog(std::string dir, Config config);
    // A last fdatasync, then the lock is released.
    ~StateLog();
    StateLog(const StateLog&) = delete;
    StateLog& operator=(const StateLog&) = delete;

    // The unacknowledged messages the file held when opened, in the order they were queued (the
    // first call takes them; later calls get nothing). Their owner is the user who queued them (0:
    // queued before any login).
    std::vector<OutMessage> take_restored();
    // The cursors the file held when opened.
    const Cursors& restored_cursors() const noexcept { return restored_cursors_; }

    // A message queued: throws Error{io_error} when it cannot be written (it must not be queued
    // then: nothing would keep it).
    void add(const OutMessage& m);
    // Messages no longer queued (SENT, or refused for good). Best effort: a done record that
    // could not be written only means a resend after a restart, which the server dedupes.
    void done(const std::vector<std::string>& client_msg_ids);
    // `user` logged in: the queued messages without an owner are his from now on.
    void login(std::uint64_t user);
    // False when the changes could not be written (the caller keeps them and tries again).
    bool save_cursors(const CursorChanges& changes);

    // Waits until everything appended so far went through an fdatasync (or one failed).
    void sync();
    Stats stats() const;
    const std::string& path() const noexcept { return path_; }

  private:
    struct Live {
        std::string id;
        std::uint32_t bytes = 0;
        std::uint64_t owner = 0;
    };

    void open_log();
    void replay(const std::string& data, std::size_t& valid_end);
    bool append(const std::string& records);  // mu_ held
    void note_add(std::uint64_t offset, std::uint32_t bytes, const OutMessage& m);
    void note_done(const std::string& id);
    void note_login(std::uint64_t user);
    void note_cursors(const CursorChanges& c);
    std::uint64_t live_estimate() const;  // mu_ held
    bool compact_due() const;             // mu_ held
    std::uint64_t size_limit() const;     // mu_ held: add() waits beyond
    void run();                           // the background thread
    void compact(std::unique_lock<std::mutex>& lock);

    const Config config_;
    const std::string dir_;
    const std::string path_;
    int lock_fd_ = -1;

    mutable std::mutex mu_;
    std::condition_variable wake_;    // the background thread
    std::condition_variable synced_;  // sync() waiters
    std::condition_variable room_;    // add() waiting for a compaction
    int fd_ = -1;
    std::uint64_t end_ = 0;          // the file's size: where the next record goes
    std::uint64_t appended_ = 0;     // appends so far...
    std::uint64_t synced_upto_ = 0;  // ...and how many of them an fdatasync covered
    bool stop_ = false;
    bool broken_ = false;  // a failed write could not be cut off again: no more appends
    std::uint64_t compact_floor_ = 0;
    std::map<std::uint64_t, Live> live_;  // queued messages by offset: file order = queue order
    std::unordered_map<std::string, std::uint64_t> offset_of_;
    std::uint64_t live_message_bytes_ = 0;
    Cursors cursors_;
    Stats stats_;

    std::vector<OutMessage> restored_;
    Cursors restored_cursors_;
    std::thread thread_;
};

}  // namespace imclient::detail

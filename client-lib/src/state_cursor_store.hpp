#pragma once
// The CursorStore of a state directory (Options::state_dir without an Options::cursor_store): a
// MemoryCursorStore that writes what changed since its last flush() to the state log as a few
// records (one pwrite, no fsync on the client's thread: the log's own thread fdatasyncs).

#include <memory>
#include <set>

#include "imclient/cursor_store.hpp"
#include "state_log.hpp"

namespace imclient::detail {

class StateCursorStore final : public MemoryCursorStore {
  public:
    // Starts with what the log held when opened.
    explicit StateCursorStore(std::shared_ptr<StateLog> log);

    void set_owner(std::uint64_t user_id) override;
    void clear() override;
    void set_sync_cursor(std::uint64_t cursor) override;
    void set_delivered(std::uint64_t conversation_id, std::uint64_t seq) override;
    void set_read(std::uint64_t conversation_id, std::uint64_t seq) override;
    // Appends the changes to the log: durable against a crash of the app once it returned true,
    // against a crash of the machine after the log's next fdatasync.
    bool flush() override;

  private:
    std::shared_ptr<StateLog> log_;
    // Changes since the last successful flush (under mu_).
    bool cleared_ = false;
    bool owner_changed_ = false;
    bool cursor_changed_ = false;
    std::set<std::uint64_t> changed_;
};

}  // namespace imclient::detail

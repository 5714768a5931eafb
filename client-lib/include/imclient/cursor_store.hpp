#pragma once
// Where the client keeps what it must remember across app restarts: the conversation-sync
// cursor and, per conversation, the delivered watermark (the last contiguous seq handed to the
// app) and the read watermark. The Client calls a store from its own thread only, and calls
// flush() after every burst of changes; a store belongs to one (user, device).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace imclient {

struct ConversationCursor {
    std::uint64_t conversation_id = 0;
    std::uint64_t delivered = 0;
    std::uint64_t read = 0;
};

class CursorStore {
  public:
    virtual ~CursorStore() = default;

    // The user the data belongs to (0: none yet). The Client clears a store that belongs to
    // another user before using it.
    virtual std::uint64_t owner() const = 0;
    virtual void set_owner(std::uint64_t user_id) = 0;
    virtual void clear() = 0;

    virtual std::uint64_t sync_cursor() const = 0;
    virtual void set_sync_cursor(std::uint64_t cursor) = 0;

    // Watermarks only move forward: a lower value than the stored one is ignored.
    virtual std::uint64_t delivered(std::uint64_t conversation_id) const = 0;
    virtual void set_delivered(std::uint64_t conversation_id, std::uint64_t seq) = 0;
    virtual std::uint64_t read(std::uint64_t conversation_id) const = 0;
    virtual void set_read(std::uint64_t conversation_id, std::uint64_t seq) = 0;

    virtual std::vector<ConversationCursor> conversations() const = 0;

    // Makes every change so far durable. Returns false when that failed (the changes stay
    // pending and the next flush() tries again).
    virtual bool flush() = 0;
};

// Keeps everything in memory: an app restart starts from scratch (the default).
class MemoryCursorStore : public CursorStore {
  public:
    std::uint64_t owner() const override;
    void set_owner(std::uint64_t user_id) override;
    void clear() override;
    std::uint64_t sync_cursor() const override;
    void set_sync_cursor(std::uint64_t cursor) override;
    std::uint64_t delivered(std::uint64_t conversation_id) const override;
    void set_delivered(std::uint64_t conversation_id, std::uint64_t seq) override;
    std::uint64_t read(std::uint64_t conversation_id) const override;
    void set_read(std::uint64_t conversation_id, std::uint64_t seq) override;
    std::vector<ConversationCursor> conversations() const override;
    bool flush() override { return true; }

  protected:
    struct Marks {
        std::uint64_t delivered = 0;
        std::uint64_t read = 0;
    };
    mutable std::mutex mu_;
    std::uint64_t owner_ = 0;
    std::uint64_t cursor_ = 0;
    std::map<std::uint64_t, Marks> marks_;
    bool dirty_ = false;
};

// A MemoryCursorStore persisted to one small text file. flush() rewrites it atomically (write
// <path>.tmp, fsync, rename over <path>, fsync the directory) when something changed, so a crash
// leaves either the old or the new file. The constructor loads the file when it exists and
// throws std::runtime_error when it is unreadable or malformed.
class FileCursorStore : public MemoryCursorStore {
  public:
    explicit FileCursorStore(std::string path);
    bool flush() override;
    const std::string& path() const noexcept { return path_; }

  private:
    std::string path_;
};

}  // namespace imclient

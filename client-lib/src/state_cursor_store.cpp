#include "state_cursor_store.hpp"

namespace imclient::detail {

StateCursorStore::StateCursorStore(std::shared_ptr<StateLog> log) : log_(std::move(log)) {
    const auto& c = log_->restored_cursors();
    owner_ = c.owner;
    cursor_ = c.sync_cursor;
    for (const auto& [conv, m] : c.marks)
        marks_[conv] = Marks{m.delivered, m.read};
}

void StateCursorStore::set_owner(std::uint64_t user_id) {
    std::lock_guard lock(mu_);
    if (owner_ == user_id) return;
    owner_ = user_id;
    dirty_ = owner_changed_ = true;
}

void StateCursorStore::clear() {
    std::lock_guard lock(mu_);
    owner_ = 0;
    cursor_ = 0;
    marks_.clear();
    dirty_ = cleared_ = true;
    owner_changed_ = cursor_changed_ = false;  // what changed before is gone with the rest
    changed_.clear();
}

void StateCursorStore::set_sync_cursor(std::uint64_t cursor) {
    std::lock_guard lock(mu_);
    if (cursor_ == cursor) return;
    cursor_ = cursor;
    dirty_ = cursor_changed_ = true;
}

void StateCursorStore::set_delivered(std::uint64_t conversation_id, std::uint64_t seq) {
    std::lock_guard lock(mu_);
    auto& m = marks_[conversation_id];
    if (seq <= m.delivered) return;
    m.delivered = seq;
    dirty_ = true;
    changed_.insert(conversation_id);
}

void StateCursorStore::set_read(std::uint64_t conversation_id, std::uint64_t seq) {
    std::lock_guard lock(mu_);
    auto& m = marks_[conversation_id];
    if (seq <= m.read) return;
    m.read = seq;
    dirty_ = true;
    changed_.insert(conversation_id);
}

bool StateCursorStore::flush() {
    std::lock_guard lock(mu_);
    if (!dirty_) return true;
    StateLog::CursorChanges c;
    c.clear = cleared_;
    if (owner_changed_ || cleared_) c.owner = owner_;
    if (cursor_changed_ || cleared_) c.sync_cursor = cursor_;
    for (const auto conv : changed_) {
        const auto& m = marks_.at(conv);
        c.marks.push_back({conv, m.delivered, m.read});
    }
    // Under mu_: the client calls a store from its own thread only, and the log never calls back.
    if (!log_->save_cursors(c)) return false;  // kept: the next flush() tries again
    dirty_ = false;
    cleared_ = owner_changed_ = cursor_changed_ = false;
    changed_.clear();
    return true;
}

}  // namespace imclient::detail

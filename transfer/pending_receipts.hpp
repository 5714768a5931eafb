#pragma once
// The receipts a writer lane has accepted and not yet stored. Receipts are watermarks, so they
// coalesce per (conversation, user, kind): a newer receipt of the same key raises the one already
// waiting (it keeps its place in line), and a receipt of a failed batch goes back to the front
// instead of being dropped. Memory is bounded by the number of keys: the caller refuses a NEW key
// when the lane is full (add() returns false) and tells the client, which resends its watermarks;
// put_back() may exceed the bound by at most one batch. Not thread-safe (the lane's mutex guards
// it).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "message_writer.hpp"

namespace im::transfer {

class PendingReceipts {
  public:
    // Coalesces into the waiting receipt of the same key, or queues a new key if `room` (the
    // caller's bound); false: a new key and no room (nothing was kept).
    bool add(ReceiptJob job, bool room);
    // Up to `max` receipts, oldest key first.
    std::vector<ReceiptJob> take(std::size_t max);
    // Receipts of a batch that failed: back to the front, merged with what arrived meanwhile.
    void put_back(std::vector<ReceiptJob> jobs);
    std::size_t size() const { return by_key_.size(); }
    bool empty() const { return by_key_.empty(); }

  private:
    struct Key {
        std::uint64_t conv = 0, user = 0;
        int kind = 0;
        bool operator==(const Key&) const = default;
    };
    struct KeyHash {
        std::size_t operator()(const Key& k) const noexcept {
            std::uint64_t h = (k.conv ^ (k.user * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
            h ^= static_cast<std::uint64_t>(k.kind) + (h >> 31);
            return static_cast<std::size_t>(h ^ (h >> 29));
        }
    };
    static Key key_of(const ReceiptJob& j) {
        return Key{j.receipt.conversation_id(), j.session.user_id(),
                   static_cast<int>(j.receipt.kind())};
    }
    // Keeps the higher watermark (and the session that sent it, which its other sessions skip).
    static void merge(ReceiptJob& into, ReceiptJob&& from);

    std::unordered_map<Key, ReceiptJob, KeyHash> by_key_;
    std::deque<Key> order_;  // every key of by_key_ once, oldest first
};

}  // namespace im::transfer

#pragma once
// Who may message whom: friendship (when required) and blocks, per pair of users, cached for a
// short TTL so the writer does not query MySQL per message. Misses are resolved for a whole batch
// with one query per table. Thread-safe (the writer and the reader pool share it).

#include <chrono>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cache.hpp"

namespace im::mysql {
class MysqlConnection;
}

namespace im::transfer {

struct PairPolicy {
    bool friends = false;
    bool blocked = false;  // either user blocked the other
};

class PolicyCache {
public:
    PolicyCache(std::chrono::milliseconds ttl, std::size_t capacity) : ttl_(ttl), cache_(capacity) {}

    // Fills `out[conversation_id(a, b)]` for every pair, querying MySQL (on `db`) for the misses.
    void resolve(mysql::MysqlConnection& db, const std::vector<std::pair<std::uint64_t, std::uint64_t>>& pairs,
                 std::unordered_map<std::uint64_t, PairPolicy>& out);
    PairPolicy get(mysql::MysqlConnection& db, std::uint64_t a, std::uint64_t b);
    void invalidate(std::uint64_t a, std::uint64_t b);
    void clear();

private:
    struct Entry {
        PairPolicy policy;
        std::chrono::steady_clock::time_point expires;
    };
    std::chrono::milliseconds ttl_;
    std::mutex mu_;
    TwoGenCache<std::uint64_t, Entry> cache_;
};

}  // namespace im::transfer

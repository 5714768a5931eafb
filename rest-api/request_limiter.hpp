#pragma once
// In-process request rate limits of im-rest (per bearer token, per client address): a token
// bucket per key in a bounded table (least recently used keys are dropped beyond max_keys, which
// only ever hands the dropped key a full bucket again). Checked on the HTTP I/O threads before a
// request reaches the pool, so a flood never queues blocking work; sharded locks keep the I/O
// threads apart. Not shared between replicas (a Redis round trip per request would cost more
// than the requests it guards): behind a balancer over R replicas a key gets up to R budgets.

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "im/server/token_bucket.hpp"

namespace im::rest {

class KeyedRateLimiter {
public:
    KeyedRateLimiter(RateLimit limit, std::size_t max_keys);

    // nullopt: admitted. Otherwise the milliseconds until `key` has a token again.
    std::optional<std::uint32_t> take(std::uint64_t key, std::int64_t now_ms);
    bool enabled() const { return limit_.enabled(); }
    std::size_t size() const;

    // Keys: a seeded hash of a client address; the first 8 bytes of a token's SHA-256.
    static std::uint64_t address_key(std::string_view address);
    static std::uint64_t token_key(std::string_view token_sha256);

private:
    struct Entry {
        std::uint64_t key = 0;
        TokenBucket bucket;
    };
    struct Shard {
        mutable std::mutex mu;
        std::list<Entry> lru;  // most recent first
        std::unordered_map<std::uint64_t, std::list<Entry>::iterator> index;
    };
    static constexpr std::size_t kShards = 16;

    RateLimit limit_;
    std::size_t per_shard_;
    std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace im::rest

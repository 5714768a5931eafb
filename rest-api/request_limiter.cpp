#include "request_limiter.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <iterator>
#include <random>

namespace im::rest {

namespace {
std::uint64_t mix(std::uint64_t x) {  // splitmix64 finalizer
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

std::uint64_t process_seed() {
    static const std::uint64_t seed = [] {
        std::random_device rd;
        return (static_cast<std::uint64_t>(rd()) << 32) | rd();
    }();
    return seed;
}
}  // namespace

KeyedRateLimiter::KeyedRateLimiter(RateLimit limit, std::size_t max_keys)
    : limit_(limit), per_shard_(std::max<std::size_t>(1, max_keys / kShards)) {
    for (std::size_t i = 0; i < kShards; ++i) shards_.push_back(std::make_unique<Shard>());
}

std::optional<std::uint32_t> KeyedRateLimiter::take(std::uint64_t key, std::int64_t now_ms) {
    if (!limit_.enabled()) return std::nullopt;
    Shard& s = *shards_[mix(key) % kShards];
    std::lock_guard lock(s.mu);
    auto it = s.index.find(key);
    if (it != s.index.end()) {
        s.lru.splice(s.lru.begin(), s.lru, it->second);  // most recent first
    } else if (s.lru.size() >= per_shard_) {
        // Full: the least recently used entry is reused for this key (no allocation).
        s.index.erase(s.lru.back().key);
        s.lru.splice(s.lru.begin(), s.lru, std::prev(s.lru.end()));
        s.lru.front() = Entry{key, TokenBucket{}};
        s.index.emplace(key, s.lru.begin());
    } else {
        s.lru.push_front(Entry{key, TokenBucket{}});
        s.index.emplace(key, s.lru.begin());
    }
    std::uint32_t retry_ms = 0;
    if (s.lru.front().bucket.take(limit_, now_ms, &retry_ms)) return std::nullopt;
    return retry_ms;
}

std::size_t KeyedRateLimiter::size() const {
    std::size_t n = 0;
    for (const auto& s : shards_) {
        std::lock_guard lock(s->mu);
        n += s->lru.size();
    }
    return n;
}

std::uint64_t KeyedRateLimiter::address_key(std::string_view address) {
    return mix(std::hash<std::string_view>{}(address) ^ process_seed());
}

std::uint64_t KeyedRateLimiter::token_key(std::string_view token_sha256) {
    std::uint64_t k = 0;
    std::memcpy(&k, token_sha256.data(), std::min<std::size_t>(8, token_sha256.size()));
    return k;
}

}  // namespace im::rest

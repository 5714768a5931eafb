#pragma once
// Fixed-window rate limits kept in Redis (so every im-rest replica counts together): one INCR and
// one PEXPIRE in a single round trip per check. If Redis is unreachable the limiter lets the
// request through (availability first) and counts the failure.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "im/server/token_bucket.hpp"

namespace im::redis {
class RedisConnection;
}
namespace im::config {
class Binder;
}

namespace im::rest {

struct RateLimitConfig {
    std::uint32_t login_per_user = 10;     // attempts per window per username (0 = off)
    std::uint32_t login_per_addr = 100;    // attempts per window per client address (0 = off)
    std::uint32_t register_per_addr = 20;  // registrations per window per client address (0 = off)
    std::chrono::milliseconds window{std::chrono::minutes(1)};
    // In-process limits of every request (request_limiter.hpp), checked before the pool.
    RateLimit per_address{100, 200};  // requests a second per client address
    RateLimit per_token{20, 100};     // requests a second per bearer token
    std::uint32_t tracked_keys = 100000;  // keys per table (least recently used dropped beyond)
};

void bind(config::Binder& b, RateLimitConfig& c);  // keys rate_limit.*

class RateLimiter {
public:
    RateLimiter(redis::RedisConnection& redis, const RateLimitConfig& config, std::string key_prefix)
        : redis_(redis), config_(config), prefix_(std::move(key_prefix)) {}

    // nullopt: allowed. Otherwise the seconds until the window ends (for Retry-After).
    std::optional<int> hit(const std::string& bucket, std::uint32_t limit);
    // Adds `amount` to the bucket's fixed window of `window` (INCRBY): nullopt while the total
    // stays within `limit` (0 = off), else the seconds until the window ends, and the amount is
    // taken back (a refused attempt does not use up the budget).
    std::optional<int> hit_amount(const std::string& bucket, std::uint64_t amount, std::uint64_t limit,
                                  std::chrono::milliseconds window);
    std::uint64_t redis_errors() const { return redis_errors_; }

private:
    // The fixed window's counter += amount (INCRBY and PEXPIRE in one round trip); over `limit`, the
    // seconds left in the window, and with `take_back_refused` the amount is subtracted again.
    std::optional<int> add(const std::string& bucket, std::uint64_t amount, std::uint64_t limit,
                           std::chrono::milliseconds window, bool take_back_refused);

    redis::RedisConnection& redis_;
    const RateLimitConfig& config_;
    std::string prefix_;
    std::uint64_t redis_errors_ = 0;
};

}  // namespace im::rest

#include "rate_limiter.hpp"

#include <spdlog/spdlog.h>

#include "im/server/config.hpp"
#include "im/server/redis.hpp"
#include "im/server/tokens.hpp"

namespace im::rest {

void bind(config::Binder& b, RateLimitConfig& c) {
    b.bind("rate_limit.login_per_user", c.login_per_user, 0, 1'000'000);
    b.bind("rate_limit.login_per_addr", c.login_per_addr, 0, 1'000'000);
    b.bind("rate_limit.register_per_addr", c.register_per_addr, 0, 1'000'000);
    b.bind_duration("rate_limit.window", c.window, std::chrono::seconds(1), std::chrono::hours(24));
    b.bind("rate_limit.address_per_second", c.per_address.per_second, 0, 10'000'000);
    b.bind("rate_limit.address_burst", c.per_address.burst, 1, 10'000'000);
    b.bind("rate_limit.token_per_second", c.per_token.per_second, 0, 10'000'000);
    b.bind("rate_limit.token_burst", c.per_token.burst, 1, 10'000'000);
    b.bind("rate_limit.tracked_keys", c.tracked_keys, 16, 100'000'000);
}

std::optional<int> RateLimiter::hit(const std::string& bucket, std::uint32_t limit) {
    return add(bucket, 1, limit, config_.window, false);
}

std::optional<int> RateLimiter::hit_amount(const std::string& bucket, std::uint64_t amount, std::uint64_t limit,
                                           std::chrono::milliseconds window) {
    return add(bucket, amount, limit, window, true);
}

std::optional<int> RateLimiter::add(const std::string& bucket, std::uint64_t amount, std::uint64_t limit,
                                    std::chrono::milliseconds window_ms, bool take_back_refused) {
    if (limit == 0) return std::nullopt;
    const std::int64_t now = tokens::now_ms();
    const std::int64_t window = window_ms.count();
    const std::int64_t index = now / window;
    const std::string key = prefix_ + "rl:" + bucket + ":" + std::to_string(index);
    try {
        auto replies = redis_.pipeline(
            {{"INCRBY", key, std::to_string(amount)}, {"PEXPIRE", key, std::to_string(window * 2)}});
        const auto total = redis::as_integer(replies.at(0).get());
        if (total < 0 || static_cast<std::uint64_t>(total) <= limit) return std::nullopt;
        if (take_back_refused) redis_.pipeline({{"DECRBY", key, std::to_string(amount)}});
        const auto remaining_ms = (index + 1) * window - now;
        return static_cast<int>((remaining_ms + 999) / 1000);
    } catch (const std::exception& e) {
        ++redis_errors_;
        spdlog::warn("rate limiter: redis unavailable, allowing: {}", e.what());
        return std::nullopt;
    }
}

}  // namespace im::rest

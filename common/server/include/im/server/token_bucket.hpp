#pragma once
// A token bucket for abuse limits: `per_second` tokens refill continuously up to `burst`; each
// admitted event takes one. The limit (rate, burst) lives in the configuration and is passed to
// every call, so a bucket is 16 bytes of state with no allocation: one per session, per user, per
// key of a bounded table. Integer arithmetic in milli-tokens; time in steady milliseconds.
// Not thread-safe (one owner: a session's I/O thread, or a table under its lock).

#include <algorithm>
#include <cstdint>

namespace im {

struct RateLimit {
    std::uint32_t per_second = 0;  // 0: unlimited
    std::uint32_t burst = 1;       // the most tokens a bucket holds (at least 1)
    bool enabled() const noexcept { return per_second != 0; }
};

class TokenBucket {
public:
    // Takes one token at now_ms. On refusal returns false and sets *retry_after_ms to the wait
    // until one token is back (at least 1 ms). An unlimited rate always admits.
    bool take(const RateLimit& limit, std::int64_t now_ms, std::uint32_t* retry_after_ms = nullptr) noexcept {
        if (!limit.enabled()) return true;
        refill(limit, now_ms);
        if (level_ >= kUnit) {
            level_ -= kUnit;
            return true;
        }
        if (retry_after_ms != nullptr) *retry_after_ms = wait_ms(limit);
        return false;
    }

    // Takes one token even when none is left: the level goes below zero (a debt the refill pays
    // back first). Returns 0 when a token was there, else the milliseconds until one is back, which
    // grow with the debt. For limits that slow a peer down instead of refusing it.
    std::uint32_t charge(const RateLimit& limit, std::int64_t now_ms) noexcept {
        if (!limit.enabled()) return 0;
        refill(limit, now_ms);
        level_ -= kUnit;
        return level_ >= 0 ? 0 : wait_ms(limit);
    }

    // Whether the bucket is back to full at now_ms (an idle entry a bounded table may drop).
    bool full(const RateLimit& limit, std::int64_t now_ms) const noexcept {
        if (!limit.enabled() || stamp_ms_ == 0) return true;
        const std::int64_t capacity = static_cast<std::int64_t>(std::max<std::uint32_t>(1, limit.burst)) * kUnit;
        return level_ + (now_ms - stamp_ms_) * static_cast<std::int64_t>(limit.per_second) >= capacity;
    }

private:
    void refill(const RateLimit& limit, std::int64_t now_ms) noexcept {
        const std::int64_t capacity = static_cast<std::int64_t>(std::max<std::uint32_t>(1, limit.burst)) * kUnit;
        if (stamp_ms_ == 0) {  // first use: a full bucket
            level_ = capacity;
            stamp_ms_ = std::max<std::int64_t>(1, now_ms);
        } else if (now_ms > stamp_ms_) {
            // per_second tokens a second = per_second milli-tokens a millisecond.
            const std::int64_t refill = (now_ms - stamp_ms_) * static_cast<std::int64_t>(limit.per_second);
            level_ = std::min(capacity, level_ + refill);
            stamp_ms_ = now_ms;
        }
    }
    // Until the level is back at one token (at least 1 ms).
    std::uint32_t wait_ms(const RateLimit& limit) const noexcept {
        const std::int64_t missing = kUnit - level_;
        const std::int64_t wait = (missing + limit.per_second - 1) / limit.per_second;
        return static_cast<std::uint32_t>(std::clamp<std::int64_t>(wait, 1, 24 * 3600 * 1000));
    }

    static constexpr std::int64_t kUnit = 1000;  // milli-tokens per token
    std::int64_t level_ = 0;     // milli-tokens
    std::int64_t stamp_ms_ = 0;  // last update; 0: never used
};

}  // namespace im

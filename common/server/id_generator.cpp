#include "im/server/id_generator.hpp"

#include "im/server/clock.hpp"

#include <chrono>
#include <stdexcept>
#include <string>

namespace im {

IdGenerator::IdGenerator(std::uint32_t worker_id, Clock clock)
    : worker_id_(worker_id), clock_(std::move(clock)) {
    if (worker_id > kMaxWorker) {
        throw std::invalid_argument("worker id " + std::to_string(worker_id) + " exceeds " +
                                    std::to_string(kMaxWorker));
    }
}

void IdGenerator::set_worker_id(std::uint32_t worker_id) {
    if (worker_id > kMaxWorker) throw std::invalid_argument("worker id " + std::to_string(worker_id) + " exceeds " + std::to_string(kMaxWorker));
    worker_id_.store(worker_id, std::memory_order_relaxed);
}

std::int64_t IdGenerator::now_ms() const {
    return clock_ ? clock_() : wall_ms();
}

std::uint64_t IdGenerator::next() noexcept {
    constexpr std::uint64_t seq_mask = (1u << kSeqBits) - 1;
    const std::int64_t rel = now_ms() - kEpochMs;
    const std::uint64_t now = rel > 0 ? static_cast<std::uint64_t>(rel) : 0;

    std::uint64_t cur = state_.load(std::memory_order_relaxed);
    std::uint64_t next_state = 0;
    do {
        const std::uint64_t last_ms = cur >> kSeqBits;
        if (now > last_ms) {
            next_state = now << kSeqBits;  // a new millisecond: seq restarts at 0
        } else {
            // Same millisecond, or the clock stepped back: continue from the logical time.
            // When seq overflows, the increment carries into the millisecond field (borrowing).
            next_state = cur + 1;
        }
    } while (!state_.compare_exchange_weak(cur, next_state, std::memory_order_relaxed));
    if (last_wall_ms_.exchange(now, std::memory_order_relaxed) > now) {
        regressions_.fetch_add(1, std::memory_order_relaxed);
    }

    const std::uint64_t ms = next_state >> kSeqBits;
    const std::uint64_t seq = next_state & seq_mask;
    return (ms << (kWorkerBits + kSeqBits)) | (std::uint64_t{worker_id_.load(std::memory_order_relaxed)} << kSeqBits) | seq;
}

std::int64_t IdGenerator::time_ms_of(std::uint64_t id) noexcept {
    return static_cast<std::int64_t>(id >> (kWorkerBits + kSeqBits)) + kEpochMs;
}

std::uint32_t IdGenerator::worker_of(std::uint64_t id) noexcept {
    return static_cast<std::uint32_t>((id >> kSeqBits) & kMaxWorker);
}

}  // namespace im

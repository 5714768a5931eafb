#pragma once
// 64-bit unique ids, snowflake-like: | 1 bit 0 | 41 bits ms since 2025-01-01 | 10 bits worker | 12 bits seq |
//
// Unique per worker id whatever the wall clock does: the generator keeps a logical time that
// never goes backwards. When the clock steps back it keeps using its last time; when 4096 ids are
// taken in one millisecond it borrows the next millisecond instead of waiting. Ids therefore stay
// strictly increasing per generator. Worker ids must be unique among live processes: they are
// leased at start-up (see docs/ARCHITECTURE.md), never just configured by hand in production.

#include <atomic>
#include <cstdint>
#include <functional>

namespace im {

class IdGenerator {
public:
    static constexpr int kWorkerBits = 10;
    static constexpr int kSeqBits = 12;
    static constexpr std::uint32_t kMaxWorker = (1u << kWorkerBits) - 1;
    static constexpr std::int64_t kEpochMs = 1735689600000;  // 2025-01-01T00:00:00Z

    using Clock = std::function<std::int64_t()>;  // milliseconds since the Unix epoch

    // Throws std::invalid_argument when worker_id > kMaxWorker.
    explicit IdGenerator(std::uint32_t worker_id, Clock clock = {});

    std::uint64_t next() noexcept;

    std::uint32_t worker_id() const noexcept { return worker_id_.load(std::memory_order_relaxed); }
    // A new lease (the old one expired while the database was unreachable and may belong to
    // another process now). Ids continue from the logical time, so they stay increasing.
    void set_worker_id(std::uint32_t worker_id);
    // Decoding, for logs and tests.
    static std::int64_t time_ms_of(std::uint64_t id) noexcept;
    static std::uint32_t worker_of(std::uint64_t id) noexcept;
    // How often the clock was seen to step back (exported as a metric).
    std::uint64_t clock_regressions() const noexcept { return regressions_.load(std::memory_order_relaxed); }

private:
    std::int64_t now_ms() const;

    std::atomic<std::uint32_t> worker_id_;
    Clock clock_;
    // (logical ms since kEpochMs) << kSeqBits | seq: advanced with one CAS, so next() is lock-free.
    std::atomic<std::uint64_t> state_{0};
    std::atomic<std::uint64_t> last_wall_ms_{0};
    std::atomic<std::uint64_t> regressions_{0};
};

}  // namespace im

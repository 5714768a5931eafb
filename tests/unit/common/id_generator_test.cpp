#include "im/server/id_generator.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <unordered_set>

namespace im {
namespace {

TEST(IdGenerator, RejectsWorkerIdOutOfRange) {
    EXPECT_THROW(IdGenerator(IdGenerator::kMaxWorker + 1), std::invalid_argument);
    EXPECT_NO_THROW(IdGenerator(IdGenerator::kMaxWorker));
}

TEST(IdGenerator, EncodesWorkerAndTime) {
    const std::int64_t now = 1'800'000'000'000;
    IdGenerator gen(513, [&] { return now; });
    const auto id = gen.next();
    EXPECT_EQ(IdGenerator::worker_of(id), 513u);
    EXPECT_EQ(IdGenerator::time_ms_of(id), now);
    EXPECT_LT(id, 1ull << 63) << "ids stay positive as signed 64-bit (MySQL BIGINT)";
}

TEST(IdGenerator, StrictlyIncreasingWithinOneMillisecond) {
    IdGenerator gen(1, [] { return std::int64_t{1'800'000'000'000}; });
    std::uint64_t prev = 0;
    // More than 4096 in the same millisecond: the generator borrows the next millisecond.
    for (int i = 0; i < 10000; ++i) {
        const auto id = gen.next();
        ASSERT_GT(id, prev);
        prev = id;
    }
}

TEST(IdGenerator, ClockSteppingBackNeverRepeatsOrDecreases) {
    std::int64_t now = 1'800'000'000'000;
    IdGenerator gen(7, [&] { return now; });
    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 100; ++i) ids.push_back(gen.next());
    now -= 5000;  // NTP steps the clock back 5 s
    for (int i = 0; i < 100; ++i) ids.push_back(gen.next());
    now += 2500;  // still behind the old time
    for (int i = 0; i < 100; ++i) ids.push_back(gen.next());
    now += 10000;  // ahead again
    for (int i = 0; i < 100; ++i) ids.push_back(gen.next());
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    EXPECT_EQ(std::set<std::uint64_t>(ids.begin(), ids.end()).size(), ids.size());
    EXPECT_GE(gen.clock_regressions(), 1u);
    EXPECT_EQ(IdGenerator::time_ms_of(ids.back()), now) << "back on the wall clock once it passes";
}

TEST(IdGenerator, UniqueAcrossWorkersAndThreads) {
    // Two workers (two processes), each used by two threads, on one shared coarse clock.
    std::atomic<std::int64_t> now{1'800'000'000'000};
    auto clock = [&] { return now.load(); };
    IdGenerator a(1, clock), b(2, clock);
    constexpr int kPerThread = 50000;
    std::vector<std::vector<std::uint64_t>> out(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            auto& gen = (t % 2 == 0) ? a : b;
            for (int i = 0; i < kPerThread; ++i) {
                out[static_cast<std::size_t>(t)].push_back(gen.next());
                if (i % 1000 == 0 && t == 0) now.fetch_add(1);
            }
        });
    }
    for (auto& th : threads) th.join();
    std::unordered_set<std::uint64_t> all;
    for (const auto& v : out) {
        EXPECT_TRUE(std::is_sorted(v.begin(), v.end())) << "each thread sees increasing ids";
        all.insert(v.begin(), v.end());
    }
    EXPECT_EQ(all.size(), 4u * kPerThread);
}

TEST(IdGenerator, RealClockIsCloseToNow) {
    IdGenerator gen(3);
    const auto id = gen.next();
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    EXPECT_NEAR(static_cast<double>(IdGenerator::time_ms_of(id)), static_cast<double>(now), 1000.0);
}

}  // namespace
}  // namespace im

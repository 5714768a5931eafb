#include "im/server/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <set>

namespace im {
namespace {

TEST(ThreadPool, RunsEveryTask) {
    ThreadPool pool("test", 3, 1000);
    std::atomic<int> n{0};
    for (int i = 0; i < 500; ++i) ASSERT_TRUE(pool.try_submit([&] { n.fetch_add(1); }));
    pool.shutdown();
    EXPECT_EQ(n.load(), 500) << "shutdown drains the queue";
}

TEST(ThreadPool, BoundedQueueRejects) {
    ThreadPool pool("test", 1, 2);
    std::promise<void> gate;
    auto opened = gate.get_future().share();
    std::promise<void> started;
    ASSERT_TRUE(pool.try_submit([&, opened] {
        started.set_value();
        opened.wait();
    }));
    started.get_future().wait();  // the only thread is busy
    EXPECT_TRUE(pool.try_submit([] {}));
    EXPECT_TRUE(pool.try_submit([] {}));
    EXPECT_FALSE(pool.try_submit([] {})) << "third queued task exceeds max_queue=2";
    EXPECT_EQ(pool.rejected(), 1u);
    gate.set_value();
    pool.shutdown();
    EXPECT_FALSE(pool.try_submit([] {})) << "no work after shutdown";
}

TEST(ThreadPool, WorkerIndexIsPerThread) {
    ThreadPool pool("test", 2, 100);
    std::mutex mu;
    std::set<int> seen;
    std::atomic<int> waiting{0};
    for (int i = 0; i < 2; ++i) {
        pool.try_submit([&] {
            {
                std::lock_guard l(mu);
                seen.insert(ThreadPool::worker_index());
            }
            waiting.fetch_add(1);
            while (waiting.load() < 2) std::this_thread::yield();  // both threads busy at once
        });
    }
    pool.shutdown();
    EXPECT_EQ(seen, (std::set<int>{0, 1}));
    EXPECT_EQ(ThreadPool::worker_index(), -1);
}

TEST(ThreadPool, MoveOnlyTasksAndThrowingTasks) {
    ThreadPool pool("test", 1, 10);
    auto p = std::make_unique<int>(5);
    std::promise<int> result;
    auto f = result.get_future();
    ASSERT_TRUE(pool.try_submit([&] { throw std::runtime_error("boom"); }));
    ASSERT_TRUE(pool.try_submit([p = std::move(p), &result] { result.set_value(*p); }));
    EXPECT_EQ(f.get(), 5) << "a throwing task does not kill the worker";
}

}  // namespace
}  // namespace im

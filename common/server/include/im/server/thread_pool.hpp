#pragma once
// A fixed pool of threads for blocking work (MySQL, LDAP, password hashing), so that no
// io_context thread ever blocks. The queue is bounded: try_submit() refuses work when it is full
// and the caller answers "overloaded" instead of queueing without limit.
//
// Each thread knows its index (worker_index()), so a pool can own one resource per thread (a MySQL
// connection) without locking. Results go back to the caller's executor with asio::post, through a
// weak_ptr when the receiver may be gone.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace im {

// A move-only void() callable (std::move_only_function is C++23).
class Task {
public:
    Task() = default;
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Task>>>
    Task(F&& f) : impl_(std::make_unique<Model<std::decay_t<F>>>(std::forward<F>(f))) {}  // NOLINT
    void operator()() { impl_->call(); }
    explicit operator bool() const noexcept { return impl_ != nullptr; }

private:
    struct Concept {
        virtual ~Concept() = default;
        virtual void call() = 0;
    };
    template <class F>
    struct Model final : Concept {
        explicit Model(F&& f) : fn(std::move(f)) {}
        explicit Model(const F& f) : fn(f) {}
        void call() override { fn(); }
        F fn;
    };
    std::unique_ptr<Concept> impl_;
};

class ThreadPool {
public:
    // `name` appears in thread names (top, gdb) and logs.
    ThreadPool(std::string name, std::size_t threads, std::size_t max_queue);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    // False when the queue is full or the pool is stopping: the task is not run.
    bool try_submit(Task task);

    // Stops accepting, runs what is queued, joins. Idempotent.
    void shutdown();

    std::size_t size() const noexcept { return threads_.size(); }
    std::size_t queued() const;
    std::uint64_t rejected() const;
    const std::string& name() const noexcept { return name_; }

    // Index of the calling pool thread in [0, size()), or -1 outside any pool.
    static int worker_index() noexcept;

private:
    void run(std::size_t index);

    std::string name_;
    std::size_t max_queue_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Task> queue_;
    bool stopping_ = false;
    std::uint64_t rejected_ = 0;
    std::vector<std::thread> threads_;
};

}  // namespace im

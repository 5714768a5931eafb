#include "im/server/thread_pool.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <stdexcept>

namespace im {
namespace {
thread_local int t_worker_index = -1;
}

ThreadPool::ThreadPool(std::string name, std::size_t threads, std::size_t max_queue)
    : name_(std::move(name)), max_queue_(max_queue) {
    if (threads == 0) throw std::invalid_argument("thread pool '" + name_ + "' needs at least one thread");
    threads_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this, i] { run(i); });
}

ThreadPool::~ThreadPool() { shutdown(); }

bool ThreadPool::try_submit(Task task) {
    {
        std::lock_guard lock(mu_);
        if (stopping_ || queue_.size() >= max_queue_) {
            ++rejected_;
            return false;
        }
        queue_.push_back(std::move(task));
    }
    cv_.notify_one();
    return true;
}

void ThreadPool::shutdown() {
    {
        std::lock_guard lock(mu_);
        if (stopping_ && threads_.empty()) return;
        stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) {
        if (t.joinable()) t.join();
    }
    threads_.clear();
}

std::size_t ThreadPool::queued() const {
    std::lock_guard lock(mu_);
    return queue_.size();
}

std::uint64_t ThreadPool::rejected() const {
    std::lock_guard lock(mu_);
    return rejected_;
}

int ThreadPool::worker_index() noexcept { return t_worker_index; }

void ThreadPool::run(std::size_t index) {
    t_worker_index = static_cast<int>(index);
    const std::string thread_name = (name_ + "-" + std::to_string(index)).substr(0, 15);
    pthread_setname_np(pthread_self(), thread_name.c_str());
    for (;;) {
        Task task;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stopping and drained
            task = std::move(queue_.front());
            queue_.pop_front();
        }
        try {
            task();
        } catch (const std::exception& e) {
            // A task must handle its own errors; this is a bug, but it must not kill the process.
            spdlog::error("{}: task threw: {}", name_, e.what());
        } catch (...) {
            spdlog::error("{}: task threw a non-standard exception", name_);
        }
    }
}

}  // namespace im

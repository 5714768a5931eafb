#pragma once
// Test-only failpoints: named places in the code where a test can force a pause or an error to
// make a race happen on purpose. Configured once at start-up from "name=action" strings (config key
// testing.failpoints; empty in production, where eval() is a single relaxed load):
//   name=pause(MS)       sleep MS milliseconds every time       (blocking threads only)
//   name=pause_once(MS)  sleep the first time only
//   name=error           make the operation fail every time
//   name=error_once      fail the first time only
//   name=error_times(N)  fail the first N times, then never again
// Known names are listed in docs/OPERATIONS.md.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace im {

class Failpoints {
public:
    // Throws std::invalid_argument on a malformed spec.
    void configure(const std::vector<std::string>& specs);
    // Runs the action of `name`: sleeps for pauses; returns true when the caller must fail.
    bool eval(const std::string& name);
    bool any() const noexcept { return enabled_.load(std::memory_order_relaxed); }

private:
    struct Action {
        enum Kind { pause, error } kind = pause;
        std::int64_t ms = 0;
        bool once = false;
        bool spent = false;
        std::int64_t times = 0;  // error_times(N): hits left before the action is spent
    };
    std::atomic<bool> enabled_{false};
    std::mutex mu_;
    std::map<std::string, Action> actions_;
};

}  // namespace im

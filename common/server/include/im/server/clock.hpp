#pragma once
// Wall-clock milliseconds since the Unix epoch (stored times, expiries, events). Durations and
// timeouts use steady clocks instead.

#include <chrono>
#include <cstdint>

namespace im {

inline std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace im

#pragma once
// Calls an app callback: nothing when it is unset; an exception it throws is swallowed (the
// event counts as handled) so that app code cannot tear down the client's thread.

#include <utility>

namespace imclient::detail {

template <class F, class... Args>
void invoke_app(const F& fn, Args&&... args) noexcept {
    if (!fn) return;
    try {
        fn(std::forward<Args>(args)...);
    } catch (...) {
    }
}

}  // namespace imclient::detail

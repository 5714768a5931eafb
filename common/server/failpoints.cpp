#include "im/server/failpoints.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <stdexcept>
#include <thread>

namespace im {

void Failpoints::configure(const std::vector<std::string>& specs) {
    std::lock_guard lock(mu_);
    actions_.clear();
    for (const auto& spec : specs) {
        const auto eq = spec.find('=');
        if (eq == std::string::npos) throw std::invalid_argument("failpoint '" + spec + "': expected name=action");
        const auto name = spec.substr(0, eq);
        const auto act = spec.substr(eq + 1);
        Action a;
        auto arg = [&](const std::string& prefix) -> std::int64_t {
            if (act.size() < prefix.size() + 2 || act.back() != ')') throw std::invalid_argument("failpoint '" + spec + "'");
            return std::stoll(act.substr(prefix.size() + 1, act.size() - prefix.size() - 2));
        };
        if (act.rfind("pause_once(", 0) == 0) {
            a = Action{Action::pause, arg("pause_once"), true};
        } else if (act.rfind("pause(", 0) == 0) {
            a = Action{Action::pause, arg("pause"), false};
        } else if (act == "error") {
            a = Action{Action::error, 0, false};
        } else if (act == "error_once") {
            a = Action{Action::error, 0, true};
        } else if (act.rfind("error_times(", 0) == 0) {
            a = Action{Action::error, 0, false};
            a.times = arg("error_times");
            if (a.times < 1) throw std::invalid_argument("failpoint '" + spec + "': error_times needs N >= 1");
        } else if (act == "off") {
            continue;
        } else {
            throw std::invalid_argument("failpoint '" + spec + "': unknown action");
        }
        actions_[name] = a;
        spdlog::warn("failpoint armed: {} = {}", name, act);
    }
    enabled_ = !actions_.empty();
}

bool Failpoints::eval(const std::string& name) {
    if (!enabled_.load(std::memory_order_relaxed)) return false;
    Action a;
    {
        std::lock_guard lock(mu_);
        auto it = actions_.find(name);
        if (it == actions_.end() || it->second.spent) return false;
        if (it->second.once) it->second.spent = true;
        if (it->second.times > 0 && --it->second.times == 0) it->second.spent = true;
        a = it->second;
    }
    spdlog::warn("failpoint hit: {}", name);
    if (a.kind == Action::pause) {
        std::this_thread::sleep_for(std::chrono::milliseconds(a.ms));
        return false;
    }
    return true;
}

}  // namespace im

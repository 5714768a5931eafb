#include "private_servers.hpp"

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "child_process.hpp"
#include "test_env.hpp"

namespace im::test {

PrivateServers::PrivateServers(std::vector<std::string> names) : names_(std::move(names)) {
    const char* shared = std::getenv("IM_RUN_DIR");
    if (shared == nullptr || *shared == '\0') throw std::runtime_error("IM_RUN_DIR is not set: run ./scripts/test");
    run_dir_ = std::string(shared) + "/p-" + unique_suffix().substr(0, 6);  // short: the MariaDB socket lives there
    mysql_port_ = pick_free_port();
    redis_port_ = pick_free_port();
    while (redis_port_ == mysql_port_) redis_port_ = pick_free_port();
    script("start", names_);
    ::setenv("IM_MYSQL_PORT", std::to_string(mysql_port_).c_str(), 1);
    ::setenv("IM_REDIS_PORT", std::to_string(redis_port_).c_str(), 1);
}

PrivateServers::~PrivateServers() {
    try {
        script("clean", {});
    } catch (const std::exception&) {
    }
}

void PrivateServers::stop(const std::string& name) { script("stop", {name}); }
void PrivateServers::start(const std::string& name) { script("start", {name}); }

void PrivateServers::script(const std::string& verb, const std::vector<std::string>& names) {
    ChildProcess p;
    std::vector<std::string> args = {verb};
    args.insert(args.end(), names.begin(), names.end());
    p.start(std::string(IM_TEST_SOURCE_DIR) + "/scripts/services.sh", args,
            {{"IM_RUN_DIR", run_dir_},
             {"IM_MYSQL_PORT", std::to_string(mysql_port_)},
             {"IM_REDIS_PORT", std::to_string(redis_port_)}},
            run_dir_ + ".log");
    // A start waits for the server itself; a clean stops both. Bounded either way.
    const auto st = p.stop(0, std::chrono::seconds(120));
    if (!st || !WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
        throw std::runtime_error("scripts/services.sh " + verb + " failed:\n" + p.log_contents());
    }
}

}  // namespace im::test

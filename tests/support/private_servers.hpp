#pragma once
// MariaDB and Redis of one test process alone, started by scripts/services.sh in a run directory
// of their own on free ports, so the test may stop and restart them (an outage, a restart) without
// touching the servers the rest of the run shares. Construct it before anything reads TestEnv
// (e.g. in a ::testing::Environment): it points IM_MYSQL_PORT and IM_REDIS_PORT, which TestEnv and
// every im-* child read, at the private servers.

#include <cstdint>
#include <string>
#include <vector>

namespace im::test {

class PrivateServers {
public:
    explicit PrivateServers(std::vector<std::string> names = {"mysql", "redis"});
    ~PrivateServers();
    PrivateServers(const PrivateServers&) = delete;
    PrivateServers& operator=(const PrivateServers&) = delete;

    void stop(const std::string& name);
    void start(const std::string& name);
    const std::string& run_dir() const { return run_dir_; }
    std::uint16_t mysql_port() const { return mysql_port_; }
    std::uint16_t redis_port() const { return redis_port_; }

private:
    void script(const std::string& verb, const std::vector<std::string>& names);
    std::vector<std::string> names_;
    std::string run_dir_;
    std::uint16_t mysql_port_ = 0, redis_port_ = 0;
};

}  // namespace im::test

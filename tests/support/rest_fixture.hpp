#pragma once
// Integration fixtures: a throwaway MySQL database per test binary, a private Redis key prefix,
// and a real im-rest process started with test settings (cheap password hashing, high rate limits
// unless a test lowers them) on a free port.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "http_client.hpp"
#include "test_env.hpp"

namespace im::mysql {
struct MysqlConfig;
class MysqlConnection;
}  // namespace im::mysql
namespace im::redis {
class RedisConnection;
}

namespace im::test {

// The directory of the built im-* binaries (IM_BIN_DIR, else the build tree's bin/).
std::string bin_dir();
// The source tree (for scripts/).
std::string source_dir();

// CREATE DATABASE im_t_<suffix> on construction, DROP on destruction.
class TestDatabase {
public:
    TestDatabase();
    ~TestDatabase();
    const std::string& name() const { return name_; }
    mysql::MysqlConfig config() const;
    // A connection to the test database (for assertions on stored rows).
    mysql::MysqlConnection& db();

private:
    std::string name_;
    std::unique_ptr<mysql::MysqlConnection> conn_;
};

struct RestOptions {
    std::vector<std::string> sets;  // extra --set key=value
    std::string name = "rest";      // log file name
    std::map<std::string, std::string> env{};  // extra environment (e.g. shared IM_AUTH_* variables)
};

class RestServer {
public:
    RestServer(const TestDatabase& db, const std::string& redis_prefix, RestOptions options = {});
    ~RestServer();

    std::uint16_t port() const { return port_; }
    // The admin listener (/metrics, /healthz, /readyz), given as IM_REST_ADMIN_PORT.
    std::uint16_t admin_port() const { return admin_port_; }
    std::unique_ptr<HttpClient> client(const std::string& ca_file = {}) const;
    ChildProcess& process() { return proc_; }
    std::string log() const { return proc_.log_contents(); }
    // files.dir of this server (uploaded blobs; tmp/ holds uploads in progress).
    const std::string& files_dir() const { return files_dir_; }
    // Starts again with the same settings (after stop()).
    void restart();

private:
    void launch();
    const TestDatabase& db_;
    std::string redis_prefix_;
    RestOptions options_;
    std::uint16_t port_ = 0;
    std::uint16_t admin_port_ = 0;
    std::string files_dir_;
    ChildProcess proc_;
};

// Deletes every Redis key under `prefix` (what a Redis data loss means to one instance).
void redis_delete_prefix(const std::string& prefix);

// Registers a user and logs in; returns {user id, token}.
struct TestUser {
    std::uint64_t id = 0;
    std::string username;
    std::string password;
    std::string token;
};
TestUser register_and_login(HttpClient& http, const std::string& username, const std::string& device = "dev1");

}  // namespace im::test

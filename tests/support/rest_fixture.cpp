#include "rest_fixture.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"

namespace im::test {

std::string bin_dir() {
    const char* v = std::getenv("IM_BIN_DIR");
    return (v != nullptr && *v != '\0') ? v : IM_TEST_BIN_DIR;
}

std::string source_dir() { return IM_TEST_SOURCE_DIR; }

namespace {
mysql::MysqlConfig base_mysql() {
    const auto& env = TestEnv::get();
    mysql::MysqlConfig c;
    c.port = env.mysql_port;
    c.user = env.mysql_user;
    c.password = env.mysql_password;
    c.db = env.mysql_db;
    return c;
}
}  // namespace

TestDatabase::TestDatabase() : name_("im_t_" + unique_suffix()) {
    mysql::MysqlConnection admin(base_mysql());
    admin.execute("CREATE DATABASE " + name_ + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin");
}

TestDatabase::~TestDatabase() {
    try {
        conn_.reset();
        mysql::MysqlConnection admin(base_mysql());
        admin.execute("DROP DATABASE IF EXISTS " + name_);
    } catch (const std::exception&) {
    }
}

mysql::MysqlConfig TestDatabase::config() const {
    auto c = base_mysql();
    c.db = name_;
    return c;
}

mysql::MysqlConnection& TestDatabase::db() {
    if (!conn_) conn_ = std::make_unique<mysql::MysqlConnection>(config());
    return *conn_;
}

RestServer::RestServer(const TestDatabase& db, const std::string& redis_prefix, RestOptions options)
    : db_(db), redis_prefix_(redis_prefix), options_(std::move(options)) {
    launch();
}

RestServer::~RestServer() { proc_.stop(SIGTERM, std::chrono::seconds(10)); }

void RestServer::launch() {
    const auto& env = TestEnv::get();
    if (port_ == 0) port_ = pick_free_port();
    if (admin_port_ == 0) admin_port_ = pick_free_port();
    if (files_dir_.empty()) files_dir_ = env.run_dir + "/files-" + options_.name + "-" + db_.name();
    std::vector<std::string> args = {
        "--set", "http.port=" + std::to_string(port_),
        "--set", "mysql.db=" + db_.name(),
        "--set", "mysql.pool_size=4",
        "--set", "redis.key_prefix=" + redis_prefix_,
        "--set", "auth.hash_ops_limit=1",
        "--set", "auth.hash_mem_limit=8KiB",
        "--set", "rate_limit.login_per_user=1000",
        "--set", "rate_limit.login_per_addr=100000",
        "--set", "rate_limit.register_per_addr=100000",
        // Every test client comes from 127.0.0.1 at machine speed: the request limits stay on but
        // out of reach, unless a test sets its own.
        "--set", "rate_limit.address_per_second=10000000",
        "--set", "rate_limit.address_burst=10000000",
        "--set", "rate_limit.token_per_second=10000000",
        "--set", "rate_limit.token_burst=10000000",
        "--set", "log.level=debug",
        "--set", "files.dir=" + files_dir_,
    };
    for (const auto& s : options_.sets) {
        args.push_back("--set");
        args.push_back(s);
    }
    std::map<std::string, std::string> vars = options_.env;
    vars["IM_MYSQL_PORT"] = std::to_string(env.mysql_port);
    vars["IM_REDIS_PORT"] = std::to_string(env.redis_port);
    vars["IM_REST_ADMIN_PORT"] = std::to_string(admin_port_);
    proc_.start(bin_dir() + "/im-rest", args, vars, env.run_dir + "/" + options_.name + "-" + db_.name() + ".log");
    if (!wait_for_port(port_, std::chrono::seconds(30))) {
        throw std::runtime_error("im-rest did not start; log:\n" + proc_.log_contents());
    }
}

void RestServer::restart() {
    proc_.stop(SIGTERM);
    launch();
}

std::unique_ptr<HttpClient> RestServer::client(const std::string& ca_file) const {
    return std::make_unique<HttpClient>("127.0.0.1", port_, ca_file);
}

void redis_delete_prefix(const std::string& prefix) {
    redis::RedisConfig c;
    c.port = TestEnv::get().redis_port;
    redis::RedisConnection r(c);
    std::string cursor = "0";
    do {
        auto reply = r.command({"SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000"});
        cursor = std::string(reply->element[0]->str, reply->element[0]->len);
        for (std::size_t i = 0; i < reply->element[1]->elements; ++i) {
            const auto* k = reply->element[1]->element[i];
            r.command({"DEL", std::string_view(k->str, k->len)});
        }
    } while (cursor != "0");
}

TestUser register_and_login(HttpClient& http, const std::string& username, const std::string& device) {
    TestUser u;
    u.username = username;
    u.password = "pw-" + username + "-secret";
    auto reg = http.post("/v1/users", {{"username", username}, {"password", u.password}, {"display_name", username}});
    if (reg.status != 201) throw std::runtime_error("register " + username + ": " + std::to_string(reg.status) + " " + reg.body);
    u.id = reg.json()["id"].get<std::uint64_t>();
    auto login = http.post("/v1/sessions", {{"username", username}, {"password", u.password}, {"device_id", device}});
    if (login.status != 201) throw std::runtime_error("login " + username + ": " + login.body);
    u.token = login.json()["token"].get<std::string>();
    return u;
}

}  // namespace im::test

#include "test_env.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <stdexcept>

namespace im::test {
namespace {

std::string need(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        throw std::runtime_error(std::string("environment variable ") + name +
                                 " is not set: integration tests need the servers started by "
                                 "./scripts/test (or: scripts/services.sh start && source $IM_RUN_DIR/env)");
    }
    return v;
}

std::string opt(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return (v == nullptr || *v == '\0') ? fallback : v;
}

std::uint16_t port(const char* name) { return static_cast<std::uint16_t>(std::stoi(need(name))); }

TestEnv load() {
    TestEnv e;
    e.run_dir = need("IM_RUN_DIR");
    e.bin_dir = opt("IM_BIN_DIR", "");
    e.redis_port = port("IM_REDIS_PORT");
    e.mysql_port = port("IM_MYSQL_PORT");
    e.mysql_user = opt("IM_MYSQL_USER", "im");
    e.mysql_password = opt("IM_MYSQL_PASSWORD", "im_pass");
    e.mysql_db = opt("IM_MYSQL_DB", "im");
    e.rabbitmq_port = port("IM_RABBITMQ_PORT");
    e.rabbitmq_user = opt("IM_RABBITMQ_USER", "im");
    e.rabbitmq_password = opt("IM_RABBITMQ_PASSWORD", "im_pass");
    e.ldap_port = port("IM_LDAP_PORT");
    e.ldap_base = opt("IM_LDAP_BASE", "dc=im,dc=test");
    e.ldap_admin_dn = opt("IM_LDAP_ADMIN_DN", "cn=admin,dc=im,dc=test");
    e.ldap_admin_password = opt("IM_LDAP_ADMIN_PASSWORD", "admin_pass");
    e.ldap_allow_anon_dn = opt("IM_LDAP_ALLOW_ANON_DN", "0") == "1";
    return e;
}

}  // namespace

const TestEnv& TestEnv::get() {
    static const TestEnv env = load();
    return env;
}

std::string unique_suffix() {
    static std::mt19937_64 rng(static_cast<std::uint64_t>(
        std::chrono::steady_clock::now().time_since_epoch().count()) ^ static_cast<std::uint64_t>(getpid()));
    static const char* alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    std::string s;
    for (int i = 0; i < 8; ++i) s += alphabet[rng() % 36];
    return s;
}

}  // namespace im::test

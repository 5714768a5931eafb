#pragma once
// Where the real servers of this test run are: read from the IM_* variables that
// scripts/services.sh writes to $IM_RUN_DIR/env and scripts/test exports. An integration test
// calls TestEnv::get() and fails with a clear message when they are missing.

#include <cstdint>
#include <string>

namespace im::test {

struct TestEnv {
    std::string run_dir;
    std::string bin_dir;  // build/bin: the im-* binaries
    std::uint16_t redis_port = 0;
    std::uint16_t mysql_port = 0;
    std::string mysql_user, mysql_password, mysql_db;
    std::uint16_t rabbitmq_port = 0;
    std::string rabbitmq_user, rabbitmq_password;
    std::uint16_t ldap_port = 0;
    std::string ldap_base, ldap_admin_dn, ldap_admin_password;
    bool ldap_allow_anon_dn = false;

    // Throws std::runtime_error naming the missing variable ("run ./scripts/test").
    static const TestEnv& get();
    std::string ldap_url() const { return "ldap://127.0.0.1:" + std::to_string(ldap_port); }
};

// A short random suffix for names that must not collide between test runs (databases, keys).
std::string unique_suffix();

}  // namespace im::test

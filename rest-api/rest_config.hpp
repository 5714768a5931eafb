#pragma once
// The one configuration struct of im-rest (see docs/OPERATIONS.md for every key). Loaded once in
// main from YAML + IM_REST_* / IM_* environment + --set flags, validated, then passed by const&.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "auth.hpp"
#include "files.hpp"
#include "http_server.hpp"
#include "im/server/link_auth.hpp"
#include "im/server/logging.hpp"
#include "im/server/mq.hpp"
#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"
#include "im/server/tokens.hpp"
#include "passwords.hpp"
#include "push_worker.hpp"
#include "rate_limiter.hpp"

namespace im::config {
class ConfigSource;
}

namespace im::rest {

struct RestConfig {
    HttpServerConfig http;
    // /metrics, /healthz, /readyz for operators (as im-connector and im-transfer): not public.
    std::string admin_host = "127.0.0.1";
    std::uint16_t admin_port = 8090;
    mysql::MysqlConfig mysql;
    redis::RedisConfig redis;
    logging::LogConfig log;
    tokens::TokenConfig tokens;
    PasswordHashConfig hash;
    std::string auth_mode = "local";  // local | ldap | external
    bool registration_enabled = true;  // POST /v1/users (local mode only)
    LdapConfig ldap;
    ExternalAuthConfig external;
    // How often im-rest looks for account re-checks asked by token refreshes
    // (directory_recheck.hpp).
    std::chrono::milliseconds directory_recheck_poll{5000};
    RateLimitConfig rate_limit;
    mq::MqConfig mq;       // RabbitMQ, for the push worker
    PushWorkerConfig push;  // the push worker (off unless push.enabled)
    FilesConfig files;
    // Answered in the login response while no live connector is registered in Redis.
    std::vector<std::string> connectors{"127.0.0.1:9000", "127.0.0.1:9001"};
    std::chrono::milliseconds gateway_timeout{3000};  // links to transfers (read watermarks)
    link_auth::Config cluster;                        // the secret that authenticates those links
    std::uint32_t group_max_members = 500;            // groups.max_members: members of a group, owner included
    std::uint32_t pool_queue = 2048;  // requests waiting for a pool thread before 503
    std::chrono::milliseconds shutdown_grace{10000};
};

// Throws config::ConfigError listing every problem. `description` receives the effective
// configuration with secrets masked (logged at start-up).
RestConfig load_rest_config(const config::ConfigSource& source, std::string* description = nullptr);

}  // namespace im::rest

#pragma once
// The REST service: routes every request to its handler and runs the handler on a fixed pool of
// blocking threads (MySQL, Redis, LDAP, argon2id), never on the HTTP I/O threads. Each pool
// thread owns its Backend (one MySQL and one Redis connection), so handlers never lock.

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "auth.hpp"
#include "http_server.hpp"
#include "im/server/metrics.hpp"
#include "im/server/thread_pool.hpp"
#include "im/server/tokens.hpp"
#include "im/user_status/user_status.hpp"
#include "passwords.hpp"
#include "rate_limiter.hpp"
#include "rest_config.hpp"
#include "router.hpp"
#include "transfer_gateway.hpp"

namespace im {
class Metrics;
}

namespace im::rest {

// Per pool thread.
struct Backend {
    explicit Backend(const RestConfig& c);
    mysql::MysqlConnection db;
    redis::RedisConnection redis;
    tokens::TokenStore tokens;
    RateLimiter limiter;
    user_status::UserStatus status;  // presence, live connectors, kicks
};

struct Principal {
    tokens::SessionInfo session;
    std::string token_hash;
};

class RestService;

struct RequestContext {
    const HttpRequest& req;
    const RouteParams& params;
    Backend& be;
    RestService& svc;
    std::optional<Principal> who;

    // The request body as a JSON object: 415 without a JSON content type, 400 when malformed.
    nlohmann::json json_body() const;
    // A path parameter that must be an id: 404 when it is not (no such resource can exist).
    std::uint64_t path_id(const char* name) const;
    std::uint64_t me() const { return who->session.user_id; }
};

using RouteFn = HttpResponse (*)(RequestContext&);

struct RouteSpec {
    RouteFn fn = nullptr;
    bool needs_auth = true;
};

// Route tables, defined next to their handlers.
void add_account_routes(Router<RouteSpec>& r);
void add_social_routes(Router<RouteSpec>& r);
void add_conversation_routes(Router<RouteSpec>& r);

class RestService {
public:
    RestService(const RestConfig& config, Metrics& metrics);
    ~RestService();

    // The HttpServer::Handler.
    void handle(HttpRequest req, HttpServer::Respond respond);
    // Finishes queued requests and stops the pool.
    void shutdown();

    const RestConfig& config() const { return config_; }
    const PasswordHasher& hasher() const { return hasher_; }
    const LdapAuthenticator* ldap() const { return ldap_ ? &*ldap_ : nullptr; }
    const ExternalAuthenticator* external() const { return external_ ? &*external_ : nullptr; }
    const TransferGateway& gateway() const { return gateway_; }
    Metrics& metrics() { return metrics_; }

    // Login outcome counters, by mode and result.
    void count_login(const std::string& result);

private:
    HttpResponse run(const RouteSpec& spec, const std::string& pattern, const HttpRequest& req,
                     const RouteParams& params);
    HttpResponse ready_check(Backend& be);

    const RestConfig& config_;
    Metrics& metrics_;
    PasswordHasher hasher_;
    std::optional<LdapAuthenticator> ldap_;
    std::optional<ExternalAuthenticator> external_;
    TransferGateway gateway_;
    Router<RouteSpec> router_;
    std::vector<std::unique_ptr<Backend>> backends_;
    ThreadPool pool_;
    prometheus::Counter& overloaded_;
};

}  // namespace im::rest

#pragma once
// The REST service: routes every request to its handler and runs the handler on a fixed pool of
// blocking threads (MySQL, Redis, LDAP, argon2id), never on the HTTP I/O threads. Each pool
// thread owns its Backend (one MySQL and one Redis connection), so handlers never lock.

#include <atomic>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "auth.hpp"
#include "files.hpp"
#include "http_server.hpp"
#include "im/server/admin_server.hpp"
#include "im/server/metrics.hpp"
#include "im/server/thread_pool.hpp"
#include "im/server/tokens.hpp"
#include "im/user_status/user_status.hpp"
#include "passwords.hpp"
#include "rate_limiter.hpp"
#include "request_limiter.hpp"
#include "rest_config.hpp"
#include "route_table.hpp"
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
void add_file_routes(Router<RouteSpec>& r);
void add_group_routes(Router<RouteSpec>& r);
// All of them: what RestService registers, and what registered_routes() (route_table.hpp) lists.
void add_api_routes(Router<RouteSpec>& r);

// POST /v1/files once authenticated (routes_files.cpp): validates the head and opens the
// temporary file the body streams into. Throws ApiError.
std::shared_ptr<BodySink> start_upload(RequestContext& ctx);

class RestService {
public:
    RestService(const RestConfig& config, Metrics& metrics);
    ~RestService();

    // The HttpServer::Handler.
    void handle(HttpRequest req, HttpServer::Respond respond);
    // The HttpServer's upload route (POST /v1/files): authenticates on the pool, then streams.
    UploadRoute upload_route();
    // Runs fn on the pool with error handling and metrics like any route (used to finish uploads).
    // False when the queue is full.
    bool submit(const std::string& pattern, HttpRequest req, std::function<HttpResponse(RequestContext&)> fn,
                HttpServer::Respond respond);
    // Finishes queued requests and stops the pool.
    void shutdown();

    // The admin listener's /readyz (which must not block): the result of the last readiness
    // check, made on the pool by probe_readiness() and by every public GET /readyz.
    AdminServer::Readiness readiness() const;
    void probe_readiness();

    const RestConfig& config() const { return config_; }
    const PasswordHasher& hasher() const { return hasher_; }
    const LdapAuthenticator* ldap() const { return ldap_ ? &*ldap_ : nullptr; }
    const ExternalAuthenticator* external() const { return external_ ? &*external_ : nullptr; }
    const TransferGateway& gateway() const { return gateway_; }
    // SIGHUP: the link TLS certificates again (a file that does not load keeps the previous ones).
    void reload_link_tls();
    Metrics& metrics() { return metrics_; }
    const FileStore& file_store() const { return file_store_; }
    FileMetrics& file_metrics() { return file_metrics_; }

    // Login outcome counters, by mode and result.
    void count_login(const std::string& result);
    // A request refused by an abuse limit (im_rest_rate_limited_total{limit}).
    void count_limited(const std::string& limit);
    UploadsPerUser& uploads_per_user() { return uploads_per_user_; }
    // rate_limit.address_* and rate_limit.token_* for one request, on the I/O thread: the 429 to
    // answer, or nullopt.
    std::optional<HttpResponse> limit_request(const HttpRequest& req);

private:
    HttpResponse run(bool needs_auth, const std::function<HttpResponse(RequestContext&)>& fn,
                     const std::string& pattern, const HttpRequest& req, const RouteParams& params,
                     bool record = true);
    void begin_upload(HttpRequest head, std::function<void(UploadStart)> done);
    HttpResponse ready_check(Backend& be);

    const RestConfig& config_;
    Metrics& metrics_;
    PasswordHasher hasher_;
    std::optional<LdapAuthenticator> ldap_;
    std::optional<ExternalAuthenticator> external_;
    TransferGateway gateway_;
    FileStore file_store_;
    FileMetrics file_metrics_;
    Router<RouteSpec> router_;
    std::vector<std::unique_ptr<Backend>> backends_;
    ThreadPool pool_;
    KeyedRateLimiter address_limiter_;
    KeyedRateLimiter token_limiter_;
    UploadsPerUser uploads_per_user_;
    prometheus::Counter& overloaded_;
    prometheus::Counter& limited_address_;
    prometheus::Counter& limited_token_;
    std::atomic<bool> probing_{false};
    mutable std::mutex readiness_mu_;
    AdminServer::Readiness readiness_{false, "not checked yet"};
};

}  // namespace im::rest

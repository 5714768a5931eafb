#include "rest_service.hpp"

#include "im/net/link_tls.hpp"

#include <cppconn/exception.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "im/server/metrics.hpp"
#include "im/server/redis.hpp"
#include "validation.hpp"

namespace im::rest {

Backend::Backend(const RestConfig& c)
    : db(c.mysql),
      redis(c.redis),
      tokens(db, &redis, c.tokens, c.redis.key_prefix),
      limiter(redis, c.rate_limit, c.redis.key_prefix),
      status(redis, c.redis.key_prefix) {}

nlohmann::json RequestContext::json_body() const { return json_object_body(req); }

std::uint64_t RequestContext::path_id(const char* name) const {
    auto it = params.find(name);
    const auto id = it == params.end() ? std::nullopt : parse_id(it->second);
    if (!id || *id == 0) throw ApiError(404, "not_found", "no such resource");
    return *id;
}

RestService::RestService(const RestConfig& config, Metrics& metrics)
    : config_(config),
      metrics_(metrics),
      hasher_(config.hash),
      gateway_(config.gateway_timeout, config.cluster.secret),
      file_store_(config.files.dir),
      file_metrics_(metrics),
      pool_("rest-pool", config.mysql.pool_size, config.pool_queue),
      address_limiter_(config.rate_limit.per_address, config.rate_limit.tracked_keys),
      token_limiter_(config.rate_limit.per_token, config.rate_limit.tracked_keys),
      overloaded_(metrics.counter("im_rest_overloaded_total",
                                  "Requests refused with 503 because the pool queue was full.")),
      limited_address_(metrics.counter("im_rest_rate_limited_total", "Requests refused by an abuse limit (429).",
                                       {{"limit", "requests_per_address"}})),
      limited_token_(metrics.counter("im_rest_rate_limited_total", "Requests refused by an abuse limit (429).",
                                     {{"limit", "requests_per_token"}})) {
    if (config.cluster.tls.enabled) {
        gateway_.set_tls(net::make_link_tls_context(
            {config.cluster.tls.ca_file, config.cluster.tls.cert_file, config.cluster.tls.key_file}, false));
    }
    if (config.auth_mode == "ldap") ldap_.emplace(config.ldap);
    if (config.auth_mode == "external") external_.emplace(config.external);
    if ((ldap_ && !ldap_->can_check_accounts()) ||
        (external_ && !external_->can_check_accounts())) {
        spdlog::warn(
            "auth: {} accounts cannot be re-checked without their password ({}): a session ends "
            "auth.token_ttl after the account's last login, even while in use",
            config.auth_mode,
            ldap_ ? "set auth.ldap.service_dn and auth.ldap.service_password"
                  : "set auth.external.check_url");
    }
    for (std::uint32_t i = 0; i < config.mysql.pool_size; ++i) backends_.push_back(std::make_unique<Backend>(config));
    add_api_routes(router_);
}

RestService::~RestService() { shutdown(); }

void RestService::shutdown() { pool_.shutdown(); }

void RestService::reload_link_tls() {
    if (!config_.cluster.tls.enabled) return;
    try {
        gateway_.set_tls(net::make_link_tls_context(
            {config_.cluster.tls.ca_file, config_.cluster.tls.cert_file, config_.cluster.tls.key_file}, false));
        spdlog::info("link TLS: certificates reloaded");
    } catch (const std::exception& e) {
        spdlog::error("link TLS: reload failed, the previous certificates stay in use: {}", e.what());
    }
}

void RestService::count_login(const std::string& result) {
    metrics_.counter("im_rest_logins_total", "Login attempts by mode and result.",
                     {{"mode", config_.auth_mode}, {"result", result}})
        .Increment();
}

void RestService::count_limited(const std::string& limit) {
    metrics_.counter("im_rest_rate_limited_total", "Requests refused by an abuse limit (429).", {{"limit", limit}})
        .Increment();
}

std::optional<HttpResponse> RestService::limit_request(const HttpRequest& req) {
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now().time_since_epoch())
                         .count();
    auto refuse = [](std::uint32_t wait_ms, const char* what) {
        auto r = HttpResponse::error(429, "rate_limited", std::string("too many requests ") + what + ", retry later");
        r.headers.emplace_back("Retry-After", std::to_string(std::max<std::uint32_t>(1, (wait_ms + 999) / 1000)));
        return r;
    };
    if (address_limiter_.enabled()) {
        if (auto wait = address_limiter_.take(KeyedRateLimiter::address_key(req.client_addr), now)) {
            limited_address_.Increment();
            return refuse(*wait, "from this address (rate_limit.address_per_second)");
        }
    }
    if (token_limiter_.enabled()) {
        const auto* h = req.header("authorization");
        if (auto token = h ? tokens::bearer_token(*h) : std::nullopt) {
            const auto key = KeyedRateLimiter::token_key(tokens::hash_token(*token));
            if (auto wait = token_limiter_.take(key, now)) {
                limited_token_.Increment();
                return refuse(*wait, "with this token (rate_limit.token_per_second)");
            }
        }
    }
    return std::nullopt;
}

AdminServer::Readiness RestService::readiness() const {
    std::lock_guard lock(readiness_mu_);
    return readiness_;
}

void RestService::probe_readiness() {
    // One probe at a time: with MySQL down a probe waits for its connect timeout, and probes must
    // never pile up on the pool. A full queue leaves the last answer in place.
    if (probing_.exchange(true)) return;
    const bool queued = pool_.try_submit([this] {
        struct Done {
            std::atomic<bool>& flag;
            ~Done() { flag = false; }
        } done{probing_};
        ready_check(*backends_.at(static_cast<std::size_t>(ThreadPool::worker_index())));
    });
    if (!queued) probing_ = false;
}

void RestService::handle(HttpRequest req, HttpServer::Respond respond) {
    // Answered on the I/O thread: liveness never waits for the pool. The metrics are not public:
    // they are on the admin listener (admin.host/admin.port), and 404 here.
    if (req.path == kHealthzPath && req.method == "GET") {
        return respond(HttpResponse::json(200, {{"status", "ok"}}));
    }
    if (req.path != "/readyz") {  // probes are not limited
        if (auto refused = limit_request(req)) return respond(std::move(*refused));
    }
    auto match = router_.match(req.method, req.path);
    if (req.path == kReadyzPath && req.method == "GET") {
        match.target = nullptr;  // handled below on the pool
    } else if (match.target == nullptr) {
        if (match.method_mismatch) {
            auto r = HttpResponse::error(405, "method_not_allowed", "method not allowed for this path");
            r.headers.emplace_back("Allow", match.allow);
            return respond(std::move(r));
        }
        return respond(HttpResponse::error(404, "not_found", "no such endpoint"));
    }
    const RouteSpec* spec = match.target;
    auto task = [this, spec, req = std::move(req), match = std::move(match), respond]() mutable {
        if (spec == nullptr) {
            respond(ready_check(*backends_.at(static_cast<std::size_t>(ThreadPool::worker_index()))));
            return;
        }
        respond(run(spec->needs_auth, spec->fn, match.pattern, req, match.params));
    };
    auto shared_respond = respond;
    if (!pool_.try_submit(std::move(task))) {
        overloaded_.Increment();
        auto r = HttpResponse::error(503, "overloaded", "the server is busy, retry shortly");
        r.headers.emplace_back("Retry-After", "1");
        shared_respond(std::move(r));
    }
}

HttpResponse RestService::ready_check(Backend& be) {
    nlohmann::json detail;
    bool ok = true;
    try {
        be.db.run_idempotent([&] { be.db.execute("DO 1"); });
        detail["mysql"] = "ok";
    } catch (const std::exception& e) {
        ok = false;
        detail["mysql"] = "unreachable";
        spdlog::warn("readyz: mysql: {}", e.what());
    }
    if (be.redis.ping()) {
        detail["redis"] = "ok";
    } else {
        ok = false;
        detail["redis"] = "unreachable";
    }
    detail["status"] = ok ? "ready" : "not ready";
    {
        std::lock_guard lock(readiness_mu_);
        readiness_ = {ok, ok ? ""
                             : "mysql " + detail["mysql"].get<std::string>() + ", redis " +
                                   detail["redis"].get<std::string>()};
    }
    return HttpResponse::json(ok ? 200 : 503, detail);
}

UploadRoute RestService::upload_route() {
    UploadRoute r;
    r.matches = [](const std::string& method, const std::string& path) {
        return method == "POST" && (path == kUploadPath || path == std::string(kUploadPath) + "/");
    };
    r.begin = [this](HttpRequest head, std::function<void(UploadStart)> done) {
        begin_upload(std::move(head), std::move(done));
    };
    r.max_body_bytes = config_.files.max_bytes;
    return r;
}

void RestService::begin_upload(HttpRequest head, std::function<void(UploadStart)> done) {
    if (auto refused = limit_request(head)) {
        UploadStart st;
        st.refusal = std::move(*refused);
        done(std::move(st));
        return;
    }
    auto task = [this, head = std::move(head), done]() {
        UploadStart st;
        HttpResponse res = run(
            true,
            [&st](RequestContext& ctx) {
                st.sink = start_upload(ctx);
                return HttpResponse{};
            },
            kUploadPath, head, {}, /*record=*/false);
        if (!st.sink) {
            file_metrics_.uploads_failed.Increment();
            metrics_
                .counter("im_http_requests_total", "HTTP requests by route and status.",
                         {{"route", "POST /v1/files"}, {"status", std::to_string(res.status)}})
                .Increment();
            st.refusal = std::move(res);
        }
        done(std::move(st));
    };
    if (!pool_.try_submit(std::move(task))) {
        overloaded_.Increment();
        UploadStart st;
        st.refusal = HttpResponse::error(503, "overloaded", "the server is busy, retry shortly");
        st.refusal.headers.emplace_back("Retry-After", "1");
        done(std::move(st));
    }
}

bool RestService::submit(const std::string& pattern, HttpRequest req,
                         std::function<HttpResponse(RequestContext&)> fn,
                         HttpServer::Respond respond) {
    auto task = [this, pattern, req = std::move(req), fn = std::move(fn), respond]() {
        respond(run(false, fn, pattern, req, {}));
    };
    if (pool_.try_submit(std::move(task))) return true;
    overloaded_.Increment();
    return false;
}

HttpResponse RestService::run(bool needs_auth,
                              const std::function<HttpResponse(RequestContext&)>& fn,
                              const std::string& pattern, const HttpRequest& req,
                              const RouteParams& params, bool record) {
    const auto start = std::chrono::steady_clock::now();
    Backend& be = *backends_.at(static_cast<std::size_t>(ThreadPool::worker_index()));
    HttpResponse res;
    try {
        RequestContext ctx{req, params, be, *this, std::nullopt};
        if (needs_auth) {
            const auto* h = req.header("authorization");
            auto token = h ? tokens::bearer_token(*h) : std::nullopt;
            if (!token) throw ApiError(401, "unauthenticated", "a valid Bearer token is required");
            auto hash = tokens::hash_token(*token);
            std::optional<tokens::SessionInfo> s;
            be.db.run_idempotent([&] { s = be.tokens.validate(hash); });
            if (!s) throw ApiError(401, "unauthenticated", "the token is invalid, expired or revoked");
            ctx.who = Principal{*s, std::move(hash)};
        }
        res = fn(ctx);
    } catch (const ApiError& e) {
        res = HttpResponse::error(e.status(), e.code(), e.what());
        if (e.retry_after_s) res.headers.emplace_back("Retry-After", std::to_string(*e.retry_after_s));
    } catch (const sql::SQLException& e) {
        if (mysql::is_connection_error(e)) {
            be.db.reset();
            spdlog::warn("{} {}: mysql unavailable: {} ({})", req.method, pattern, e.what(), e.getErrorCode());
            res = HttpResponse::error(503, "unavailable", "storage is unavailable, retry shortly");
            res.headers.emplace_back("Retry-After", "1");
        } else {
            spdlog::error("{} {}: mysql error {}: {}", req.method, pattern, e.getErrorCode(), e.what());
            res = HttpResponse::error(500, "internal", "internal error");
        }
    } catch (const redis::RedisError& e) {
        spdlog::warn("{} {}: redis unavailable: {}", req.method, pattern, e.what());
        res = HttpResponse::error(503, "unavailable", "cache is unavailable, retry shortly");
    } catch (const std::exception& e) {
        spdlog::error("{} {}: {}", req.method, pattern, e.what());
        res = HttpResponse::error(500, "internal", "internal error");
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!record) return res;
    metrics_
        .counter("im_http_requests_total", "HTTP requests by route and status.",
                 {{"route", req.method + " " + pattern}, {"status", std::to_string(res.status)}})
        .Increment();
    metrics_
        .histogram("im_http_request_duration_seconds", "Handler time on the pool by route.", Metrics::latency_buckets(),
                   {{"route", req.method + " " + pattern}})
        .Observe(secs);
    spdlog::debug("{} {} -> {} in {:.1f} ms", req.method, pattern, res.status, secs * 1000);
    return res;
}

}  // namespace im::rest

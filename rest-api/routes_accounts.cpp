// Accounts and sessions: register, login (local, LDAP, external), logout, profile, password
// change, devices. Every handler runs on a pool thread (see rest_service.hpp).

#include <spdlog/spdlog.h>

#include <algorithm>

#include "accounts.hpp"
#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"
#include "rest_service.hpp"
#include "validation.hpp"

namespace im::rest {
namespace {

User must_find(RequestContext& ctx, std::uint64_t id) {
    auto u = valid_user_id(id) ? accounts::by_id(ctx.be.db, id) : std::nullopt;
    if (!u) throw ApiError(404, "user_not_found", "no such user");
    return *u;
}

// Where clients open the chat connection: the live connectors registered in Redis, least loaded
// first; the configured list while none is registered or Redis cannot be asked. Each address once:
// replicas behind one TCP load balancer (docker/) all advertise the balancer's address.
nlohmann::json connector_addresses(RequestContext& ctx) {
    std::vector<std::string> live;
    try {
        for (const auto& c : ctx.be.status.live_connectors()) {
            if (!c.address.empty() && std::find(live.begin(), live.end(), c.address) == live.end()) {
                live.push_back(c.address);
            }
        }
    } catch (const redis::RedisError& e) {
        spdlog::warn("login: cannot list live connectors, answering the configured ones: {}", e.what());
    }
    return live.empty() ? nlohmann::json(ctx.svc.config().connectors) : nlohmann::json(live);
}

// Asks the connectors to close a revoked session's live connection. Called after the revocation
// is committed; best effort: the token is revoked in MySQL anyway and connectors re-check tokens,
// so a Redis failure only delays the disconnect and never fails the request. False on failure.
bool kick(RequestContext& ctx, std::uint64_t user, std::uint64_t session) {
    try {
        ctx.be.status.publish_kick({user, session, "logged_out"});
        return true;
    } catch (const redis::RedisError& e) {
        spdlog::warn("user {}: kick of session {} not published: {}", user, session, e.what());
        return false;
    }
}

void rate_limit(RequestContext& ctx, const std::string& bucket, std::uint32_t limit) {
    if (auto wait = ctx.be.limiter.hit(bucket, limit)) {
        // The metric's label names the key: login_per_user, login_per_addr, register_per_addr.
        const auto kind = bucket.substr(0, bucket.find(':'));
        const auto scope = bucket.substr(kind.size() + 1, bucket.find(':', kind.size() + 1) - kind.size() - 1);
        ctx.svc.count_limited(kind + "_per_" + scope);
        ApiError e(429, "rate_limited", "too many attempts, retry later");
        e.retry_after_s = *wait;
        throw e;
    }
}

// POST /v1/users {username, password, display_name}
HttpResponse register_user(RequestContext& ctx) {
    const auto& cfg = ctx.svc.config();
    if (cfg.auth_mode != "local" || !cfg.registration_enabled) {
        throw ApiError(403, "registration_disabled", "accounts come from the " + cfg.auth_mode + " login service");
    }
    const auto body = ctx.json_body();
    const auto username = normalize_username(string_field(body, "username"));
    if (!username) {
        throw ApiError(400, "invalid_username",
                       "usernames are 3-32 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit");
    }
    const auto password = string_field(body, "password");
    if (!valid_password(password)) throw ApiError(400, "invalid_password", "passwords are 8 to 1024 characters");
    const auto display = optional_string_field(body, "display_name").value_or(*username);
    if (!valid_display_name(display)) {
        throw ApiError(400, "invalid_display_name", "display names are 1-128 bytes without control characters");
    }
    rate_limit(ctx, "register:addr:" + ctx.req.client_addr, cfg.rate_limit.register_per_addr);
    if (accounts::by_username(ctx.be.db, *username)) {
        throw ApiError(409, "username_taken", "this username is already taken");  // skip the hash
    }
    const auto user = accounts::create_local(ctx.be.db, *username, display, ctx.svc.hasher().hash(password));
    spdlog::info("registered user {} ({})", user.id, user.username);
    return HttpResponse::json(201, user_json(user, true));
}

// Checks the credentials with the configured back-end; returns the local account.
User authenticate(RequestContext& ctx, const std::string& raw_username, const std::string& password) {
    const auto& cfg = ctx.svc.config();
    const auto reject = [&](const char* why) -> ApiError {
        ctx.svc.count_login("rejected");
        spdlog::info("login refused for '{}': {}", raw_username.substr(0, 64), why);
        return ApiError(401, "invalid_credentials", "wrong username or password");
    };
    if (cfg.auth_mode == "local") {
        const auto username = normalize_username(raw_username);
        auto user = username ? accounts::by_username(ctx.be.db, *username) : std::nullopt;
        if (!user || user->origin != "local" || user->password_hash.empty()) {
            ctx.svc.hasher().verify_dummy(password);  // same time as a real check
            throw reject("unknown user");
        }
        if (!ctx.svc.hasher().verify(user->password_hash, password)) throw reject("wrong password");
        if (ctx.svc.hasher().needs_rehash(user->password_hash)) {
            accounts::set_password_hash(ctx.be.db, user->id, ctx.svc.hasher().hash(password));
        }
        return *user;
    }
    const bool ldap = cfg.auth_mode == "ldap";
    const AuthResult r = ldap ? ctx.svc.ldap()->authenticate(raw_username, password)
                              : ctx.svc.external()->authenticate(raw_username, password);
    if (r.outcome == AuthOutcome::rejected) throw reject(r.detail.c_str());
    if (r.outcome == AuthOutcome::unavailable) {
        ctx.svc.count_login("unavailable");
        spdlog::warn("login for '{}': {} unavailable: {}", raw_username.substr(0, 64), cfg.auth_mode, r.detail);
        ApiError e(503, "auth_unavailable", "the login service is unavailable, retry shortly");
        e.retry_after_s = 5;
        throw e;
    }
    const auto username = normalize_username(r.identity.username);
    if (!username) {
        ctx.svc.count_login("invalid_identity");
        spdlog::warn("login: {} returned an unusable username", cfg.auth_mode);
        throw ApiError(403, "invalid_identity", "the account name from the login service is not a valid username");
    }
    return accounts::upsert_external(ctx.be.db, ldap ? "ldap" : "external", *username, r.identity);
}

// POST /v1/sessions {username, password, device_id}
HttpResponse login(RequestContext& ctx) {
    const auto& cfg = ctx.svc.config();
    const auto body = ctx.json_body();
    const auto username = string_field(body, "username");
    const auto password = string_field(body, "password");
    const auto device = string_field(body, "device_id");
    if (username.empty() || username.size() > 256 || username.find('\0') != std::string::npos) {
        throw ApiError(400, "invalid_username", "the username must be 1-256 characters");
    }
    // Refused before any back-end is asked: an LDAP bind with an empty password is an
    // "unauthenticated bind" that some directories accept.
    if (password.empty()) throw ApiError(400, "invalid_password", "the password must not be empty");
    if (password.size() > 1024) throw ApiError(400, "invalid_password", "the password is too long");
    if (!valid_device_id(device)) {
        throw ApiError(400, "invalid_device_id", "device ids are 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':', '-'");
    }
    std::string bucket_user = username;
    for (auto& ch : bucket_user) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    rate_limit(ctx, "login:addr:" + ctx.req.client_addr, cfg.rate_limit.login_per_addr);
    rate_limit(ctx, "login:user:" + tokens::to_hex(tokens::hash_token(bucket_user)), cfg.rate_limit.login_per_user);

    const User user = authenticate(ctx, username, password);
    const auto* ua = ctx.req.header("user-agent");
    const auto issued = ctx.be.tokens.issue(user.id, device, ctx.req.client_addr, ua ? *ua : "");
    ctx.svc.count_login("ok");
    spdlog::info("user {} logged in on device '{}' (session {})", user.id, device, issued.info.session_id);
    return HttpResponse::json(201, {{"token", issued.token},
                                    {"session_id", issued.info.session_id},
                                    {"expires_at", iso8601(issued.info.expires_ms)},
                                    {"user", user_json(user)},
                                    {"connectors", connector_addresses(ctx)}});
}

// DELETE /v1/sessions/current
HttpResponse logout(RequestContext& ctx) {
    // Revoked already (a concurrent request): that one kicked.
    if (ctx.be.tokens.revoke(ctx.me(), ctx.who->session.session_id)) kick(ctx, ctx.me(), ctx.who->session.session_id);
    spdlog::info("user {} logged out (session {})", ctx.me(), ctx.who->session.session_id);
    return HttpResponse::no_content();
}

// GET /v1/sessions
HttpResponse list_sessions(RequestContext& ctx) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : ctx.be.tokens.list(ctx.me())) {
        out.push_back({{"id", s.info.session_id},
                       {"device_id", s.info.device_id},
                       {"created_at", iso8601(s.created_ms)},
                       {"last_seen_at", iso8601(s.last_seen_ms)},
                       {"expires_at", iso8601(s.info.expires_ms)},
                       {"client_addr", s.client_addr},
                       {"user_agent", s.user_agent},
                       {"current", s.info.session_id == ctx.who->session.session_id}});
    }
    return HttpResponse::json(200, {{"sessions", out}});
}

// DELETE /v1/sessions/{id}
HttpResponse revoke_session(RequestContext& ctx) {
    const auto id = ctx.path_id("id");
    if (!ctx.be.tokens.revoke(ctx.me(), id)) throw ApiError(404, "session_not_found", "no such session");
    kick(ctx, ctx.me(), id);
    spdlog::info("user {} revoked session {}", ctx.me(), id);
    return HttpResponse::no_content();
}

// GET /v1/users/me
HttpResponse me(RequestContext& ctx) { return HttpResponse::json(200, user_json(must_find(ctx, ctx.me()), true)); }

// GET /v1/users/{id}
HttpResponse user_by_id(RequestContext& ctx) {
    return HttpResponse::json(200, user_json(must_find(ctx, ctx.path_id("id"))));
}

// GET /v1/users?username=NAME
HttpResponse user_lookup(RequestContext& ctx) {
    const auto q = ctx.req.query_param("username");
    if (!q) throw ApiError(400, "missing_parameter", "query parameter 'username' is required");
    const auto username = normalize_username(*q);
    auto user = username ? accounts::by_username(ctx.be.db, *username) : std::nullopt;
    if (!user) throw ApiError(404, "user_not_found", "no such user");
    return HttpResponse::json(200, user_json(*user));
}

// POST /v1/users/me/password {old, new}
HttpResponse change_password(RequestContext& ctx) {
    const auto body = ctx.json_body();
    const auto old_pw = string_field(body, "old");
    const auto new_pw = string_field(body, "new");
    const auto user = must_find(ctx, ctx.me());
    if (user.origin != "local") {
        throw ApiError(403, "not_local_account", "this account's password is managed by the " + user.origin + " service");
    }
    if (!valid_password(new_pw)) throw ApiError(400, "invalid_password", "passwords are 8 to 1024 characters");
    rate_limit(ctx, "login:user:" + tokens::to_hex(tokens::hash_token(user.username)),
               ctx.svc.config().rate_limit.login_per_user);
    if (!ctx.svc.hasher().verify(user.password_hash, old_pw)) {
        throw ApiError(403, "invalid_credentials", "the current password is wrong");
    }
    accounts::set_password_hash(ctx.be.db, user.id, ctx.svc.hasher().hash(new_pw));
    const auto revoked = ctx.be.tokens.revoke_all_except(user.id, ctx.who->session.session_id);
    for (const auto& s : revoked) {
        if (!kick(ctx, user.id, s.session_id)) break;  // Redis is down: do not wait for it N times
    }
    spdlog::info("user {} changed the password; {} other session(s) revoked", user.id, revoked.size());
    return HttpResponse::json(200, {{"revoked_sessions", revoked.size()}});
}

}  // namespace

void add_account_routes(Router<RouteSpec>& r) {
    r.add("POST", "/v1/users", {register_user, false});
    r.add("POST", "/v1/sessions", {login, false});
    r.add("DELETE", "/v1/sessions/current", {logout, true});
    r.add("GET", "/v1/sessions", {list_sessions, true});
    r.add("DELETE", "/v1/sessions/{id}", {revoke_session, true});
    r.add("GET", "/v1/users/me", {me, true});
    r.add("GET", "/v1/users/{id}", {user_by_id, true});
    r.add("GET", "/v1/users", {user_lookup, true});
    r.add("POST", "/v1/users/me/password", {change_password, true});
}

}  // namespace im::rest

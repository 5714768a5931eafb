#include "rest_config.hpp"

#include "im/server/config.hpp"

namespace im::rest {

RestConfig load_rest_config(const config::ConfigSource& source, std::string* description) {
    RestConfig c;
    config::Binder b(source, "IM_REST_");
    bind(b, c.http);
    b.bind("admin.host", c.admin_host);
    b.bind("admin.port", c.admin_port, 0, 65535);
    mysql::bind(b, c.mysql);
    redis::bind(b, c.redis);
    logging::bind(b, c.log);
    tokens::bind(b, c.tokens);
    bind(b, c.hash);
    b.bind_choice("auth.mode", c.auth_mode, {"local", "ldap", "external"});
    b.bind("auth.registration_enabled", c.registration_enabled);
    bind(b, c.ldap);
    bind(b, c.external);
    b.bind_duration("auth.directory_recheck_poll", c.directory_recheck_poll,
                    std::chrono::milliseconds(100), std::chrono::minutes(10));
    bind(b, c.rate_limit);
    mq::bind(b, c.mq);
    bind(b, c.push);
    bind(b, c.files);
    b.bind("connectors", c.connectors);
    b.bind("pool_queue", c.pool_queue, 1, 1'000'000);
    b.bind_duration("gateway.timeout", c.gateway_timeout, std::chrono::milliseconds(100), std::chrono::minutes(1));
    link_auth::bind(b, c.cluster);
    b.bind("groups.max_members", c.group_max_members, 2, 10'000);
    b.bind_duration("shutdown_grace", c.shutdown_grace, std::chrono::milliseconds(0), std::chrono::minutes(10));
    b.require(c.auth_mode != "external" || !c.external.url.empty(), "auth.external.url",
              "required when auth.mode is external");
    b.require(!c.push.enabled || !c.push.webhook_url.empty(), "push.webhook_url",
              "required when push.enabled is true");
    b.require(c.admin_port == 0 || c.admin_port != c.http.port, "admin.port",
              "must differ from http.port");
    b.require(c.tokens.refresh_after < c.tokens.ttl, "auth.token_refresh_after", "must be below auth.token_ttl");
    link_auth::check(b, c.cluster);
    b.finish();
    if (description != nullptr) *description = b.describe();
    return c;
}

}  // namespace im::rest

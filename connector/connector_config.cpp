#include "connector_config.hpp"

#include <unistd.h>

#include "im/server/config.hpp"
#include "im/server/listen_slots.hpp"

namespace im::connector {

namespace {
// <prefix>_per_second (0: unlimited) and <prefix>_burst.
void bind_rate(config::Binder& b, const std::string& prefix, RateLimit& r) {
    b.bind(prefix + "_per_second", r.per_second, 0, 1'000'000);
    b.bind(prefix + "_burst", r.burst, 1, 10'000'000);
}
}  // namespace

ConnectorConfig load_connector_config(const config::ConfigSource& source, std::string* description) {
    using std::chrono::milliseconds;
    ConnectorConfig c;
    config::Binder b(source, "IM_CONNECTOR_");
    b.bind("connector.id", c.id);
    b.bind("connector.host", c.host);
    b.bind("connector.port", c.port, 0, 65535);
    b.bind("connector.port_slots", c.port_slots, 1, 1024);
    b.bind("connector.advertised_address", c.advertised_address);
    b.bind("admin.host", c.admin_host);
    b.bind("admin.port", c.admin_port, 0, 65535);
    b.bind("sessions.max", c.max_sessions, 1, 10'000'000);
    b.bind("sessions.max_frame_bytes", c.max_frame_bytes, 1024, 64u << 20);
    std::uint64_t wq = c.max_write_queue_bytes;
    b.bind_size("sessions.max_write_queue_bytes", wq, 4096, 1ull << 30);
    c.max_write_queue_bytes = static_cast<std::size_t>(wq);
    std::uint64_t pq = c.push_queue_bytes;
    b.bind_size("sessions.push_queue_bytes", pq, 0, 1ull << 30);
    c.push_queue_bytes = static_cast<std::size_t>(pq);
    if (c.push_queue_bytes == 0) c.push_queue_bytes = c.max_write_queue_bytes / 2;
    b.require(c.push_queue_bytes < c.max_write_queue_bytes, "sessions.push_queue_bytes",
              "must be below sessions.max_write_queue_bytes (answers need the room above it)");
    b.bind_duration("sessions.slow_consumer_timeout", c.slow_consumer_timeout, milliseconds(100),
                    std::chrono::minutes(10));
    b.bind("sessions.max_pending_requests", c.max_pending_requests, 1, 100000);
    bind_rate(b, "sessions.messages", c.limits.session_messages);
    bind_rate(b, "sessions.receipts", c.limits.session_receipts);
    bind_rate(b, "sessions.typing", c.limits.session_typing);
    bind_rate(b, "sessions.frames", c.limits.session_frames);
    bind_rate(b, "users.messages", c.limits.user_messages);
    bind_rate(b, "users.receipts", c.limits.user_receipts);
    bind_rate(b, "users.typing", c.limits.user_typing);
    b.bind("sessions.max_per_address", c.limits.max_per_address, 0, 10'000'000);
    b.bind("sessions.max_frames_before_login", c.limits.max_frames_before_login, 0, 1'000'000);
    // Announced to clients in whole seconds (LoginResult.heartbeat_interval_s): at least 1 s.
    b.bind_duration("sessions.heartbeat_interval", c.heartbeat_interval, std::chrono::seconds(1), std::chrono::hours(1));
    b.bind_duration("sessions.login_timeout", c.login_timeout, milliseconds(100), std::chrono::minutes(10));
    b.bind_duration("sessions.request_timeout", c.request_timeout, milliseconds(100), std::chrono::minutes(10));
    b.bind_duration("sessions.token_recheck_interval", c.token_recheck_interval, milliseconds(100), std::chrono::hours(24));
    b.bind("tls.enabled", c.tls_enabled);
    b.bind("tls.cert_file", c.tls_cert_file);
    b.bind("tls.key_file", c.tls_key_file);
    b.bind_duration("links.discovery_interval", c.discovery_interval, milliseconds(50), std::chrono::minutes(1));
    b.bind_duration("links.registration_ttl", c.registration_ttl, milliseconds(200), std::chrono::minutes(10));
    b.bind_duration("links.ping_interval", c.link_ping_interval, milliseconds(50), std::chrono::minutes(1));
    b.bind_duration("links.timeout", c.link_timeout, milliseconds(100), std::chrono::minutes(10));
    b.bind_duration("links.reconnect_min", c.reconnect_min, milliseconds(10), std::chrono::minutes(1));
    b.bind_duration("links.reconnect_max", c.reconnect_max, milliseconds(10), std::chrono::minutes(10));
    b.bind_duration("links.reroute_timeout", c.reroute_timeout, milliseconds(0), std::chrono::minutes(1));
    b.bind("links.max_held_requests", c.max_held_requests, 0, 10'000'000);
    link_auth::bind(b, c.cluster);
    b.bind("links.max_frame_bytes", c.link_max_frame_bytes, 64 * 1024, 256u << 20);
    std::uint64_t lwq = c.link_max_write_queue_bytes;
    b.bind_size("links.max_write_queue_bytes", lwq, 1 << 20, 4ull << 30);
    c.link_max_write_queue_bytes = static_cast<std::size_t>(lwq);
    b.bind("redis.threads", c.redis_threads, 1, 64);
    redis::bind(b, c.redis);
    logging::bind(b, c.log);
    b.bind_duration("shutdown_grace", c.shutdown_grace, milliseconds(0), std::chrono::minutes(10));
    b.require(!c.tls_enabled || !c.tls_cert_file.empty(), "tls.cert_file", "required when tls.enabled is true");
    b.require(!c.tls_enabled || !c.tls_key_file.empty(), "tls.key_file", "required when tls.enabled is true");
    b.require(c.port_slots == 1 || (c.port != 0 && c.admin_port != 0), "connector.port_slots",
              "above 1 needs fixed connector.port and admin.port (slot i listens on both + i)");
    b.require(c.port + c.port_slots - 1 <= 65535 && c.admin_port + c.port_slots - 1 <= 65535,
              "connector.port_slots", "the slots run past port 65535");
    b.require(c.advertised_address.empty() || c.advertised_address.rfind(':') != std::string::npos,
              "connector.advertised_address", "must be host:port (port 0: the port really listened on)");
    b.require(c.reconnect_min <= c.reconnect_max, "links.reconnect_min", "must not exceed links.reconnect_max");
    b.require(c.link_ping_interval < c.link_timeout, "links.ping_interval", "must be below links.timeout");
    link_auth::check(b, c.cluster);
    b.finish();
    if (description != nullptr) *description = b.describe();
    return c;
}

void settle_listen_ports(ConnectorConfig& c, std::uint16_t port, std::uint16_t admin_port) {
    c.port = port;
    c.admin_port = admin_port;
    settle_identity("connector", c.host, port, c.id, c.advertised_address);
}

}  // namespace im::connector

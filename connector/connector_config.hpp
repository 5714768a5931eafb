#pragma once
// The one configuration struct of im-connector (every key: docs/OPERATIONS.md).

#include <chrono>
#include <cstdint>
#include <string>

#include "abuse_limits.hpp"
#include "im/server/link_auth.hpp"
#include "im/server/logging.hpp"
#include "im/server/redis.hpp"

namespace im::config {
class ConfigSource;
}

namespace im::connector {

struct ConnectorConfig {
    std::string id;                        // unique per replica; default "connector-<host>-<port>"
    std::string host = "127.0.0.1";        // client listener
    std::uint16_t port = 9000;             // 0: the kernel picks one
    // Several replicas on one host network: the first free slot i < port_slots listens on
    // port + i and admin_port + i (im/server/listen_slots.hpp).
    std::uint32_t port_slots = 1;
    // What clients dial (login answer); default host:port. A port of 0 ("10.0.0.5:0") stands for
    // the port this replica really listens on.
    std::string advertised_address;
    std::string admin_host = "127.0.0.1";  // /metrics /healthz /readyz
    std::uint16_t admin_port = 9090;
    std::uint32_t max_sessions = 100000;
    std::uint32_t max_frame_bytes = 64 * 1024;
    std::size_t max_write_queue_bytes = 1 << 20;  // per session; beyond: closed (slow consumer)
    // Pushes (deliveries, receipts, typing, presence) are dropped for a session whose write queue
    // holds more than this (0: half of max_write_queue_bytes); the session gets a SyncHint once
    // its queue is written out, and is closed as a slow consumer if that takes longer than
    // slow_consumer_timeout. Answers to its own requests are never dropped.
    std::size_t push_queue_bytes = 0;
    std::chrono::milliseconds slow_consumer_timeout{10000};
    std::uint32_t max_pending_requests = 256;      // per session, answered by a transfer
    AbuseLimits limits;  // rates per session and per user, connections per address, pre-login frames
    std::chrono::milliseconds heartbeat_interval{30000};  // announced to clients; 3x silence closes
    std::chrono::milliseconds login_timeout{10000};       // to send a valid Login after connecting
    std::chrono::milliseconds request_timeout{10000};     // token validation over a link
    // Live sessions re-check their token this often (a revocation whose kick message was lost
    // still ends the session).
    std::chrono::milliseconds token_recheck_interval{60000};
    bool tls_enabled = false;
    std::string tls_cert_file;
    std::string tls_key_file;
    // Links to transfers.
    std::chrono::milliseconds discovery_interval{1000};   // Redis registry scan and own heartbeat
    std::chrono::milliseconds registration_ttl{5000};
    std::chrono::milliseconds link_ping_interval{1000};
    std::chrono::milliseconds link_timeout{5000};          // no frame from a transfer this long: reconnect
    std::chrono::milliseconds reconnect_min{100};
    std::chrono::milliseconds reconnect_max{5000};
    std::uint32_t link_max_frame_bytes = 16 << 20;
    std::size_t link_max_write_queue_bytes = 64 << 20;
    // Requests for a shard whose owner is not announced (hand-over, takeover) wait this long for
    // one, at most this many per connector, then get UNAVAILABLE (imclient retries).
    std::chrono::milliseconds reroute_timeout{5000};
    std::uint32_t max_held_requests = 100000;
    link_auth::Config cluster;  // the shared secret that authenticates links
    std::uint32_t redis_threads = 2;
    redis::RedisConfig redis;
    logging::LogConfig log;
    std::chrono::milliseconds shutdown_grace{3000};
};

ConnectorConfig load_connector_config(const config::ConfigSource& source, std::string* description = nullptr);

// Once the listeners are bound: records the ports really in use (a slot, or what the kernel gave
// for port 0) and derives the defaults that name them (id, advertised address).
void settle_listen_ports(ConnectorConfig& c, std::uint16_t port, std::uint16_t admin_port);

}  // namespace im::connector

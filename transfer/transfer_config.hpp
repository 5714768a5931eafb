#pragma once
// The one configuration struct of im-transfer (every key: docs/OPERATIONS.md).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "im/server/link_auth.hpp"
#include "im/server/logging.hpp"
#include "im/server/mq.hpp"
#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"
#include "im/server/tokens.hpp"
#include "push_relay.hpp"

namespace im::config {
class ConfigSource;
}

namespace im::transfer {

struct TransferConfig {
    std::string id;                  // unique per replica; default "transfer-<host>-<port>"
    std::string host = "127.0.0.1";  // link listener (connectors connect here)
    std::uint16_t port = 9100;
    // Replicas on one host network with one configuration: slot i is (port + i, admin.port + i);
    // a replica takes the first free one (see im/server/listen_slots.hpp).
    std::uint32_t port_slots = 1;
    std::string advertised_address;        // what connectors dial; default host:port
    std::string admin_host = "127.0.0.1";  // /metrics /healthz /readyz
    std::uint16_t admin_port = 9190;
    std::uint32_t link_max_frame_bytes = 16 << 20;
    std::size_t link_max_write_queue_bytes = 64 << 20;
    std::chrono::milliseconds link_idle_timeout{
        15000};  // a connector link silent this long is closed
    std::chrono::milliseconds heartbeat_interval{1000};  // Redis registration and lease renewals
    std::chrono::milliseconds registration_ttl{5000};
    // Several transfers (docs/ARCHITECTURE.md "Ownership"): how often shard_owner is read, the
    // membership lease (a kill -9'd transfer's shards move after it expires), how long a new
    // transfer waits for every connector's link before taking its share, and how long a move
    // waits for the current owner's in-flight batch.
    std::chrono::milliseconds ownership_poll_interval{250};
    std::chrono::milliseconds ownership_lease_ttl{3000};
    std::chrono::milliseconds ownership_join_timeout{5000};
    std::chrono::milliseconds ownership_lock_wait{5000};
    link_auth::Config cluster;  // the shared secret that authenticates links
    std::uint32_t max_batch = 512;  // messages per commit
    std::uint32_t writer_threads =
        2;  // writer lanes, each owning a fixed part of the conversations
    std::chrono::milliseconds receipt_delay{
        2};                            // receipts alone wait this long for a message to join
    std::uint32_t max_queue = 100000;  // queued sends + receipts before OVERLOADED
    // A batch of one one-to-one conversation's two watermark rows with at most one new message
    // (a lone message, with the peer's receipt, or receipts alone) is stored by one prepared CALL of
    // im_store_pair (migration 009), which commits: 1 round trip instead of up to 6.
    bool single_call = true;
    std::uint32_t max_text_bytes = 16 * 1024;
    std::uint32_t sync_page_limit = 200;  // messages per MessagePage (also bounded by bytes)
    std::uint32_t client_max_frame_bytes = 64 * 1024;  // the connectors' client frame limit
    bool require_friendship = true;
    std::chrono::milliseconds policy_cache_ttl{2000};
    std::uint32_t typing_per_second = 2;  // per sender and peer
    std::uint32_t reader_threads = 4;     // sync/history/token lookups (one MySQL connection each)
    std::vector<std::string> failpoints;  // test-only hooks "name=action", see failpoints.hpp
    mysql::MysqlConfig mysql;
    redis::RedisConfig redis;
    mq::MqConfig mq;
    PushRelayConfig push;
    tokens::TokenConfig tokens;
    logging::LogConfig log;
    std::chrono::milliseconds shutdown_grace{5000};
};

TransferConfig load_transfer_config(const config::ConfigSource& source,
                                    std::string* description = nullptr);
// Once the listeners are bound: the real ports, and the defaults that name them (the id
// transfer-<host>-<port>, the advertised address host:port; an advertised HOST:0 gets the port).
void settle_listen_ports(TransferConfig& c, std::uint16_t port, std::uint16_t admin_port);

}  // namespace im::transfer

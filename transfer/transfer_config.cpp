#include "transfer_config.hpp"

#include <unistd.h>

#include "im/server/config.hpp"
#include "im/server/listen_slots.hpp"

namespace im::transfer {

TransferConfig load_transfer_config(const config::ConfigSource& source, std::string* description) {
    TransferConfig c;
    config::Binder b(source, "IM_TRANSFER_");
    b.bind("transfer.id", c.id);
    b.bind("transfer.host", c.host);
    b.bind("transfer.port", c.port, 0, 65535);
    b.bind("transfer.port_slots", c.port_slots, 1, 1024);
    b.bind("transfer.advertised_address", c.advertised_address);
    b.bind("admin.host", c.admin_host);
    b.bind("admin.port", c.admin_port, 0, 65535);
    b.bind("link.max_frame_bytes", c.link_max_frame_bytes, 64 * 1024, 256u << 20);
    std::uint64_t wq = c.link_max_write_queue_bytes;
    b.bind_size("link.max_write_queue_bytes", wq, 1 << 20, 4ull << 30);
    c.link_max_write_queue_bytes = static_cast<std::size_t>(wq);
    b.bind_duration("link.idle_timeout", c.link_idle_timeout, std::chrono::seconds(1),
                    std::chrono::minutes(10));
    b.bind_duration("transfer.heartbeat_interval", c.heartbeat_interval,
                    std::chrono::milliseconds(100), std::chrono::minutes(1));
    b.bind_duration("transfer.registration_ttl", c.registration_ttl, std::chrono::milliseconds(500),
                    std::chrono::minutes(10));
    b.bind_duration("ownership.poll_interval", c.ownership_poll_interval, std::chrono::milliseconds(20),
                    std::chrono::seconds(10));
    b.bind_duration("ownership.lease_ttl", c.ownership_lease_ttl, std::chrono::milliseconds(300),
                    std::chrono::minutes(5));
    b.bind_duration("ownership.join_timeout", c.ownership_join_timeout, std::chrono::milliseconds(0),
                    std::chrono::minutes(5));
    b.bind_duration("ownership.lock_wait", c.ownership_lock_wait, std::chrono::seconds(1), std::chrono::minutes(1));
    link_auth::bind(b, c.cluster);
    b.bind("writer.max_batch", c.max_batch, 1, 4096);
    b.bind("writer.threads", c.writer_threads, 1, 16);
    b.bind("writer.single_call", c.single_call);
    b.bind_duration("writer.receipt_delay", c.receipt_delay, std::chrono::milliseconds(0),
                    std::chrono::seconds(1));
    b.bind("writer.max_queue", c.max_queue, 1, 10'000'000);
    b.bind("messages.max_text_bytes", c.max_text_bytes, 1, 1 << 20);
    b.bind("sync.page_limit", c.sync_page_limit, 1, 10000);
    b.bind("client.max_frame_bytes", c.client_max_frame_bytes, 1024, 64u << 20);
    b.bind("policy.require_friendship", c.require_friendship);
    b.bind_duration("policy.cache_ttl", c.policy_cache_ttl, std::chrono::milliseconds(0),
                    std::chrono::minutes(10));
    b.bind("policy.typing_per_second", c.typing_per_second, 0, 1000);
    b.bind("reader.threads", c.reader_threads, 1, 256);
    b.bind("testing.failpoints", c.failpoints);
    mysql::bind(b, c.mysql);
    redis::bind(b, c.redis);
    mq::bind(b, c.mq);
    bind(b, c.push);
    tokens::bind(b, c.tokens);
    logging::bind(b, c.log);
    b.bind_duration("shutdown_grace", c.shutdown_grace, std::chrono::milliseconds(0),
                    std::chrono::minutes(10));
    b.require(c.client_max_frame_bytes <= c.link_max_frame_bytes / 2, "client.max_frame_bytes",
              "must be at most half of link.max_frame_bytes");
    b.require(c.port_slots == 1 || (c.port != 0 && c.admin_port != 0), "transfer.port_slots",
              "more than one slot needs transfer.port and admin.port (not 0)");
    b.require(c.port + c.port_slots - 1 <= 65535 && c.admin_port + c.port_slots - 1 <= 65535, "transfer.port_slots",
              "the slots run past port 65535");
    b.require(c.advertised_address.empty() || c.advertised_address.rfind(':') != std::string::npos,
              "transfer.advertised_address", "must be host:port (port 0: the port really listened on)");
    b.require(c.heartbeat_interval * 2 < c.ownership_lease_ttl, "ownership.lease_ttl",
              "must be more than twice transfer.heartbeat_interval (the lease is renewed at every heartbeat)");
    link_auth::check(b, c.cluster);
    b.finish();
    if (description != nullptr) *description = b.describe();
    return c;
}

void settle_listen_ports(TransferConfig& c, std::uint16_t port, std::uint16_t admin_port) {
    c.port = port;
    c.admin_port = admin_port;
    settle_identity("transfer", c.host, port, c.id, c.advertised_address);
}

}  // namespace im::transfer

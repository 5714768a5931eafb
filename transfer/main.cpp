// im-transfer: orders, stores and routes messages for the shards it owns. See docs/ARCHITECTURE.md.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "im/server/admin_server.hpp"
#include "im/server/clock.hpp"
#include "im/server/failpoints.hpp"
#include "im/server/id_generator.hpp"
#include "im/server/listen_slots.hpp"
#include "im/server/metrics.hpp"
#include "im/server/migrations.hpp"
#include "im/server/process.hpp"
#include "im/server/thread_pool.hpp"
#include "im/user_status/user_status.hpp"
#include "im/wire/ids.hpp"
#include "ownership.hpp"
#include "ownership_manager.hpp"
#include "policy_cache.hpp"
#include "push_relay.hpp"
#include "reader.hpp"
#include "transfer_config.hpp"
#include "transfer_server.hpp"

namespace {

using namespace im;
using namespace im::transfer;

int run(TransferConfig cfg) {
    Failpoints failpoints;
    failpoints.configure(cfg.failpoints);
    boost::asio::io_context io(1);
    // Both ports first: the id and the advertised address name the ports really bound (port 0, or
    // a port slot of several replicas sharing one host network).
    auto listeners = bind_listen_slot(io, cfg.host, cfg.port, cfg.admin_host, cfg.admin_port, cfg.port_slots);
    settle_listen_ports(cfg, listeners.service.local_endpoint().port(), listeners.admin.local_endpoint().port());

    const std::uint64_t epoch = new_incarnation_epoch();
    WorkerLease lease;
    process::retry_startup("mysql", 30, [&] {
        mysql::MysqlConnection db(cfg.mysql);
        if (cfg.mysql.migrate) spdlog::info("schema: {} migration(s) applied", mysql::apply_migrations(db));
        lease = lease_worker_id(db, cfg.id + "/" + std::to_string(epoch));
    });
    spdlog::info("im-transfer {}: worker id {} leased, incarnation {}", cfg.id, lease.worker_id, epoch);

    Metrics metrics;
    IdGenerator ids(lease.worker_id);
    std::atomic<std::int64_t> id_valid_until{0};
    PolicyCache policy(cfg.policy_cache_ttl, 1 << 20);
    OnlineUsers online;
    Reader reader(cfg, policy, metrics);
    PushRelay relay(cfg.mysql, cfg.mq, cfg.push, metrics);

    TransferServer* server_ptr = nullptr;
    MessageWriter writer(WriterDeps{cfg, ids, epoch, policy, online, failpoints, metrics,
                                    [&server_ptr](BatchResult r) { server_ptr->post_result(std::move(r)); },
                                    [&relay] { relay.notify(); }, id_valid_until});
    TransferServer server(io, cfg, TransferIdentity{cfg.id, epoch}, writer, reader, online, metrics);
    server_ptr = &server;
    writer.start();
    relay.start();
    // Friendship and block changes from im-rest: drop the cached policy of that pair at once.
    user_status::ChannelSubscriber social(
        cfg.redis, {cfg.redis.key_prefix + "social"}, [&policy](std::string_view, std::string_view payload) {
            if (auto pair = user_status::UserStatus::parse_social_change(payload)) policy.invalidate(pair->first, pair->second);
        });
    social.start();
    const auto port = server.start(std::move(listeners.service));

    OwnershipManager ownership(cfg, epoch, lease, ids, id_valid_until, writer, metrics,
                               OwnershipManager::Hooks{
                                   [&](const OwnedShards& owned) {
                                       boost::asio::post(io, [&server, owned] { server.set_owned(owned); });
                                   },
                                   [&server] { return server.linked_connectors(); }});
    ownership.start();

    AdminServer admin(io, metrics, [&] {
        const bool db = ownership.mysql_ok();
        return AdminServer::Readiness{db, db ? "" : "mysql unreachable"};
    });
    const auto admin_port = admin.start(std::move(listeners.admin));
    spdlog::info("im-transfer {} listening for connectors on {}:{} (advertised {}), admin on {}:{} (port slot {} of {})",
                 cfg.id, cfg.host, port, cfg.advertised_address, cfg.admin_host, admin_port, listeners.slot,
                 cfg.port_slots);

    // SIGHUP: read the link TLS certificates again (open links keep going).
    boost::asio::signal_set hup(io, SIGHUP);
    std::function<void()> on_hup = [&] {
        hup.async_wait([&](const boost::system::error_code& ec, int) {
            if (ec) return;
            server.reload_link_tls();
            on_hup();
        });
    };
    on_hup();
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    std::thread drainer;
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        spdlog::info("im-transfer: signal {}, draining: handing the shards over", sig);
        hup.cancel();
        admin.stop();
        // Hand every shard to the other transfers (the connectors re-route to them), finish what
        // is queued (requests for shards handed over go back to the connectors), then leave.
        drainer = std::thread([&] {
            ownership.drain(std::chrono::steady_clock::now() + cfg.shutdown_grace);
            writer.stop();
            ownership.stop();
            boost::asio::post(io, [&] {
                server.stop_accepting();
                server.close_links();
                auto t = std::make_shared<boost::asio::steady_timer>(io, std::chrono::milliseconds(600));
                t->async_wait([&, t](const boost::system::error_code&) { io.stop(); });
            });
        });
    });

    io.run();
    if (drainer.joinable()) drainer.join();
    social.stop();
    writer.stop();
    ownership.stop();
    relay.stop();
    reader.shutdown();
    spdlog::info("im-transfer: stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    process::CliOptions opts;
    if (auto code = process::parse_cli(argc, argv, "im-transfer", "im-transfer: orders, stores and routes messages", opts)) {
        return *code;
    }
    TransferConfig cfg;
    std::string described;
    try {
        cfg = load_transfer_config(process::make_source(opts), &described);
    } catch (const std::exception& e) {
        std::cerr << "im-transfer: " << e.what() << "\n";
        return 2;
    }
    if (opts.print_config) {
        std::cout << described;
        return 0;
    }
    try {
        logging::setup("im-transfer", cfg.log);
        spdlog::info("im-transfer starting; configuration:\n{}", described);
        return run(cfg);
    } catch (const std::exception& e) {
        spdlog::critical("im-transfer: {}", e.what());
        spdlog::shutdown();
        return 1;
    }
}

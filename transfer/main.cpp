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
#include "im/server/metrics.hpp"
#include "im/server/migrations.hpp"
#include "im/server/process.hpp"
#include "im/server/thread_pool.hpp"
#include "im/user_status/user_status.hpp"
#include "im/wire/ids.hpp"
#include "ownership.hpp"
#include "policy_cache.hpp"
#include "push_relay.hpp"
#include "reader.hpp"
#include "transfer_config.hpp"
#include "transfer_server.hpp"

namespace {

using namespace im;
using namespace im::transfer;

// Redis registration and worker-lease renewal, on a thread of their own (never the I/O thread).
class Heartbeat {
public:
    Heartbeat(const TransferConfig& cfg, WorkerLease lease, user_status::TransferInfo info)
        : cfg_(cfg), lease_(std::move(lease)), info_(std::move(info)), db_(cfg.mysql), redis_(cfg.redis),
          status_(redis_, cfg.redis.key_prefix), pool_("heartbeat", 1, 4) {}

    // Returns false (fatal) when the worker lease is lost: ids could collide from then on.
    void beat(std::function<void(bool lease_ok, bool mysql_ok)> done) {
        pool_.try_submit([this, done = std::move(done)] {
            bool mysql_ok = true, lease_ok = true;
            try {
                db_.run_idempotent([&] { lease_ok = renew_worker_lease(db_, lease_); });
            } catch (const std::exception& e) {
                mysql_ok = false;
                spdlog::warn("heartbeat: lease renewal failed: {}", e.what());
                // Still ours until it expires; past that another process may take the id.
                lease_ok = wall_ms() < lease_.expires_ms - 1000;
            }
            try {
                info_.updated_ms = wall_ms();
                status_.transfer_heartbeat(info_, cfg_.registration_ttl);
            } catch (const std::exception& e) {
                spdlog::warn("heartbeat: redis registration failed: {}", e.what());
            }
            done(lease_ok, mysql_ok);
        });
    }
    void shutdown() {
        pool_.shutdown();
        try {
            status_.transfer_gone(info_.id);
        } catch (const std::exception& e) {
            spdlog::warn("heartbeat: deregistration failed: {}", e.what());
        }
        try {
            release_worker_lease(db_, lease_);
        } catch (const std::exception& e) {
            spdlog::warn("heartbeat: lease release failed: {}", e.what());
        }
    }

private:
    const TransferConfig& cfg_;
    WorkerLease lease_;
    user_status::TransferInfo info_;
    mysql::MysqlConnection db_;
    redis::RedisConnection redis_;
    user_status::UserStatus status_;
    ThreadPool pool_;
};

int run(const TransferConfig& cfg) {
    Failpoints failpoints;
    failpoints.configure(cfg.failpoints);

    const std::uint64_t epoch = new_incarnation_epoch();
    WorkerLease lease;
    process::retry_startup("mysql", 30, [&] {
        mysql::MysqlConnection db(cfg.mysql);
        if (cfg.mysql.migrate) spdlog::info("schema: {} migration(s) applied", mysql::apply_migrations(db));
        lease = lease_worker_id(db, cfg.id + "/" + std::to_string(epoch));
        claim_shards(db, cfg.id, epoch, 0, kShardCount - 1);
    });
    spdlog::info("im-transfer {}: worker id {} leased, incarnation {}", cfg.id, lease.worker_id, epoch);

    boost::asio::io_context io(1);
    Metrics metrics;
    IdGenerator ids(lease.worker_id);
    PolicyCache policy(cfg.policy_cache_ttl, 1 << 20);
    OnlineUsers online;
    Reader reader(cfg, policy, metrics);
    PushRelay relay(cfg.mysql, cfg.mq, cfg.push, metrics);

    TransferServer* server_ptr = nullptr;
    MessageWriter writer(WriterDeps{cfg, ids, epoch, policy, online, failpoints, metrics,
                                    [&server_ptr](BatchResult r) { server_ptr->post_result(std::move(r)); },
                                    [&relay] { relay.notify(); }});
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
    const auto port = server.start();

    std::atomic<bool> mysql_ok{true};
    AdminServer admin(io, metrics, [&] {
        return AdminServer::Readiness{mysql_ok.load(), mysql_ok ? "" : "mysql unreachable"};
    });
    const auto admin_port = admin.start(cfg.admin_host, cfg.admin_port);
    spdlog::info("im-transfer {} listening for connectors on {}:{} (advertised {}), admin on {}:{}", cfg.id, cfg.host,
                 port, cfg.advertised_address, cfg.admin_host, admin_port);

    Heartbeat heartbeat(cfg, lease, user_status::TransferInfo{cfg.id, epoch, cfg.advertised_address, 0});
    boost::asio::steady_timer beat_timer(io);
    int exit_code = 0;
    std::function<void()> beat = [&] {
        heartbeat.beat([&](bool lease_ok, bool db_ok) {
            boost::asio::post(io, [&, lease_ok, db_ok] {
                mysql_ok = db_ok;
                if (!lease_ok) {
                    spdlog::critical("im-transfer: the snowflake worker lease was lost: stopping to avoid duplicate ids");
                    exit_code = 1;
                    io.stop();
                }
            });
        });
        beat_timer.expires_after(cfg.heartbeat_interval);
        beat_timer.async_wait([&](const boost::system::error_code& ec) {
            if (!ec) beat();
        });
    };
    beat();

    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    std::thread drainer;
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        spdlog::info("im-transfer: signal {}, draining", sig);
        beat_timer.cancel();
        server.stop_accepting();
        admin.stop();
        // Finish what is queued: the writer commits and answers it, then links are flushed.
        drainer = std::thread([&] {
            writer.stop();
            boost::asio::post(io, [&] {
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
    relay.stop();
    reader.shutdown();
    heartbeat.shutdown();
    spdlog::info("im-transfer: stopped");
    return exit_code;
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

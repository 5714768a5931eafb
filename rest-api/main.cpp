// im-rest: the HTTP/JSON API (accounts, sessions, friends, ...). See docs/REST.md.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cppconn/exception.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <functional>
#include <iostream>
#include <memory>
#include <thread>

#include "directory_recheck.hpp"
#include "http_server.hpp"
#include "im/server/admin_server.hpp"
#include "im/server/metrics.hpp"
#include "im/server/migrations.hpp"
#include "im/server/process.hpp"
#include "push_worker.hpp"
#include "rest_config.hpp"
#include "rest_service.hpp"

namespace {

int run(const im::rest::RestConfig& cfg) {
    if (cfg.mysql.migrate) {
        im::process::retry_startup("mysql", 30, [&] {
            im::mysql::MysqlConnection db(cfg.mysql);
            const int applied = im::mysql::apply_migrations(db);
            spdlog::info("schema: {} migration(s) applied", applied);
        });
    }

    boost::asio::io_context io(static_cast<int>(cfg.http.threads));
    im::Metrics metrics;
    im::rest::RestService service(cfg, metrics);
    if (service.hasher().below_recommended()) {
        spdlog::warn("auth.hash_ops_limit/auth.hash_mem_limit are below libsodium's interactive level: "
                     "for tests and benchmarks only, never in production");
    }
    im::rest::HttpServer server(
        io, cfg.http, [&service](im::rest::HttpRequest req, im::rest::HttpServer::Respond respond) {
            service.handle(std::move(req), std::move(respond));
        },
        metrics);
    server.set_upload_route(service.upload_route());
    const auto port = server.start();
    // /metrics, /healthz and /readyz for operators, on their own (loopback by default) listener.
    std::atomic<bool> draining{false};
    im::AdminServer admin(io, metrics, [&service, &draining] {
        if (draining) return im::AdminServer::Readiness{false, "draining"};
        return service.readiness();
    });
    const auto admin_port = admin.start(cfg.admin_host, cfg.admin_port);
    // Readiness for the admin listener, which must not block: checked on the pool every second.
    boost::asio::steady_timer probe_timer(io);
    std::function<void()> probe = [&] {
        service.probe_readiness();
        probe_timer.expires_after(std::chrono::seconds(1));
        probe_timer.async_wait([&](const boost::system::error_code& ec) {
            if (!ec) probe();
        });
    };
    probe();
    // Re-checks LDAP/external accounts asked for by token refreshes; its own thread and
    // connections.
    im::rest::DirectoryRechecker rechecker(cfg, service.ldap(), service.external(), metrics);
    rechecker.start();
    // Removes files no message references (files.orphan_ttl); its own thread and connection.
    im::rest::FileSweeper sweeper(cfg.mysql, cfg.files, service.file_store(),
                                  service.file_metrics());
    sweeper.start();
    // The push consumer: its own threads and RabbitMQ connections, independent of the HTTP side.
    std::unique_ptr<im::rest::PushWorker> push_worker;
    if (cfg.push.enabled) {
        push_worker = std::make_unique<im::rest::PushWorker>(cfg.mq, cfg.push, metrics);
        push_worker->start();
    }
    spdlog::info(
        "im-rest listening on {}://{}:{} (auth mode {}, {} I/O threads, {} pool threads), admin on "
        "{}:{}",
        cfg.http.tls_enabled ? "https" : "http", cfg.http.host, port, cfg.auth_mode,
        cfg.http.threads, cfg.mysql.pool_size, cfg.admin_host, admin_port);

    // SIGHUP: the link TLS certificates again (the gateway's next links use them).
    boost::asio::signal_set hup(io, SIGHUP);
    std::function<void()> on_hup = [&] {
        hup.async_wait([&](const boost::system::error_code& ec, int) {
            if (ec) return;
            service.reload_link_tls();
            on_hup();
        });
    };
    on_hup();
    // Graceful stop: no new connections, in-flight requests answered (up to shutdown_grace).
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    boost::asio::steady_timer drain_timer(io);
    const auto deadline_holder = std::make_shared<std::chrono::steady_clock::time_point>();
    std::function<void()> poll_drain = [&] {
        if (server.in_flight_requests() == 0 || std::chrono::steady_clock::now() >= *deadline_holder) {
            spdlog::info("im-rest: drained ({} request(s) still in flight), stopping",
                         server.in_flight_requests());
            admin.stop();
            io.stop();
            return;
        }
        drain_timer.expires_after(std::chrono::milliseconds(20));
        drain_timer.async_wait([&](const boost::system::error_code&) { poll_drain(); });
    };
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        spdlog::info("im-rest: signal {}, draining", sig);
        hup.cancel();
        draining = true;
        probe_timer.cancel();
        server.stop_accepting();
        *deadline_holder = std::chrono::steady_clock::now() + cfg.shutdown_grace;
        poll_drain();
    });

    std::vector<std::thread> threads;
    for (std::uint32_t i = 1; i < cfg.http.threads; ++i) threads.emplace_back([&io] { io.run(); });
    io.run();
    for (auto& t : threads) t.join();
    sweeper.stop();
    rechecker.stop();
    if (push_worker) push_worker->stop();  // unacknowledged events go back to the queue
    service.shutdown();
    spdlog::info("im-rest: stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    im::process::CliOptions opts;
    if (auto code = im::process::parse_cli(argc, argv, "im-rest", "im-rest: the REST API of the IM cluster", opts)) {
        return *code;
    }
    im::rest::RestConfig cfg;
    std::string described;
    try {
        cfg = im::rest::load_rest_config(im::process::make_source(opts), &described);
    } catch (const std::exception& e) {
        std::cerr << "im-rest: " << e.what() << "\n";
        return 2;
    }
    if (opts.print_config) {
        std::cout << described;
        return 0;
    }
    try {
        im::logging::setup("im-rest", cfg.log);
        spdlog::info("im-rest starting; configuration:\n{}", described);
        return run(cfg);
    } catch (const std::exception& e) {
        spdlog::critical("im-rest: {}", e.what());
        spdlog::shutdown();
        return 1;
    }
}

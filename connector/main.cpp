// im-connector: holds client sessions and links them to the transfers. See docs/ARCHITECTURE.md.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <functional>
#include <spdlog/spdlog.h>

#include <iostream>

#include "connector_config.hpp"
#include "connector_server.hpp"
#include "im/server/admin_server.hpp"
#include "im/server/listen_slots.hpp"
#include "im/server/metrics.hpp"
#include "im/server/process.hpp"

namespace {

int run(im::connector::ConnectorConfig cfg) {
    boost::asio::io_context io(1);
    im::Metrics metrics;
    // Both ports first: the replica's id and advertised address name the ports it really got.
    auto listeners = im::bind_listen_slot(io, cfg.host, cfg.port, cfg.admin_host, cfg.admin_port, cfg.port_slots);
    im::connector::settle_listen_ports(cfg, listeners.service.local_endpoint().port(),
                                       listeners.admin.local_endpoint().port());
    im::connector::ConnectorServer server(io, cfg, metrics);
    const auto port = server.start(std::move(listeners.service));
    im::AdminServer admin(io, metrics, [&server] {
        const bool ready = server.ready_links() > 0;
        return im::AdminServer::Readiness{ready, ready ? "" : "no transfer link"};
    });
    const auto admin_port = admin.start(std::move(listeners.admin));
    spdlog::info("im-connector {} listening for clients on {}:{}{} (advertised {}), admin on {}:{} (port slot {} of {})",
                 cfg.id, cfg.host, port, cfg.tls_enabled ? " (TLS)" : "", cfg.advertised_address, cfg.admin_host,
                 admin_port, listeners.slot, cfg.port_slots);

    // SIGHUP: read the TLS certificates again (clients and links; open ones keep going).
    boost::asio::signal_set hup(io, SIGHUP);
    std::function<void()> on_hup = [&] {
        hup.async_wait([&](const boost::system::error_code& ec, int) {
            if (ec) return;
            server.reload_tls();
            on_hup();
        });
    };
    on_hup();
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        spdlog::info("im-connector: signal {}, draining", sig);
        hup.cancel();
        admin.stop();
        server.drain([&] {
            server.stop();
            io.stop();
        });
    });
    io.run();
    spdlog::info("im-connector: stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    im::process::CliOptions opts;
    if (auto code = im::process::parse_cli(argc, argv, "im-connector", "im-connector: client sessions of the IM cluster",
                                           opts)) {
        return *code;
    }
    im::connector::ConnectorConfig cfg;
    std::string described;
    try {
        cfg = im::connector::load_connector_config(im::process::make_source(opts), &described);
    } catch (const std::exception& e) {
        std::cerr << "im-connector: " << e.what() << "\n";
        return 2;
    }
    if (opts.print_config) {
        std::cout << described;
        return 0;
    }
    try {
        im::logging::setup("im-connector", cfg.log);
        spdlog::info("im-connector starting; configuration:\n{}", described);
        return run(cfg);
    } catch (const std::exception& e) {
        spdlog::critical("im-connector: {}", e.what());
        spdlog::shutdown();
        return 1;
    }
}

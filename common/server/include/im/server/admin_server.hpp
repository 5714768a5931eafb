#pragma once
// The admin HTTP endpoint of a process: GET /metrics (Prometheus text), /healthz (alive),
// /readyz (dependencies reachable). Small and bounded: few connections, short timeouts, tiny
// requests. Runs on the caller's io_context; the readiness callback must not block (it returns
// state the process keeps up to date, e.g. "links up").

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>

namespace im {

class Metrics;

class AdminServer {
public:
    struct Readiness {
        bool ready = true;
        std::string detail;  // shown in the /readyz body
    };
    using ReadyCheck = std::function<Readiness()>;

    AdminServer(boost::asio::io_context& io, const Metrics& metrics, ReadyCheck ready);
    ~AdminServer();

    // Binds and starts accepting; returns the bound port (useful with port 0). Throws on bind errors.
    std::uint16_t start(const std::string& host, std::uint16_t port);
    // Starts accepting on a listener bound elsewhere (im/server/listen_slots.hpp); returns its port.
    std::uint16_t start(boost::asio::ip::tcp::acceptor listening);
    void stop();

private:
    struct State;
    std::shared_ptr<State> state_;
};

}  // namespace im

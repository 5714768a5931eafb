#include "im/server/admin_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <atomic>

#include "im/server/metrics.hpp"

namespace im {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr int kMaxConnections = 32;
constexpr auto kTimeout = std::chrono::seconds(10);
constexpr std::uint32_t kMaxRequestBytes = 8 * 1024;
}  // namespace

struct AdminServer::State : std::enable_shared_from_this<AdminServer::State> {
    State(asio::io_context& io, const Metrics& m, ReadyCheck r)
        : acceptor(io), metrics(m), ready(std::move(r)) {}

    tcp::acceptor acceptor;
    const Metrics& metrics;
    ReadyCheck ready;
    int connections = 0;
    std::atomic<bool> stopped{false};  // set by stop() on any thread, read on the io thread

    http::response<http::string_body> handle(const http::request<http::string_body>& req) {
        http::response<http::string_body> res;
        res.version(req.version());
        res.keep_alive(req.keep_alive());
        res.set(http::field::server, "im-admin");
        const auto target = std::string_view(req.target().data(), req.target().size());
        const auto path = target.substr(0, target.find('?'));
        if (req.method() != http::verb::get && req.method() != http::verb::head) {
            res.result(http::status::method_not_allowed);
            res.set(http::field::content_type, "text/plain");
            res.body() = "method not allowed\n";
        } else if (path == "/metrics") {
            res.result(http::status::ok);
            res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            res.body() = metrics.text();
        } else if (path == "/healthz") {
            res.result(http::status::ok);
            res.set(http::field::content_type, "text/plain");
            res.body() = "ok\n";
        } else if (path == "/readyz") {
            const auto r = ready ? ready() : Readiness{};
            res.result(r.ready ? http::status::ok : http::status::service_unavailable);
            res.set(http::field::content_type, "text/plain");
            res.body() = (r.ready ? "ready" : "not ready") + (r.detail.empty() ? "" : ": " + r.detail) + "\n";
        } else {
            res.result(http::status::not_found);
            res.set(http::field::content_type, "text/plain");
            res.body() = "not found\n";
        }
        res.prepare_payload();
        if (req.method() == http::verb::head) res.body().clear();
        return res;
    }

    asio::awaitable<void> serve(tcp::socket socket) {
        auto self = shared_from_this();
        ++connections;
        beast::tcp_stream stream(std::move(socket));
        beast::flat_buffer buffer(kMaxRequestBytes);
        try {
            for (;;) {
                http::request_parser<http::string_body> parser;
                parser.header_limit(kMaxRequestBytes);
                parser.body_limit(kMaxRequestBytes);
                stream.expires_after(kTimeout);
                co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
                auto res = handle(parser.get());
                const bool keep = res.keep_alive();
                stream.expires_after(kTimeout);
                co_await http::async_write(stream, res, asio::use_awaitable);
                if (!keep || stopped) break;
            }
        } catch (const boost::system::system_error& e) {
            if (e.code() != http::error::end_of_stream && e.code() != beast::error::timeout &&
                e.code() != asio::error::operation_aborted) {
                spdlog::debug("admin: connection ended: {}", e.code().message());
            }
        }
        beast::error_code ec;
        stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        --connections;
    }

    asio::awaitable<void> accept_loop() {
        auto self = shared_from_this();
        while (!stopped) {
            boost::system::error_code ec;
            tcp::socket socket =
                co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                if (ec == asio::error::operation_aborted || stopped) break;
                spdlog::warn("admin: accept failed: {}", ec.message());
                continue;
            }
            if (connections >= kMaxConnections) continue;  // dropping the socket closes it
            asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
        }
    }
};

AdminServer::AdminServer(asio::io_context& io, const Metrics& metrics, ReadyCheck ready)
    : state_(std::make_shared<State>(io, metrics, std::move(ready))) {}

AdminServer::~AdminServer() { stop(); }

std::uint16_t AdminServer::start(const std::string& host, std::uint16_t port) {
    tcp::endpoint ep(asio::ip::make_address(host), port);
    tcp::acceptor acceptor(state_->acceptor.get_executor());
    acceptor.open(ep.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen();
    return start(std::move(acceptor));
}

std::uint16_t AdminServer::start(tcp::acceptor listening) {
    state_->acceptor = std::move(listening);
    asio::co_spawn(state_->acceptor.get_executor(), state_->accept_loop(), asio::detached);
    return state_->acceptor.local_endpoint().port();
}

void AdminServer::stop() {
    if (!state_ || state_->stopped.exchange(true)) return;
    // Closing must happen on the io thread; post it (the state outlives us via shared_ptr).
    asio::post(state_->acceptor.get_executor(), [s = state_] {
        beast::error_code ec;
        s->acceptor.close(ec);
    });
}

}  // namespace im

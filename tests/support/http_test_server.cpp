#include "http_test_server.hpp"

#include <sys/socket.h>

#include <cctype>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace im::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct HttpTestServer::Impl {
    explicit Impl(Handler h) : handler(std::move(h)), acceptor(io) {}
    Handler handler;
    asio::io_context io;
    tcp::acceptor acceptor;
    std::thread accept_thread;
    std::mutex mu;
    std::vector<std::thread> workers;
    std::vector<std::weak_ptr<tcp::socket>> conns;  // open connections, shut down by stop()
    std::vector<HttpTestRequest> seen;
    std::atomic<bool> stopping{false};

    void serve(const std::shared_ptr<tcp::socket>& conn) {
        auto& sock = *conn;
        beast::flat_buffer buf;
        for (;;) {
            http::request<http::string_body> req;
            beast::error_code ec;
            http::read(sock, buf, req, ec);
            if (ec) return;
            std::map<std::string, std::string> headers;
            for (const auto& field : req) {
                std::string name(field.name_string());
                for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                headers[name] = std::string(field.value());
            }
            HttpTestRequest r{std::string(req.method_string()), std::string(req.target()),
                              std::string(req[http::field::content_type]),
                              std::string(req[http::field::authorization]), req.body(), std::move(headers)};
            {
                std::lock_guard l(mu);
                seen.push_back(r);
            }
            const auto reply = handler(r);
            if (reply.delay.count() > 0) std::this_thread::sleep_for(reply.delay);
            if (stopping) return;
            http::response<http::string_body> res(static_cast<http::status>(reply.status), req.version());
            res.set(http::field::content_type, reply.content_type);
            res.keep_alive(req.keep_alive());
            res.body() = reply.body;
            res.prepare_payload();
            try {
                http::write(sock, res, ec);
            } catch (const std::exception&) {
                return;  // e.g. a body on a 204: Beast refuses to serialize it
            }
            if (ec || !req.keep_alive()) return;
        }
    }
};

HttpTestServer::HttpTestServer(Handler handler) : impl_(std::make_shared<Impl>(std::move(handler))) {
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen();
    port_ = impl_->acceptor.local_endpoint().port();
    impl_->accept_thread = std::thread([impl = impl_] {
        for (;;) {
            beast::error_code ec;
            auto sock = std::make_shared<tcp::socket>(impl->io);
            impl->acceptor.accept(*sock, ec);
            if (ec || impl->stopping) return;
            std::lock_guard l(impl->mu);
            impl->conns.push_back(sock);
            impl->workers.emplace_back([impl, sock] { impl->serve(sock); });
        }
    });
}

HttpTestServer::~HttpTestServer() { stop(); }

void HttpTestServer::stop() {
    if (impl_->stopping.exchange(true)) return;
    beast::error_code ec;
    // shutdown() wakes the blocking accept() without touching the acceptor object, which the
    // accept thread is using (closing it from here was a data race, found by TSan); it is
    // closed once that thread is gone.
    ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);
    if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
    impl_->acceptor.close(ec);
    std::vector<std::thread> workers;
    {
        std::lock_guard l(impl_->mu);
        workers.swap(impl_->workers);
        for (auto& weak : impl_->conns) {
            if (auto c = weak.lock()) c->shutdown(tcp::socket::shutdown_both, ec);  // wakes blocked reads
        }
    }
    for (auto& t : workers) t.join();
}

std::string HttpTestServer::url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::vector<HttpTestRequest> HttpTestServer::requests() const {
    std::lock_guard l(impl_->mu);
    return impl_->seen;
}

}  // namespace im::test

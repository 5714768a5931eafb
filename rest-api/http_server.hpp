#pragma once
// HTTP/1.1 server on Boost.Beast: keep-alive, optional TLS, bounded connections, header and body
// size limits (413, also for chunked bodies and lying Content-Lengths), timeouts on every read and
// write, 100-continue. Each connection is a coroutine on its own strand. Requests are handed to
// the Handler with a completion callback that may be called from any thread (the handler runs
// blocking work on a pool); the response is written back on the connection's strand.

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "http_types.hpp"

namespace im {
class Metrics;
}
namespace im::config {
class Binder;
}

namespace im::rest {

struct HttpServerConfig {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    std::uint32_t threads = 2;  // I/O threads
    std::uint32_t max_connections = 10000;
    std::uint32_t max_connections_per_address = 256;  // open connections per client IP; 0: no limit
    std::uint64_t max_body_bytes = 1 << 20;  // JSON bodies
    std::uint32_t max_header_bytes = 16 * 1024;
    std::chrono::milliseconds read_timeout{15000};   // to read one whole request once it started
    std::chrono::milliseconds idle_timeout{60000};   // keep-alive wait for the next request
    std::chrono::milliseconds write_timeout{30000};
    bool tls_enabled = false;
    std::string tls_cert_file;  // PEM chain
    std::string tls_key_file;   // PEM private key
};

void bind(config::Binder& b, HttpServerConfig& c);  // keys http.*, tls.*

// Requests whose body is streamed to a BodySink instead of being buffered (file uploads).
struct UploadRoute {
    // On the I/O thread, with the decoded path.
    std::function<bool(const std::string& method, const std::string& path)> matches;
    // The request head (no body); done() may be called from any thread, exactly once.
    std::function<void(HttpRequest head, std::function<void(UploadStart)> done)> begin;
    std::uint64_t max_body_bytes = 0;  // a larger declared length is refused before reading (413)
    std::size_t chunk_bytes = 256 * 1024;  // read buffer per upload
};

class HttpServer {
public:
    using Respond = std::function<void(HttpResponse)>;
    using Handler = std::function<void(HttpRequest, Respond)>;

    HttpServer(boost::asio::io_context& io, HttpServerConfig config, Handler handler, Metrics& metrics);
    ~HttpServer();

    // Streamed uploads; call before start().
    void set_upload_route(UploadRoute route);

    // Loads TLS material, binds and starts accepting. Returns the bound port. Throws on failure.
    std::uint16_t start();
    // Stops accepting; live connections finish their current request and close (drain).
    void stop_accepting();
    std::size_t active_connections() const;
    // Requests read and not yet fully answered: graceful shutdown waits for this to reach 0.
    std::size_t in_flight_requests() const;

private:
    struct State;
    std::shared_ptr<State> state_;
};

}  // namespace im::rest

#include "http_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <spdlog/spdlog.h>

#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "http_request.hpp"
#include "im/server/config.hpp"
#include "im/server/metrics.hpp"

namespace im::rest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

void bind(config::Binder& b, HttpServerConfig& c) {
    b.bind("http.host", c.host);
    b.bind("http.port", c.port, 0, 65535);
    b.bind("http.threads", c.threads, 1, 64);
    b.bind("http.max_connections", c.max_connections, 1, 1'000'000);
    b.bind("http.max_connections_per_address", c.max_connections_per_address, 0, 1'000'000);
    b.bind_size("http.max_body_bytes", c.max_body_bytes, 1024, 1ull << 30);
    b.bind("http.max_header_bytes", c.max_header_bytes, 1024, 1 << 20);
    b.bind_duration("http.read_timeout", c.read_timeout, std::chrono::milliseconds(100), std::chrono::hours(1));
    b.bind_duration("http.idle_timeout", c.idle_timeout, std::chrono::milliseconds(100), std::chrono::hours(1));
    b.bind_duration("http.write_timeout", c.write_timeout, std::chrono::milliseconds(100), std::chrono::hours(1));
    b.bind("tls.enabled", c.tls_enabled);
    b.bind("tls.cert_file", c.tls_cert_file);
    b.bind("tls.key_file", c.tls_key_file);
    b.require(!c.tls_enabled || !c.tls_cert_file.empty(), "tls.cert_file", "required when tls.enabled is true");
    b.require(!c.tls_enabled || !c.tls_key_file.empty(), "tls.key_file", "required when tls.enabled is true");
}

namespace {

// Runs the handler and resumes the coroutine on its own executor with the response.
template <class Token>
auto async_handle(const HttpServer::Handler& handler, HttpRequest req, Token&& token) {
    return asio::async_initiate<Token, void(HttpResponse)>(
        [&handler](auto completion, HttpRequest r) {
            auto ex = asio::get_associated_executor(completion);
            auto work = asio::make_work_guard(ex);
            auto shared = std::make_shared<decltype(completion)>(std::move(completion));
            handler(std::move(r), [ex, shared, work](HttpResponse resp) mutable {
                asio::post(ex, [shared, resp = std::move(resp)]() mutable { (*shared)(std::move(resp)); });
                work.reset();
            });
        },
        token, std::move(req));
}

// The upload route's begin(): same shape as async_handle (the request is an initiation argument).
template <class Token>
auto async_begin_upload(const UploadRoute& route, HttpRequest head, Token&& token) {
    return asio::async_initiate<Token, void(UploadStart)>(
        [&route](auto completion, HttpRequest r) {
            auto ex = asio::get_associated_executor(completion);
            auto work = asio::make_work_guard(ex);
            auto shared = std::make_shared<decltype(completion)>(std::move(completion));
            route.begin(std::move(r), [ex, shared, work](UploadStart st) mutable {
                asio::post(ex,
                           [shared, st = std::move(st)]() mutable { (*shared)(std::move(st)); });
                work.reset();
            });
        },
        token, std::move(head));
}

// BodySink::finish(), resumed on the connection's executor with its response.
template <class Token>
auto async_finish_upload(std::shared_ptr<BodySink> sink, Token&& token) {
    return asio::async_initiate<Token, void(HttpResponse)>(
        [](auto completion, std::shared_ptr<BodySink> s) {
            auto ex = asio::get_associated_executor(completion);
            auto work = asio::make_work_guard(ex);
            auto shared = std::make_shared<decltype(completion)>(std::move(completion));
            s->finish([ex, shared, work](HttpResponse resp) mutable {
                asio::post(
                    ex, [shared, resp = std::move(resp)]() mutable { (*shared)(std::move(resp)); });
                work.reset();
            });
        },
        token, std::move(sink));
}

template <class Body>
void fill_head(http::response<Body>& out, const HttpResponse& res, bool keep_alive) {
    out.set(http::field::server, "im-rest");
    if (!res.content_type.empty()) out.set(http::field::content_type, res.content_type);
    for (const auto& [k, v] : res.headers) out.set(k, v);
    out.keep_alive(keep_alive && !res.close);
}

http::response<http::string_body> to_beast(const HttpResponse& res, unsigned version,
                                           bool keep_alive) {
    http::response<http::string_body> out(static_cast<http::status>(res.status), version);
    fill_head(out, res, keep_alive);
    out.body() = res.body;
    out.prepare_payload();
    return out;
}

// Counts a request in flight for as long as it lives (graceful shutdown waits for 0).
struct InFlight {
    explicit InFlight(std::atomic<std::size_t>& c) : count(c) { count.fetch_add(1); }
    ~InFlight() { count.fetch_sub(1); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    std::atomic<std::size_t>& count;
};

constexpr std::size_t kFileChunkBytes = 256 * 1024;

}  // namespace

struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
    State(asio::io_context& io_, HttpServerConfig c, Handler h, Metrics& m)
        : io(io_), config(std::move(c)), handler(std::move(h)), acceptor(io_), tls(ssl::context::tls_server),
          connections_gauge(m.gauge("im_http_connections", "Open HTTP connections.")),
          rejected_connections(m.counter("im_http_connections_rejected_total",
                                         "Connections closed at accept because max_connections was reached.")),
          rejected_per_address(m.counter("im_rest_rate_limited_total", "Requests refused by an abuse limit (429).",
                                         {{"limit", "connections_per_address"}})),
          too_large(m.counter("im_http_body_too_large_total", "Requests refused with 413.")),
          bad_requests(m.counter("im_http_bad_requests_total", "Unparsable HTTP requests.")) {}

    asio::io_context& io;
    HttpServerConfig config;
    Handler handler;
    tcp::acceptor acceptor;
    ssl::context tls;
    std::atomic<std::size_t> active{0};
    std::atomic<std::size_t> in_flight{0};  // requests being handled or answered
    std::atomic<bool> draining{false};
    prometheus::Gauge& connections_gauge;
    prometheus::Counter& rejected_connections;
    prometheus::Counter& rejected_per_address;
    std::mutex addresses_mu;
    std::unordered_map<std::string, std::uint32_t> per_address;  // open connections by client IP
    prometheus::Counter& too_large;
    prometheus::Counter& bad_requests;
    UploadRoute upload;

    // Writes a response; false on failure (the connection is then closed).
    template <class Stream>
    asio::awaitable<bool> write(Stream& stream, http::response<http::string_body>& res) {
        error_code ec;
        beast::get_lowest_layer(stream).expires_after(config.write_timeout);
        co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
        co_return !ec;
    }

    // Writes a response whose body is a file, in bounded chunks read with pread() (page cache
    // reads of kFileChunkBytes: short). The write timeout applies per chunk. False on failure.
    template <class Stream>
    asio::awaitable<bool> write_file(Stream& stream, const HttpResponse& out, unsigned version,
                                     bool keep_alive) {
        FileBody& f = *out.file;
        http::response<http::buffer_body> res(static_cast<http::status>(out.status), version);
        fill_head(res, out, keep_alive);
        res.content_length(f.length);
        res.body().data = nullptr;
        res.body().more = f.length > 0;
        http::response_serializer<http::buffer_body> sr(res);
        error_code ec;
        beast::get_lowest_layer(stream).expires_after(config.write_timeout);
        co_await http::async_write_header(stream, sr,
                                          asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return false;
        std::vector<char> chunk(
            static_cast<std::size_t>(std::min<std::uint64_t>(kFileChunkBytes, f.length)));
        std::uint64_t done = 0;
        while (done < f.length) {
            const auto want =
                static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), f.length - done));
            const ssize_t n =
                ::pread(f.fd, chunk.data(), want, static_cast<off_t>(f.offset + done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                spdlog::error("http: reading a file body failed after {} bytes: {}", done,
                              n < 0 ? std::strerror(errno) : "unexpected end of file");
                co_return false;  // the client sees a short body and a closed connection
            }
            done += static_cast<std::uint64_t>(n);
            res.body().data = chunk.data();
            res.body().size = static_cast<std::size_t>(n);
            res.body().more = done < f.length;
            beast::get_lowest_layer(stream).expires_after(config.write_timeout);
            co_await http::async_write(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
            if (ec == http::error::need_buffer) ec = {};
            if (ec) co_return false;
            if (f.on_bytes) f.on_bytes(static_cast<std::uint64_t>(n));
        }
        if (!sr.is_done()) {
            beast::get_lowest_layer(stream).expires_after(config.write_timeout);
            co_await http::async_write(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
            if (ec && ec != http::error::need_buffer) co_return false;
        }
        co_return res.keep_alive();
    }

    // Writes any response; false when the connection must close (failure or no keep-alive).
    template <class Stream>
    asio::awaitable<bool> respond(Stream& stream, const HttpResponse& out, unsigned version,
                                  bool keep_alive) {
        if (out.file)
            co_return co_await write_file(stream, out, version, keep_alive && !draining.load());
        auto res = to_beast(out, version, keep_alive && !draining.load());
        const bool written = co_await write(stream, res);
        co_return written&& res.keep_alive();
    }

    // Answers an upload without reading (the rest of) its body: the connection cannot be reused.
    template <class Stream>
    asio::awaitable<bool> refuse_upload(Stream& stream, unsigned version, const HttpResponse& r) {
        HttpResponse closing = r;
        closing.close = true;
        co_await respond(stream, closing, version, false);
        co_return false;
    }

    // A streamed upload (UploadRoute): the head goes to the handler first (authentication,
    // validation), then the body is read in chunks of upload.chunk_bytes into its sink, with the
    // read timeout per chunk. Returns whether the connection stays open.
    template <class Stream>
    asio::awaitable<bool> serve_upload(Stream& stream, beast::flat_buffer& buffer,
                                       http::request_parser<http::string_body>& parser,
                                       const std::string& peer) {
        InFlight guard(in_flight);
        const unsigned version = parser.get().version();
        const bool keep_alive = parser.get().keep_alive();
        bool bad_target = false;
        HttpRequest head =
            to_request(static_cast<const http::request_header<>&>(parser.get()), peer, bad_target);
        if (bad_target)
            co_return co_await refuse_upload(
                stream, version,
                HttpResponse::error(400, "bad_request", "malformed request target"));
        if (parser.content_length() && *parser.content_length() > upload.max_body_bytes) {
            too_large.Increment();
            co_return co_await refuse_upload(
                stream, version,
                HttpResponse::error(
                    413, "payload_too_large",
                    "the file exceeds " + std::to_string(upload.max_body_bytes) + " bytes"));
        }
        UploadStart start =
            co_await async_begin_upload(upload, std::move(head), asio::use_awaitable);
        if (!start.sink)
            co_return co_await refuse_upload(stream, version, std::move(start.refusal));

        error_code ec;
        if (beast::iequals(parser.get()[http::field::expect], "100-continue") &&
            !parser.is_done()) {
            http::response<http::empty_body> cont(http::status::continue_, version);
            beast::get_lowest_layer(stream).expires_after(config.write_timeout);
            co_await http::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
            if (ec) co_return false;
        }
        http::request_parser<http::buffer_body> body(std::move(parser));
        body.body_limit(upload.max_body_bytes);
        // Beast reads at most the buffer's free capacity (at least 512 bytes): without room, a
        // body arrives in header-sized reads (~100000 recvmsg calls for 50 MiB).
        buffer.reserve(64 * 1024);
        std::vector<char> chunk(upload.chunk_bytes);
        while (!body.is_done()) {
            body.get().body().data = chunk.data();
            body.get().body().size = chunk.size();
            beast::get_lowest_layer(stream).expires_after(config.read_timeout);
            co_await http::async_read(stream, buffer, body,
                                      asio::redirect_error(asio::use_awaitable, ec));
            if (ec == http::error::need_buffer) ec = {};
            const std::size_t n = chunk.size() - body.get().body().size;
            if (n > 0 && !start.sink->write(chunk.data(), n))
                co_return co_await refuse_upload(stream, version, start.sink->failure());
            if (ec) break;
        }
        if (ec == http::error::body_limit) {
            too_large.Increment();
            co_return co_await refuse_upload(
                stream, version,
                HttpResponse::error(
                    413, "payload_too_large",
                    "the file exceeds " + std::to_string(upload.max_body_bytes) + " bytes"));
        }
        if (ec) {
            spdlog::debug("http: upload from {} aborted: {}", peer, ec.message());
            co_return false;  // the sink is dropped: what was written is deleted
        }
        HttpResponse out = co_await async_finish_upload(start.sink, asio::use_awaitable);
        co_return co_await respond(stream, out, version, keep_alive && !draining.load());
    }

    template <class Stream>
    asio::awaitable<void> serve(Stream& stream, std::string peer) {
        beast::flat_buffer buffer;
        bool first = true;
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.header_limit(config.max_header_bytes);
            // The declared length is checked against the route's own limit once the head is known.
            parser.body_limit(std::max(config.max_body_bytes, upload.max_body_bytes));
            error_code ec;

            // Header: the idle timeout applies while waiting for a keep-alive request.
            beast::get_lowest_layer(stream).expires_after(first ? config.read_timeout : config.idle_timeout);
            co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
            if (!ec && upload.matches) {
                const std::string_view target(parser.get().target().data(),
                                              parser.get().target().size());
                const auto path = url_decode(target.substr(0, target.find('?')), false);
                if (path && upload.matches(std::string(parser.get().method_string()), *path)) {
                    first = false;
                    if (!co_await serve_upload(stream, buffer, parser, peer)) co_return;
                    continue;
                }
            }
            if (!ec) {
                parser.body_limit(config.max_body_bytes);
                if (parser.content_length() && *parser.content_length() > config.max_body_bytes) {
                    ec = http::error::body_limit;
                }
            }
            if (!ec) {
                const auto& h = parser.get();
                auto expect = h[http::field::expect];
                if (beast::iequals(expect, "100-continue") && !parser.is_done()) {
                    http::response<http::empty_body> cont(http::status::continue_, h.version());
                    beast::get_lowest_layer(stream).expires_after(config.write_timeout);
                    co_await http::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
                }
            }
            if (!ec && !parser.is_done()) {
                beast::get_lowest_layer(stream).expires_after(config.read_timeout);
                co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
            }
            first = false;
            if (ec == http::error::end_of_stream || ec == asio::error::eof ||
                ec == asio::error::connection_reset || ec == beast::error::timeout ||
                ec == asio::error::operation_aborted) {
                co_return;
            }
            if (ec == http::error::body_limit || ec == http::error::header_limit) {
                too_large.Increment();
                auto res = to_beast(HttpResponse::error(413, "payload_too_large",
                                                        ec == http::error::body_limit
                                                            ? "request body exceeds " +
                                                                  std::to_string(config.max_body_bytes) + " bytes"
                                                            : "request header too large"),
                                    11, false);
                co_await write(stream, res);
                co_return;
            }
            if (ec) {
                bad_requests.Increment();
                auto res = to_beast(HttpResponse::error(400, "bad_request", "malformed HTTP request"), 11, false);
                co_await write(stream, res);
                co_return;
            }

            auto in = parser.release();
            const unsigned version = in.version();
            const bool keep_alive = in.keep_alive() && !draining.load();
            bool bad_target = false;
            HttpRequest req = to_request(std::move(in), peer, bad_target);
            HttpResponse out;
            InFlight guard(in_flight);
            if (bad_target) {
                out = HttpResponse::error(400, "bad_request", "malformed request target");
            } else {
                out = co_await async_handle(handler, std::move(req), asio::use_awaitable);
            }
            if (!co_await respond(stream, out, version, keep_alive)) co_return;
        }
    }

    asio::awaitable<void> plain_session(tcp::socket socket, std::string peer) {
        beast::tcp_stream stream(std::move(socket));
        co_await serve(stream, peer);
        error_code ec;
        stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    }

    asio::awaitable<void> tls_session(tcp::socket socket, std::string peer) {
        beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), tls);
        error_code ec;
        beast::get_lowest_layer(stream).expires_after(config.read_timeout);
        co_await stream.async_handshake(ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
            spdlog::debug("http: TLS handshake with {} failed: {}", peer, ec.message());
            co_return;
        }
        co_await serve(stream, peer);
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
        co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
    }

    // http.max_connections_per_address: counts one more connection of `peer`, unless it has the
    // maximum already. The table holds only addresses with open connections.
    bool add_address(const std::string& peer) {
        if (config.max_connections_per_address == 0) return true;
        std::lock_guard lock(addresses_mu);
        auto& n = per_address[peer];
        if (n >= config.max_connections_per_address) return false;  // n >= 1: the entry existed
        ++n;
        return true;
    }
    void remove_address(const std::string& peer) {
        if (config.max_connections_per_address == 0) return;
        std::lock_guard lock(addresses_mu);
        auto it = per_address.find(peer);
        if (it != per_address.end() && --it->second == 0) per_address.erase(it);
    }
    // A connection over the limit gets a canned 429 without being read (plain HTTP; a TLS
    // connection is just closed: the handshake is what the refusal saves).
    void refuse_connection(tcp::socket& socket) {
        error_code ec;
        if (!config.tls_enabled) {
            static const std::string body =
                R"({"error":{"code":"rate_limited","message":"too many connections from this address"}})";
            static const std::string response =
                "HTTP/1.1 429 Too Many Requests\r\nServer: im-rest\r\nContent-Type: application/json\r\n"
                "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n\r\n" + body;
            socket.non_blocking(true, ec);
            socket.send(asio::buffer(response), 0, ec);  // a fresh socket's buffer takes it, or nothing
            socket.shutdown(tcp::socket::shutdown_send, ec);
        }
        socket.close(ec);
    }

    asio::awaitable<void> session(tcp::socket socket, std::string peer) {
        auto self = shared_from_this();
        error_code ec;
        socket.set_option(tcp::no_delay(true), ec);
        connections_gauge.Increment();
        try {
            if (config.tls_enabled) co_await tls_session(std::move(socket), peer);
            else co_await plain_session(std::move(socket), peer);
        } catch (const std::exception& e) {
            spdlog::warn("http: connection from {} ended with an exception: {}", peer, e.what());
        }
        connections_gauge.Decrement();
        remove_address(peer);
        active.fetch_sub(1);
    }

    asio::awaitable<void> accept_loop() {
        auto self = shared_from_this();
        for (;;) {
            error_code ec;
            // Each connection gets its own strand: timers and I/O of one connection never race.
            tcp::socket socket(asio::make_strand(io));
            co_await acceptor.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
            if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
            if (ec) {
                spdlog::warn("http: accept failed: {}", ec.message());
                if (ec == asio::error::no_descriptors) {
                    asio::steady_timer t(io, std::chrono::milliseconds(100));
                    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                }
                continue;
            }
            if (active.load() >= config.max_connections) {
                rejected_connections.Increment();
                continue;  // closing the socket is the cheapest refusal
            }
            const auto ep = socket.remote_endpoint(ec);
            if (ec) continue;  // already gone
            std::string peer = ep.address().to_string();
            if (!add_address(peer)) {
                rejected_per_address.Increment();
                refuse_connection(socket);
                continue;
            }
            active.fetch_add(1);
            auto ex = socket.get_executor();
            asio::co_spawn(ex, session(std::move(socket), std::move(peer)), asio::detached);
        }
    }
};

HttpServer::HttpServer(asio::io_context& io, HttpServerConfig config, Handler handler, Metrics& metrics)
    : state_(std::make_shared<State>(io, std::move(config), std::move(handler), metrics)) {}

HttpServer::~HttpServer() = default;

void HttpServer::set_upload_route(UploadRoute route) {
    state_->upload = std::move(route);
}

std::uint16_t HttpServer::start() {
    auto& s = *state_;
    if (s.config.tls_enabled) {
        s.tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                          ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
        s.tls.use_certificate_chain_file(s.config.tls_cert_file);
        s.tls.use_private_key_file(s.config.tls_key_file, ssl::context::pem);
    }
    tcp::endpoint ep(asio::ip::make_address(s.config.host), s.config.port);
    s.acceptor.open(ep.protocol());
    s.acceptor.set_option(asio::socket_base::reuse_address(true));
    s.acceptor.bind(ep);
    s.acceptor.listen(asio::socket_base::max_listen_connections);
    asio::co_spawn(s.acceptor.get_executor(), s.accept_loop(), asio::detached);
    return s.acceptor.local_endpoint().port();
}

void HttpServer::stop_accepting() {
    state_->draining = true;
    asio::post(state_->acceptor.get_executor(), [s = state_] {
        error_code ec;
        s->acceptor.close(ec);
    });
}

std::size_t HttpServer::active_connections() const { return state_->active.load(); }

std::size_t HttpServer::in_flight_requests() const { return state_->in_flight.load(); }

}  // namespace im::rest

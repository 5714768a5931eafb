#include "rest_login.hpp"

#include <openssl/ssl.h>

#include <charconv>
#include <memory>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "json_lite.hpp"
#include "tls_sni.hpp"

namespace imclient::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kMaxAnswerBytes = 64 * 1024;

bool valid_port(std::string_view p) {
    unsigned v = 0;
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    return ec == std::errc() && end == p.data() + p.size() && v > 0 && v < 65536;
}

RestLoginResult failure(ErrorCode code, std::string message, int status = 0) {
    RestLoginResult r;
    r.code = code;
    r.message = std::move(message);
    r.status = status;
    return r;
}

template <class Stream>
asio::awaitable<void> exchange(Stream& stream, beast::tcp_stream& tcp_layer,
                               http::request<http::string_body>& req,
                               std::chrono::milliseconds timeout, RestLoginResult& out) {
    boost::system::error_code ec;
    tcp_layer.expires_after(timeout);
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        out = failure(ErrorCode::unreachable, "im-rest: write: " + ec.message());
        co_return;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxAnswerBytes);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        out = failure(ErrorCode::unreachable, "im-rest: read: " + ec.message());
        co_return;
    }
    const auto& res = parser.get();
    parse_login_answer(static_cast<int>(res.result_int()), res.body(), out);
}

asio::awaitable<void> run(asio::io_context& io, RestLoginRequest request,
                          std::function<void(RestLoginResult)> done) {
    RestLoginResult result;
    const auto url = parse_rest_url(request.rest_url);
    if (!url) {
        done(failure(ErrorCode::invalid_argument, "imclient: bad rest_url"));
        co_return;
    }
    http::request<http::string_body> req{http::verb::post, url->base_path + "/v1/sessions", 11};
    req.set(http::field::host, url->host_header);
    req.set(http::field::user_agent, request.client_version);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "application/json");
    req.body() = "{\"username\":" + json_quote(request.username) +
                 ",\"password\":" + json_quote(request.password) +
                 ",\"device_id\":" + json_quote(request.device_id) + "}";
    req.prepare_payload();

    boost::system::error_code ec;
    tcp::resolver resolver(io);
    const auto endpoints = co_await resolver.async_resolve(
        url->host, url->port, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        done(
            failure(ErrorCode::unreachable, "im-rest: resolve " + url->host + ": " + ec.message()));
        co_return;
    }
    if (!url->tls) {
        beast::tcp_stream stream(io);
        stream.expires_after(request.connect_timeout);
        co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
            done(failure(ErrorCode::unreachable, "im-rest: connect: " + ec.message()));
            co_return;
        }
        co_await exchange(stream, stream, req, request.request_timeout, result);
        stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        done(std::move(result));
        co_return;
    }

    ssl::context ctx(ssl::context::tls_client);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (request.tls_ca_file.empty()) {
        ctx.set_default_verify_paths(ec);
    } else {
        ctx.load_verify_file(request.tls_ca_file, ec);
    }
    if (ec) {
        done(failure(ErrorCode::invalid_argument, "imclient: CA file: " + ec.message()));
        co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
    set_sni(stream.native_handle(), url->host);
    stream.set_verify_mode(ssl::verify_peer);
    stream.set_verify_callback(ssl::host_name_verification(url->host));
    beast::get_lowest_layer(stream).expires_after(request.connect_timeout);
    co_await beast::get_lowest_layer(stream).async_connect(
        endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
        co_await stream.async_handshake(ssl::stream_base::client,
                                        asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
        done(failure(ErrorCode::unreachable, "im-rest: connect: " + ec.message()));
        co_return;
    }
    co_await exchange(stream, beast::get_lowest_layer(stream), req, request.request_timeout,
                      result);
    beast::get_lowest_layer(stream).close();
    done(std::move(result));
}

}  // namespace

std::optional<RestUrl> parse_rest_url(std::string_view url) {
    RestUrl out;
    if (url.substr(0, 7) == "http://") {
        url.remove_prefix(7);
    } else if (url.substr(0, 8) == "https://") {
        out.tls = true;
        url.remove_prefix(8);
    } else {
        return std::nullopt;
    }
    const auto slash = url.find('/');
    std::string_view authority = url.substr(0, slash);
    std::string_view path =
        slash == std::string_view::npos ? std::string_view{} : url.substr(slash);
    while (!path.empty() && path.back() == '/')
        path.remove_suffix(1);
    if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
    out.host_header = std::string(authority);
    std::string_view port;
    if (authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        out.host = std::string(authority.substr(1, close - 1));
        const auto rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return std::nullopt;
            port = rest.substr(1);
        }
    } else {
        const auto colon = authority.rfind(':');
        out.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    }
    if (out.host.empty()) return std::nullopt;
    if (port.empty()) {
        out.port = out.tls ? "443" : "80";
    } else {
        if (!valid_port(port)) return std::nullopt;
        out.port = std::string(port);
    }
    out.base_path = std::string(path);
    return out;
}

void parse_login_answer(int status, std::string_view body, RestLoginResult& out) {
    out.status = status;
    const auto json = parse_json(body);
    if (status == 200 || status == 201) {
        const JsonValue* token = json ? json->find("token") : nullptr;
        const JsonValue* user = json ? json->find("user") : nullptr;
        const JsonValue* id = user ? user->find("id") : nullptr;
        if (!token || !token->as_string() || !id || !id->as_u64()) {
            out.code = ErrorCode::rest_error;
            out.message = "im-rest: malformed login answer";
            return;
        }
        out.code = ErrorCode::none;
        out.token = *token->as_string();
        out.user_id = *id->as_u64();
        if (const JsonValue* list = json->find("connectors");
            list && list->type == JsonValue::Type::array) {
            for (const auto& c : list->items) {
                if (const auto* s = c.as_string()) out.connectors.push_back(*s);
            }
        }
        return;
    }
    out.code = status == 401 ? ErrorCode::unauthenticated : ErrorCode::rest_error;
    out.message = "im-rest: HTTP " + std::to_string(status);
    const JsonValue* err = json ? json->find("error") : nullptr;
    if (err) {
        const JsonValue* code = err->find("code");
        const JsonValue* message = err->find("message");
        if (code && code->as_string()) out.message += " " + *code->as_string();
        if (message && message->as_string()) out.message += ": " + *message->as_string();
    }
}

void rest_login(asio::io_context& io, RestLoginRequest request,
                std::function<void(RestLoginResult)> done) {
    asio::co_spawn(io, run(io, std::move(request), std::move(done)), asio::detached);
}

}  // namespace imclient::detail

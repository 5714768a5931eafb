#include "rest_call.hpp"

#include <openssl/ssl.h>

#include <utility>

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

#include "rest_login.hpp"
#include "tls_sni.hpp"

namespace imclient::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

RestAnswer failure(ErrorCode code, std::string message) {
    RestAnswer a;
    a.code = code;
    a.message = std::move(message);
    return a;
}

template <class Stream>
asio::awaitable<RestAnswer> exchange(Stream& stream, beast::tcp_stream& tcp_layer,
                                     http::request<http::string_body>& req, const RestCall& call) {
    boost::system::error_code ec;
    tcp_layer.expires_after(call.request_timeout);
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return failure(ErrorCode::unreachable, "im-rest: write: " + ec.message());
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(call.max_answer_bytes);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return failure(ErrorCode::unreachable, "im-rest: read: " + ec.message());
    RestAnswer a;
    a.status = static_cast<int>(parser.get().result_int());
    a.body = std::move(parser.get().body());
    co_return a;
}

asio::awaitable<RestAnswer> run(asio::io_context& io, const RestCall& call) {
    const auto url = parse_rest_url(call.rest_url);
    if (!url) co_return failure(ErrorCode::invalid_argument, "imclient: bad rest_url");
    const auto method = http::string_to_verb(call.method);
    if (method == http::verb::unknown) {
        co_return failure(ErrorCode::invalid_argument, "imclient: bad HTTP method");
    }
    http::request<http::string_body> req{method, url->base_path + call.target, 11};
    req.set(http::field::host, url->host_header);
    req.set(http::field::user_agent, call.user_agent);
    req.set(http::field::accept, "application/json");
    if (!call.bearer_token.empty()) {
        req.set(http::field::authorization, "Bearer " + call.bearer_token);
    }
    if (!call.json_body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = call.json_body;
    }
    req.prepare_payload();

    boost::system::error_code ec;
    tcp::resolver resolver(io);
    const auto endpoints = co_await resolver.async_resolve(
        url->host, url->port, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        co_return failure(ErrorCode::unreachable,
                          "im-rest: resolve " + url->host + ": " + ec.message());
    }
    if (!url->tls) {
        beast::tcp_stream stream(io);
        stream.expires_after(call.connect_timeout);
        co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return failure(ErrorCode::unreachable, "im-rest: connect: " + ec.message());
        auto answer = co_await exchange(stream, stream, req, call);
        stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        co_return answer;
    }

    auto ctx = tls_client_context(call.tls_ca_file, ec);
    if (ec) co_return failure(ErrorCode::invalid_argument, "imclient: CA file: " + ec.message());
    beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
    set_sni(stream.native_handle(), url->host);
    stream.set_verify_mode(ssl::verify_peer);
    stream.set_verify_callback(ssl::host_name_verification(url->host));
    beast::get_lowest_layer(stream).expires_after(call.connect_timeout);
    co_await beast::get_lowest_layer(stream).async_connect(
        endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
        co_await stream.async_handshake(ssl::stream_base::client,
                                        asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) co_return failure(ErrorCode::unreachable, "im-rest: connect: " + ec.message());
    auto answer = co_await exchange(stream, beast::get_lowest_layer(stream), req, call);
    beast::get_lowest_layer(stream).close();
    co_return answer;
}

// Parameters by value: they live in the coroutine frame.
asio::awaitable<void> run_and_report(asio::io_context& io, RestCall call,
                                     std::function<void(RestAnswer)> done) {
    done(co_await run(io, call));
}

}  // namespace

void rest_call(asio::io_context& io, RestCall call, std::function<void(RestAnswer)> done) {
    asio::co_spawn(io, run_and_report(io, std::move(call), std::move(done)), asio::detached);
}

}  // namespace imclient::detail

// The HTTP(S) POST behind the external login service and the push webhook (see http_client.hpp).
//
// It runs on a blocking thread but still uses asynchronous Beast operations on a private
// io_context, because only those honour tcp_stream's expiry: the synchronous calls would wait for
// the kernel's timeouts.

#include "http_client.hpp"

#include <algorithm>
#include <charconv>
#include <exception>
#include <type_traits>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace im::rest {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kUserAgent = "im-rest";

// ---- URL -----------------------------------------------------------------------------------

struct ServiceUrl {
    bool tls = false;
    std::string host;         // for DNS, SNI and certificate checks: no brackets around IPv6
    std::string port;         // numeric
    std::string host_header;  // the authority as written: host[:port]
    std::string target;       // path and query, never empty
};

bool starts_with_ci(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        const auto lower = s[i] >= 'A' && s[i] <= 'Z' ? static_cast<char>(s[i] - 'A' + 'a') : s[i];
        if (lower != prefix[i]) return false;
    }
    return true;
}

bool is_host_name_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_';
}

// Accepts http://host[:port][/path][?query] and https://... (IPv6 as [addr]); a #fragment is
// dropped. Anything else (other schemes, user:password@, spaces, a bad port) is refused with a
// reason that never repeats the URL itself (its query may hold a key).
std::optional<ServiceUrl> parse_service_url(std::string_view url, std::string& why) {
    ServiceUrl u;
    std::string_view rest;
    if (starts_with_ci(url, "http://")) {
        rest = url.substr(7);
        u.port = "80";
    } else if (starts_with_ci(url, "https://")) {
        rest = url.substr(8);
        u.tls = true;
        u.port = "443";
    } else {
        why = url.empty() ? "empty" : "scheme must be http:// or https://";
        return std::nullopt;
    }
    const bool has_control = std::any_of(url.begin(), url.end(), [](char ch) {
        const auto byte = static_cast<unsigned char>(ch);
        return byte <= 0x20 || byte == 0x7f;
    });
    if (has_control) {
        why = "contains a space or a control character";
        return std::nullopt;
    }

    const auto authority_end = rest.find_first_of("/?#");
    const auto authority = rest.substr(0, authority_end);
    auto tail =
        authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
    if (authority.find('@') != std::string_view::npos) {
        why = "user info (user:password@) is not supported";
        return std::nullopt;
    }

    std::string_view host;
    std::optional<std::string_view> port;
    if (!authority.empty() && authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) {
            why = "unterminated IPv6 address";
            return std::nullopt;
        }
        host = authority.substr(1, close - 1);
        const auto after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                why = "unexpected characters after the IPv6 address";
                return std::nullopt;
            }
            port = after.substr(1);
        }
        beast::error_code ec;
        asio::ip::make_address_v6(std::string(host), ec);
        if (ec) {
            why = "invalid IPv6 address";
            return std::nullopt;
        }
    } else {
        const auto colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) port = authority.substr(colon + 1);
        if (!std::all_of(host.begin(), host.end(), is_host_name_char)) {
            why = "invalid character in the host name";
            return std::nullopt;
        }
    }
    if (host.empty()) {
        why = "no host";
        return std::nullopt;
    }
    if (port) {
        unsigned value = 0;
        const auto* first = port->data();
        const auto* last = first + port->size();
        const auto [ptr, ec] = std::from_chars(first, last, value);
        if (port->empty() || ec != std::errc{} || ptr != last || value == 0 || value > 65535) {
            why = "port must be a number from 1 to 65535";
            return std::nullopt;
        }
        u.port = std::to_string(value);
    }

    if (const auto hash = tail.find('#'); hash != std::string_view::npos)
        tail = tail.substr(0, hash);
    u.host = std::string(host);
    u.host_header = std::string(authority);
    if (tail.empty()) {
        u.target = "/";
    } else if (tail.front() == '?') {
        u.target = "/" + std::string(tail);
    } else {
        u.target = std::string(tail);
    }
    return u;
}

// ---- One HTTP exchange ---------------------------------------------------------------------

struct Deadlines {
    Clock::time_point connect;  // resolve + TCP connect + TLS handshake (as curl counts it)
    Clock::time_point request;  // the whole call
};

struct Exchange {
    beast::error_code ec;
    const char* step = "";  // where ec happened
    std::string problem;    // a readable reason for a "tls setup" failure
    unsigned status = 0;
    std::string body;
};

template <class Stream>
asio::awaitable<void> post_json(Stream& stream, tcp::resolver& resolver,
                                asio::steady_timer& resolve_timer, const ServiceUrl& url,
                                const std::string& json, const HttpHeaders& headers,
                                Deadlines deadlines, Exchange& out) {
    constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;
    auto& tcp_layer = beast::get_lowest_layer(stream);
    beast::error_code ec;
    auto token = [&ec] { return asio::redirect_error(asio::use_awaitable, ec); };
    auto failed = [&](const char* step) {
        if (!ec) return false;
        out.ec = ec;
        out.step = step;
        return true;
    };

    // The resolver has no expiry of its own. Cancelling it stops a lookup that has not started;
    // one already inside getaddrinfo() finishes first, bounded by the system resolver's timeouts.
    resolve_timer.expires_at(deadlines.connect);
    resolve_timer.async_wait([&resolver](beast::error_code wait_ec) {
        if (!wait_ec) resolver.cancel();
    });
    const auto endpoints = co_await resolver.async_resolve(url.host, url.port, token());
    resolve_timer.cancel();
    if (ec == asio::error::operation_aborted) ec = beast::error::timeout;
    if (failed("resolve")) co_return;

    tcp_layer.expires_at(deadlines.connect);
    co_await tcp_layer.async_connect(endpoints, token());
    if (failed("connect")) co_return;

    if constexpr (kTls) {
        tcp_layer.expires_at(deadlines.connect);
        co_await stream.async_handshake(ssl::stream_base::client, token());
        if (failed("tls handshake")) co_return;
    }

    http::request<http::string_body> req{http::verb::post, url.target, 11};
    req.set(http::field::host, url.host_header);
    req.set(http::field::user_agent, kUserAgent);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "application/json");
    for (const auto& [name, value] : headers)
        req.set(name, value);
    req.keep_alive(false);  // one request per connection: the server may close after answering
    req.body() = json;
    req.prepare_payload();
    tcp_layer.expires_at(deadlines.request);
    co_await http::async_write(stream, req, token());
    if (failed("send request")) co_return;

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxHttpResponseBody);
    // Header first: Beast 1.74 loses a response's Content-Length body_limit error when the body
    // arrives in the same read as the header (eager parsing overwrites it), and then reads the
    // whole body. Parsed on its own, the header fails as it should; the check below is a backstop.
    co_await http::async_read_header(stream, buffer, parser, token());
    if (failed("read response")) co_return;
    if (const auto length = parser.content_length(); length && *length > kMaxHttpResponseBody) {
        ec = http::error::body_limit;
        failed("read response");
        co_return;
    }
    co_await http::async_read(stream, buffer, parser, token());
    if (failed("read response")) co_return;

    out.status = parser.get().result_int();
    out.body = std::move(parser.get().body());
    // No TLS close_notify: the whole message has been read, and a slow peer must not hold us.
    tcp_layer.socket().shutdown(tcp::socket::shutdown_both, ec);
}

template <class Stream>
void run_exchange(asio::io_context& io, Stream& stream, const ServiceUrl& url,
                  const std::string& json, const HttpHeaders& headers, Deadlines deadlines,
                  Exchange& out) {
    tcp::resolver resolver(io);
    asio::steady_timer resolve_timer(io);
    asio::co_spawn(io,
                   post_json(stream, resolver, resolve_timer, url, json, headers, deadlines, out),
                   [&out, &resolve_timer](std::exception_ptr error) {
                       resolve_timer.cancel();
                       if (error && !out.ec) {  // only allocation failures can get here
                           out.ec = asio::error::no_memory;
                           out.step = "internal";
                       }
                   });
    io.run();  // returns once the coroutine is done: every step above has an expiry
}

// Loads the CA and sets up verification; on failure says why (without the password, naturally).
std::optional<std::string> make_tls_context(ssl::context& ctx, const std::string& ca_file) {
    beast::error_code ec;
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                    ec);
    if (ec) return "cannot set TLS options: " + ec.message();
    if (ca_file.empty()) {
        ctx.set_default_verify_paths(ec);
        if (ec) return "cannot load the system CA certificates: " + ec.message();
    } else {
        ctx.load_verify_file(ca_file, ec);
        if (ec) return "cannot load CA file '" + ca_file + "': " + ec.message();
    }
    ctx.set_verify_mode(ssl::verify_peer, ec);
    if (ec) return "cannot enable peer verification: " + ec.message();
    return std::nullopt;
}

Exchange exchange(const ServiceUrl& url, const std::string& json, const HttpHeaders& headers,
                  Clock::time_point start, std::chrono::milliseconds connect_timeout,
                  std::chrono::milliseconds timeout, const std::string& ca_file) {
    Deadlines deadlines;
    deadlines.request = start + timeout;
    deadlines.connect = std::min(deadlines.request, start + connect_timeout);

    Exchange out;
    asio::io_context io(1);
    if (!url.tls) {
        beast::tcp_stream stream(io);
        run_exchange(io, stream, url, json, headers, deadlines, out);
        return out;
    }

    ssl::context ctx(ssl::context::tls_client);
    if (auto problem = make_tls_context(ctx, ca_file)) {
        out.ec = asio::error::invalid_argument;
        out.step = "tls setup";
        out.problem = std::move(*problem);
        return out;
    }
    beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
    beast::error_code ec;
    stream.set_verify_callback(ssl::host_name_verification(url.host), ec);
    if (ec) {
        out.ec = ec;
        out.step = "tls setup";
        return out;
    }
    const bool is_ip_literal = [&] {
        beast::error_code addr_ec;
        asio::ip::make_address(url.host, addr_ec);
        return !addr_ec;
    }();
    // SNI is for host names only (RFC 6066). SSL_set_tlsext_host_name is a macro with a C cast,
    // hence the SSL_ctrl call it stands for.
    if (!is_ip_literal &&
        SSL_ctrl(stream.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(url.host.c_str())) != 1) {
        out.ec =
            beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
        out.step = "tls setup";
        return out;
    }
    run_exchange(io, stream, url, json, headers, deadlines, out);
    return out;
}

// Header names are tokens (RFC 9110); values must not smuggle a line break into the request.
bool valid_header(const std::string& name, const std::string& value) {
    if (name.empty()) return false;
    const bool name_ok = std::all_of(name.begin(), name.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
    });
    const bool value_ok = std::none_of(
        value.begin(), value.end(), [](char ch) { return ch == '\r' || ch == '\n' || ch == '\0'; });
    return name_ok && value_ok;
}

}  // namespace

std::optional<std::string> http_url_problem(std::string_view url) {
    std::string why;
    if (parse_service_url(url, why)) return std::nullopt;
    return why;
}

HttpPostResult http_post_json(const std::string& url, const std::string& json_body,
                              std::chrono::milliseconds connect_timeout,
                              std::chrono::milliseconds timeout, const std::string& ca_file,
                              const HttpHeaders& extra_headers) {
    const auto start = Clock::now();
    HttpPostResult result;
    std::string why;
    const auto parsed = parse_service_url(url, why);
    if (!parsed) {
        result.detail = "invalid URL: " + why;
        return result;
    }
    result.where = parsed->host_header;
    for (const auto& [name, value] : extra_headers) {
        if (!valid_header(name, value)) {
            result.detail = "invalid header '" + name + "'";
            return result;
        }
    }

    auto answer =
        exchange(*parsed, json_body, extra_headers, start, connect_timeout, timeout, ca_file);
    result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    if (answer.ec) {
        std::string detail = std::string(answer.step) + " (" + result.where + ") failed: ";
        if (answer.ec == beast::error::timeout) {
            result.timed_out = true;
            detail += "timed out after " + std::to_string(result.elapsed.count()) + "ms";
        } else if (answer.ec == http::error::body_limit) {
            detail += "answer body larger than " + std::to_string(kMaxHttpResponseBody) + " bytes";
        } else if (!answer.problem.empty()) {
            detail += answer.problem;
        } else {
            detail += answer.ec.message();
        }
        result.detail = std::move(detail);
        return result;
    }
    result.ok = true;
    result.status = answer.status;
    result.body = std::move(answer.body);
    return result;
}

}  // namespace im::rest

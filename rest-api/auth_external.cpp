// The "external" login back-end: POST the credentials as JSON to a configured HTTP(S) service
// and map its answer (the C++ form of yuanrw/IM's UserSpi).
//
// authenticate() runs on a blocking pool thread. It still uses asynchronous Beast operations on a
// private io_context, because only those honour tcp_stream's expiry: the synchronous calls would
// wait for the kernel's timeouts. Each call gets its own io_context, socket and TLS context, so
// calls on different pool threads share nothing.

#include "auth.hpp"

#include <algorithm>
#include <charconv>
#include <exception>
#include <optional>
#include <string_view>
#include <type_traits>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

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
#include <nlohmann/json.hpp>

#include "im/server/config.hpp"

namespace im::rest {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxResponseBody = 64 * 1024;
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
                                const std::string& json, Deadlines deadlines, Exchange& out) {
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
    req.keep_alive(false);  // one request per connection: the server may close after answering
    req.body() = json;
    req.prepare_payload();
    tcp_layer.expires_at(deadlines.request);
    co_await http::async_write(stream, req, token());
    if (failed("send request")) co_return;

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBody);
    // Header first: Beast 1.74 loses a response's Content-Length body_limit error when the body
    // arrives in the same read as the header (eager parsing overwrites it), and then reads the
    // whole body. Parsed on its own, the header fails as it should; the check below is a backstop.
    co_await http::async_read_header(stream, buffer, parser, token());
    if (failed("read response")) co_return;
    if (const auto length = parser.content_length(); length && *length > kMaxResponseBody) {
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
                  const std::string& json, Deadlines deadlines, Exchange& out) {
    tcp::resolver resolver(io);
    asio::steady_timer resolve_timer(io);
    asio::co_spawn(io, post_json(stream, resolver, resolve_timer, url, json, deadlines, out),
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

Exchange exchange(const ServiceUrl& url, const std::string& json,
                  const ExternalAuthConfig& config) {
    const auto start = Clock::now();
    Deadlines deadlines;
    deadlines.request = start + config.timeout;
    deadlines.connect = std::min(deadlines.request, start + config.connect_timeout);

    Exchange out;
    asio::io_context io(1);
    if (!url.tls) {
        beast::tcp_stream stream(io);
        run_exchange(io, stream, url, json, deadlines, out);
        return out;
    }

    ssl::context ctx(ssl::context::tls_client);
    if (auto problem = make_tls_context(ctx, config.ca_file)) {
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
    run_exchange(io, stream, url, json, deadlines, out);
    return out;
}

// ---- The service's answer ------------------------------------------------------------------

// 200's body: {"user_id": "..." | 123, "username": "...", "display_name"?: "..." | null}.
// Returns why it is not acceptable, or nothing when `identity` was filled in.
std::optional<std::string> parse_identity(const std::string& body, ExternalIdentity& identity) {
    const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return "answer is not valid JSON";
    if (!doc.is_object()) return "answer is not a JSON object";

    const auto user_id = doc.find("user_id");
    if (user_id == doc.end()) return "answer has no user_id";
    if (user_id->is_string()) {
        identity.external_ref = user_id->get<std::string>();
    } else if (user_id->is_number_unsigned()) {
        identity.external_ref = std::to_string(user_id->get<std::uint64_t>());
    } else if (user_id->is_number_integer()) {
        identity.external_ref = std::to_string(user_id->get<std::int64_t>());
    } else {
        return "user_id is neither a string nor an integer";
    }
    if (identity.external_ref.empty()) return "user_id is empty";

    const auto username = doc.find("username");
    if (username == doc.end()) return "answer has no username";
    if (!username->is_string()) return "username is not a string";
    identity.username = username->get<std::string>();
    if (identity.username.empty()) return "username is empty";

    const auto display_name = doc.find("display_name");
    if (display_name != doc.end() && !display_name->is_null()) {
        if (!display_name->is_string()) return "display_name is not a string";
        identity.display_name = display_name->get<std::string>();
    }
    return std::nullopt;
}

AuthResult make_result(AuthOutcome outcome, std::string detail) {
    AuthResult r;
    r.outcome = outcome;
    r.detail = std::move(detail);
    return r;
}

}  // namespace

void bind(config::Binder& b, ExternalAuthConfig& c) {
    using std::chrono::milliseconds;
    b.bind("auth.external.url", c.url);
    b.bind("auth.external.ca_file", c.ca_file);
    b.bind_duration("auth.external.connect_timeout", c.connect_timeout, milliseconds(100),
                    std::chrono::minutes(1));
    b.bind_duration("auth.external.timeout", c.timeout, milliseconds(100), std::chrono::minutes(2));
    // Whether a url is required depends on auth.mode (the caller's rule); a url that is set but
    // malformed is a mistake in any mode, so it fails at start-up rather than at every login.
    if (!c.url.empty()) {
        std::string why;
        b.require(parse_service_url(c.url, why).has_value(), "auth.external.url",
                  "not a valid http:// or https:// URL (" + why + ")");
    }
}

AuthResult ExternalAuthenticator::authenticate(const std::string& username,
                                               const std::string& password) const {
    if (username.empty() || password.empty()) {
        return make_result(AuthOutcome::rejected, "empty username or password");
    }
    std::string why;
    const auto url = parse_service_url(config_.url, why);
    if (!url)
        return make_result(AuthOutcome::unavailable, "auth.external.url is not usable: " + why);

    std::string json;
    try {
        nlohmann::json request = nlohmann::json::object();
        request["username"] = username;
        request["password"] = password;
        json = request.dump();
    } catch (const nlohmann::json::exception&) {
        // Not replaced with U+FFFD: two different passwords must never become the same one.
        return make_result(AuthOutcome::rejected, "username or password is not valid UTF-8");
    }

    const auto start = Clock::now();
    auto answer = exchange(*url, json, config_);
    const auto elapsed_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    const auto where = url->host_header;

    if (answer.ec) {
        std::string detail = std::string(answer.step) + " (" + where + ") failed: ";
        if (answer.ec == beast::error::timeout) {
            detail += "timed out after " + std::to_string(elapsed_ms) + "ms";
        } else if (answer.ec == http::error::body_limit) {
            detail += "answer body larger than " + std::to_string(kMaxResponseBody) + " bytes";
        } else if (!answer.problem.empty()) {
            detail += answer.problem;
        } else {
            detail += answer.ec.message();
        }
        spdlog::debug("external auth: {} after {}ms", detail, elapsed_ms);
        return make_result(AuthOutcome::unavailable, std::move(detail));
    }

    spdlog::debug("external auth: {} answered HTTP {} in {}ms", where, answer.status, elapsed_ms);
    if (answer.status == 401 || answer.status == 403) {
        return make_result(AuthOutcome::rejected, "service (" + where + ") answered HTTP " +
                                                      std::to_string(answer.status));
    }
    if (answer.status != 200) {
        return make_result(AuthOutcome::unavailable, "service (" + where + ") answered HTTP " +
                                                         std::to_string(answer.status));
    }
    AuthResult result;
    if (auto problem = parse_identity(answer.body, result.identity)) {
        spdlog::debug("external auth: unusable answer from {}: {}", where, *problem);
        return make_result(AuthOutcome::unavailable,
                           "service (" + where + ") answered 200 but " + *problem);
    }
    result.outcome = AuthOutcome::ok;
    result.detail = "accepted by " + where;
    return result;
}

}  // namespace im::rest

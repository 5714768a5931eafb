#include "http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>

namespace im::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

nlohmann::json HttpResult::json() const { return nlohmann::json::parse(body, nullptr, false); }

std::string HttpResult::header(const std::string& lower) const {
    auto it = headers.find(lower);
    return it == headers.end() ? std::string() : it->second;
}

struct HttpClient::Impl {
    std::string host;
    std::uint16_t port;
    std::string ca_file;
    asio::io_context io;
    ssl::context tls{ssl::context::tls_client};
    std::unique_ptr<beast::tcp_stream> plain;
    std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> secure;
    beast::flat_buffer buffer;
    std::uint64_t response_limit = 8ull << 20;

    void connect() {
        buffer.clear();
        tcp::resolver resolver(io);
        auto results = resolver.resolve(host, std::to_string(port));
        if (ca_file.empty()) {
            plain = std::make_unique<beast::tcp_stream>(io);
            plain->connect(results);
        } else {
            secure = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io, tls);
            static char sni[] = "localhost";
            SSL_ctrl(secure->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, sni);
            secure->set_verify_callback(ssl::host_name_verification("localhost"));
            beast::get_lowest_layer(*secure).connect(results);
            secure->handshake(ssl::stream_base::client);
        }
    }
    bool connected() const { return plain || secure; }
    void reset() {
        plain.reset();
        secure.reset();
    }

    template <class F>
    auto with_stream(F&& f) {
        if (secure) return f(*secure);
        return f(*plain);
    }
};

HttpClient::HttpClient(std::string host, std::uint16_t port, std::string ca_file) : impl_(std::make_unique<Impl>()) {
    impl_->host = std::move(host);
    impl_->port = port;
    impl_->ca_file = std::move(ca_file);
    if (!impl_->ca_file.empty()) {
        impl_->tls.load_verify_file(impl_->ca_file);
        impl_->tls.set_verify_mode(ssl::verify_peer);
    }
}

HttpClient::~HttpClient() = default;

HttpResult HttpClient::request(const std::string& method, const std::string& target, const std::string& body,
                               const std::map<std::string, std::string>& headers) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (!impl_->connected()) impl_->connect();
        http::request<http::string_body> req(http::string_to_verb(method), target, 11);
        req.set(http::field::host, impl_->host);
        req.set(http::field::user_agent, "im-test");
        for (const auto& [k, v] : headers) req.set(k, v);
        req.body() = body;
        req.prepare_payload();
        beast::error_code ec;
        http::response_parser<http::string_body> parser;
        parser.body_limit(impl_->response_limit);
        impl_->with_stream([&](auto& s) {
            http::write(s, req, ec);
            if (!ec) http::read(s, impl_->buffer, parser, ec);
            return 0;
        });
        auto& res = parser.get();
        if (ec) {
            impl_->reset();
            if (attempt == 0) continue;  // a keep-alive connection the server closed: retry once
            throw beast::system_error(ec);
        }
        HttpResult out;
        out.status = static_cast<int>(res.result_int());
        for (const auto& f : res) {
            std::string name(f.name_string());
            for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            out.headers[name] = std::string(f.value());
        }
        out.body = res.body();
        if (!res.keep_alive()) impl_->reset();
        return out;
    }
    throw std::runtime_error("unreachable");
}

namespace {
std::map<std::string, std::string> auth(const std::string& token) {
    if (token.empty()) return {};
    return {{"Authorization", "Bearer " + token}};
}
}  // namespace

HttpResult HttpClient::get(const std::string& target, const std::string& token) {
    return request("GET", target, {}, auth(token));
}

HttpResult HttpClient::post(const std::string& target, const nlohmann::json& body, const std::string& token) {
    auto h = auth(token);
    h["Content-Type"] = "application/json";
    return request("POST", target, body.dump(), h);
}

void HttpClient::set_response_limit(std::uint64_t bytes) {
    impl_->response_limit = bytes;
}

HttpResult HttpClient::del(const std::string& target, const std::string& token) {
    return request("DELETE", target, {}, auth(token));
}

}  // namespace im::test

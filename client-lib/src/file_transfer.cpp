#include "file_transfer.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

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
#include "rest_login.hpp"
#include "tls_sni.hpp"

namespace imclient::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr std::size_t kChunk = 256 * 1024;
constexpr std::size_t kMaxAnswerBytes = 64 * 1024;

FileResult failure(ErrorCode code, std::string message) {
    FileResult r;
    r.code = code;
    r.message = std::move(message);
    return r;
}

class Sha256 {
  public:
    Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
    void update(const void* p, std::size_t n) { EVP_DigestUpdate(ctx_.get(), p, n); }
    std::string hex() {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        EVP_DigestFinal_ex(ctx_.get(), d, &n);
        static const char* digits = "0123456789abcdef";
        std::string out;
        for (unsigned i = 0; i < n; ++i) {
            out.push_back(digits[d[i] >> 4]);
            out.push_back(digits[d[i] & 0xF]);
        }
        return out;
    }

  private:
    struct Free {
        void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
    };
    std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

// A file descriptor closed on scope exit; a download's ".part" file is also deleted unless kept.
struct LocalFile {
    int fd = -1;
    std::string unlink_path;
    ~LocalFile() {
        if (fd >= 0) ::close(fd);
        if (!unlink_path.empty()) ::unlink(unlink_path.c_str());
    }
};

std::string pct_encode(std::string_view s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out.push_back(ch);
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xF]);
        }
    }
    return out;
}

FileResult http_error(int status, std::string_view body) {
    FileResult r;
    r.code = status == 401   ? ErrorCode::unauthenticated
             : status == 404 ? ErrorCode::not_found
             : status == 503 ? ErrorCode::unavailable
                             : ErrorCode::rest_error;
    r.message = "im-rest: HTTP " + std::to_string(status);
    if (const auto json = parse_json(body)) {
        if (const JsonValue* err = json->find("error")) {
            const JsonValue* code = err->find("code");
            const JsonValue* message = err->find("message");
            if (code && code->as_string()) r.message += " " + *code->as_string();
            if (message && message->as_string()) r.message += ": " + *message->as_string();
        }
    }
    return r;
}

// Connects (TCP, then TLS for https) and runs op(stream, tcp_layer) -> awaitable<FileResult>.
template <class Op>
asio::awaitable<FileResult> with_connection(asio::io_context& io, const FileHttp& cfg,
                                            const RestUrl& url, Op op) {
    error_code ec;
    tcp::resolver resolver(io);
    const auto endpoints = co_await resolver.async_resolve(
        url.host, url.port, asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
        co_return failure(ErrorCode::unreachable,
                          "im-rest: resolve " + url.host + ": " + ec.message());
    if (!url.tls) {
        beast::tcp_stream stream(io);
        stream.expires_after(cfg.connect_timeout);
        co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return failure(ErrorCode::unreachable, "im-rest: connect: " + ec.message());
        FileResult r = co_await op(stream, stream);
        stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        co_return r;
    }
    auto ctx = tls_client_context(cfg.tls_ca_file, ec);
    if (ec) co_return failure(ErrorCode::invalid_argument, "imclient: CA file: " + ec.message());
    beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
    set_sni(stream.native_handle(), url.host);
    stream.set_verify_mode(ssl::verify_peer);
    stream.set_verify_callback(ssl::host_name_verification(url.host));
    beast::get_lowest_layer(stream).expires_after(cfg.connect_timeout);
    co_await beast::get_lowest_layer(stream).async_connect(
        endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec)
        co_await stream.async_handshake(ssl::stream_base::client,
                                        asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return failure(ErrorCode::unreachable, "im-rest: connect: " + ec.message());
    FileResult r = co_await op(stream, beast::get_lowest_layer(stream));
    beast::get_lowest_layer(stream).close();
    co_return r;
}

// Reads a small (JSON) response.
template <class Stream>
asio::awaitable<http::response<http::string_body>> read_answer(Stream& stream,
                                                               beast::tcp_stream& tcp_layer,
                                                               beast::flat_buffer& buffer,
                                                               std::chrono::milliseconds timeout,
                                                               error_code& ec) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxAnswerBytes);
    tcp_layer.expires_after(timeout);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    co_return parser.release();
}

struct UploadOp {
    const FileHttp& cfg;
    const RestUrl& url;
    const std::string& path;
    const Progress& progress;

    template <class Stream>
    asio::awaitable<FileResult> operator()(Stream& stream, beast::tcp_stream& tcp_layer) const {
        LocalFile file;
        file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        struct stat st {};
        if (file.fd < 0 || ::fstat(file.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            co_return failure(ErrorCode::io_error,
                              "imclient: cannot read " + path + ": " + std::strerror(errno));
        }
        const auto total = static_cast<std::uint64_t>(st.st_size);
        const auto slash = path.find_last_of('/');
        const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);

        http::request<http::buffer_body> req{
            http::verb::post, url.base_path + "/v1/files?name=" + pct_encode(name), 11};
        req.set(http::field::host, url.host_header);
        req.set(http::field::user_agent, cfg.user_agent);
        req.set(http::field::authorization, "Bearer " + cfg.token);
        req.set(http::field::content_type, "application/octet-stream");
        req.set(http::field::accept, "application/json");
        req.content_length(total);
        req.body().data = nullptr;
        req.body().more = total > 0;
        http::request_serializer<http::buffer_body> sr{req};
        error_code ec;
        tcp_layer.expires_after(cfg.io_timeout);
        co_await http::async_write_header(stream, sr,
                                          asio::redirect_error(asio::use_awaitable, ec));
        Sha256 hash;
        std::vector<char> chunk(kChunk);
        std::uint64_t sent = 0;
        while (!ec && sent < total) {
            const ssize_t n =
                ::pread(file.fd, chunk.data(), chunk.size(), static_cast<off_t>(sent));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0)
                co_return failure(ErrorCode::io_error, "imclient: reading " + path + " failed");
            hash.update(chunk.data(), static_cast<std::size_t>(n));
            sent += static_cast<std::uint64_t>(n);
            req.body().data = chunk.data();
            req.body().size = static_cast<std::size_t>(n);
            req.body().more = sent < total;
            tcp_layer.expires_after(cfg.io_timeout);
            co_await http::async_write(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
            if (ec == http::error::need_buffer) ec = {};
            if (!ec && progress) progress(sent, total);
        }
        if (!ec && !sr.is_done()) {
            req.body().data = nullptr;
            req.body().size = 0;
            req.body().more = false;
            tcp_layer.expires_after(cfg.io_timeout);
            co_await http::async_write(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
            if (ec == http::error::need_buffer) ec = {};
        }
        // The server may refuse early (401, 413) and close: its answer is still worth reading.
        const bool write_failed = static_cast<bool>(ec);
        beast::flat_buffer buffer;
        error_code rec;
        auto res = co_await read_answer(stream, tcp_layer, buffer, cfg.io_timeout, rec);
        if (rec) {
            co_return failure(ErrorCode::unreachable,
                              "im-rest: upload: " + (write_failed ? ec.message() : rec.message()));
        }
        const int status = static_cast<int>(res.result_int());
        if (status != 201) co_return http_error(status, res.body());
        if (write_failed)
            co_return failure(ErrorCode::unreachable, "im-rest: upload: " + ec.message());
        const auto json = parse_json(res.body());
        FileResult out;
        const JsonValue* id = json ? json->find("id") : nullptr;
        const JsonValue* sha = json ? json->find("sha256") : nullptr;
        const JsonValue* size = json ? json->find("size") : nullptr;
        if (!id || !id->as_u64() || !sha || !sha->as_string() || !size || !size->as_u64()) {
            co_return failure(ErrorCode::rest_error, "im-rest: malformed upload answer");
        }
        out.file.file_id = *id->as_u64();
        out.file.sha256 = *sha->as_string();
        out.file.size = *size->as_u64();
        if (const JsonValue* v = json->find("name"); v && v->as_string())
            out.file.name = *v->as_string();
        if (const JsonValue* v = json->find("mime"); v && v->as_string())
            out.file.mime = *v->as_string();
        if (out.file.sha256 != hash.hex() || out.file.size != total) {
            co_return failure(ErrorCode::integrity,
                              "imclient: the server stored other bytes than were sent");
        }
        co_return out;
    }
};

struct DownloadOp {
    const FileHttp& cfg;
    const RestUrl& url;
    std::uint64_t file_id;
    const std::string& path;
    const std::string& expected_sha256;
    const Progress& progress;

    template <class Stream>
    asio::awaitable<FileResult> operator()(Stream& stream, beast::tcp_stream& tcp_layer) const {
        http::request<http::empty_body> req{
            http::verb::get, url.base_path + "/v1/files/" + std::to_string(file_id), 11};
        req.set(http::field::host, url.host_header);
        req.set(http::field::user_agent, cfg.user_agent);
        req.set(http::field::authorization, "Bearer " + cfg.token);
        error_code ec;
        tcp_layer.expires_after(cfg.io_timeout);
        co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return failure(ErrorCode::unreachable, "im-rest: download: " + ec.message());

        beast::flat_buffer buffer;
        buffer.reserve(64 * 1024);  // Beast reads at most the free capacity: room for big reads
        http::response_parser<http::buffer_body> parser;
        parser.body_limit(std::numeric_limits<std::uint64_t>::max());
        tcp_layer.expires_after(cfg.io_timeout);
        co_await http::async_read_header(stream, buffer, parser,
                                         asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return failure(ErrorCode::unreachable, "im-rest: download: " + ec.message());
        const int status = static_cast<int>(parser.get().result_int());
        if (status != 200) {
            http::response_parser<http::string_body> rest(std::move(parser));
            rest.body_limit(kMaxAnswerBytes);
            tcp_layer.expires_after(cfg.io_timeout);
            co_await http::async_read(stream, buffer, rest,
                                      asio::redirect_error(asio::use_awaitable, ec));
            co_return http_error(status,
                                 ec ? std::string_view{} : std::string_view(rest.get().body()));
        }
        FileResult out;
        out.file.file_id = file_id;
        out.file.mime = std::string(parser.get()[http::field::content_type]);
        std::string etag(parser.get()[http::field::etag]);
        if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"')
            etag = etag.substr(1, etag.size() - 2);
        const std::string want = expected_sha256.empty() ? etag : expected_sha256;
        const std::uint64_t total = parser.content_length().value_or(0);

        LocalFile part;
        const std::string part_path = path + ".part";
        part.fd = ::open(part_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (part.fd < 0) {
            co_return failure(ErrorCode::io_error,
                              "imclient: cannot write " + part_path + ": " + std::strerror(errno));
        }
        part.unlink_path = part_path;
        Sha256 hash;
        std::vector<char> chunk(kChunk);
        std::uint64_t got = 0;
        while (!parser.is_done()) {
            parser.get().body().data = chunk.data();
            parser.get().body().size = chunk.size();
            tcp_layer.expires_after(cfg.io_timeout);
            co_await http::async_read(stream, buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
            if (ec == http::error::need_buffer) ec = {};
            const std::size_t n = chunk.size() - parser.get().body().size;
            for (std::size_t off = 0; off < n;) {
                const ssize_t w = ::write(part.fd, chunk.data() + off, n - off);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0)
                    co_return failure(ErrorCode::io_error,
                                      "imclient: writing " + part_path + " failed");
                off += static_cast<std::size_t>(w);
            }
            hash.update(chunk.data(), n);
            got += n;
            if (n > 0 && progress) progress(got, total);
            if (ec) co_return failure(ErrorCode::unreachable, "im-rest: download: " + ec.message());
        }
        out.file.size = got;
        out.file.sha256 = hash.hex();
        if (want.empty() || out.file.sha256 != want) {
            co_return failure(ErrorCode::integrity, "imclient: file " + std::to_string(file_id) +
                                                        " does not match its sha256 (got " +
                                                        out.file.sha256 + ", expected " +
                                                        (want.empty() ? "none" : want) + ")");
        }
        if (::fsync(part.fd) != 0 || ::rename(part_path.c_str(), path.c_str()) != 0) {
            co_return failure(ErrorCode::io_error,
                              "imclient: cannot store " + path + ": " + std::strerror(errno));
        }
        part.unlink_path.clear();
        co_return out;
    }
};

}  // namespace

void upload_file(asio::io_context& io, FileHttp settings, std::string path, Progress progress,
                 std::function<void(FileResult)> done) {
    auto run = [](asio::io_context& io_, FileHttp cfg, std::string p, Progress prog,
                  std::function<void(FileResult)> d) -> asio::awaitable<void> {
        const auto url = parse_rest_url(cfg.rest_url);
        if (!url) {
            d(failure(ErrorCode::invalid_argument, "imclient: bad rest_url"));
            co_return;
        }
        d(co_await with_connection(io_, cfg, *url, UploadOp{cfg, *url, p, prog}));
    };
    asio::co_spawn(
        io, run(io, std::move(settings), std::move(path), std::move(progress), std::move(done)),
        asio::detached);
}

void download_file(asio::io_context& io, FileHttp settings, std::uint64_t file_id, std::string path,
                   std::string expected_sha256, Progress progress,
                   std::function<void(FileResult)> done) {
    auto run = [](asio::io_context& io_, FileHttp cfg, std::uint64_t id, std::string p,
                  std::string sha, Progress prog,
                  std::function<void(FileResult)> d) -> asio::awaitable<void> {
        const auto url = parse_rest_url(cfg.rest_url);
        if (!url) {
            d(failure(ErrorCode::invalid_argument, "imclient: bad rest_url"));
            co_return;
        }
        d(co_await with_connection(io_, cfg, *url, DownloadOp{cfg, *url, id, p, sha, prog}));
    };
    asio::co_spawn(io,
                   run(io, std::move(settings), file_id, std::move(path),
                       std::move(expected_sha256), std::move(progress), std::move(done)),
                   asio::detached);
}

}  // namespace imclient::detail

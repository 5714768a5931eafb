#pragma once
// The request and response types handlers see: plain values, independent of Beast, so handlers
// and their tests need no sockets.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace im::rest {

struct HttpRequest {
    std::string method;  // "GET", "POST", ...
    std::string path;    // decoded path without the query
    std::map<std::string, std::string> query;  // decoded; last value wins
    std::map<std::string, std::string> headers;  // lowercase names
    std::string body;
    std::string client_addr;  // peer IP address

    const std::string* header(const std::string& lower_name) const {
        auto it = headers.find(lower_name);
        return it == headers.end() ? nullptr : &it->second;
    }
    std::optional<std::string> query_param(const std::string& name) const {
        auto it = query.find(name);
        if (it == query.end()) return std::nullopt;
        return it->second;
    }
};

// A response body streamed from an open file (downloads): the server reads it in bounded chunks
// while writing, so a large file never sits in memory. Owns the descriptor.
struct FileBody {
    FileBody(int fd_, std::uint64_t offset_, std::uint64_t length_)
        : fd(fd_), offset(offset_), length(length_) {}
    ~FileBody();
    FileBody(const FileBody&) = delete;
    FileBody& operator=(const FileBody&) = delete;
    int fd = -1;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    std::function<void(std::uint64_t)> on_bytes;  // bytes written to the client (metrics)
};

struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Retry-After, ...)
    bool close = false;  // close the connection after this response
    std::shared_ptr<FileBody> file;  // when set, the body (Content-Length = file->length)

    static HttpResponse json(int status, const nlohmann::json& j);
    static HttpResponse no_content();
    static HttpResponse error(int status, const std::string& code, const std::string& message);
};

// Thrown by handlers (on pool threads) for an answer other than success; turned into the JSON
// error body {"error": {"code", "message"}} with the status. Never carries secrets.
class ApiError : public std::runtime_error {
public:
    ApiError(int status, std::string code, const std::string& message)
        : std::runtime_error(message), status_(status), code_(std::move(code)) {}
    int status() const noexcept { return status_; }
    const std::string& code() const noexcept { return code_; }
    std::optional<int> retry_after_s;  // 429/503

private:
    int status_;
    std::string code_;
};

// The receiver of a streamed request body (uploads). write() runs on the connection's I/O thread
// once per chunk and must stay quick (append to a file, hash). finish() is called once the whole
// body arrived and answers through respond (it may run the blocking part on a pool). Destroying a
// sink that was not finished discards everything written (client gone, timeout, limit).
class BodySink {
public:
    virtual ~BodySink() = default;
    // False: stop reading; failure() is answered and the connection closed.
    virtual bool write(const char* data, std::size_t n) = 0;
    virtual HttpResponse failure() = 0;
    virtual void finish(std::function<void(HttpResponse)> respond) = 0;
};

// What an upload handler decides once the request head is known: a sink to stream the body into,
// or a refusal (answered without reading the body; the connection is then closed).
struct UploadStart {
    std::shared_ptr<BodySink> sink;
    HttpResponse refusal;
};

// Decodes %XX and '+' in a query component; nullopt on a bad escape.
std::optional<std::string> url_decode(std::string_view in, bool plus_is_space);
// Splits "a=1&b=x%20y" into a map (bad escapes make the whole query invalid: nullopt).
std::optional<std::map<std::string, std::string>> parse_query(std::string_view query);

}  // namespace im::rest

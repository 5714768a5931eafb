#pragma once
// The request and response types handlers see: plain values, independent of Beast, so handlers
// and their tests need no sockets.

#include <cstdint>
#include <map>
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

struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Retry-After, ...)
    bool close = false;  // close the connection after this response

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

// Decodes %XX and '+' in a query component; nullopt on a bad escape.
std::optional<std::string> url_decode(std::string_view in, bool plus_is_space);
// Splits "a=1&b=x%20y" into a map (bad escapes make the whole query invalid: nullopt).
std::optional<std::map<std::string, std::string>> parse_query(std::string_view query);

}  // namespace im::rest

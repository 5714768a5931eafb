#pragma once
// One synchronous HTTP(S) POST of a JSON body, for blocking threads (the external login service,
// the push webhook). Every step has a deadline: resolve + connect + TLS handshake within
// `connect_timeout`, the whole call within `timeout`. Each call has its own io_context, socket
// and TLS context, so calls on different threads share nothing. One request per connection.
//
// Never throws for network or peer trouble: a transport error is a result. Details name the step
// and host[:port] only, never the URL's path or query (they may hold a key) nor any body.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace im::rest {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// Larger answer bodies are a transport error ("answer body larger than ... bytes").
inline constexpr std::size_t kMaxHttpResponseBody = 64 * 1024;

struct HttpPostResult {
    bool ok = false;  // a whole response arrived (any status); false: transport error
    unsigned status = 0;
    std::string body;
    std::string where;   // host[:port] as written in the URL
    std::string detail;  // transport error: "<step> (<where>) failed: <reason>"
    bool timed_out = false;
    std::chrono::milliseconds elapsed{0};

    bool success() const { return ok && status >= 200 && status < 300; }
};

// nullopt when `url` is usable: http:// or https://host[:port][/path][?query] (IPv6 as [addr]; a
// #fragment is dropped). Otherwise why not, without repeating the URL.
std::optional<std::string> http_url_problem(std::string_view url);

// POSTs `json_body` (Content-Type: application/json) with `extra_headers` added. https:// verifies
// the peer against `ca_file` (empty: the system CAs) and its host name.
HttpPostResult http_post_json(const std::string& url, const std::string& json_body,
                              std::chrono::milliseconds connect_timeout,
                              std::chrono::milliseconds timeout, const std::string& ca_file = {},
                              const HttpHeaders& extra_headers = {});

}  // namespace im::rest

#pragma once
// A small synchronous HTTP/1.1 client for tests: one keep-alive connection (reconnects when the
// server closed it), plain or TLS, JSON helpers.

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace im::test {

struct HttpResult {
    int status = 0;
    std::map<std::string, std::string> headers;  // lowercase names
    std::string body;
    nlohmann::json json() const;  // discarded value when the body is not JSON
    std::string header(const std::string& lower) const;
};

class HttpClient {
public:
    // ca_file: when set, TLS with verification against that CA (host name "localhost").
    HttpClient(std::string host, std::uint16_t port, std::string ca_file = {});
    ~HttpClient();

    HttpResult request(const std::string& method, const std::string& target, const std::string& body = {},
                       const std::map<std::string, std::string>& headers = {});
    // JSON convenience: bearer token optional; body serialized with content-type application/json.
    HttpResult get(const std::string& target, const std::string& token = {});
    HttpResult post(const std::string& target, const nlohmann::json& body, const std::string& token = {});
    HttpResult del(const std::string& target, const std::string& token = {});
    // Largest response body accepted (default 8 MiB, Beast's default for responses).
    void set_response_limit(std::uint64_t bytes);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace im::test

#pragma once
// A tiny HTTP/1.1 server for tests that need a peer speaking HTTP: the external auth service,
// the push webhook. Each connection is served on its own thread with blocking Beast calls;
// the handler decides status, body and an optional delay (to force client timeouts).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace im::test {

struct HttpTestRequest {
    std::string method;
    std::string target;
    std::string content_type;
    std::string authorization;
    std::string body;
    std::map<std::string, std::string> headers;  // every header, lowercase names (last one wins)

    std::string header(const std::string& lower_name) const {
        const auto it = headers.find(lower_name);
        return it == headers.end() ? std::string() : it->second;
    }
};

struct HttpTestReply {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    std::chrono::milliseconds delay{0};  // before answering
};

class HttpTestServer {
public:
    using Handler = std::function<HttpTestReply(const HttpTestRequest&)>;
    explicit HttpTestServer(Handler handler);
    ~HttpTestServer();

    std::uint16_t port() const { return port_; }
    std::string url(const std::string& path) const;
    std::vector<HttpTestRequest> requests() const;
    void stop();

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
    std::uint16_t port_ = 0;
};

}  // namespace im::test

#pragma once
// Redis through hiredis, synchronous, for blocking pool threads (one RedisConnection per thread,
// never shared). Connect and command timeouts always apply; a broken connection is dropped and
// re-established by the next call. Errors are thrown as RedisError (pool tasks turn them into
// answers; data-plane processes use their own asynchronous client).

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace im::config {
class Binder;
}

namespace im::redis {

struct RedisConfig {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    std::string password;
    std::uint32_t db = 0;
    std::string key_prefix = "im:";  // every key the project writes starts with it
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds command_timeout{1000};
};

void bind(config::Binder& b, RedisConfig& c);

class RedisError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct ReplyDeleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

class RedisConnection {
public:
    explicit RedisConnection(RedisConfig config);
    ~RedisConnection();
    RedisConnection(const RedisConnection&) = delete;
    RedisConnection& operator=(const RedisConnection&) = delete;

    // One command; binary-safe arguments. A server error reply throws RedisError too.
    Reply command(const std::vector<std::string_view>& args);
    // Several commands in one round trip; replies in order (error replies are returned, not thrown).
    std::vector<Reply> pipeline(const std::vector<std::vector<std::string>>& commands);

    // Convenience wrappers.
    std::optional<std::string> get(std::string_view key);
    bool ping();

    // The server's run_id (changes when Redis restarts: used to notice a lost cache).
    std::string run_id();
    const RedisConfig& config() const { return config_; }
    void reset();

private:
    redisContext* ctx();

    RedisConfig config_;
    redisContext* ctx_ = nullptr;
    // After a failed connect, fail fast until then instead of paying the connect timeout on
    // every call while Redis is down (Redis is a cache: callers fall back).
    std::chrono::steady_clock::time_point next_connect_{};
};

// Reply helpers.
std::optional<std::string> as_string(const redisReply* r);  // string/status reply, nullopt for nil
long long as_integer(const redisReply* r);                   // integer reply (throws otherwise)

}  // namespace im::redis

#pragma once
// A Lua script run with EVALSHA (its SHA-1 is computed locally), falling back to EVAL when the
// server does not know it (NOSCRIPT: after a restart or SCRIPT FLUSH); EVAL also caches it again.
// So a call is one round trip in the steady state and two once after Redis lost its script cache.

#include <string>
#include <string_view>
#include <vector>

#include "im/server/redis.hpp"

namespace im::user_status {

class LuaScript {
public:
    explicit LuaScript(std::string source);

    redis::Reply run(redis::RedisConnection& redis, const std::vector<std::string>& keys,
                     const std::vector<std::string>& args) const;
    // Many calls in one pipeline (chunks of `chunk` calls per round trip). Throws RedisError if
    // any call failed (other than NOSCRIPT, which is retried with EVAL).
    std::vector<redis::Reply> run_many(
        redis::RedisConnection& redis,
        const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>>& calls,
        std::size_t chunk = 512) const;

    const std::string& sha() const { return sha_; }

private:
    std::vector<std::string> command(bool by_sha, const std::vector<std::string>& keys,
                                     const std::vector<std::string>& args) const;

    std::string source_;
    std::string sha_;  // lowercase hex
};

bool is_noscript(std::string_view redis_error);

}  // namespace im::user_status

#include "lua_script.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace im::user_status {
namespace {

std::string sha1_hex(std::string_view text) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha1(), nullptr) != 1) {
        throw std::runtime_error("SHA-1 of a Lua script failed");
    }
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 0xf];
    }
    return out;
}

}  // namespace

bool is_noscript(std::string_view redis_error) {
    return redis_error.find("NOSCRIPT") != std::string_view::npos;
}

LuaScript::LuaScript(std::string source) : source_(std::move(source)), sha_(sha1_hex(source_)) {}

std::vector<std::string> LuaScript::command(bool by_sha, const std::vector<std::string>& keys,
                                            const std::vector<std::string>& args) const {
    std::vector<std::string> cmd;
    cmd.reserve(3 + keys.size() + args.size());
    cmd.emplace_back(by_sha ? "EVALSHA" : "EVAL");
    cmd.push_back(by_sha ? sha_ : source_);
    cmd.push_back(std::to_string(keys.size()));
    cmd.insert(cmd.end(), keys.begin(), keys.end());
    cmd.insert(cmd.end(), args.begin(), args.end());
    return cmd;
}

redis::Reply LuaScript::run(redis::RedisConnection& redis, const std::vector<std::string>& keys,
                            const std::vector<std::string>& args) const {
    const auto call = [&](bool by_sha) {
        const auto cmd = command(by_sha, keys, args);
        return redis.command(std::vector<std::string_view>(cmd.begin(), cmd.end()));
    };
    try {
        return call(true);
    } catch (const redis::RedisError& e) {
        if (!is_noscript(e.what())) throw;
    }
    return call(false);
}

std::vector<redis::Reply> LuaScript::run_many(
    redis::RedisConnection& redis,
    const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>>& calls,
    std::size_t chunk) const {
    std::vector<redis::Reply> out;
    out.reserve(calls.size());
    for (std::size_t begin = 0; begin < calls.size(); begin += chunk) {
        const auto end = std::min(calls.size(), begin + chunk);
        std::vector<std::vector<std::string>> cmds;
        cmds.reserve(end - begin);
        for (auto i = begin; i < end; ++i)
            cmds.push_back(command(true, calls[i].first, calls[i].second));
        auto replies = redis.pipeline(cmds);
        // The server forgot the script: those calls again with the source (usually all of them,
        // in the first chunk only: EVAL caches the script for the following chunks).
        std::vector<std::size_t> retry;
        for (std::size_t j = 0; j < replies.size(); ++j) {
            const auto* r = replies[j].get();
            if (r->type == REDIS_REPLY_ERROR && is_noscript(std::string_view(r->str, r->len)))
                retry.push_back(j);
        }
        if (!retry.empty()) {
            std::vector<std::vector<std::string>> again;
            again.reserve(retry.size());
            for (auto j : retry)
                again.push_back(command(false, calls[begin + j].first, calls[begin + j].second));
            auto second = redis.pipeline(again);
            for (std::size_t k = 0; k < retry.size(); ++k)
                replies[retry[k]] = std::move(second[k]);
        }
        for (auto& r : replies) {
            if (r->type == REDIS_REPLY_ERROR)
                throw redis::RedisError("redis: " + std::string(r->str, r->len));
            out.push_back(std::move(r));
        }
    }
    return out;
}

}  // namespace im::user_status

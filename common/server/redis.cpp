#include "im/server/redis.hpp"

#include <sys/time.h>

#include "im/server/config.hpp"

namespace im::redis {

void bind(config::Binder& b, RedisConfig& c) {
    b.bind("redis.host", c.host);
    b.bind("redis.port", c.port, 1, 65535);
    b.bind("redis.password", c.password, /*secret=*/true);
    b.bind("redis.db", c.db, 0, 15);
    b.bind("redis.key_prefix", c.key_prefix);
    b.bind_duration("redis.connect_timeout", c.connect_timeout, std::chrono::milliseconds(10),
                    std::chrono::minutes(1));
    b.bind_duration("redis.command_timeout", c.command_timeout, std::chrono::milliseconds(10),
                    std::chrono::minutes(1));
}

namespace {
timeval to_timeval(std::chrono::milliseconds d) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(d.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
    return tv;
}

std::string context_error(const redisContext* c, const char* what) {
    return std::string("redis ") + what + ": " + (c != nullptr && c->errstr[0] != '\0' ? c->errstr : "error");
}
}  // namespace

RedisConnection::RedisConnection(RedisConfig config) : config_(std::move(config)) {}

RedisConnection::~RedisConnection() { reset(); }

void RedisConnection::reset() {
    if (ctx_ != nullptr) {
        redisFree(ctx_);
        ctx_ = nullptr;
    }
}

redisContext* RedisConnection::ctx() {
    if (ctx_ != nullptr) return ctx_;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_connect_) {
        throw RedisError("redis unavailable (" + config_.host + ":" + std::to_string(config_.port) +
                         "), next attempt shortly");
    }
    redisContext* c = redisConnectWithTimeout(config_.host.c_str(), config_.port, to_timeval(config_.connect_timeout));
    if (c == nullptr || c->err != 0) {
        const auto msg = context_error(c, "connect");
        if (c != nullptr) redisFree(c);
        next_connect_ = now + std::chrono::milliseconds(500);
        throw RedisError(msg + " (" + config_.host + ":" + std::to_string(config_.port) + ")");
    }
    redisSetTimeout(c, to_timeval(config_.command_timeout));
    ctx_ = c;
    if (!config_.password.empty()) command({"AUTH", config_.password});
    if (config_.db != 0) command({"SELECT", std::to_string(config_.db)});
    return ctx_;
}

Reply RedisConnection::command(const std::vector<std::string_view>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    auto* c = ctx();
    Reply r(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data())));
    if (!r) {
        const auto msg = context_error(c, "command");
        reset();
        throw RedisError(msg);
    }
    if (r->type == REDIS_REPLY_ERROR) throw RedisError(std::string("redis: ") + r->str);
    return r;
}

std::vector<Reply> RedisConnection::pipeline(const std::vector<std::vector<std::string>>& commands) {
    auto* c = ctx();
    for (const auto& cmd : commands) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const auto& a : cmd) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        if (redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK) {
            const auto msg = context_error(c, "pipeline");
            reset();
            throw RedisError(msg);
        }
    }
    std::vector<Reply> replies;
    replies.reserve(commands.size());
    for (std::size_t i = 0; i < commands.size(); ++i) {
        void* raw = nullptr;
        if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) {
            const auto msg = context_error(c, "pipeline reply");
            reset();
            throw RedisError(msg);
        }
        replies.emplace_back(static_cast<redisReply*>(raw));
    }
    return replies;
}

std::optional<std::string> RedisConnection::get(std::string_view key) {
    return as_string(command({"GET", key}).get());
}

bool RedisConnection::ping() {
    try {
        auto r = command({"PING"});
        return r->type == REDIS_REPLY_STATUS;
    } catch (const RedisError&) {
        return false;
    }
}

std::string RedisConnection::run_id() {
    auto r = command({"INFO", "server"});
    const auto text = as_string(r.get()).value_or("");
    const auto at = text.find("run_id:");
    if (at == std::string::npos) return {};
    const auto end = text.find_first_of("\r\n", at);
    return text.substr(at + 7, end - at - 7);
}

std::optional<std::string> as_string(const redisReply* r) {
    if (r == nullptr || r->type == REDIS_REPLY_NIL) return std::nullopt;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) return std::string(r->str, r->len);
    if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
    throw RedisError("redis: unexpected reply type " + std::to_string(r->type));
}

long long as_integer(const redisReply* r) {
    if (r != nullptr && r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r != nullptr && r->type == REDIS_REPLY_STRING) {
        try {
            return std::stoll(std::string(r->str, r->len));
        } catch (const std::exception&) {
        }
    }
    throw RedisError("redis: expected an integer reply");
}

}  // namespace im::redis

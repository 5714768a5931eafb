#include "im/server/tokens.hpp"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <memory>
#include <stdexcept>

#include "im/server/config.hpp"
#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"

namespace im::tokens {

void bind(config::Binder& b, TokenConfig& c) {
    b.bind_duration("auth.token_ttl", c.ttl, std::chrono::seconds(1), std::chrono::hours(24 * 365));
    b.bind_duration("auth.token_refresh_after", c.refresh_after, std::chrono::milliseconds(0),
                    std::chrono::hours(24 * 365));
    b.bind_duration("auth.token_cache_ttl", c.cache_ttl, std::chrono::seconds(1), std::chrono::hours(24));
    b.bind_duration("auth.directory_recheck_interval", c.directory_recheck_interval,
                    std::chrono::milliseconds(0), std::chrono::hours(24 * 365));
}

TokenStore::TokenStore(mysql::MysqlConnection& db, redis::RedisConnection* redis, TokenConfig config,
                       std::string key_prefix)
    : db_(db), redis_(redis), config_(config), key_prefix_(std::move(key_prefix)) {}

std::string TokenStore::cache_key(std::string_view token_hash) const {
    return tokens::cache_key(key_prefix_, token_hash);
}

void TokenStore::cache_put(std::string_view token_hash, const SessionInfo& s) {
    if (redis_ == nullptr) return;
    const auto remaining = s.expires_ms - now_ms();
    const auto ttl = std::min<std::int64_t>(remaining, config_.cache_ttl.count());
    if (ttl <= 0) return;
    try {
        redis_->command({"SET", cache_key(token_hash), encode_cached_session(s), "PX", std::to_string(ttl), "NX"});
    } catch (const redis::RedisError& e) {
        ++stats_.redis_errors;
        spdlog::warn("tokens: cache write failed: {}", e.what());
    }
}

void TokenStore::cache_tombstone(std::string_view token_hash) {
    if (redis_ == nullptr) return;
    try {
        // Outlives any entry a racing validator may have written (their TTL <= cache_ttl).
        redis_->command({"SET", cache_key(token_hash), "r", "PX", std::to_string(config_.cache_ttl.count() * 2)});
    } catch (const redis::RedisError& e) {
        // MySQL already says revoked; a cached entry (if any) dies within cache_ttl.
        ++stats_.redis_errors;
        spdlog::warn("tokens: cache tombstone failed: {}", e.what());
    }
}

TokenStore::Issued TokenStore::issue(std::uint64_t user_id, const std::string& device_id,
                                     const std::string& client_addr, const std::string& user_agent) {
    Issued out;
    out.token = new_token();
    const auto hash = hash_token(out.token);
    const auto expires = now_ms() + config_.ttl.count();
    auto& st = db_.prepare(
        "INSERT INTO sessions (token_hash, user_id, device_id, client_addr, user_agent, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?)");
    st.setString(1, hash);
    st.setUInt64(2, user_id);
    st.setString(3, device_id);
    st.setString(4, client_addr.substr(0, 64));
    st.setString(5, user_agent.substr(0, 256));
    st.setString(6, mysql::ms_to_datetime(expires));
    st.executeUpdate();
    std::unique_ptr<sql::ResultSet> rs(db_.prepare("SELECT LAST_INSERT_ID()").executeQuery());
    rs->next();
    out.info = SessionInfo{rs->getUInt64(1), user_id, device_id, expires};
    cache_put(hash, out.info);
    return out;
}

std::optional<SessionInfo> TokenStore::load_from_db(std::string_view token_hash) {
    auto& st = db_.prepare(
        "SELECT id, user_id, device_id, expires_at, revoked_at IS NOT NULL FROM sessions WHERE token_hash = ?");
    st.setString(1, std::string(token_hash));
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    if (!rs->next()) return std::nullopt;
    SessionInfo s{rs->getUInt64(1), rs->getUInt64(2), rs->getString(3).asStdString(),
                  mysql::datetime_to_ms(rs->getString(4).asStdString())};
    if (rs->getBoolean(5)) {
        cache_tombstone(token_hash);  // repeated use of a revoked token stays cheap
        return std::nullopt;
    }
    if (s.expires_ms <= now_ms()) return std::nullopt;
    return s;
}

std::optional<SessionInfo> TokenStore::validate(std::string_view token_hash) {
    std::optional<SessionInfo> s;
    bool from_cache = false;
    if (redis_ != nullptr) {
        try {
            if (auto v = redis_->get(cache_key(token_hash))) {
                bool revoked = false;
                s = decode_cached_session(*v, &revoked);
                if (revoked) {
                    ++stats_.cache_hits;
                    return std::nullopt;
                }
                from_cache = s.has_value();
            }
        } catch (const redis::RedisError& e) {
            ++stats_.redis_errors;
            spdlog::warn("tokens: cache read failed, using MySQL: {}", e.what());
        }
    }
    if (from_cache) ++stats_.cache_hits;
    else ++stats_.cache_misses;
    if (!s) s = load_from_db(token_hash);
    if (!s) return std::nullopt;
    const auto now = now_ms();
    if (s->expires_ms <= now) return std::nullopt;

    // Sliding expiry: extend once the token has been in use for refresh_after since its last extension.
    if (s->expires_ms - now < config_.ttl.count() - config_.refresh_after.count()) {
        const auto new_expiry = now + config_.ttl.count();
        auto& st = db_.prepare(
            "UPDATE sessions SET expires_at = ?, last_seen_at = CURRENT_TIMESTAMP(3) "
            "WHERE id = ? AND revoked_at IS NULL");
        st.setString(1, mysql::ms_to_datetime(new_expiry));
        st.setUInt64(2, s->session_id);
        if (st.executeUpdate() == 0) return std::nullopt;  // revoked meanwhile
        s->expires_ms = new_expiry;
        request_directory_recheck(s->user_id, now);
        if (redis_ != nullptr) {
            try {
                // Replace the entry unless it is a tombstone: a revocation always wins.
                static constexpr const char* kSetUnlessRevoked =
                    "if redis.call('GET', KEYS[1]) == 'r' then return 0 end "
                    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";
                const auto ttl = std::min<std::int64_t>(config_.cache_ttl.count(), new_expiry - now);
                redis_->command({"EVAL", kSetUnlessRevoked, "1", cache_key(token_hash), encode_cached_session(*s),
                                 std::to_string(ttl)});
            } catch (const redis::RedisError& e) {
                ++stats_.redis_errors;
                spdlog::warn("tokens: cache refresh failed: {}", e.what());
            }
        }
    } else if (!from_cache) {
        cache_put(token_hash, *s);
    }
    return s;
}

void TokenStore::request_directory_recheck(std::uint64_t user_id, std::int64_t now) {
    // One statement per refresh; nothing for local accounts nor for recently confirmed ones, and
    // nothing more while a request for the account is pending.
    auto& st = db_.prepare(
        "INSERT IGNORE INTO directory_rechecks (user_id) SELECT id FROM users "
        "WHERE id = ? AND origin <> 'local' AND (verified_at IS NULL OR verified_at <= ?)");
    st.setUInt64(1, user_id);
    st.setString(2, mysql::ms_to_datetime(now - config_.directory_recheck_interval.count()));
    if (st.executeUpdate() > 0) ++stats_.recheck_requests;
}

std::optional<SessionInfo> TokenStore::revoke(std::uint64_t user_id, std::uint64_t session_id) {
    std::string hash;
    SessionInfo info;
    {
        auto& st = db_.prepare(
            "SELECT token_hash, device_id, expires_at FROM sessions WHERE id = ? AND user_id = ? AND revoked_at IS NULL");
        st.setUInt64(1, session_id);
        st.setUInt64(2, user_id);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        if (!rs->next()) return std::nullopt;
        hash = rs->getString(1).asStdString();
        info = SessionInfo{session_id, user_id, rs->getString(2).asStdString(),
                           mysql::datetime_to_ms(rs->getString(3).asStdString())};
    }
    auto& up = db_.prepare(
        "UPDATE sessions SET revoked_at = CURRENT_TIMESTAMP(3) WHERE id = ? AND user_id = ? AND revoked_at IS NULL");
    up.setUInt64(1, session_id);
    up.setUInt64(2, user_id);
    const bool changed = up.executeUpdate() > 0;
    cache_tombstone(hash);
    if (!changed) return std::nullopt;  // a concurrent revocation won
    return info;
}

std::vector<SessionInfo> TokenStore::revoke_all_except(std::uint64_t user_id, std::uint64_t keep_session_id) {
    std::vector<std::pair<SessionInfo, std::string>> live;
    {
        auto& st = db_.prepare(
            "SELECT id, device_id, expires_at, token_hash FROM sessions "
            "WHERE user_id = ? AND revoked_at IS NULL AND id <> ?");
        st.setUInt64(1, user_id);
        st.setUInt64(2, keep_session_id);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        while (rs->next()) {
            live.push_back({SessionInfo{rs->getUInt64(1), user_id, rs->getString(2).asStdString(),
                                        mysql::datetime_to_ms(rs->getString(3).asStdString())},
                            rs->getString(4).asStdString()});
        }
    }
    auto& up = db_.prepare(
        "UPDATE sessions SET revoked_at = CURRENT_TIMESTAMP(3) WHERE user_id = ? AND revoked_at IS NULL AND id <> ?");
    up.setUInt64(1, user_id);
    up.setUInt64(2, keep_session_id);
    up.executeUpdate();
    std::vector<SessionInfo> out;
    for (auto& [info, hash] : live) {
        cache_tombstone(hash);
        out.push_back(std::move(info));
    }
    return out;
}

std::vector<SessionRow> TokenStore::list(std::uint64_t user_id) {
    auto& st = db_.prepare(
        "SELECT id, device_id, expires_at, client_addr, user_agent, created_at, last_seen_at FROM sessions "
        "WHERE user_id = ? AND revoked_at IS NULL AND expires_at > CURRENT_TIMESTAMP(3) ORDER BY id DESC LIMIT 1000");
    st.setUInt64(1, user_id);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    std::vector<SessionRow> out;
    while (rs->next()) {
        SessionRow r;
        r.info = SessionInfo{rs->getUInt64(1), user_id, rs->getString(2).asStdString(),
                             mysql::datetime_to_ms(rs->getString(3).asStdString())};
        r.client_addr = rs->getString(4).asStdString();
        r.user_agent = rs->getString(5).asStdString();
        r.created_ms = mysql::datetime_to_ms(rs->getString(6).asStdString());
        r.last_seen_ms = mysql::datetime_to_ms(rs->getString(7).asStdString());
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace im::tokens

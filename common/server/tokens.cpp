#include "im/server/tokens.hpp"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <sodium.h>
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
}

namespace {
constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kTokenChars = 43;  // base64url without padding of 32 bytes

void ensure_sodium() {
    static const int ok = sodium_init();
    if (ok < 0) throw std::runtime_error("libsodium initialisation failed");
}

template <class T>
std::optional<T> to_number(std::string_view s) {
    T v{};
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}
}  // namespace

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string new_token() {
    ensure_sodium();
    unsigned char raw[kTokenBytes];
    randombytes_buf(raw, sizeof raw);
    char out[sodium_base64_ENCODED_LEN(kTokenBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64(out, sizeof out, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    return out;
}

std::string hash_token(std::string_view token) {
    ensure_sodium();
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, reinterpret_cast<const unsigned char*>(token.data()), token.size());
    return std::string(reinterpret_cast<const char*>(h), sizeof h);
}

std::string to_hex(std::string_view bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        out += digits[c >> 4];
        out += digits[c & 0xf];
    }
    return out;
}

std::optional<std::string> bearer_token(std::string_view h) {
    constexpr std::string_view scheme = "Bearer ";
    if (h.size() < scheme.size()) return std::nullopt;
    for (std::size_t i = 0; i < scheme.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(h[i])) != std::tolower(static_cast<unsigned char>(scheme[i]))) {
            return std::nullopt;
        }
    }
    auto token = h.substr(scheme.size());
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    if (token.size() != kTokenChars) return std::nullopt;
    for (char c : token) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return std::nullopt;
    }
    return std::string(token);
}

std::string encode_cached_session(const SessionInfo& s) {
    return "v|" + std::to_string(s.user_id) + "|" + std::to_string(s.session_id) + "|" +
           std::to_string(s.expires_ms) + "|" + s.device_id;
}

std::optional<SessionInfo> decode_cached_session(std::string_view v, bool* revoked) {
    if (revoked != nullptr) *revoked = (v == "r");
    if (v.size() < 2 || v.substr(0, 2) != "v|") return std::nullopt;
    v.remove_prefix(2);
    std::string_view parts[3];
    for (auto& part : parts) {
        const auto bar = v.find('|');
        if (bar == std::string_view::npos) return std::nullopt;
        part = v.substr(0, bar);
        v.remove_prefix(bar + 1);
    }
    auto user = to_number<std::uint64_t>(parts[0]);
    auto session = to_number<std::uint64_t>(parts[1]);
    auto expires = to_number<std::int64_t>(parts[2]);
    if (!user || !session || !expires) return std::nullopt;
    return SessionInfo{*session, *user, std::string(v), *expires};
}

TokenStore::TokenStore(mysql::MysqlConnection& db, redis::RedisConnection* redis, TokenConfig config,
                       std::string key_prefix)
    : db_(db), redis_(redis), config_(config), key_prefix_(std::move(key_prefix)) {}

std::string TokenStore::cache_key(std::string_view token_hash) const {
    return key_prefix_ + "tok:" + to_hex(token_hash);
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

bool TokenStore::revoke(std::uint64_t user_id, std::uint64_t session_id) {
    std::string hash;
    {
        auto& st = db_.prepare("SELECT token_hash FROM sessions WHERE id = ? AND user_id = ? AND revoked_at IS NULL");
        st.setUInt64(1, session_id);
        st.setUInt64(2, user_id);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        if (!rs->next()) return false;
        hash = rs->getString(1).asStdString();
    }
    auto& up = db_.prepare(
        "UPDATE sessions SET revoked_at = CURRENT_TIMESTAMP(3) WHERE id = ? AND user_id = ? AND revoked_at IS NULL");
    up.setUInt64(1, session_id);
    up.setUInt64(2, user_id);
    const bool changed = up.executeUpdate() > 0;
    cache_tombstone(hash);
    return changed;
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

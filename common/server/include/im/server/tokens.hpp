#pragma once
// Bearer tokens and the sessions they open. A token is 256 random bits (43 base64url chars);
// only SHA-256(token) is stored. MySQL's sessions table is the truth; Redis caches each validated
// token under <prefix>tok:<hex hash> with a short TTL so that connectors and im-rest validate
// without MySQL. Losing Redis logs nobody out (the next validation reads MySQL), and a revoked
// token stays revoked: revocation writes MySQL first, then a Redis tombstone that overwrites any
// cached entry, while validators only fill the cache with SET NX (a tombstone is never undone).
// Expiry slides: a token used after refresh_after gets a new expiry (one UPDATE, not per request).
// A refresh of an LDAP or external account also asks for a re-check against its directory (a row
// in directory_rechecks, done by im-rest) when the account was last confirmed longer than
// directory_recheck_interval ago, whichever process refreshes (im-rest, or im-transfer for the
// connectors' token checks).
// Synchronous: for blocking pool threads.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "im/server/token_format.hpp"

namespace im::mysql {
class MysqlConnection;
}
namespace im::redis {
class RedisConnection;
}
namespace im::config {
class Binder;
}

namespace im::tokens {

struct TokenConfig {
    std::chrono::milliseconds ttl{std::chrono::hours(24 * 30)};  // sliding lifetime
    std::chrono::milliseconds refresh_after{std::chrono::hours(1)};
    std::chrono::milliseconds cache_ttl{std::chrono::minutes(5)};
    // LDAP/external accounts: a refresh asks for a re-check when the last confirmation (a login or
    // a re-check) is older than this; 0: at every refresh.
    std::chrono::milliseconds directory_recheck_interval{std::chrono::hours(1)};
};

// keys auth.token_ttl, auth.token_refresh_after, auth.token_cache_ttl,
// auth.directory_recheck_interval
void bind(config::Binder& b, TokenConfig& c);

struct SessionRow {
    SessionInfo info;
    std::string client_addr;
    std::string user_agent;
    std::int64_t created_ms = 0;
    std::int64_t last_seen_ms = 0;
};


class TokenStore {
public:
    // `redis` may be null (no cache). key_prefix: RedisConfig::key_prefix.
    TokenStore(mysql::MysqlConnection& db, redis::RedisConnection* redis, TokenConfig config,
               std::string key_prefix);

    struct Issued {
        std::string token;  // given to the client once, never stored
        SessionInfo info;
    };
    Issued issue(std::uint64_t user_id, const std::string& device_id, const std::string& client_addr,
                 const std::string& user_agent);

    // The session of a token hash, or nullopt when unknown, revoked or expired.
    std::optional<SessionInfo> validate(std::string_view token_hash);

    // Revokes one session of `user_id` and returns it (so callers can kick its live connection);
    // nullopt when it does not exist, is not theirs or was already revoked.
    std::optional<SessionInfo> revoke(std::uint64_t user_id, std::uint64_t session_id);
    // Revokes every live session of the user except `keep_session_id` (0: all). Returns the
    // revoked sessions (so callers can kick their live connections).
    std::vector<SessionInfo> revoke_all_except(std::uint64_t user_id, std::uint64_t keep_session_id);
    // Live (not revoked, not expired) sessions of the user, newest first.
    std::vector<SessionRow> list(std::uint64_t user_id);

    // Counters for metrics.
    struct Stats {
        std::uint64_t cache_hits = 0, cache_misses = 0, redis_errors = 0, recheck_requests = 0;
    };
    const Stats& stats() const { return stats_; }

private:
    std::string cache_key(std::string_view token_hash) const;
    void cache_put(std::string_view token_hash, const SessionInfo& s);
    void cache_tombstone(std::string_view token_hash);
    std::optional<SessionInfo> load_from_db(std::string_view token_hash);
    void request_directory_recheck(std::uint64_t user_id, std::int64_t now);

    mysql::MysqlConnection& db_;
    redis::RedisConnection* redis_;
    TokenConfig config_;
    std::string key_prefix_;
    Stats stats_;
};


}  // namespace im::tokens

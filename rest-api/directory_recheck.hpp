#pragma once
// Re-checks LDAP and external accounts against their directory when a token refresh asked for it.
// A refresh (TokenStore, in im-rest or im-transfer) queues the account in directory_rechecks when
// its last confirmation is older than auth.directory_recheck_interval; this worker takes the
// queue in order, one account at a time, and asks the directory without the password (see
// LdapAuthenticator/ExternalAuthenticator::check_account). It has its own thread and its own
// MySQL and Redis connections: LDAP and HTTP calls block up to their timeouts and never run on
// an HTTP I/O thread nor hold a request's pool thread. Several im-rest replicas share the queue
// (a row is claimed by deleting it).
//
// Outcome per account (metric im_rest_directory_rechecks_total{result}):
// - active: users.verified_at = now.
// - gone: every session revoked (MySQL first, then Redis tombstones) and kicked, as at logout.
// - unavailable (the directory is down, slow, or answers nonsense) or not_checkable (no way to
//   ask without the password: external mode without auth.external.check_url, LDAP template mode
//   without a service account): the sessions stay and the next refresh asks again; the round
//   stops at the first unavailable (the directory is likely down: the queue waits).
// - expired: an account not confirmed for auth.token_ttl (neither a login nor a re-check) loses
//   its sessions, so an account that cannot be confirmed lives at most that long after its login.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "auth.hpp"
#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"
#include "im/server/tokens.hpp"
#include "im/user_status/user_status.hpp"

namespace prometheus {
class Counter;
}

namespace im {
class Metrics;
}

namespace im::rest {

struct RestConfig;

class DirectoryRechecker {
  public:
    // `ldap` / `external`: the back-ends of the configured auth.mode (null when not configured).
    DirectoryRechecker(const RestConfig& config, const LdapAuthenticator* ldap,
                       const ExternalAuthenticator* external, Metrics& metrics);
    ~DirectoryRechecker();
    DirectoryRechecker(const DirectoryRechecker&) = delete;
    DirectoryRechecker& operator=(const DirectoryRechecker&) = delete;

    void start();
    void stop();  // waits for the account being checked (bounded by the back-end's timeouts)

  private:
    struct Pending {
        std::uint64_t user_id = 0;
        bool user_exists = false;
        std::string username, origin, external_ref;
        std::optional<std::int64_t> verified_ms;
    };

    void run();
    void round();
    std::optional<Pending> next();
    bool claim(std::uint64_t user_id);
    // False when the round should stop (the directory could not be asked).
    bool handle(const Pending& p);
    AccountCheck check(const Pending& p) const;
    void end_sessions(const Pending& p, const char* why, const std::string& detail);
    void count(const char* result);
    bool stopping();

    const RestConfig& config_;
    const LdapAuthenticator* ldap_;
    const ExternalAuthenticator* external_;
    std::map<std::string, prometheus::Counter*> results_;  // by result label
    // Used by the worker thread only.
    mysql::MysqlConnection db_;
    redis::RedisConnection redis_;
    tokens::TokenStore tokens_;
    user_status::UserStatus status_;

    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace im::rest

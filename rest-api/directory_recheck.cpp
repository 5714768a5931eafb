#include "directory_recheck.hpp"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "accounts.hpp"
#include "im/server/metrics.hpp"
#include "rest_config.hpp"

namespace im::rest {

namespace {
// Accounts per round at most, so that stop() and the next poll are never far away.
constexpr int kMaxPerRound = 100;
constexpr const char* kResults[] = {"active", "gone", "unavailable", "not_checkable", "expired"};
}  // namespace

DirectoryRechecker::DirectoryRechecker(const RestConfig& config, const LdapAuthenticator* ldap,
                                       const ExternalAuthenticator* external, Metrics& metrics)
    : config_(config),
      ldap_(ldap),
      external_(external),
      db_(config.mysql),
      redis_(config.redis),
      tokens_(db_, &redis_, config.tokens, config.redis.key_prefix),
      status_(redis_, config.redis.key_prefix) {
    for (const char* r : kResults) {
        results_[r] = &metrics.counter(
            "im_rest_directory_rechecks_total",
            "Re-checks of LDAP/external accounts asked by token refreshes, by result.",
            {{"result", r}});
    }
}

DirectoryRechecker::~DirectoryRechecker() {
    stop();
}

void DirectoryRechecker::start() {
    thread_ = std::thread([this] { run(); });
}

void DirectoryRechecker::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool DirectoryRechecker::stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
}

void DirectoryRechecker::run() {
    for (;;) {
        {
            std::unique_lock lock(mu_);
            if (cv_.wait_for(lock, config_.directory_recheck_poll, [this] { return stopping_; }))
                return;
        }
        try {
            round();
        } catch (const sql::SQLException& e) {
            spdlog::warn("directory re-check: mysql: {} ({})", e.what(), e.getErrorCode());
            db_.reset();  // reconnect next round
        } catch (const std::exception& e) {
            spdlog::warn("directory re-check: {}", e.what());
        }
    }
}

void DirectoryRechecker::round() {
    for (int i = 0; i < kMaxPerRound && !stopping(); ++i) {
        const auto p = next();
        if (!p) return;                    // the queue is empty
        if (!claim(p->user_id)) continue;  // another replica took it
        if (!handle(*p)) return;
    }
}

std::optional<DirectoryRechecker::Pending> DirectoryRechecker::next() {
    auto& st = db_.prepare(
        "SELECT r.user_id, u.id IS NOT NULL, COALESCE(u.username, ''), COALESCE(u.origin, ''), "
        "COALESCE(u.external_ref, ''), u.verified_at FROM directory_rechecks r "
        "LEFT JOIN users u ON u.id = r.user_id ORDER BY r.requested_at LIMIT 1");
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    if (!rs->next()) return std::nullopt;
    Pending p;
    p.user_id = rs->getUInt64(1);
    p.user_exists = rs->getBoolean(2);
    p.username = rs->getString(3).asStdString();
    p.origin = rs->getString(4).asStdString();
    p.external_ref = rs->getString(5).asStdString();
    if (!rs->isNull(6)) p.verified_ms = mysql::datetime_to_ms(rs->getString(6).asStdString());
    return p;
}

bool DirectoryRechecker::claim(std::uint64_t user_id) {
    auto& st = db_.prepare("DELETE FROM directory_rechecks WHERE user_id = ?");
    st.setUInt64(1, user_id);
    return st.executeUpdate() > 0;
}

AccountCheck DirectoryRechecker::check(const Pending& p) const {
    if (p.origin == "ldap" && ldap_ != nullptr && ldap_->can_check_accounts()) {
        return ldap_->check_account(p.username, p.external_ref);
    }
    if (p.origin == "external" && external_ != nullptr && external_->can_check_accounts()) {
        return external_->check_account(p.external_ref, p.username);
    }
    // External mode without check_url, LDAP template mode without a service account, or an
    // account of another origin than the configured auth.mode.
    return {AccountStatus::not_checkable, "an " + p.origin +
                                              " account cannot be re-checked with auth.mode " +
                                              config_.auth_mode + " as configured"};
}

bool DirectoryRechecker::handle(const Pending& p) {
    if (!p.user_exists || p.origin == "local") return true;
    const auto now = tokens::now_ms();
    if (p.verified_ms && *p.verified_ms > now - config_.tokens.directory_recheck_interval.count()) {
        spdlog::debug("directory re-check: user {} was confirmed meanwhile", p.user_id);
        return true;
    }
    const auto c = check(p);
    switch (c.status) {
        case AccountStatus::active:
            accounts::mark_verified(db_, p.user_id);
            count("active");
            spdlog::debug("directory re-check: user {} ('{}') is active: {}", p.user_id, p.username,
                          c.detail);
            return true;
        case AccountStatus::gone:
            count("gone");
            end_sessions(p, "gone from the directory", c.detail);
            return true;
        case AccountStatus::unavailable:
        case AccountStatus::not_checkable:
            break;
    }
    const bool unavailable = c.status == AccountStatus::unavailable;
    if (p.verified_ms && now - *p.verified_ms >= config_.tokens.ttl.count()) {
        count("expired");
        end_sessions(p, "not confirmed by the directory for auth.token_ttl", c.detail);
    } else if (unavailable) {
        count("unavailable");
        spdlog::warn("directory re-check: user {} ('{}') kept, asked again at the next refresh: {}",
                     p.user_id, p.username, c.detail);
    } else {
        count("not_checkable");
        spdlog::debug("directory re-check: user {} ('{}') kept: {}", p.user_id, p.username,
                      c.detail);
    }
    return !unavailable;
}

void DirectoryRechecker::end_sessions(const Pending& p, const char* why,
                                      const std::string& detail) {
    // MySQL first, then the tombstones (TokenStore), then the kicks: as at logout.
    const auto revoked = tokens_.revoke_all_except(p.user_id, 0);
    std::size_t kicked = 0;
    for (const auto& s : revoked) {
        try {
            status_.publish_kick({p.user_id, s.session_id, "account_removed"});
            ++kicked;
        } catch (const redis::RedisError& e) {
            // The connectors' token re-checks end the connections anyway (tombstone or MySQL).
            spdlog::warn("directory re-check: kicks for user {} not published: {}", p.user_id,
                         e.what());
            break;
        }
    }
    spdlog::info(
        "directory re-check: user {} ('{}') {}: {} session(s) revoked, {} kick(s) published ({})",
        p.user_id, p.username, why, revoked.size(), kicked, detail);
}

void DirectoryRechecker::count(const char* result) {
    results_.at(result)->Increment();
}

}  // namespace im::rest

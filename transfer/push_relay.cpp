#include "push_relay.hpp"

#include "im/server/clock.hpp"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <tuple>

#include "im/proto/events.pb.h"
#include "im/server/config.hpp"
#include "im/server/metrics.hpp"

namespace im::transfer {

namespace {
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kMinBackoff{100};
constexpr milliseconds kMaxBackoff{5000};
// The depth gauge counts at most this many rows (a bounded index scan per round).
constexpr int kDepthCountLimit = 100000;

const std::string kSelectDue =
    "SELECT p.user_id, p.conversation_id, p.from_user_id, p.up_to_seq, p.updated_ms, "
    "COALESCE(uc.unread, GREATEST(CAST(p.up_to_seq AS SIGNED) - GREATEST(CAST(gm.read_seq AS SIGNED), "
    "CAST(gm.joined_seq AS SIGNED) - 1), 0), p.up_to_seq) FROM push_pending p "
    "LEFT JOIN user_conversations uc ON uc.user_id = p.user_id AND uc.conversation_id = "
    "p.conversation_id "
    // a group (no user_conversations row): the seqs after the member's read watermark
    "LEFT JOIN group_members gm ON gm.group_id = p.conversation_id AND gm.user_id = p.user_id "
    "WHERE p.updated_ms <= ? OR (p.first_ms > 0 AND p.first_ms <= ?) ORDER BY p.updated_ms LIMIT ?";
// A row that changed while its event was being published starts a new max_delay window.
const std::string kRestartWindow =
    "UPDATE push_pending SET first_ms = ? WHERE user_id = ? AND conversation_id = ? AND up_to_seq <> ?";
// The up_to_seq guard: a row the writer advanced after we read it is not ours to delete.
const std::string kDeletePublished =
    "DELETE FROM push_pending WHERE user_id = ? AND conversation_id = ? AND up_to_seq = ?";
const std::string kDepth =
    "SELECT COUNT(*), MIN(updated_ms), MIN(NULLIF(first_ms, 0)) FROM (SELECT updated_ms, first_ms FROM "
    "push_pending ORDER BY updated_ms LIMIT " +
    std::to_string(kDepthCountLimit) + ") t";
}  // namespace

void bind(config::Binder& b, PushRelayConfig& c) {
    b.bind_duration("push.coalesce_delay", c.coalesce_delay, milliseconds(0),
                    std::chrono::minutes(10));
    b.bind_duration("push.max_delay", c.max_delay, milliseconds(0), std::chrono::hours(24));
    b.bind("push.batch", c.batch, 1, 10000);
    b.bind_duration("push.poll_interval", c.poll_interval, milliseconds(10),
                    std::chrono::minutes(10));
}

std::string push_event_id(std::uint64_t user_id, std::uint64_t conversation_id,
                          std::uint64_t up_to_seq) {
    return std::to_string(user_id) + ":" + std::to_string(conversation_id) + ":" +
           std::to_string(up_to_seq);
}

events::PushEvent make_push_event(const PendingPush& row) {
    events::PushEvent e;
    e.set_event_id(push_event_id(row.user_id, row.conversation_id, row.up_to_seq));
    e.set_user_id(row.user_id);
    e.set_conversation_id(row.conversation_id);
    e.set_from_user_id(row.from_user_id);
    e.set_up_to_seq(row.up_to_seq);
    e.set_unread(row.unread);
    e.set_created_ms(row.updated_ms);
    return e;
}

PushRelay::PushRelay(mysql::MysqlConfig db, mq::MqConfig mq, PushRelayConfig cfg, Metrics& metrics)
    : db_config_(std::move(db)),
      cfg_(cfg),
      // Named locks are server-wide: one per database. MariaDB allows 64 characters.
      lock_name_(("im_push_relay:" + db_config_.db).substr(0, 64)),
      publisher_(std::move(mq)),
      published_(metrics.counter("im_push_relay_published_total",
                                 "Push events confirmed by RabbitMQ and removed from the outbox.")),
      mq_failures_(metrics.counter("im_push_relay_failures_total",
                                   "Push relay failures (rows stay in the outbox and are retried).",
                                   {{"stage", "rabbitmq"}})),
      db_failures_(metrics.counter("im_push_relay_failures_total",
                                   "Push relay failures (rows stay in the outbox and are retried).",
                                   {{"stage", "mysql"}})),
      outbox_rows_(
          metrics.gauge("im_push_relay_outbox_rows",
                        "Rows in push_pending seen by the last round (counted up to 100000).")),
      outbox_oldest_seconds_(
          metrics.gauge("im_push_relay_outbox_oldest_seconds",
                        "Age of the oldest push_pending row seen by the last round.")),
      leader_(metrics.gauge("im_push_relay_active", "1 while this relay holds the outbox lock.")),
      publish_seconds_(metrics.histogram("im_push_relay_publish_seconds",
                                         "Publishing one batch until every confirm arrived.",
                                         Metrics::latency_buckets())) {}

PushRelay::~PushRelay() {
    stop();
}

void PushRelay::start() {
    std::lock_guard lock(mu_);
    if (thread_.joinable()) return;
    stopping_ = false;
    thread_ = std::thread([this] { run(); });
}

void PushRelay::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void PushRelay::notify() {
    const auto due = Clock::now() + cfg_.coalesce_delay;
    {
        std::lock_guard lock(mu_);
        if (due >= notify_due_) return;  // an earlier wake-up is already planned
        notify_due_ = due;
    }
    cv_.notify_all();
}

bool PushRelay::wait(Clock::time_point until, bool wake_on_notify) {
    std::unique_lock lock(mu_);
    for (;;) {
        if (stopping_) return false;
        const auto deadline = wake_on_notify ? std::min(until, notify_due_) : until;
        if (Clock::now() >= deadline) return true;
        cv_.wait_until(lock, deadline);
    }
}

void PushRelay::run() {
    spdlog::info("push relay: started (coalesce {}ms, batch {}, exchange '{}' on {}:{})",
                 cfg_.coalesce_delay.count(), cfg_.batch, publisher_.config().exchange,
                 publisher_.config().host, publisher_.config().port);
    milliseconds backoff{0};
    while (true) {
        {
            std::lock_guard lock(mu_);
            if (stopping_) break;
            notify_due_ = Clock::time_point::max();  // this round sees every row committed so far
        }
        const auto started = Clock::now();
        const auto r = round();
        if (r.failed) {
            ++failed_rounds_;
            backoff = std::clamp(backoff * 2, kMinBackoff, kMaxBackoff);
            if (!wait(Clock::now() + backoff, /*wake_on_notify=*/false)) break;
            continue;
        }
        if (failed_rounds_ > 0) {
            spdlog::info("push relay: working again after {} failed round(s)", failed_rounds_);
            failed_rounds_ = 0;
        }
        backoff = milliseconds(0);
        if (r.more) continue;
        auto until = started + cfg_.poll_interval;
        if (!r.standby && r.next_due_ms > 0) {
            const auto due =
                Clock::now() + milliseconds(std::max<std::int64_t>(r.next_due_ms - wall_ms(), 0));
            until = std::min(until, due);
        }
        if (!wait(until, /*wake_on_notify=*/!r.standby)) break;
    }
    // Closing the connection releases the named lock at once: a standby relay takes over.
    db_.reset();
    publisher_.disconnect();
    leader_.Set(0);
    spdlog::info("push relay: stopped");
}

PushRelay::Round PushRelay::round() {
    Round r;
    try {
        if (!db_) db_ = std::make_unique<mysql::MysqlConnection>(db_config_);
        if (!hold_lock()) {
            r.standby = true;
            return r;
        }
        const auto now_ms = wall_ms();
        const auto rows = select_due(now_ms - cfg_.coalesce_delay.count(), now_ms - cfg_.max_delay.count());
        if (!rows.empty()) {
            std::vector<mq::OutgoingMessage> messages;
            messages.reserve(rows.size());
            for (const auto& row : rows) {
                const auto event = make_push_event(row);
                messages.push_back({event.SerializeAsString(), event.event_id()});
            }
            const auto t0 = Clock::now();
            const auto result = publisher_.publish_confirmed(messages);
            publish_seconds_.Observe(std::chrono::duration<double>(Clock::now() - t0).count());

            std::vector<const PendingPush*> confirmed;
            for (std::size_t i = 0; i < rows.size(); ++i) {
                if (result.confirmed[i]) confirmed.push_back(&rows[i]);
            }
            if (!confirmed.empty()) {
                delete_published(confirmed);
                published_.Increment(static_cast<double>(confirmed.size()));
            }
            if (confirmed.size() < rows.size()) {
                mq_failures_.Increment();
                // The first failure of a streak is a warning; the retries while RabbitMQ stays
                // down are not worth a line each (the metrics count them).
                spdlog::log(failed_rounds_ == 0 ? spdlog::level::warn : spdlog::level::debug,
                            "push relay: {} of {} event(s) not confirmed, kept in the outbox: {}",
                            rows.size() - confirmed.size(), rows.size(), result.error);
                r.failed = true;
            } else {
                r.more = rows.size() >= cfg_.batch;
            }
        }
        update_depth(r, now_ms);
    } catch (const sql::SQLException& e) {
        db_failures_.Increment();
        spdlog::log(failed_rounds_ == 0 ? spdlog::level::warn : spdlog::level::debug,
                    "push relay: MySQL error {}: {}", e.getErrorCode(), e.what());
        // Whatever the error, start over on a fresh connection (the lock goes with the old one).
        db_.reset();
        leader_.Set(0);
        leader_logged_.reset();
        r.failed = true;
    } catch (const std::exception& e) {
        db_failures_.Increment();
        spdlog::error("push relay: {}", e.what());
        db_.reset();
        leader_.Set(0);
        leader_logged_.reset();
        r.failed = true;
    }
    return r;
}

bool PushRelay::hold_lock() {
    // IS_USED_LOCK first: GET_LOCK on a lock we hold would nest it. A reconnect (idle check in
    // MysqlConnection::get) loses the lock; then GET_LOCK takes it again if it is free.
    {
        auto& st = db_->prepare("SELECT IS_USED_LOCK(?) = CONNECTION_ID()");
        st.setString(1, lock_name_);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        if (rs->next() && !rs->isNull(1) && rs->getInt(1) == 1) return true;
    }
    auto& st = db_->prepare("SELECT GET_LOCK(?, 0)");
    st.setString(1, lock_name_);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    const bool held = rs->next() && !rs->isNull(1) && rs->getInt(1) == 1;
    leader_.Set(held ? 1 : 0);
    if (!leader_logged_ || held != *leader_logged_) {
        if (held) {
            spdlog::info("push relay: active (holds the outbox lock '{}')", lock_name_);
        } else {
            spdlog::info("push relay: standby (another relay holds '{}')", lock_name_);
        }
        leader_logged_ = held;
    }
    return held;
}

std::vector<PendingPush> PushRelay::select_due(std::int64_t quiet_cutoff_ms, std::int64_t first_cutoff_ms) {
    auto& st = db_->prepare(kSelectDue);
    st.setInt64(1, quiet_cutoff_ms);
    st.setInt64(2, first_cutoff_ms);
    st.setUInt(3, cfg_.batch);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    std::vector<PendingPush> rows;
    while (rs->next()) {
        PendingPush p;
        p.user_id = rs->getUInt64(1);
        p.conversation_id = rs->getUInt64(2);
        p.from_user_id = rs->getUInt64(3);
        p.up_to_seq = rs->getUInt64(4);
        p.updated_ms = rs->getInt64(5);
        p.unread = rs->getUInt64(6);
        rows.push_back(p);
    }
    return rows;
}

void PushRelay::delete_published(const std::vector<const PendingPush*>& rows) {
    // Primary-key order: concurrent writers lock rows in a consistent order, fewer deadlocks.
    auto sorted = rows;
    std::sort(sorted.begin(), sorted.end(), [](const PendingPush* a, const PendingPush* b) {
        return std::tie(a->user_id, a->conversation_id) < std::tie(b->user_id, b->conversation_id);
    });
    std::size_t kept = 0;
    db_->transaction([&] {
        kept = 0;
        auto& st = db_->prepare(kDeletePublished);
        for (const auto* row : sorted) {
            st.setUInt64(1, row->user_id);
            st.setUInt64(2, row->conversation_id);
            st.setUInt64(3, row->up_to_seq);
            if (st.executeUpdate() == 0) {
                ++kept;
                auto& restart = db_->prepare(kRestartWindow);
                restart.setInt64(1, wall_ms());
                restart.setUInt64(2, row->user_id);
                restart.setUInt64(3, row->conversation_id);
                restart.setUInt64(4, row->up_to_seq);
                restart.executeUpdate();
            }
        }
    });
    if (kept > 0)
        spdlog::debug("push relay: {} row(s) advanced while publishing, kept for the next event",
                      kept);
}

void PushRelay::update_depth(Round& r, std::int64_t now_ms) {
    std::unique_ptr<sql::ResultSet> rs(db_->prepare(kDepth).executeQuery());
    if (!rs->next()) return;
    outbox_rows_.Set(static_cast<double>(rs->getInt64(1)));
    if (rs->isNull(2)) {
        outbox_oldest_seconds_.Set(0);
        r.next_due_ms = 0;
        return;
    }
    const auto oldest = rs->getInt64(2);
    outbox_oldest_seconds_.Set(static_cast<double>(std::max<std::int64_t>(now_ms - oldest, 0)) /
                               1000.0);
    r.next_due_ms = oldest + cfg_.coalesce_delay.count();
    if (!rs->isNull(3)) r.next_due_ms = std::min(r.next_due_ms, rs->getInt64(3) + cfg_.max_delay.count());
}

}  // namespace im::transfer

#include "ownership_manager.hpp"

#include <cppconn/exception.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "im/server/clock.hpp"
#include "im/server/id_generator.hpp"
#include "im/server/metrics.hpp"
#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"
#include "im/user_status/user_status.hpp"
#include "im/wire/ids.hpp"
#include "membership.hpp"
#include "message_writer.hpp"
#include "transfer_config.hpp"

namespace im::transfer {

using Clock = std::chrono::steady_clock;

struct OwnershipManager::Impl {
    Impl(OwnershipManager& o, const TransferConfig& c, std::uint64_t inc, WorkerLease l, IdGenerator& i,
         std::atomic<std::int64_t>& valid, MessageWriter& w, Metrics& metrics, Hooks h)
        : outer(o),
          cfg(c),
          incarnation(inc),
          lease(std::move(l)),
          ids(i),
          id_valid_until(valid),
          writer(w),
          hooks(std::move(h)),
          db(c.mysql),
          redis(c.redis),
          status(redis, c.redis.key_prefix),
          published(kShardCount, 0),
          owned_gauge(metrics.gauge("im_transfer_owned_shards", "Shards this transfer owns now.")),
          members_gauge(metrics.gauge("im_transfer_members", "Live transfers in transfer_members (any state).")),
          handed_over(metrics.counter("im_transfer_shards_handed_over_total",
                                      "Shards this transfer gave to another live member (rebalance or drain).")),
          taken_over(metrics.counter("im_transfer_shards_taken_over_total",
                                     "Shards claimed from a dead owner (lease expired) or from nobody.")),
          acquired(metrics.counter("im_transfer_shards_acquired_total",
                                   "Shards that became this transfer's (hand-overs received and claims).")),
          lost(metrics.counter("im_transfer_shards_lost_total",
                               "Shards taken from this transfer by another (it was presumed dead).")),
          round_failures(metrics.counter("im_transfer_ownership_round_failures_total",
                                         "Ownership rounds that failed (database unreachable).")),
          lease_renewals_failed(metrics.counter("im_transfer_worker_lease_failures_total",
                                                "Worker-id lease renewals that failed.")),
          worker_releases(metrics.counter("im_transfer_worker_id_changes_total",
                                          "Snowflake worker ids leased again after the lease was lost.")) {
        me.incarnation = incarnation;
        me.transfer_id = cfg.id;
        me.address = cfg.advertised_address;
        me.state = MemberState::joining;
        id_valid_until = lease.expires_ms - kLeaseMarginMs;
    }

    static constexpr std::int64_t kLeaseMarginMs = 5000;

    OwnershipManager& outer;
    const TransferConfig& cfg;
    std::uint64_t incarnation;
    WorkerLease lease;
    IdGenerator& ids;
    std::atomic<std::int64_t>& id_valid_until;
    MessageWriter& writer;
    Hooks hooks;
    mysql::MysqlConnection db;
    redis::RedisConnection redis;
    user_status::UserStatus status;

    std::mutex mu;
    std::condition_variable cv;
    bool stopping = false;
    bool draining = false;
    std::thread thread;

    Member me;
    OwnedShards published;  // what the I/O thread accepts (as last published)
    std::optional<Clock::time_point> healthy_since;
    Clock::time_point next_renew{};
    Clock::time_point next_cleanup{};
    Clock::time_point joined_at = Clock::now();
    std::int64_t last_error_log_ms = 0;
    bool others_active = false;  // the last round saw another live active member

    prometheus::Gauge& owned_gauge;
    prometheus::Gauge& members_gauge;
    prometheus::Counter& handed_over;
    prometheus::Counter& taken_over;
    prometheus::Counter& acquired;
    prometheus::Counter& lost;
    prometheus::Counter& round_failures;
    prometheus::Counter& lease_renewals_failed;
    prometheus::Counter& worker_releases;

    void run();
    void round();
    void renew();
    void publish(const std::vector<ShardRow>& rows, const std::vector<std::uint32_t>& withheld);
    bool ready_to_join(const std::vector<Member>& members);
    void finish();
};

OwnershipManager::OwnershipManager(const TransferConfig& config, std::uint64_t incarnation, WorkerLease lease,
                                   IdGenerator& ids, std::atomic<std::int64_t>& id_lease_valid_until_ms,
                                   MessageWriter& writer, Metrics& metrics, Hooks hooks)
    : impl_(std::make_unique<Impl>(*this, config, incarnation, std::move(lease), ids, id_lease_valid_until_ms, writer,
                                   metrics, std::move(hooks))) {}

OwnershipManager::~OwnershipManager() { stop(); }

void OwnershipManager::start() {
    Impl* i = impl_.get();
    i->thread = std::thread([i] { i->run(); });
}

void OwnershipManager::drain(Clock::time_point deadline) {
    {
        std::lock_guard lock(impl_->mu);
        impl_->draining = true;
    }
    impl_->cv.notify_all();
    // Done when nothing is owned, or when nobody else could take it (then stop() gives it to nobody).
    std::unique_lock lock(impl_->mu);
    while (Clock::now() < deadline && !impl_->stopping) {
        if (owned_count_.load() == 0) return;
        if (!impl_->others_active && mysql_ok_.load()) return;
        impl_->cv.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(50)));
    }
}

void OwnershipManager::stop() {
    if (!impl_) return;
    {
        std::lock_guard lock(impl_->mu);
        if (impl_->stopping && !impl_->thread.joinable()) return;
        impl_->stopping = true;
    }
    impl_->cv.notify_all();
    if (impl_->thread.joinable()) impl_->thread.join();
}

void OwnershipManager::Impl::run() {
    pthread_setname_np(pthread_self(), "ownership");
    for (;;) {
        round();
        std::unique_lock lock(mu);
        cv.notify_all();  // drain() watches the counters
        if (stopping) break;
        cv.wait_for(lock, cfg.ownership_poll_interval, [this] { return stopping; });
        if (stopping) break;
    }
    finish();
}

void OwnershipManager::Impl::renew() {
    // Redis first and on its own: connectors find this transfer there whatever MySQL does.
    try {
        status.transfer_heartbeat(user_status::TransferInfo{cfg.id, incarnation, cfg.advertised_address, wall_ms()},
                                  cfg.registration_ttl);
    } catch (const std::exception& e) {
        spdlog::warn("ownership: redis registration failed: {}", e.what());
    }
    // The worker-id lease: renewed, or replaced when another process took it after it expired
    // (possible only after an outage longer than the lease): never stop the process for it.
    try {
        if (renew_worker_lease(db, lease)) {
            id_valid_until = lease.expires_ms - kLeaseMarginMs;
        } else {
            id_valid_until = 0;  // nothing may be committed with the old id from now on
            lease_renewals_failed.Increment();
            const auto old = lease.worker_id;
            lease = lease_worker_id(db, lease.owner);
            ids.set_worker_id(lease.worker_id);
            id_valid_until = lease.expires_ms - kLeaseMarginMs;
            worker_releases.Increment();
            spdlog::warn("ownership: worker id {} was lost while the database was unreachable; now {}", old,
                         lease.worker_id);
        }
    } catch (...) {
        lease_renewals_failed.Increment();
        throw;
    }
    renew_member(db, me, cfg.ownership_lease_ttl);
}

bool OwnershipManager::Impl::ready_to_join(const std::vector<Member>& members) {
    // Alone (a cold start, or every other transfer is gone): there is nobody to wait for.
    const bool alone = std::none_of(members.begin(), members.end(), [&](const Member& m) {
        return m.live && m.incarnation != incarnation && m.state == MemberState::active;
    });
    if (alone) return true;
    if (Clock::now() - joined_at >= cfg.ownership_join_timeout) return true;
    // Otherwise take a share once every live connector has linked here, so pushes from this
    // transfer reach every session from the first message it commits.
    try {
        const auto linked = hooks.linked_connectors();
        for (const auto& c : status.live_connectors()) {
            if (linked.count(c.id) == 0) return false;
        }
        return true;
    } catch (const std::exception&) {
        return false;  // Redis down: the join timeout decides
    }
}

void OwnershipManager::Impl::round() {
    try {
        const auto now = Clock::now();
        if (now >= next_renew) {
            renew();
            next_renew = now + cfg.heartbeat_interval;
        }
        if (now >= next_cleanup) {
            if (const auto n = delete_dead_members(db, cfg.id, incarnation, std::chrono::minutes(1)); n > 0)
                spdlog::info("ownership: removed {} dead member row(s)", n);
            next_cleanup = now + std::chrono::seconds(10);
        }
        if (!healthy_since) healthy_since = now;
        outer.mysql_ok_ = true;

        bool drain_now = false;
        {
            std::lock_guard lock(mu);
            drain_now = draining;
        }
        auto members = read_members(db);
        const MemberState want_state = drain_now ? MemberState::draining
                                       : me.state == MemberState::joining && !ready_to_join(members)
                                           ? MemberState::joining
                                           : MemberState::active;
        if (want_state != me.state) {
            me.state = want_state;
            renew_member(db, me, cfg.ownership_lease_ttl);
            next_renew = now + cfg.heartbeat_interval;
            spdlog::info("ownership: {} is {}", cfg.id,
                         want_state == MemberState::active ? "active" : want_state == MemberState::draining ? "draining" : "joining");
            members = read_members(db);
        }
        std::size_t live = 0;
        bool others = false;
        for (const auto& m : members) {
            live += m.live ? 1 : 0;
            others = others || (m.live && m.incarnation != incarnation && m.state == MemberState::active);
        }
        members_gauge.Set(static_cast<double>(live));

        auto rows = read_shard_rows(db);
        PlanInput in;
        in.me = incarnation;
        in.my_id = cfg.id;
        in.me_active = me.state == MemberState::active;
        in.may_take_expired = Clock::now() - *healthy_since >= cfg.ownership_lease_ttl;
        in.members = members;
        in.rows = rows;
        const Plan plan = plan_ownership(in);

        bool moved = false;
        if (!plan.hand_over.empty()) {
            // Stop accepting them first (the connectors hold new requests for them until the new
            // owner announces itself), then move the rows.
            std::vector<std::uint32_t> giving;
            for (const auto& [to, h] : plan.hand_over) giving.insert(giving.end(), h.shards.begin(), h.shards.end());
            publish(rows, giving);
            for (const auto& [to, h] : plan.hand_over) {
                const auto n = move_shards(db, h.shards, incarnation, h.to_id, to, std::chrono::duration_cast<std::chrono::seconds>(cfg.ownership_lock_wait));
                handed_over.Increment(static_cast<double>(n));
                spdlog::info("ownership: handed {} shard(s) over to {} ({})", n, h.to_id, to);
                moved = true;
            }
        }
        for (const auto& [from, shards] : plan.claim) {
            const auto n = move_shards(db, shards, from, cfg.id, incarnation, std::chrono::duration_cast<std::chrono::seconds>(cfg.ownership_lock_wait));
            taken_over.Increment(static_cast<double>(n));
            spdlog::info("ownership: took {} shard(s) over from {}", n, from == 0 ? std::string("nobody") : std::to_string(from));
            moved = true;
        }
        if (moved) rows = read_shard_rows(db);
        publish(rows, {});
        {
            std::lock_guard lock(mu);
            others_active = others;
        }
    } catch (const std::exception& e) {
        round_failures.Increment();
        healthy_since.reset();
        outer.mysql_ok_ = false;
        if (const auto* se = dynamic_cast<const sql::SQLException*>(&e); se != nullptr && mysql::is_connection_error(*se))
            db.reset();
        const auto now_ms = wall_ms();
        if (now_ms - last_error_log_ms > 5000) {
            last_error_log_ms = now_ms;
            spdlog::warn("ownership: round failed (serving the shards as last known; writes fail their fence "
                         "if ownership moved): {}",
                         e.what());
        }
    }
}

void OwnershipManager::Impl::publish(const std::vector<ShardRow>& rows, const std::vector<std::uint32_t>& withheld) {
    OwnedShards mine(kShardCount, 0);
    for (std::uint32_t s = 0; s < kShardCount; ++s) {
        if (rows[s].epoch == incarnation) mine[s] = rows[s].gen;
    }
    for (auto s : withheld) mine[s] = 0;
    std::vector<std::pair<std::uint32_t, std::uint64_t>> fresh;
    std::size_t count = 0, gone = 0;
    for (std::uint32_t s = 0; s < kShardCount; ++s) {
        if (mine[s] != 0) ++count;
        if (mine[s] != 0 && mine[s] != published[s]) fresh.emplace_back(s, mine[s]);
        if (published[s] != 0 && mine[s] == 0 && rows[s].epoch != incarnation &&
            std::find(withheld.begin(), withheld.end(), s) == withheld.end()) {
            ++gone;
        }
    }
    if (mine == published) return;
    // The lanes forget what they cached about these shards before any request for them is
    // accepted (their queues are FIFO, the I/O thread accepts after this call).
    if (!fresh.empty()) {
        writer.reset_shards(fresh);
        acquired.Increment(static_cast<double>(fresh.size()));
    }
    if (gone > 0) {
        lost.Increment(static_cast<double>(gone));
        spdlog::warn("ownership: {} shard(s) were taken by another transfer", gone);
    }
    published = mine;
    owned_gauge.Set(static_cast<double>(count));
    outer.owned_count_ = count;
    hooks.publish(mine);
}

void OwnershipManager::Impl::finish() {
    // Whatever is still ours goes to nobody, so a new transfer takes it at once; then leave.
    try {
        std::vector<std::uint32_t> mine;
        const auto rows = read_shard_rows(db);
        for (std::uint32_t s = 0; s < kShardCount; ++s) {
            if (rows[s].epoch == incarnation) mine.push_back(s);
        }
        if (!mine.empty()) {
            const auto n = move_shards(db, mine, incarnation, "", 0, std::chrono::duration_cast<std::chrono::seconds>(cfg.ownership_lock_wait));
            spdlog::info("ownership: released {} shard(s) to nobody", n);
        }
        delete_member(db, incarnation);
        release_worker_lease(db, lease);
    } catch (const std::exception& e) {
        spdlog::warn("ownership: clean exit incomplete (the leases expire by themselves): {}", e.what());
    }
    try {
        status.transfer_gone(cfg.id);
    } catch (const std::exception& e) {
        spdlog::warn("ownership: deregistration failed: {}", e.what());
    }
    outer.owned_count_ = 0;
}

}  // namespace im::transfer

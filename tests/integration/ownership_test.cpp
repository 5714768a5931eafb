// Ownership of the transfer: leased snowflake worker ids (never configured), the shard_owner
// fence (a takeover stops the old owner's batches), and the connector's session limits.
#include <gtest/gtest.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <sys/wait.h>

#include <set>
#include <thread>

#include "cluster.hpp"
#include "im/server/migrations.hpp"
#include "im/server/mysql.hpp"
#include "im/wire/ids.hpp"
#include "ownership.hpp"

namespace im::test {
namespace {

using client::Envelope;

TEST(WorkerLease, ReplicasGetDistinctIdsAndExpiredOnesAreReused) {
    TestDatabase tdb;
    auto& db = tdb.db();
    mysql::apply_migrations(db);
    std::set<std::uint32_t> ids;
    std::vector<transfer::WorkerLease> leases;
    for (int i = 0; i < 20; ++i) {
        leases.push_back(transfer::lease_worker_id(db, "t" + std::to_string(i) + "/1"));
        ids.insert(leases.back().worker_id);
    }
    EXPECT_EQ(ids.size(), 20u) << "twenty live replicas, twenty distinct worker ids";
    EXPECT_TRUE(transfer::renew_worker_lease(db, leases[0]));

    // Expire lease 0: another process may take exactly that id, and then the old owner's renewal fails.
    auto& st = db.prepare("UPDATE worker_leases SET expires_ms = 0 WHERE worker_id = ?");
    st.setUInt(1, leases[0].worker_id);
    st.executeUpdate();
    auto& others = db.prepare("UPDATE worker_leases SET expires_ms = 9999999999999 WHERE worker_id <> ?");
    others.setUInt(1, leases[0].worker_id);
    others.executeUpdate();
    // Fill every free id so the only one available is the expired one.
    auto& fill = db.prepare("INSERT IGNORE INTO worker_leases (worker_id, owner, expires_ms) VALUES (?, 'filler', 9999999999999)");
    for (std::uint32_t id = 0; id < 1024; ++id) {
        if (id == leases[0].worker_id) continue;
        fill.setUInt(1, id);
        fill.executeUpdate();
    }
    auto taker = transfer::lease_worker_id(db, "newcomer/1");
    EXPECT_EQ(taker.worker_id, leases[0].worker_id);
    EXPECT_FALSE(transfer::renew_worker_lease(db, leases[0])) << "the old owner learns it lost the id";
    EXPECT_THROW(transfer::lease_worker_id(db, "one-too-many/1"), std::runtime_error);
}

TEST(ShardFence, ATakeoverFencesTheOldOwnersBatchesAndTheirRequestsGoBack) {
    Cluster cl(ClusterOptions{1, {}, {}, {}, "fence"});
    ASSERT_TRUE(cl.wait_shards_settled());
    auto a = cl.user("olga");
    auto b = cl.user("pete");
    cl.befriend(a, b);
    auto ca = cl.connect(0, a.token, "dev1");
    auto first = ca->make_send(b.id, "before the takeover", 1);
    ca->send(first);
    auto r1 = ca->wait_for([&](const Envelope& e) { return e.request_id() == first.request_id(); });
    ASSERT_TRUE(r1 && r1->send_result().code() == client::ERROR_NONE);

    // Another incarnation claims every shard behind the transfer's back (what a new owner does
    // at a takeover). The transfer's next batch fails its fence: nothing is stored under its old
    // claim, the request goes back to the connector, which holds it until an owner is announced.
    // The usurper is no live member, so the transfer takes the shards back (a new gen) and the
    // held request is stored there: exactly once, seq 2, no client-visible error.
    transfer::claim_shards(cl.db().db(), "usurper", transfer::new_incarnation_epoch(), 0, kShardCount - 1);
    auto second = ca->make_send(b.id, "after the takeover", 2, 1);
    ca->send(second);
    auto r2 = ca->wait_for([&](const Envelope& e) { return e.request_id() == second.request_id(); }, std::chrono::seconds(15));
    ASSERT_TRUE(r2.has_value());
    EXPECT_EQ(r2->send_result().code(), client::ERROR_NONE) << r2->DebugString();
    EXPECT_EQ(r2->send_result().seq(), 2u);
    EXPECT_EQ(cl.stored_messages(conversation_id(a.id, b.id)), 2u) << "stored once, by the owner";
    const auto log = cl.transfer().log_contents();
    const bool fenced = log.find("owned elsewhere now") != std::string::npos;
    const bool lost = log.find("were taken by another transfer") != std::string::npos;
    EXPECT_TRUE(fenced || lost) << "neither the fence nor the ownership poll noticed the takeover";
    EXPECT_NE(log.find("took"), std::string::npos) << "the transfer took its shards back";
}

TEST(ConnectorLimits, SubSecondHeartbeatIsRefusedAtStartup) {
    // LoginResult announces whole seconds: a shorter interval would be announced as 0.
    ChildProcess p;
    const auto log = TestEnv::get().run_dir + "/connector-badhb-" + unique_suffix() + ".log";
    p.start(bin_dir() + "/im-connector", {"--set", "sessions.heartbeat_interval=600ms"}, {}, log);
    const auto st = p.stop(0, std::chrono::seconds(10));
    ASSERT_TRUE(st.has_value());
    EXPECT_EQ(WEXITSTATUS(*st), 2);
    EXPECT_NE(p.log_contents().find("sessions.heartbeat_interval"), std::string::npos) << p.log_contents();
}

TEST(ConnectorLimits, IdleSessionsAreKickedAndMaxSessionsHolds) {
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.heartbeat_interval=1s", "sessions.max=3"}, "limits"});
    auto a = cl.user("quinn");
    auto idle = cl.connect(0, a.token, "dev1");
    auto kick = idle->wait_body(Envelope::kKick, std::chrono::seconds(8));
    ASSERT_TRUE(kick.has_value()) << "silent for 3 heartbeat intervals";
    EXPECT_EQ(kick->kick().reason(), client::IDLE);
    EXPECT_TRUE(idle->wait_closed(std::chrono::seconds(3)));

    // Three open connections are the limit: the fourth is closed at once.
    std::vector<std::unique_ptr<RawClient>> held;
    for (int i = 0; i < 3; ++i) held.push_back(std::make_unique<RawClient>(cl.connector_port(0)));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    RawClient extra(cl.connector_port(0));
    EXPECT_TRUE(extra.wait_closed(std::chrono::seconds(3)));
    HttpClient admin("127.0.0.1", cl.connector_admin_port(0));
    const auto metrics = admin.get("/metrics").body;
    EXPECT_NE(metrics.find("im_connector_rejected_sessions_total 1"), std::string::npos) << metrics;
}

}  // namespace
}  // namespace im::test

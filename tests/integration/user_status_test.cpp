// user-status against a real Redis: session entries (online/offline, the older-logout case,
// online_many), liveness through the connector registry (ttl expiry, a restart with a new epoch),
// presence_many, heartbeats after data loss, the connector and transfer registries, the script
// cache being flushed, and kicks over pub/sub, including a subscriber that outlives its Redis (a
// private redis-server this test starts and stops).
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>

#include "child_process.hpp"
#include "im/server/redis.hpp"
#include "im/user_status/user_status.hpp"
#include "rest_fixture.hpp"
#include "test_env.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;
using user_status::ConnectorInfo;
using user_status::KickRequest;
using user_status::KickSubscriber;
using user_status::SessionEntry;
using user_status::TransferInfo;
using user_status::UserStatus;

redis::RedisConfig redis_config(std::uint16_t port, const std::string& prefix) {
    redis::RedisConfig c;
    c.port = port;
    c.key_prefix = prefix;
    return c;
}

// Polls `pred` until it holds or `timeout` passed.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return pred();
}

// Collects what a KickSubscriber delivers (on its own thread).
class KickInbox {
public:
    std::function<void(const KickRequest&)> sink() {
        return [this](const KickRequest& k) {
            std::lock_guard lock(mu_);
            kicks_.push_back(k);
            cv_.notify_all();
        };
    }
    // Waits until at least n kicks arrived; returns them all.
    std::vector<KickRequest> wait_for(std::size_t n, std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, timeout, [&] { return kicks_.size() >= n; });
        return kicks_;
    }
    std::size_t size() {
        std::lock_guard lock(mu_);
        return kicks_.size();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<KickRequest> kicks_;
};

class UserStatusTest : public ::testing::Test {
protected:
    void SetUp() override {
        prefix_ = "im:t" + unique_suffix() + ":";
        redis_ = std::make_unique<redis::RedisConnection>(
            redis_config(TestEnv::get().redis_port, prefix_));
        us_ = std::make_unique<UserStatus>(*redis_, prefix_);
    }
    void TearDown() override { redis_delete_prefix(prefix_); }

    // A connector that is alive for `ttl`.
    void beat(const std::string& id, std::uint64_t epoch, std::chrono::milliseconds ttl = 10s,
              std::uint32_t sessions = 0) {
        us_->connector_heartbeat(
            {id, epoch, "127.0.0.1:9" + id.substr(id.size() - 1) + "00", sessions, 1000}, ttl);
    }
    static SessionEntry entry(const std::string& device, const std::string& conn,
                              std::uint64_t conn_epoch, std::uint64_t login_epoch,
                              std::uint64_t session = 1) {
        return SessionEntry{device, conn, conn_epoch, login_epoch, session};
    }
    long long ttl_ms(const std::string& key) {
        return redis::as_integer(redis_->command({"PTTL", key}).get());
    }
    bool set_has(const std::string& set, const std::string& member) {
        return redis::as_integer(redis_->command({"SISMEMBER", set, member}).get()) == 1;
    }

    std::string prefix_;
    std::unique_ptr<redis::RedisConnection> redis_;
    std::unique_ptr<UserStatus> us_;
};

TEST_F(UserStatusTest, OnlineOfflineAndTheOlderSessionsLogout) {
    beat("c1", 1);
    const std::uint64_t u = 1001;
    EXPECT_FALSE(us_->presence(u));
    EXPECT_TRUE(us_->sessions_of(u).empty());

    us_->online(u, entry("phone", "c1", 1, 100, 7));
    ASSERT_TRUE(us_->presence(u));
    auto s = us_->sessions_of(u);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].device_id, "phone");
    EXPECT_EQ(s[0].connector_id, "c1");
    EXPECT_EQ(s[0].connector_epoch, 1u);
    EXPECT_EQ(s[0].login_epoch, 100u);
    EXPECT_EQ(s[0].session_id, 7u);
    // The hash lives 7 days, refreshed by online().
    EXPECT_GT(ttl_ms(prefix_ + "us:1001"), 6LL * 24 * 3600 * 1000);

    // The same device logs in again (a newer login): its entry is replaced, not added.
    us_->online(u, entry("phone", "c1", 1, 101, 8));
    s = us_->sessions_of(u);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].login_epoch, 101u);
    EXPECT_EQ(s[0].session_id, 8u);

    // The older session's late logout does not wipe the newer one.
    EXPECT_FALSE(us_->offline(u, "phone", 100));
    EXPECT_TRUE(us_->presence(u));
    ASSERT_EQ(us_->sessions_of(u).size(), 1u);

    // A second device; its logout leaves the phone.
    us_->online(u, entry("laptop", "c1", 1, 200, 9));
    s = us_->sessions_of(u);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0].device_id, "laptop");  // by device id
    EXPECT_EQ(s[1].device_id, "phone");
    EXPECT_TRUE(us_->offline(u, "laptop", 200));
    EXPECT_FALSE(us_->offline(u, "laptop", 200));  // already gone
    ASSERT_EQ(us_->sessions_of(u).size(), 1u);

    EXPECT_TRUE(us_->offline(u, "phone", 101));
    EXPECT_FALSE(us_->presence(u));
    EXPECT_TRUE(us_->sessions_of(u).empty());
    EXPECT_FALSE(us_->offline(u, "phone", 101));
    EXPECT_FALSE(us_->offline(4242, "nothing", 1));
}

TEST_F(UserStatusTest, TheNewestLoginOfADeviceWinsWhicheverClaimArrivesFirst) {
    beat("c1", 1);
    beat("c2", 1);
    const std::uint64_t u = 1002;
    // Epochs above 2^53: compared exactly (as strings), not as Lua doubles.
    const std::uint64_t older = (1ull << 60) + 1, newer = (1ull << 60) + 2;

    // The newer login's claim arrives first: the older one is told it is superseded.
    auto first = us_->claim_device(u, entry("phone", "c2", 1, newer, 8));
    EXPECT_FALSE(first.superseded);
    EXPECT_FALSE(first.other.has_value());
    auto late = us_->claim_device(u, entry("phone", "c1", 1, older, 7));
    EXPECT_TRUE(late.superseded);
    ASSERT_TRUE(late.other.has_value());
    EXPECT_EQ(late.other->login_epoch, newer);
    ASSERT_EQ(us_->sessions_of(u).size(), 1u);
    EXPECT_EQ(us_->sessions_of(u)[0].login_epoch, newer) << "the entry was not overwritten";

    // In order: the newer claim replaces the older entry and names it (to be kicked).
    const std::uint64_t u2 = 1003;
    EXPECT_FALSE(us_->claim_device(u2, entry("phone", "c1", 1, older, 7)).superseded);
    auto replaced = us_->claim_device(u2, entry("phone", "c2", 1, newer, 8));
    EXPECT_FALSE(replaced.superseded);
    ASSERT_TRUE(replaced.other.has_value());
    EXPECT_EQ(replaced.other->login_epoch, older);
    EXPECT_EQ(replaced.other->session_id, 7u);

    // A newer entry on a dead connector does not block a login.
    const std::uint64_t u3 = 1004;
    us_->online(u3, entry("phone", "dead", 1, newer, 9));
    EXPECT_FALSE(us_->claim_device(u3, entry("phone", "c1", 1, older, 7)).superseded);
}

TEST_F(UserStatusTest, DeviceIdsAndConnectorIdsAreData) {
    beat("c|weird 1", 3);
    const std::string device = "dev:with|bars and spaces";
    us_->online(5, entry(device, "c|weird 1", 3, 9));
    auto s = us_->sessions_of(5);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].device_id, device);
    EXPECT_EQ(s[0].connector_id, "c|weird 1");
    EXPECT_TRUE(us_->offline(5, device, 9));
}

TEST_F(UserStatusTest, ADeadConnectorsUsersTurnOffline) {
    beat("c1", 1, 300ms);
    beat("c2", 1, 10s);
    us_->online(1, entry("d", "c1", 1, 1));
    us_->online(2, entry("d", "c2", 1, 1));
    us_->online(3, entry("a", "c1", 1, 1));
    us_->online(3, entry("b", "c2", 1, 1));
    ASSERT_TRUE(us_->presence(1));

    // c1 stops beating: within its ttl its users are offline, nobody deleted anything.
    ASSERT_TRUE(eventually([&] { return !us_->presence(1); }, 3s));
    EXPECT_TRUE(us_->sessions_of(1).empty());
    EXPECT_TRUE(us_->presence(2));
    auto s3 = us_->sessions_of(3);
    ASSERT_EQ(s3.size(), 1u);  // only the device on the live connector
    EXPECT_EQ(s3[0].connector_id, "c2");
    EXPECT_TRUE(us_->presence(3));

    // It comes back with the same epoch (it was only slow): the heartbeat says so, and the
    // entries are live again (the connector re-registers them anyway).
    EXPECT_FALSE(us_->connector_heartbeat({"c1", 1, "127.0.0.1:9100", 1, 2000}, 10s));
    EXPECT_TRUE(us_->presence(1));
}

TEST_F(UserStatusTest, ARestartedConnectorsNewEpochHidesItsOldEntries) {
    beat("c1", 1);
    us_->online(1, entry("d", "c1", 1, 10));
    ASSERT_TRUE(us_->presence(1));

    // Crash and restart under the same id before the key expired: a new epoch.
    EXPECT_FALSE(us_->connector_heartbeat({"c1", 2, "127.0.0.1:9100", 0, 2000}, 10s));
    EXPECT_FALSE(us_->presence(1));
    EXPECT_TRUE(us_->sessions_of(1).empty());
    EXPECT_EQ(us_->presence_many({1}), std::vector<bool>{false});

    // The user reconnects to the new life; the stale entry of the same device is replaced.
    us_->online(1, entry("d", "c1", 2, 11));
    auto s = us_->sessions_of(1);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].connector_epoch, 2u);
    // The old life's late logout of that device (its login epoch) does not touch the new entry.
    EXPECT_FALSE(us_->offline(1, "d", 10));
    EXPECT_TRUE(us_->presence(1));
}

TEST_F(UserStatusTest, PresenceManyInOneCall) {
    beat("c1", 1);
    beat("c2", 5);
    us_->online(10, entry("d", "c1", 1, 1));    // live
    us_->online(11, entry("d", "c1", 0, 1));    // stale epoch
    us_->online(12, entry("d", "gone", 1, 1));  // unknown connector
    us_->online(13, entry("x", "gone", 1, 1));  // one dead and one live device
    us_->online(13, entry("y", "c2", 5, 1));
    // 14: never online
    EXPECT_EQ(us_->presence_many({10, 11, 12, 13, 14, 10}),
              (std::vector<bool>{true, false, false, true, false, true}));
    EXPECT_TRUE(us_->presence_many({}).empty());

    // Many users at once.
    std::vector<std::uint64_t> many;
    std::vector<bool> expected;
    for (std::uint64_t u = 1000; u < 3000; ++u) {
        many.push_back(u);
        expected.push_back(u % 3 == 0);
        if (u % 3 == 0) us_->online(u, entry("d", "c2", 5, u));
    }
    EXPECT_EQ(us_->presence_many(many), expected);
}

TEST_F(UserStatusTest, OnlineManyReRegistersEverything) {
    beat("c1", 4);
    std::vector<std::pair<std::uint64_t, SessionEntry>> all;
    for (std::uint64_t u = 1; u <= 1500; ++u) {
        all.emplace_back(u, entry("phone", "c1", 4, u, u));
        if (u % 2 == 0) all.emplace_back(u, entry("laptop", "c1", 4, u + 100000, u + 100000));
    }
    all.emplace_back(7, entry("phone", "c1", 4, 777, 777));  // a later entry of a device wins
    us_->online_many(all);
    std::vector<std::uint64_t> users;
    for (std::uint64_t u = 1; u <= 1500; ++u)
        users.push_back(u);
    const auto p = us_->presence_many(users);
    EXPECT_EQ(std::count(p.begin(), p.end(), true), 1500);
    EXPECT_EQ(us_->sessions_of(2).size(), 2u);
    EXPECT_EQ(us_->sessions_of(3).size(), 1u);
    auto s7 = us_->sessions_of(7);
    ASSERT_EQ(s7.size(), 1u);
    EXPECT_EQ(s7[0].login_epoch, 777u);
    EXPECT_GT(ttl_ms(prefix_ + "us:1500"), 6LL * 24 * 3600 * 1000);
    us_->online_many({});
}

TEST_F(UserStatusTest, ScriptsWorkAfterTheServerForgotThem) {
    beat("c1", 1);
    us_->online(1, entry("d", "c1", 1, 1));
    redis_->command({"SCRIPT", "FLUSH"});  // what a Redis restart does to the script cache
    EXPECT_TRUE(us_->presence(1));
    redis_->command({"SCRIPT", "FLUSH"});
    us_->online_many({{2, entry("d", "c1", 1, 1)}, {3, entry("d", "c1", 1, 1)}});
    EXPECT_EQ(us_->presence_many({1, 2, 3}), (std::vector<bool>{true, true, true}));
    redis_->command({"SCRIPT", "FLUSH"});
    EXPECT_TRUE(us_->offline(1, "d", 1));
}

TEST_F(UserStatusTest, HeartbeatTellsWhenTheKeyWasMissing) {
    const ConnectorInfo c{"c1", 9, "10.0.0.1:9000", 3, 1234};
    EXPECT_FALSE(us_->connector_heartbeat(c, 10s));  // first beat
    EXPECT_TRUE(us_->connector_heartbeat(c, 10s));
    EXPECT_TRUE(us_->connector_heartbeat(c, 10s));
    const auto ttl = ttl_ms(prefix_ + "conn:c1");
    EXPECT_GT(ttl, 8000);
    EXPECT_LE(ttl, 10000);

    redis_delete_prefix(prefix_);  // Redis lost our data (FLUSHALL, as far as we are concerned)
    EXPECT_FALSE(us_->connector_heartbeat(c, 10s));
    EXPECT_TRUE(us_->connector_heartbeat(c, 10s));

    us_->connector_gone("c1");
    EXPECT_TRUE(us_->live_connectors().empty());
    EXPECT_FALSE(us_->connector_heartbeat(c, 10s));
    EXPECT_TRUE(us_->connector_heartbeat(c, 10s));

    const TransferInfo t{"t1", 2, "127.0.0.1:9100", 55};
    EXPECT_FALSE(us_->transfer_heartbeat(t, 10s));
    EXPECT_TRUE(us_->transfer_heartbeat(t, 10s));
    redis_delete_prefix(prefix_);
    EXPECT_FALSE(us_->transfer_heartbeat(t, 10s));
    EXPECT_TRUE(us_->transfer_heartbeat(t, 10s));
}

TEST_F(UserStatusTest, LiveConnectorsLeastLoadedFirstAndPruned) {
    EXPECT_TRUE(us_->live_connectors().empty());
    us_->connector_heartbeat({"c1", 11, "127.0.0.1:9001", 50, 111}, 10s);
    us_->connector_heartbeat({"c2", 22, "127.0.0.1:9002", 5, 222}, 10s);
    us_->connector_heartbeat({"c3", 33, "127.0.0.1:9003", 20, 333}, 300ms);
    us_->connector_heartbeat({"c4", 44, "127.0.0.1:9004", 20, 444}, 10s);

    auto live = us_->live_connectors();
    ASSERT_EQ(live.size(), 4u);
    EXPECT_EQ(live[0].id, "c2");
    EXPECT_EQ(live[0].epoch, 22u);
    EXPECT_EQ(live[0].address, "127.0.0.1:9002");
    EXPECT_EQ(live[0].sessions, 5u);
    EXPECT_EQ(live[0].updated_ms, 222);
    EXPECT_EQ(live[1].id, "c3");  // 20 sessions each: by id
    EXPECT_EQ(live[2].id, "c4");
    EXPECT_EQ(live[3].id, "c1");

    // c3 dies: not listed, and pruned from the id set.
    std::this_thread::sleep_for(450ms);
    live = us_->live_connectors();
    ASSERT_EQ(live.size(), 3u);
    EXPECT_EQ(live[0].id, "c2");
    EXPECT_EQ(live[1].id, "c4");
    EXPECT_EQ(live[2].id, "c1");
    EXPECT_FALSE(set_has(prefix_ + "connectors", "c3"));
    EXPECT_TRUE(set_has(prefix_ + "connectors", "c2"));

    // Load changes reorder; a graceful stop leaves at once.
    us_->connector_heartbeat({"c1", 11, "127.0.0.1:9001", 0, 555}, 10s);
    us_->connector_gone("c2");
    live = us_->live_connectors();
    ASSERT_EQ(live.size(), 2u);
    EXPECT_EQ(live[0].id, "c1");
    EXPECT_EQ(live[0].updated_ms, 555);
    EXPECT_EQ(live[1].id, "c4");
    EXPECT_FALSE(set_has(prefix_ + "connectors", "c2"));
}

TEST_F(UserStatusTest, TransferRegistry) {
    EXPECT_TRUE(us_->live_transfers().empty());
    EXPECT_FALSE(us_->transfer_heartbeat({"t2", 2, "127.0.0.1:9101", 20}, 10s));
    EXPECT_FALSE(us_->transfer_heartbeat({"t1", 1, "127.0.0.1:9100", 10}, 10s));
    EXPECT_FALSE(us_->transfer_heartbeat({"t3", 3, "127.0.0.1:9102", 30}, 300ms));
    auto live = us_->live_transfers();
    ASSERT_EQ(live.size(), 3u);
    EXPECT_EQ(live[0].id, "t1");
    EXPECT_EQ(live[0].epoch, 1u);
    EXPECT_EQ(live[0].address, "127.0.0.1:9100");
    EXPECT_EQ(live[0].updated_ms, 10);
    EXPECT_EQ(live[1].id, "t2");
    EXPECT_EQ(live[2].id, "t3");

    ASSERT_TRUE(eventually([&] { return us_->live_transfers().size() == 2; }, 3s));
    EXPECT_FALSE(set_has(prefix_ + "transfers", "t3"));
    // A new life of t2 (new epoch): the first beat says false, the entry shows the new epoch.
    EXPECT_FALSE(us_->transfer_heartbeat({"t2", 7, "127.0.0.1:9201", 21}, 10s));
    us_->transfer_gone("t1");
    live = us_->live_transfers();
    ASSERT_EQ(live.size(), 1u);
    EXPECT_EQ(live[0].id, "t2");
    EXPECT_EQ(live[0].epoch, 7u);
    EXPECT_EQ(live[0].address, "127.0.0.1:9201");
    // Transfers and connectors are separate registries.
    EXPECT_TRUE(us_->live_connectors().empty());
}

TEST_F(UserStatusTest, RedisDownThrowsRedisError) {
    redis::RedisConnection down(redis_config(pick_free_port(), prefix_));
    UserStatus us(down, prefix_);
    EXPECT_THROW(us.presence_many({1, 2}), redis::RedisError);
    EXPECT_THROW(us.live_connectors(), redis::RedisError);
    EXPECT_THROW(us.publish_kick({1, 0, "logged_out"}), redis::RedisError);
}

TEST_F(UserStatusTest, KicksReachTheSubscriber) {
    EXPECT_EQ(us_->kick_channel(), prefix_ + "kick");
    KickInbox inbox;
    KickSubscriber sub(redis_config(TestEnv::get().redis_port, prefix_), inbox.sink());
    EXPECT_FALSE(sub.connected());
    sub.start();
    ASSERT_TRUE(eventually([&] { return sub.connected(); }));

    // Garbage on the channel and kicks of another prefix are ignored.
    redis_->command({"PUBLISH", us_->kick_channel(), "garbage"});
    redis_->command({"PUBLISH", us_->kick_channel(), "k1|0|1|0|x"});
    redis::RedisConnection other_conn(redis_config(TestEnv::get().redis_port, "im:other:"));
    UserStatus(other_conn, "im:other" + unique_suffix() + ":").publish_kick({99, 1, "logged_out"});

    us_->publish_kick({42, 7, "logged_out"});
    us_->publish_kick({43, 0, "password_changed"});
    us_->publish_kick({44, 8, "replaced", 1234567});
    const auto got = inbox.wait_for(3);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].user_id, 42u);
    EXPECT_EQ(got[0].session_id, 7u);
    EXPECT_EQ(got[0].reason, "logged_out");
    EXPECT_EQ(got[1].user_id, 43u);
    EXPECT_EQ(got[1].session_id, 0u);
    EXPECT_EQ(got[1].reason, "password_changed");
    EXPECT_EQ(got[1].login_epoch, 0u);
    EXPECT_EQ(got[2].user_id, 44u);
    EXPECT_EQ(got[2].session_id, 8u);
    EXPECT_EQ(got[2].login_epoch, 1234567u);
    EXPECT_EQ(got[2].reason, "replaced");

    // stop() and start() again.
    sub.stop();
    EXPECT_FALSE(sub.connected());
    sub.start();
    ASSERT_TRUE(eventually([&] { return sub.connected(); }));
    us_->publish_kick({45, 1, "logged_out"});
    EXPECT_EQ(inbox.wait_for(4).size(), 4u);
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(inbox.size(), 4u);  // nothing else came through
}

// A redis-server of this test alone (the shared one is never restarted).
class PrivateRedis {
public:
    PrivateRedis() : port_(pick_free_port()) {}
    ~PrivateRedis() { stop(); }
    void start() {
        proc_.start(redis_server_path(),
                    {"--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--daemonize", "no"},
                    {},
                    TestEnv::get().run_dir + "/user-status-private-redis-" + std::to_string(port_) +
                        ".log");
        if (!wait_for_port(port_, 10s))
            throw std::runtime_error("redis-server did not start:\n" + proc_.log_contents());
    }
    void stop() { proc_.stop(SIGTERM, 5s); }
    void signal(int sig) { ::kill(proc_.pid(), sig); }
    std::uint16_t port() const { return port_; }

private:
    static std::string redis_server_path() {
        std::stringstream path(std::getenv("PATH") != nullptr ? std::getenv("PATH") : "/usr/bin");
        for (std::string dir; std::getline(path, dir, ':');) {
            const auto candidate = dir + "/redis-server";
            if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        }
        return "/usr/bin/redis-server";
    }
    std::uint16_t port_;
    ChildProcess proc_;
};

TEST_F(UserStatusTest, KickSubscriberSurvivesRedisGoingAway) {
    PrivateRedis server;
    KickInbox inbox;
    KickSubscriber sub(redis_config(server.port(), prefix_), inbox.sink());
    sub.start();  // before the server exists: it keeps retrying
    std::this_thread::sleep_for(300ms);
    EXPECT_FALSE(sub.connected());

    server.start();
    ASSERT_TRUE(eventually([&] { return sub.connected(); }));
    redis::RedisConnection conn(redis_config(server.port(), prefix_));
    UserStatus us(conn, prefix_);
    us.publish_kick({1, 11, "logged_out"});
    ASSERT_EQ(inbox.wait_for(1).size(), 1u);

    // Redis goes away and comes back on the same port: the subscriber notices and resubscribes.
    server.stop();
    ASSERT_TRUE(eventually([&] { return !sub.connected(); }));
    server.start();
    ASSERT_TRUE(eventually([&] { return sub.connected(); }, 15s));
    conn.reset();
    us.publish_kick({2, 22, "logged_out"});
    const auto got = inbox.wait_for(2);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[1].user_id, 2u);
    EXPECT_EQ(got[1].session_id, 22u);

    // Stopping is prompt also while it waits to reconnect.
    server.stop();
    ASSERT_TRUE(eventually([&] { return !sub.connected(); }));
    const auto t0 = std::chrono::steady_clock::now();
    sub.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

// A server that stops answering without closing the socket (a hung host, a partition): the
// subscriber's idle ping goes unanswered, it reconnects, and resubscribes once the server is back.
TEST_F(UserStatusTest, KickSubscriberNoticesAFrozenServer) {
    PrivateRedis server;
    server.start();
    KickInbox inbox;
    KickSubscriber sub(redis_config(server.port(), prefix_), inbox.sink());
    sub.start();
    ASSERT_TRUE(eventually([&] { return sub.connected(); }));
    server.signal(SIGSTOP);
    ASSERT_TRUE(
        eventually([&] { return !sub.connected(); }, 15s));  // ping after 5 s, 1 s to answer
    server.signal(SIGCONT);
    ASSERT_TRUE(eventually([&] { return sub.connected(); }, 15s));
    redis::RedisConnection conn(redis_config(server.port(), prefix_));
    UserStatus(conn, prefix_).publish_kick({3, 33, "logged_out"});
    const auto got = inbox.wait_for(1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].session_id, 33u);
}

TEST_F(UserStatusTest, SubscriberDestructorStopsIt) {
    KickInbox inbox;
    const auto t0 = std::chrono::steady_clock::now();
    {
        KickSubscriber sub(redis_config(TestEnv::get().redis_port, prefix_), inbox.sink());
        sub.start();
        sub.start();  // idempotent
        ASSERT_TRUE(eventually([&] { return sub.connected(); }));
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
    KickSubscriber never_started(redis_config(TestEnv::get().redis_port, prefix_), inbox.sink());
    never_started.stop();
}

}  // namespace
}  // namespace im::test

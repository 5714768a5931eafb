// Offline push (DESIGN.md delivery contract 7) against the real RabbitMQ and MariaDB of
// scripts/services.sh: the MQ wrapper (publisher confirms, returns, consumer), the outbox relay
// (transfer/push_relay: publish, delete after the confirm with the up_to_seq guard, coalescing,
// RabbitMQ unreachable, one active relay per database) and the push worker (rest-api/push_worker:
// webhook with Idempotency-Key and signature, retries, dead-lettering), also inside a real im-rest.
//
// Every test uses its own exchanges and queues (removed at the end) and its own database.

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cppconn/connection.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_test_server.hpp"
#include "im/proto/events.pb.h"
#include "im/server/metrics.hpp"
#include "im/server/migrations.hpp"
#include "im/server/mq.hpp"
#include "im/server/mysql.hpp"
#include "push_relay.hpp"
#include "push_worker.hpp"
#include "rest_fixture.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::int64_t wall_ms() {
    return std::chrono::duration_cast<milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// A loopback port that nobody listens on (held bound, not listening: connections are refused).
class ClosedPort {
  public:
    ClosedPort() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::runtime_error("cannot reserve a loopback port");
        }
        port_ = ntohs(addr.sin_port);
    }
    ~ClosedPort() { ::close(fd_); }
    std::uint16_t port() const { return port_; }

  private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
};

mq::MqConfig mq_config(const std::string& suffix) {
    const auto& env = TestEnv::get();
    mq::MqConfig c;
    c.port = env.rabbitmq_port;
    c.user = env.rabbitmq_user;
    c.password = env.rabbitmq_password;
    c.exchange = "t.push." + suffix;
    c.queue = "t.push.events." + suffix;
    c.dead_letter_exchange = "t.push.dead." + suffix;
    c.dead_letter_queue = "t.push.deadq." + suffix;
    c.connect_timeout = 1000ms;
    c.io_timeout = 3000ms;
    return c;
}

// Direct rabbitmq-c calls for what the product code never does: count and delete queues.
class BrokerAdmin {
  public:
    explicit BrokerAdmin(const mq::MqConfig& c) : conn_(amqp_new_connection()) {
        auto* socket = amqp_tcp_socket_new(conn_);
        timeval tv{2, 0};
        if (socket == nullptr ||
            amqp_socket_open_noblock(socket, c.host.c_str(), c.port, &tv) != AMQP_STATUS_OK) {
            throw std::runtime_error("admin: cannot connect to RabbitMQ");
        }
        amqp_set_rpc_timeout(conn_, &tv);
        if (amqp_login(conn_, c.vhost.c_str(), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, c.user.c_str(),
                       c.password.c_str())
                .reply_type != AMQP_RESPONSE_NORMAL) {
            throw std::runtime_error("admin: login failed");
        }
        open_channel();
    }
    ~BrokerAdmin() {
        amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn_);
    }

    // Ready messages in `queue` (not counting unacknowledged ones); -1 when it does not exist.
    long message_count(const std::string& queue) {
        auto* ok = amqp_queue_declare(conn_, channel_, amqp_cstring_bytes(queue.c_str()),
                                      /*passive=*/1, 0, 0, 0, amqp_empty_table);
        if (ok == nullptr) {
            open_channel();  // a failed passive declare closes the channel
            return -1;
        }
        return static_cast<long>(ok->message_count);
    }

    void remove(const mq::MqConfig& c) {
        for (const auto& q : {c.queue, c.dead_letter_queue}) {
            amqp_queue_delete(conn_, channel_, amqp_cstring_bytes(q.c_str()), 0, 0);
        }
        for (const auto& e : {c.exchange, c.dead_letter_exchange}) {
            amqp_exchange_delete(conn_, channel_, amqp_cstring_bytes(e.c_str()), 0);
        }
    }

    void delete_queue(const std::string& q) {
        amqp_queue_delete(conn_, channel_, amqp_cstring_bytes(q.c_str()), 0, 0);
    }

  private:
    void open_channel() {
        ++channel_;
        amqp_channel_open(conn_, channel_);
        if (amqp_get_rpc_reply(conn_).reply_type != AMQP_RESPONSE_NORMAL) {
            throw std::runtime_error("admin: channel.open failed");
        }
    }

    amqp_connection_state_t conn_;
    amqp_channel_t channel_ = 0;
};

// `name{labels} value` from the Prometheus text; -1 when absent.
double metric(const Metrics& m, const std::string& series) {
    const auto text = m.text();
    const auto at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + series.size() + 2));
}

template <class Pred>
bool eventually(Pred pred, milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(20ms);
    }
    return pred();
}

struct OutboxRow {
    std::uint64_t user_id, conversation_id, from_user_id, up_to_seq;
    std::int64_t updated_ms;
};

class PushTest : public ::testing::Test {
  protected:
    void SetUp() override {
        suffix_ = unique_suffix();
        mq_ = mq_config(suffix_);
        db_ = std::make_unique<TestDatabase>();
        mysql::apply_migrations(db_->db());
    }

    void TearDown() override {
        try {
            BrokerAdmin(mq_).remove(mq_);
        } catch (const std::exception& e) {
            ADD_FAILURE() << e.what();
        }
    }

    // What the message writer does for a recipient without a live session (the lead's upsert).
    void upsert(std::uint64_t user, std::uint64_t conv, std::uint64_t from, std::uint64_t seq,
                std::int64_t updated_ms) {
        auto& st = db_->db().prepare(
            "INSERT INTO push_pending (user_id, conversation_id, from_user_id, up_to_seq, "
            "updated_ms) "
            "VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE from_user_id = VALUES(from_user_id), "
            "up_to_seq = GREATEST(up_to_seq, VALUES(up_to_seq)), updated_ms = VALUES(updated_ms)");
        st.setUInt64(1, user);
        st.setUInt64(2, conv);
        st.setUInt64(3, from);
        st.setUInt64(4, seq);
        st.setInt64(5, updated_ms);
        st.executeUpdate();
    }

    // The recipient's row as the message writer keeps it: read up to read_seq of last_seq, with
    // `unread` of the peer's messages after it.
    void set_read(std::uint64_t user, std::uint64_t conv, std::uint64_t peer, std::uint64_t last_seq,
                  std::uint64_t read_seq, std::uint64_t unread) {
        auto& st = db_->db().prepare(
            "INSERT INTO user_conversations (user_id, conversation_id, peer_id, last_seq, "
            "my_read_seq, unread, version, "
            "updated_ms) VALUES (?, ?, ?, ?, ?, ?, 1, 0)");
        st.setUInt64(1, user);
        st.setUInt64(2, conv);
        st.setUInt64(3, peer);
        st.setUInt64(4, last_seq);
        st.setUInt64(5, read_seq);
        st.setUInt64(6, unread);
        st.executeUpdate();
    }

    std::vector<OutboxRow> outbox() {
        std::unique_ptr<sql::ResultSet> rs(
            db_->db()
                .prepare("SELECT user_id, conversation_id, from_user_id, up_to_seq, updated_ms "
                         "FROM push_pending "
                         "ORDER BY user_id, conversation_id")
                .executeQuery());
        std::vector<OutboxRow> rows;
        while (rs->next()) {
            rows.push_back({rs->getUInt64(1), rs->getUInt64(2), rs->getUInt64(3), rs->getUInt64(4),
                            rs->getInt64(5)});
        }
        return rows;
    }

    // Consumes (and acks) up to `count` messages of `queue`, waiting up to `timeout` in all.
    std::vector<mq::Delivery> take(const std::string& queue, std::size_t count,
                                   milliseconds timeout = 10s) {
        mq::MqConsumer consumer(mq_, queue, 50);
        std::vector<mq::Delivery> out;
        const auto deadline = Clock::now() + timeout;
        while (out.size() < count && Clock::now() < deadline) {
            auto d = consumer.next(100ms);
            if (!d) continue;
            consumer.ack(*d);
            out.push_back(std::move(*d));
        }
        return out;
    }

    std::vector<events::PushEvent> take_events(std::size_t count, milliseconds timeout = 10s) {
        std::vector<events::PushEvent> events;
        for (const auto& d : take(mq_.queue, count, timeout)) {
            events::PushEvent e;
            EXPECT_TRUE(e.ParseFromString(d.body));
            EXPECT_EQ(d.message_id, e.event_id());
            events.push_back(e);
        }
        return events;
    }

    static transfer::PushRelayConfig fast_relay() {
        transfer::PushRelayConfig c;
        c.coalesce_delay = 100ms;
        c.poll_interval = 50ms;
        return c;
    }

    std::string suffix_;
    mq::MqConfig mq_;
    std::unique_ptr<TestDatabase> db_;
};

// ---- The MQ wrapper
// ------------------------------------------------------------------------------

TEST_F(PushTest, PublisherConfirmsEveryMessageAndDeclaresTheTopology) {
    mq::MqPublisher publisher(mq_);
    const auto r =
        publisher.publish_confirmed({{"one", "id-1"}, {"two", "id-2"}, {"three", "id-3"}});
    EXPECT_EQ(r.confirmed, (std::vector<bool>{true, true, true})) << r.error;
    EXPECT_TRUE(r.error.empty()) << r.error;

    BrokerAdmin admin(mq_);
    EXPECT_EQ(admin.message_count(mq_.queue), 3);
    EXPECT_EQ(admin.message_count(mq_.dead_letter_queue), 0);
    const auto got = take(mq_.queue, 3);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].body, "one");
    EXPECT_EQ(got[0].message_id, "id-1");
    EXPECT_EQ(got[2].body, "three");

    // The connection (and its confirm sequence numbers) carries on.
    const auto again = publisher.publish_confirmed({{"four", "id-4"}});
    EXPECT_TRUE(again.all_confirmed()) << again.error;
}

TEST_F(PushTest, UnroutableMessageIsNotConfirmedAndTheTopologyIsDeclaredAgain) {
    mq::MqPublisher publisher(mq_);
    ASSERT_TRUE(publisher.publish_confirmed({{"warm-up", "w"}}).all_confirmed());

    // Someone deletes the queue under a connected publisher: the broker returns the message.
    BrokerAdmin admin(mq_);
    admin.delete_queue(mq_.queue);
    const auto lost = publisher.publish_confirmed({{"a", "id-a"}});
    EXPECT_EQ(lost.confirmed, std::vector<bool>{false});
    EXPECT_NE(lost.error.find("unroutable"), std::string::npos) << lost.error;
    EXPECT_FALSE(publisher.connected());

    // The next call reconnects, declares the queue again, and is confirmed.
    const auto r = publisher.publish_confirmed({{"b", "id-b"}});
    EXPECT_TRUE(r.all_confirmed()) << r.error;
    EXPECT_EQ(admin.message_count(mq_.queue), 1);
}

TEST_F(PushTest, PublisherToAClosedPortFailsFastWithoutThrowing) {
    ClosedPort closed;
    auto cfg = mq_;
    cfg.port = closed.port();
    mq::MqPublisher publisher(cfg);
    const auto start = Clock::now();
    const auto r = publisher.publish_confirmed({{"x", "id-x"}, {"y", "id-y"}});
    EXPECT_LT(Clock::now() - start, 1500ms);
    EXPECT_EQ(r.confirmed, (std::vector<bool>{false, false}));
    EXPECT_NE(r.error.find("connect"), std::string::npos) << r.error;
    EXPECT_EQ(r.error.find(cfg.password), std::string::npos);
}

TEST_F(PushTest, RejectedMessageGoesToTheDeadLetterQueue) {
    mq::MqPublisher publisher(mq_);
    ASSERT_TRUE(publisher.publish_confirmed({{"doomed", "id-d"}}).all_confirmed());
    {
        mq::MqConsumer consumer(mq_, mq_.queue);
        std::optional<mq::Delivery> d;
        ASSERT_TRUE(eventually([&] { return (d = consumer.next(100ms)).has_value(); }));
        EXPECT_TRUE(consumer.reject(*d));
    }
    const auto dead = take(mq_.dead_letter_queue, 1);
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].body, "doomed");
    EXPECT_EQ(dead[0].message_id, "id-d");
}

TEST_F(PushTest, UnacknowledgedMessageIsRedeliveredToTheNextConsumer) {
    mq::MqPublisher publisher(mq_);
    ASSERT_TRUE(publisher.publish_confirmed({{"again", "id-r"}}).all_confirmed());
    mq::Delivery first;
    {
        mq::MqConsumer consumer(mq_, mq_.queue);
        std::optional<mq::Delivery> d;
        ASSERT_TRUE(eventually([&] { return (d = consumer.next(100ms)).has_value(); }));
        first = *d;
    }  // closed without an ack
    const auto again = take(mq_.queue, 1);
    ASSERT_EQ(again.size(), 1u);
    EXPECT_EQ(again[0].body, "again");
    EXPECT_TRUE(again[0].redelivered);
}

// ---- The outbox relay
// ----------------------------------------------------------------------------

TEST(PushEventRow, EventIdUnreadAndTime) {
    transfer::PendingPush row{7, (7ULL << 32) | 8, 8, 12, 1764295029396, 3};
    const auto e = transfer::make_push_event(row);
    EXPECT_EQ(e.event_id(), "7:" + std::to_string((7ULL << 32) | 8) + ":12");
    EXPECT_EQ(e.unread(), 3u);
    EXPECT_EQ(e.created_ms(), 1764295029396);
}

TEST_F(PushTest, RelayPublishesARowAndDeletesItOnceConfirmed) {
    const std::uint64_t conv = (7ULL << 32) | 8;
    const auto updated = wall_ms() - 5000;
    set_read(7, conv, 8, 5, 2, 2);  // 3, 4 and 5 after the read watermark; 4 was 7's own
    upsert(7, conv, 8, 5, updated);
    upsert(9, (8ULL << 32) | 9, 8, 4,
           updated + 1);  // no user_conversations row: unread = up_to_seq

    Metrics metrics;
    transfer::PushRelay relay(db_->config(), mq_, fast_relay(), metrics);
    relay.start();
    const auto events = take_events(2);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].event_id(), "7:" + std::to_string(conv) + ":5");
    EXPECT_EQ(events[0].user_id(), 7u);
    EXPECT_EQ(events[0].conversation_id(), conv);
    EXPECT_EQ(events[0].from_user_id(), 8u);
    EXPECT_EQ(events[0].up_to_seq(), 5u);
    EXPECT_EQ(events[0].unread(), 2u) << "the stored count: the peer's messages only";
    EXPECT_EQ(events[0].created_ms(), updated);
    EXPECT_EQ(events[1].user_id(), 9u);
    EXPECT_EQ(events[1].unread(), 4u);

    EXPECT_TRUE(eventually([&] { return outbox().empty(); }));
    EXPECT_TRUE(eventually([&] { return metric(metrics, "im_push_relay_published_total") == 2; }));
    EXPECT_EQ(metric(metrics, "im_push_relay_active"), 1);
    relay.stop();
    EXPECT_EQ(take(mq_.queue, 1, 300ms).size(), 0u) << "published once";
}

TEST_F(PushTest, RowAdvancedWhilePublishingIsKeptAndPublishedAgainWithTheNewerSeq) {
    const std::uint64_t conv = (7ULL << 32) | 8;
    upsert(7, conv, 8, 5, wall_ms() - 5000);

    // The writer advances the row inside a transaction that is still open: the relay reads the
    // committed seq 5 (a consistent read does not wait), publishes it, and its DELETE waits for
    // the row lock. The writer commits seq 6: the guarded DELETE matches nothing.
    mysql::MysqlConnection writer(db_->config());
    writer.get().setAutoCommit(false);
    {
        auto& st = writer.prepare(
            "UPDATE push_pending SET up_to_seq = 6, updated_ms = ? WHERE user_id = 7");
        st.setInt64(1, wall_ms());
        st.executeUpdate();
    }

    Metrics metrics;
    transfer::PushRelay relay(db_->config(), mq_, fast_relay(), metrics);
    relay.start();
    auto events = take_events(1);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].up_to_seq(), 5u);
    std::this_thread::sleep_for(300ms);  // the relay is now waiting on the row lock
    writer.get().commit();
    writer.get().setAutoCommit(true);

    events = take_events(1);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].up_to_seq(), 6u);
    EXPECT_EQ(events[0].event_id(), "7:" + std::to_string(conv) + ":6");
    EXPECT_TRUE(eventually([&] { return outbox().empty(); }));
    relay.stop();
    EXPECT_EQ(take(mq_.queue, 1, 300ms).size(), 0u);
}

TEST_F(PushTest, BurstOfUpsertsCoalescesIntoOneEvent) {
    auto cfg = fast_relay();
    cfg.coalesce_delay = 600ms;
    Metrics metrics;
    transfer::PushRelay relay(db_->config(), mq_, cfg, metrics);
    relay.start();

    const std::uint64_t conv = (7ULL << 32) | 8;
    const auto burst_start = Clock::now();
    for (std::uint64_t seq = 1; seq <= 10; ++seq) {
        upsert(7, conv, 8, seq, wall_ms());
        relay.notify();
        std::this_thread::sleep_for(40ms);
    }
    const auto burst_end = Clock::now();
    ASSERT_LT(burst_end - burst_start, 600ms) << "the burst must fit in the coalesce delay";

    auto events = take_events(1, 5s);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_GE(Clock::now() - burst_end, 500ms) << "published before the row was quiet";
    EXPECT_EQ(events[0].up_to_seq(), 10u);
    EXPECT_EQ(events[0].unread(), 10u);
    EXPECT_TRUE(eventually([&] { return outbox().empty(); }));
    EXPECT_EQ(take(mq_.queue, 1, 1000ms).size(), 0u) << "one event per burst";
}

TEST_F(PushTest, AConversationThatNeverPausesIsStillPushedAfterMaxDelay) {
    auto cfg = fast_relay();
    cfg.coalesce_delay = 600ms;
    cfg.max_delay = 800ms;
    Metrics metrics;
    transfer::PushRelay relay(db_->config(), mq_, cfg, metrics);
    relay.start();

    // The writer's upsert with first_ms: set when the row starts waiting, kept while it changes.
    const std::uint64_t conv = (7ULL << 32) | 9;
    auto upsert_first = [&](std::uint64_t seq) {
        const auto now = wall_ms();
        auto& st = db_->db().prepare(
            "INSERT INTO push_pending (user_id, conversation_id, from_user_id, up_to_seq, updated_ms, first_ms) "
            "VALUES (7, ?, 9, ?, ?, ?) ON DUPLICATE KEY UPDATE up_to_seq = GREATEST(up_to_seq, VALUES(up_to_seq)), "
            "updated_ms = VALUES(updated_ms), first_ms = IF(first_ms = 0, VALUES(first_ms), first_ms)");
        st.setUInt64(1, conv);
        st.setUInt64(2, seq);
        st.setInt64(3, now);
        st.setInt64(4, now);
        st.executeUpdate();
        relay.notify();
    };
    const auto start = Clock::now();
    std::uint64_t seq = 0;
    // A message every 100 ms for 2.5 s: never quiet for the 600 ms coalesce delay.
    std::vector<events::PushEvent> events;
    while (Clock::now() - start < 2500ms) {
        upsert_first(++seq);
        std::this_thread::sleep_for(100ms);
    }
    events = take_events(5, 2s);
    ASSERT_GE(events.size(), 2u) << "pushed every ~max_delay although the row never went quiet";
    EXPECT_LE(events.size(), 4u) << "still coalesced: far fewer events than messages";
    for (std::size_t i = 1; i < events.size(); ++i) EXPECT_GT(events[i].up_to_seq(), events[i - 1].up_to_seq());
}

TEST_F(PushTest, NotifyWakesTheRelayAfterTheCoalesceDelayNotThePollInterval) {
    transfer::PushRelayConfig cfg;
    cfg.coalesce_delay = 300ms;
    cfg.poll_interval = 20s;
    Metrics metrics;
    transfer::PushRelay relay(db_->config(), mq_, cfg, metrics);
    relay.start();
    ASSERT_TRUE(eventually([&] { return metric(metrics, "im_push_relay_active") == 1; }));
    std::this_thread::sleep_for(200ms);  // its first round is over: it now sleeps for 20 s

    const auto t0 = Clock::now();
    upsert(7, (7ULL << 32) | 8, 8, 1, wall_ms());
    relay.notify();
    const auto events = take_events(1, 5s);
    ASSERT_EQ(events.size(), 1u);
    const auto took = Clock::now() - t0;
    EXPECT_GE(took, 250ms);
    EXPECT_LT(took, 3s);
}

TEST_F(PushTest, RabbitMqUnreachableKeepsRowsAndANewRelayDrainsThem) {
    const auto updated = wall_ms() - 5000;
    for (std::uint64_t user = 1; user <= 5; ++user)
        upsert(user, (user << 32) | 100, 100, user * 10, updated);

    {
        ClosedPort closed;
        auto dead_mq = mq_;
        dead_mq.port = closed.port();
        Metrics metrics;
        transfer::PushRelay relay(db_->config(), dead_mq, fast_relay(), metrics);
        relay.start();
        ASSERT_TRUE(eventually([&] {
            return metric(metrics, "im_push_relay_failures_total{stage=\"rabbitmq\"}") >= 2;
        }));
        EXPECT_EQ(outbox().size(), 5u);
        EXPECT_EQ(metric(metrics, "im_push_relay_outbox_rows"), 5);
        EXPECT_EQ(metric(metrics, "im_push_relay_published_total"), 0);

        // The message writer's side: notify() never waits for the failing relay.
        const auto t0 = Clock::now();
        for (int i = 0; i < 10000; ++i)
            relay.notify();
        EXPECT_LT(Clock::now() - t0, 100ms);
    }  // stopped: its MySQL connection (and the relay lock) goes away

    EXPECT_EQ(outbox().size(), 5u) << "nothing lost";
    Metrics metrics;
    transfer::PushRelay relay(db_->config(), mq_, fast_relay(), metrics);
    relay.start();
    const auto events = take_events(5);
    ASSERT_EQ(events.size(), 5u);
    std::set<std::string> ids;
    for (const auto& e : events)
        ids.insert(e.event_id());
    EXPECT_EQ(ids.size(), 5u);
    EXPECT_TRUE(eventually([&] { return outbox().empty(); }));
}

TEST_F(PushTest, OnlyOneRelayPerDatabaseWorksAndAStandbyTakesOver) {
    Metrics m1, m2;
    auto a = std::make_unique<transfer::PushRelay>(db_->config(), mq_, fast_relay(), m1);
    auto b = std::make_unique<transfer::PushRelay>(db_->config(), mq_, fast_relay(), m2);
    a->start();
    ASSERT_TRUE(eventually([&] { return metric(m1, "im_push_relay_active") == 1; }));
    b->start();
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(metric(m2, "im_push_relay_active"), 0);

    const auto updated = wall_ms() - 5000;
    for (std::uint64_t user = 1; user <= 20; ++user)
        upsert(user, (user << 32) | 100, 100, 1, updated);
    auto events = take_events(20);
    ASSERT_EQ(events.size(), 20u);
    EXPECT_EQ(take(mq_.queue, 1, 500ms).size(), 0u) << "each row published once";
    EXPECT_EQ(metric(m2, "im_push_relay_published_total"), 0);

    a.reset();  // the active relay stops: the standby takes over within a poll interval
    ASSERT_TRUE(eventually([&] { return metric(m2, "im_push_relay_active") == 1; }, 5s));
    upsert(42, (42ULL << 32) | 100, 100, 3, wall_ms() - 5000);
    events = take_events(1);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].user_id(), 42u);
}

// ---- The push worker
// -----------------------------------------------------------------------------

struct Webhook {
    // Answers `statuses[i]` to the i-th call of each event id (the last one after that).
    explicit Webhook(std::vector<int> statuses)
        : server([this, statuses = std::move(statuses)](const HttpTestRequest& req) {
              HttpTestReply reply;
              std::lock_guard lock(mu);
              const auto n = calls[req.header("idempotency-key")]++;
              reply.status =
                  statuses[std::min<std::size_t>(static_cast<std::size_t>(n), statuses.size() - 1)];
              reply.body = "{}";
              return reply;
          }) {}
    std::mutex mu;
    std::map<std::string, int> calls;
    HttpTestServer server;
};

rest::PushWorkerConfig worker_config(const std::string& url) {
    rest::PushWorkerConfig c;
    c.enabled = true;
    c.webhook_url = url;
    c.webhook_secret = "hook-secret";
    c.max_attempts = 3;
    c.retry_backoff = 100ms;
    c.timeout = 2000ms;
    c.threads = 2;
    return c;
}

events::PushEvent sample_event(std::uint64_t user, std::uint64_t seq) {
    return transfer::make_push_event({user, (user << 32) | 100, 100, seq, wall_ms(), 0});
}

void publish(const mq::MqConfig& cfg, const std::vector<events::PushEvent>& events) {
    std::vector<mq::OutgoingMessage> messages;
    for (const auto& e : events)
        messages.push_back({e.SerializeAsString(), e.event_id()});
    mq::MqPublisher publisher(cfg);
    const auto r = publisher.publish_confirmed(messages);
    ASSERT_TRUE(r.all_confirmed()) << r.error;
}

TEST_F(PushTest, WorkerPostsEachEventOnceWithIdempotencyKeyAndSignature) {
    Webhook hook({200});
    Metrics metrics;
    rest::PushWorker worker(mq_, worker_config(hook.server.url("/push?key=k")), metrics);
    worker.start();
    const std::vector<events::PushEvent> events{sample_event(1, 3), sample_event(2, 5),
                                                sample_event(3, 7)};
    publish(mq_, events);

    ASSERT_TRUE(eventually([&] { return hook.server.requests().size() >= 3; }));
    std::this_thread::sleep_for(500ms);
    const auto requests = hook.server.requests();
    ASSERT_EQ(requests.size(), 3u) << "exactly once per event";
    std::set<std::string> seen;
    for (const auto& req : requests) {
        EXPECT_EQ(req.method, "POST");
        EXPECT_EQ(req.target, "/push?key=k");
        EXPECT_EQ(req.content_type, "application/json");
        const auto body = nlohmann::json::parse(req.body);
        const auto id = body["event_id"].get<std::string>();
        seen.insert(id);
        EXPECT_EQ(req.header("idempotency-key"), id);
        EXPECT_EQ(req.header("x-im-signature"), rest::hmac_sha256_hex("hook-secret", req.body));
        const auto& e = *std::find_if(events.begin(), events.end(),
                                      [&](const auto& x) { return x.event_id() == id; });
        EXPECT_EQ(req.body, rest::push_event_json(e));
        EXPECT_EQ(body["user_id"].get<std::uint64_t>(), e.user_id());
        EXPECT_EQ(body["unread"].get<std::uint64_t>(), e.unread());
    }
    EXPECT_EQ(seen.size(), 3u);
    EXPECT_TRUE(eventually([&] {
        return metric(metrics, "im_push_webhook_events_total{result=\"delivered\"}") == 3;
    }));
    worker.stop();
    BrokerAdmin admin(mq_);
    EXPECT_EQ(admin.message_count(mq_.queue), 0) << "acknowledged";
    EXPECT_EQ(admin.message_count(mq_.dead_letter_queue), 0);
}

TEST_F(PushTest, WorkerRetriesAFailingWebhookAndDeliversOnce) {
    Webhook hook({500, 500, 200});
    Metrics metrics;
    rest::PushWorker worker(mq_, worker_config(hook.server.url("/push")), metrics);
    worker.start();
    publish(mq_, {sample_event(1, 3)});

    ASSERT_TRUE(eventually([&] {
        return metric(metrics, "im_push_webhook_events_total{result=\"delivered\"}") == 1;
    }));
    std::this_thread::sleep_for(300ms);
    const auto requests = hook.server.requests();
    ASSERT_EQ(requests.size(), 3u);
    EXPECT_EQ(requests[0].body, requests[2].body);
    EXPECT_EQ(requests[2].header("idempotency-key"), sample_event(1, 3).event_id());
    EXPECT_EQ(metric(metrics, "im_push_webhook_attempts_total{result=\"http_error\"}"), 2);
    worker.stop();
    BrokerAdmin admin(mq_);
    EXPECT_EQ(admin.message_count(mq_.queue), 0);
    EXPECT_EQ(admin.message_count(mq_.dead_letter_queue), 0);
}

TEST_F(PushTest, WorkerDeadLettersAfterMaxAttempts) {
    Webhook hook({500});
    Metrics metrics;
    const auto start = Clock::now();
    rest::PushWorker worker(mq_, worker_config(hook.server.url("/push")), metrics);
    worker.start();
    const auto event = sample_event(1, 3);
    publish(mq_, {event});

    const auto dead = take(mq_.dead_letter_queue, 1, 10s);
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_GE(Clock::now() - start, 300ms) << "backoff 100 ms then 200 ms";
    events::PushEvent got;
    ASSERT_TRUE(got.ParseFromString(dead[0].body));
    EXPECT_EQ(got.event_id(), event.event_id());
    EXPECT_EQ(dead[0].message_id, event.event_id());
    EXPECT_EQ(hook.server.requests().size(), 3u);
    EXPECT_EQ(metric(metrics, "im_push_webhook_events_total{result=\"dead_lettered\"}"), 1);
    worker.stop();
    EXPECT_EQ(BrokerAdmin(mq_).message_count(mq_.queue), 0);
}

TEST_F(PushTest, WorkerDeadLettersAMalformedMessageAtOnce) {
    Webhook hook({200});
    Metrics metrics;
    rest::PushWorker worker(mq_, worker_config(hook.server.url("/push")), metrics);
    worker.start();
    mq::MqPublisher publisher(mq_);
    ASSERT_TRUE(publisher.publish_confirmed({{"\xff\xff not a protobuf", "bad-1"}, {"", "empty-1"}})
                    .all_confirmed());

    const auto dead = take(mq_.dead_letter_queue, 2, 5s);
    ASSERT_EQ(dead.size(), 2u);
    EXPECT_TRUE(hook.server.requests().empty());
    EXPECT_EQ(metric(metrics, "im_push_webhook_events_total{result=\"malformed\"}"), 2);
}

TEST_F(PushTest, WorkerSurvivesRabbitMqBeingUnreachableAtStart) {
    ClosedPort closed;
    auto cfg = mq_;
    cfg.port = closed.port();
    Webhook hook({200});
    Metrics metrics;
    rest::PushWorker worker(cfg, worker_config(hook.server.url("/push")), metrics);
    worker.start();
    ASSERT_TRUE(eventually([&] { return metric(metrics, "im_push_consumer_errors_total") >= 2; }));
    const auto t0 = Clock::now();
    worker.stop();
    EXPECT_LT(Clock::now() - t0, 2s);
}

// ---- End to end
// ----------------------------------------------------------------------------------

TEST_F(PushTest, OutboxRowReachesTheWebhookOfARealImRest) {
    Webhook hook({200});
    RestServer rest(*db_, "im:t" + suffix_ + ":",
                    {{"push.enabled=true", "push.webhook_url=" + hook.server.url("/hook"),
                      "push.webhook_secret=e2e-secret", "rabbitmq.port=" + std::to_string(mq_.port),
                      "rabbitmq.user=" + mq_.user, "rabbitmq.password=" + mq_.password,
                      "rabbitmq.exchange=" + mq_.exchange, "rabbitmq.queue=" + mq_.queue,
                      "rabbitmq.dead_letter_exchange=" + mq_.dead_letter_exchange,
                      "rabbitmq.dead_letter_queue=" + mq_.dead_letter_queue},
                     "rest-push"});

    const std::uint64_t conv = (7ULL << 32) | 8;
    upsert(7, conv, 8, 4, wall_ms() - 5000);
    Metrics metrics;
    transfer::PushRelay relay(db_->config(), mq_, fast_relay(), metrics);
    relay.start();

    ASSERT_TRUE(eventually([&] { return hook.server.requests().size() >= 1; }, 15s)) << rest.log();
    const auto req = hook.server.requests().at(0);
    const auto body = nlohmann::json::parse(req.body);
    EXPECT_EQ(body["event_id"], "7:" + std::to_string(conv) + ":4");
    EXPECT_EQ(body["conversation_id"].get<std::uint64_t>(), conv);
    EXPECT_EQ(req.header("idempotency-key"), body["event_id"].get<std::string>());
    EXPECT_EQ(req.header("x-im-signature"), rest::hmac_sha256_hex("e2e-secret", req.body));
    EXPECT_TRUE(eventually([&] { return outbox().empty(); }));

    const auto status = rest.process().stop(SIGTERM);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << rest.log();
    EXPECT_EQ(rest.log().find("e2e-secret"), std::string::npos) << "the secret is never logged";
    EXPECT_EQ(rest.log().find(mq_.password), std::string::npos);
    EXPECT_EQ(hook.server.requests().size(), 1u);
}

}  // namespace
}  // namespace im::test

// Failures (DESIGN.md "Delivery contract" 10, docs/PROTOCOL.md "Receiving"): kill -9 of the
// recipient's connector and of the transfer with messages in flight, a transfer restart between a
// message and its resend, and a Redis data loss; against the real binaries and servers, one
// private cluster per test, asserting on the raw frames. Nothing that got SENT may be lost,
// nothing may be stored twice, seqs stay dense and in the sender's order, and the merged view of
// a recipient (live Delivers + pages) is complete.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <thread>

#include "im/server/redis.hpp"
#include "im/user_status/user_status.hpp"
#include "messaging_test_util.hpp"

namespace im::test {
namespace {

using namespace msg;

class MessagingFailures : public ::testing::Test {
protected:
    Cluster& start(const std::string& name, ClusterOptions options = {}) {
        options.name = name;
        cluster_ = std::make_unique<Cluster>(std::move(options));
        return *cluster_;
    }
    void TearDown() override { cluster_.reset(); }

    // user-status over the cluster's Redis prefix (what im-rest and the connectors read).
    struct Status {
        explicit Status(const std::string& prefix)
            : conn([&] {
                  redis::RedisConfig c;
                  c.port = TestEnv::get().redis_port;
                  c.key_prefix = prefix;
                  return c;
              }()),
              us(conn, prefix) {}
        redis::RedisConnection conn;
        user_status::UserStatus us;
    };

    static std::string connector_id(Cluster& cl, int i) { return "connector-" + std::to_string(i) + "-" + cl.db().name(); }

    // Polls `pred` (a Redis or HTTP probe, no frames to wait for) until it holds.
    template <class Pred>
    static bool eventually(Pred pred, Clock::time_point deadline) {
        while (Clock::now() < deadline) {
            if (pred()) return true;
            std::this_thread::sleep_for(20ms);
        }
        return pred();
    }

    std::unique_ptr<Cluster> cluster_;
};

bool has_sync_hint(RawClient& c, std::chrono::milliseconds timeout) {
    return c.wait_for([](const Envelope& e) { return e.has_sync_hint() && e.sync_hint().conversation_id() == 0; }, timeout)
        .has_value();
}

// 5. kill -9 of the recipient's connector with messages in flight.
TEST_F(MessagingFailures, KillNineOfTheRecipientsConnectorLosesNothing) {
    auto& cl = start("msg-fail-kconn");
    auto a = cl.user("kca");
    auto b = cl.user("kcb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");

    constexpr std::size_t kN = 200;
    OutStream out(*ca, b.id);
    std::atomic<bool> sender_ok{false};
    const auto t0 = Clock::now();
    // A sends quickly (8 in flight at a time, so the stream spans the kill) on its own thread.
    std::thread sender([&] {
        sender_ok = out.pump(kN, 8, [](std::size_t i) { return text_of("kill-connector", i, 200); }, Clock::now() + 60s) &&
                    out.wait_all_answered(Clock::now() + 60s);
    });
    struct Join {
        std::thread& t;
        ~Join() {
            if (t.joinable()) t.join();
        }
    } join{sender};

    Inbox inbox(conv);
    const bool got50 = inbox.wait_live(*cb, [&] { return inbox.live() >= 50; }, Clock::now() + 30s);
    ASSERT_TRUE(got50) << "B got only " << inbox.live() << " live Delivers; " << log_hint(cl);
    const auto live_at_kill = inbox.live();
    const auto t_kill = Clock::now();
    cl.stop_connector(1, SIGKILL);
    ASSERT_TRUE(cb->wait_closed(5s)) << "B's connection survived the kill of its connector";
    inbox.pump(*cb);  // whatever was already in B's socket
    const auto live_old = inbox.live();
    EXPECT_LT(live_old, kN) << "the kill came after everything was delivered: the test proves nothing";

    // B reconnects elsewhere with the same token and syncs from its last contiguous seq.
    auto cb2 = cl.connect(0, b.token, "dev1");
    const auto from = inbox.contiguous();
    const auto st = inbox.sync(*cb2, from);
    ASSERT_TRUE(st.ok) << st.error;

    sender.join();
    ASSERT_TRUE(sender_ok) << out.summary() << "; " << log_hint(cl);
    EXPECT_TRUE(out.all_sent()) << out.summary() << " (A's own connector and the transfer never failed)";
    EXPECT_TRUE(out.anomalies().empty()) << out.anomalies().front();
    for (std::size_t i = 0; i < out.size(); ++i) {
        if (out.at(i).sent) {
            EXPECT_EQ(out.at(i).sent->seq(), i + 1);
        }
    }
    // Whatever was committed after B's new registration comes live.
    EXPECT_TRUE(inbox.wait_live(*cb2, [&] { return inbox.complete(kN); }, Clock::now() + 10s)) << inbox.gaps(kN);
    EXPECT_TRUE(inbox.conflicts().empty()) << inbox.conflicts().front();
    for (const auto& [seq, d] : inbox.by_seq()) {
        if (seq >= 1 && seq <= out.size() && out.at(seq - 1).sent) {
            EXPECT_EQ(d.msg_id(), out.at(seq - 1).sent->msg_id()) << "seq " << seq;
            EXPECT_EQ(d.text(), out.at(seq - 1).text) << "seq " << seq;
        }
    }
    EXPECT_EQ(cl.stored_messages(conv), kN);
    std::printf("[ stats    ] %zu live before the kill (%zu when it was ordered), synced %zu after seq %lu in %d pages, "
                "%zu live after, %zu arrived twice, total %.3fs\n",
                live_old, live_at_kill, st.messages, static_cast<unsigned long>(from), st.pages,
                inbox.live() - live_old, inbox.duplicates(), seconds_since(t0));

    // The dead connector's registration expires within its TTL (2 s in the cluster).
    Status status(cl.redis_prefix());
    const auto dead = connector_id(cl, 1);
    const bool gone = eventually(
        [&] {
            for (const auto& c : status.us.live_connectors()) {
                if (c.id == dead) return false;
            }
            return true;
        },
        t_kill + 5s);
    const double gone_after = seconds_since(t_kill);
    EXPECT_TRUE(gone) << dead << " still registered " << gone_after << " s after its kill";
    EXPECT_LE(gone_after, 3.5) << "registration_ttl is 2 s";
    auto login = cl.http().post("/v1/sessions", {{"username", b.username}, {"password", b.password}, {"device_id", "probe"}});
    ASSERT_EQ(login.status, 201) << login.body;
    const auto dead_addr = "127.0.0.1:" + std::to_string(cl.connector_port(1));
    const auto live_addr = "127.0.0.1:" + std::to_string(cl.connector_port(0));
    const auto login_body = login.json();
    const auto list = login_body.value("connectors", nlohmann::json::array());
    EXPECT_EQ(std::count(list.begin(), list.end(), dead_addr), 0) << list.dump();
    EXPECT_EQ(std::count(list.begin(), list.end(), live_addr), 1) << list.dump();
    // B's one device now lives on connector 0.
    const auto sessions = status.us.sessions_of(b.id);
    ASSERT_EQ(sessions.size(), 1u);
    EXPECT_EQ(sessions[0].connector_id, connector_id(cl, 0));
    EXPECT_EQ(sessions[0].login_epoch, cb2->login_epoch);
    std::printf("[ stats    ] dead connector left the registry after %.3fs\n", gone_after);
}

// 6. kill -9 of the transfer with messages in flight, then a restart.
TEST_F(MessagingFailures, KillNineOfTheTransferWithMessagesInFlightThenRestartLosesAndDuplicatesNothing) {
    auto& cl = start("msg-fail-kxfer");
    auto a = cl.user("kxa");
    auto b = cl.user("kxb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");

    constexpr std::size_t kN = 100;
    OutStream out(*ca, b.id);
    bool killed = false;
    std::size_t sent_at_kill = 0, in_flight_at_kill = 0;
    // The kill happens on the sending thread (this one) as soon as 30 SENT arrived and at least 5
    // are in flight (some may be committed but unanswered): A never stops sending, the rest go out
    // while the transfer is dead.
    const bool pumped = out.pump(
        kN, 10, [](std::size_t i) { return text_of("kill-transfer", i, 100); }, Clock::now() + 60s,
        [&] {
            if (!killed && out.sent_count() >= 30 && out.in_flight() >= 5) {
                sent_at_kill = out.sent_count();
                in_flight_at_kill = out.in_flight();
                cl.stop_transfer(SIGKILL);
                killed = true;
            }
        });
    ASSERT_TRUE(pumped) << out.summary() << "; " << log_hint(cl);
    ASSERT_TRUE(killed) << "never saw 30 SENT: " << out.summary();
    // Every request in flight on the lost link gets a retryable answer (none is left hanging).
    ASSERT_TRUE(out.wait_all_answered(Clock::now() + 10s)) << "requests left unanswered after the transfer died: "
                                                          << out.in_flight() << "; " << out.summary();
    const auto sent_before = out.sent_count();
    EXPECT_GE(sent_before, 30u);
    EXPECT_LT(sent_before, kN) << "the kill came too late to prove anything";
    for (std::size_t i = 0; i < kN; ++i) {
        const auto& m = out.at(i);
        if (!m.sent) {
            ASSERT_TRUE(m.last.has_value());
            EXPECT_EQ(m.last->code(), client::UNAVAILABLE) << "message " << i << ": " << m.last->ShortDebugString();
            EXPECT_TRUE(m.last->retryable());
        }
    }
    std::map<std::uint64_t, client::SendResult> before;  // SENT before the crash
    for (std::size_t i = 0; i < kN; ++i) {
        if (out.at(i).sent) before[i] = *out.at(i).sent;
    }
    // Rows committed by the dead transfer whose SENT never reached A: their resends must dedupe.
    const auto rows_at_crash = cl.stored_messages(conv);
    EXPECT_GE(rows_at_crash, sent_before) << "a message answered SENT is not in MySQL";
    EXPECT_TRUE(has_sync_hint(*ca, 5s)) << "A's connector did not send a SyncHint after losing the transfer";
    EXPECT_TRUE(has_sync_hint(*cb, 5s)) << "B's connector did not send a SyncHint after losing the transfer";

    // Restart; A's session survived, so it resends on its stream (same cmids, same numbers,
    // stream_acked telling the new owner where the stream stands).
    const auto t_restart = Clock::now();
    cl.start_transfer();
    ASSERT_TRUE(cl.wait_connector_ready(0) && cl.wait_connector_ready(1)) << log_hint(cl);
    const double ready_s = seconds_since(t_restart);
    const bool done = out.drive_to_completion(Clock::now() + 60s, [&] {
        (void)cl.wait_connector_ready(0, 5s);  // a retry round only makes sense with a link
    });
    ASSERT_TRUE(done) << out.summary() << "; " << log_hint(cl);
    EXPECT_TRUE(out.anomalies().empty()) << out.anomalies().front();
    for (const auto& [i, r] : before) {
        EXPECT_EQ(out.at(i).sent->msg_id(), r.msg_id()) << "message " << i << " SENT before the crash changed";
        EXPECT_EQ(out.at(i).sent->seq(), r.seq());
    }
    for (std::size_t i = 0; i < kN; ++i) {
        EXPECT_EQ(out.at(i).sent->seq(), i + 1) << "order across the crash: message " << i;
    }

    const auto dedupes_after_restart = metric(cl.transfer_admin_port(), "im_transfer_messages_deduped_total");
    // The table: exactly 100 rows, seqs 1..100 dense, each the right message.
    const auto rows = stored_rows(cl, conv);
    EXPECT_EQ(rows.size(), kN);
    for (std::size_t i = 0; i < rows.size() && i < kN; ++i) {
        EXPECT_EQ(rows[i].seq, i + 1);
        EXPECT_EQ(rows[i].cmid, out.at(i).cmid) << "seq " << i + 1 << " holds another message";
        EXPECT_EQ(rows[i].msg_id, out.at(i).sent->msg_id());
        EXPECT_EQ(rows[i].body, out.at(i).text);
    }

    // B: what came live before the crash, a sync after the hint, and live pushes of the resends.
    Inbox inbox(conv);
    inbox.pump(*cb);
    const auto live_before_sync = inbox.live();
    const auto from = inbox.contiguous();
    const auto st = inbox.sync(*cb, from);
    ASSERT_TRUE(st.ok) << st.error;
    EXPECT_TRUE(inbox.wait_live(*cb, [&] { return inbox.complete(kN); }, Clock::now() + 10s)) << inbox.gaps(kN);
    EXPECT_TRUE(inbox.conflicts().empty()) << inbox.conflicts().front();
    for (const auto& [seq, d] : inbox.by_seq()) {
        if (seq >= 1 && seq <= kN) {
            EXPECT_EQ(d.msg_id(), out.at(seq - 1).sent->msg_id()) << "seq " << seq;
        }
    }
    std::printf("[ stats    ] killed at %zu SENT with %zu in flight; %zu SENT before the crash, %lu rows stored at the "
                "crash (%lu committed but unanswered); transfer ready %.3fs after restart; %s; B: %zu live, %zu paged "
                "after seq %lu, %zu twice; the restarted transfer deduped %.0f resends\n",
                sent_at_kill, in_flight_at_kill, sent_before, static_cast<unsigned long>(rows_at_crash),
                static_cast<unsigned long>(rows_at_crash - std::min<std::uint64_t>(rows_at_crash, sent_before)), ready_s,
                out.summary().c_str(), live_before_sync,
                st.messages, static_cast<unsigned long>(from), inbox.duplicates(), dedupes_after_restart);
}

// kill -9 of the SENDER's connector mid-stream: A reconnects elsewhere (a new login epoch) and
// resends every unacked message with the same cmid, numbered from 1 in the new stream. Messages
// the transfer committed after the kill (their SendResult died with the connector) dedupe; the
// recipient, whose connector and transfer never failed, sees every seq exactly once, in order.
TEST_F(MessagingFailures, KillNineOfTheSendersConnectorThenResendOnANewConnectionKeepsOrderAndOnce) {
    // Every commit is held 500 ms: message 1 commits alone, the other 99 queue into the next batch,
    // which is inside its transaction when the kill lands (right after the first SENT).
    auto& cl = start("msg-fail-ksend", ClusterOptions{2, {}, {"testing.failpoints=writer.before_commit=pause(500)"}, {}, {}});
    auto a = cl.user("ksa");
    auto b = cl.user("ksb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(1, a.token, "dev1");
    auto cb = cl.connect(0, b.token, "dev1");

    constexpr std::size_t kN = 100;
    OutStream out(*ca, b.id);
    auto text = [](std::size_t i) { return text_of("kill-sender-connector", i, 100); };
    // Message 1 first; once its batch is held, the other 99 at once (they queue into the next
    // batch). The kill lands when the first SENT is back, while the 99 sit in the held batch:
    // they are committed after the kill and their SENT dies with the connector.
    out.send_new(text(0));
    bool held = false;
    const auto deadline = Clock::now() + 5s;
    while (!held && Clock::now() < deadline) {
        held = cl.transfer().log_contents().find("failpoint hit: writer.before_commit") != std::string::npos;
        if (!held) std::this_thread::sleep_for(2ms);
    }
    ASSERT_TRUE(held) << "the failpoint never fired; " << log_hint(cl);
    ASSERT_TRUE(out.pump(kN - 1, 0, text, Clock::now() + 30s));
    ASSERT_TRUE(out.wait_one(10s)) << "no SendResult; " << log_hint(cl);
    const auto sent_at_kill = out.sent_count();
    const auto in_flight_at_kill = out.in_flight();
    cl.stop_connector(1, SIGKILL);
    ASSERT_TRUE(ca->wait_closed(5s)) << "A's connection survived the kill of its connector";
    out.absorb();  // answers that made it before the socket closed
    const auto sent_before = out.sent_count();
    EXPECT_LT(sent_before, kN) << "everything was answered before the kill: the test proves nothing";
    const auto dedupes_before = metric(cl.transfer_admin_port(), "im_transfer_messages_deduped_total");

    auto ca2 = cl.connect(0, a.token, "dev1");  // a new login epoch
    ASSERT_NE(ca2->login_epoch, ca->login_epoch);
    const auto rows_at_reconnect = cl.stored_messages(conv);
    out.new_epoch(*ca2);
    out.resend_from_first_unacked();
    ASSERT_TRUE(out.drive_to_completion(Clock::now() + 30s)) << out.summary() << "; " << log_hint(cl);
    ASSERT_EQ(out.size(), kN);
    const auto dedupes = metric(cl.transfer_admin_port(), "im_transfer_messages_deduped_total") - dedupes_before;
    EXPECT_GT(dedupes, 0) << "no resend met a message committed after the kill: the scenario did not happen";
    EXPECT_TRUE(out.anomalies().empty()) << out.anomalies().front();
    for (std::size_t i = 0; i < kN; ++i) {
        EXPECT_EQ(out.at(i).sent->seq(), i + 1) << "order across the reconnect: message " << i;
    }
    const auto rows = stored_rows(cl, conv);
    EXPECT_EQ(rows.size(), kN);
    for (std::size_t i = 0; i < rows.size() && i < kN; ++i) {
        EXPECT_EQ(rows[i].seq, i + 1);
        EXPECT_EQ(rows[i].cmid, out.at(i).cmid) << "seq " << i + 1;
    }
    // B's connector and the transfer were fine: every seq comes live, once (a dedupe is never pushed).
    Inbox inbox(conv);
    EXPECT_TRUE(inbox.wait_live(*cb, [&] { return inbox.complete(kN); }, Clock::now() + 10s)) << inbox.gaps(kN);
    EXPECT_FALSE(cb->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv); }, 300ms).has_value())
        << "a Deliver beyond seq " << kN;
    EXPECT_EQ(inbox.duplicates(), 0u) << "a resend that deduped was delivered again";
    EXPECT_TRUE(inbox.conflicts().empty()) << inbox.conflicts().front();
    std::printf("[ stats    ] killed at %zu SENT with %zu in flight; %zu SENT seen before the socket closed, %lu rows "
                "stored when A reconnected; %.0f resends answered by dedupe (committed, SENT lost); %s; B %zu live, "
                "%zu twice\n",
                sent_at_kill, in_flight_at_kill, sent_before, static_cast<unsigned long>(rows_at_reconnect), dedupes,
                out.summary().c_str(), inbox.live(), inbox.duplicates());
}

// kill -9 of the transfer while a batch sits inside its transaction (writer.before_commit held):
// nothing of that batch may be stored or delivered; the resends after the restart store each
// message once, in order.
TEST_F(MessagingFailures, KillNineOfTheTransferDuringAHeldCommitStoresNothingHalfway) {
    auto& cl = start("msg-fail-kheld", ClusterOptions{2, {}, {"testing.failpoints=writer.before_commit=pause_once(3000)"}, {}, {}});
    auto a = cl.user("kha");
    auto b = cl.user("khb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");

    OutStream out(*ca, b.id);
    for (std::size_t i = 0; i < 5; ++i) out.send_new(text_of("held-at-crash", i));
    bool held = false;
    const auto deadline = Clock::now() + 5s;
    while (!held && Clock::now() < deadline) {
        held = cl.transfer().log_contents().find("failpoint hit: writer.before_commit") != std::string::npos;
        if (!held) std::this_thread::sleep_for(5ms);
    }
    ASSERT_TRUE(held) << "the failpoint never fired; " << log_hint(cl);
    cl.stop_transfer(SIGKILL);
    ASSERT_TRUE(out.wait_all_answered(Clock::now() + 10s)) << "in-flight sends left unanswered: " << out.summary();
    EXPECT_EQ(out.sent_count(), 0u) << "SENT for a batch that never committed: " << out.summary();
    for (std::size_t i = 0; i < out.size(); ++i) {
        EXPECT_EQ(out.at(i).last->code(), client::UNAVAILABLE) << out.at(i).last->ShortDebugString();
        EXPECT_TRUE(out.at(i).last->retryable());
    }
    EXPECT_EQ(cl.stored_messages(conv), 0u) << "the held batch was rolled back with the dead transfer";
    ASSERT_TRUE(has_sync_hint(*cb, 5s));
    EXPECT_TRUE(delivers_seen(*cb, conv).empty()) << "something uncommitted was delivered";

    cl.start_transfer();  // (the restarted one holds its first commit for 3 s again)
    ASSERT_TRUE(cl.wait_connector_ready(0) && cl.wait_connector_ready(1)) << log_hint(cl);
    ASSERT_TRUE(out.drive_to_completion(Clock::now() + 30s, [&] { (void)cl.wait_connector_ready(0, 5s); }))
        << out.summary() << "; " << log_hint(cl);
    EXPECT_TRUE(out.anomalies().empty()) << out.anomalies().front();
    for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out.at(i).sent->seq(), i + 1);
    const auto rows = stored_rows(cl, conv);
    ASSERT_EQ(rows.size(), 5u);
    for (std::size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].cmid, out.at(i).cmid);
    EXPECT_EQ(metric(cl.transfer_admin_port(), "im_transfer_messages_deduped_total"), 0)
        << "nothing was stored before the crash, so no resend can be a duplicate";
    Inbox inbox(conv);
    EXPECT_TRUE(inbox.wait_live(*cb, [&] { return inbox.complete(5); }, Clock::now() + 10s)) << inbox.gaps(5);
    EXPECT_EQ(inbox.duplicates(), 0u);
    std::printf("[ stats    ] %s\n", out.summary().c_str());
}

// 3a after a restart: the dedupe answer comes from MySQL (a replay below the stream position, and
// a fresh stream number in a new login epoch that only the unique key can catch).
TEST_F(MessagingFailures, ResendAfterATransferRestartReturnsTheOriginalFromStorage) {
    auto& cl = start("msg-fail-restart");
    auto a = cl.user("rsa");
    auto b = cl.user("rsb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    const auto m1 = random_cmid(), m2 = random_cmid();
    auto r1 = send_and_wait(*ca, make_send(*ca, b.id, m1, "one", 1, 0));
    auto r2 = send_and_wait(*ca, make_send(*ca, b.id, m2, "two", 2, 1));
    ASSERT_TRUE(r1 && r2);
    ASSERT_EQ(r1->code(), client::ERROR_NONE);
    ASSERT_EQ(r2->code(), client::ERROR_NONE);
    ASSERT_TRUE(cb->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv) && e.deliver().seq() == 2; })
                    .has_value());

    cl.stop_transfer(SIGKILL);
    cl.start_transfer();
    ASSERT_TRUE(cl.wait_connector_ready(0) && cl.wait_connector_ready(1)) << log_hint(cl);

    // Same session: stream 1 again while the client reports 2 acked (a replay below the position).
    auto again1 = send_and_wait(*ca, make_send(*ca, b.id, m1, "one", 1, 2));
    ASSERT_TRUE(again1.has_value());
    EXPECT_EQ(again1->code(), client::ERROR_NONE) << again1->ShortDebugString();
    EXPECT_EQ(again1->msg_id(), r1->msg_id());
    EXPECT_EQ(again1->seq(), 1u);

    // A new login epoch: m2 as number 1 of a new stream looks new until MySQL's unique key says no.
    auto ca2 = cl.connect(1, a.token, "dev1");
    auto again2 = send_and_wait(*ca2, make_send(*ca2, b.id, m2, "two", 1, 0));
    ASSERT_TRUE(again2.has_value());
    EXPECT_EQ(again2->code(), client::ERROR_NONE) << again2->ShortDebugString();
    EXPECT_EQ(again2->msg_id(), r2->msg_id());
    EXPECT_EQ(again2->seq(), 2u);

    auto r3 = send_and_wait(*ca2, make_send(*ca2, b.id, random_cmid(), "three", 2, 1));
    ASSERT_TRUE(r3.has_value());
    ASSERT_EQ(r3->code(), client::ERROR_NONE) << r3->ShortDebugString();
    EXPECT_EQ(r3->seq(), 3u) << "the dedupe retry must not disturb the seq counter";
    ASSERT_TRUE(cb->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv) && e.deliver().seq() == 3; })
                    .has_value());
    std::vector<std::uint64_t> seen;
    for (const auto& d : delivers_seen(*cb, conv)) seen.push_back(d.seq());
    EXPECT_EQ(seen, (std::vector<std::uint64_t>{1, 2, 3}));
    EXPECT_EQ(rows_with_cmid(cl, a.id, m1), 1u);
    EXPECT_EQ(rows_with_cmid(cl, a.id, m2), 1u);
    EXPECT_EQ(cl.stored_messages(conv), 3u);
}

// 7. Redis loses everything of this cluster while A and B are connected.
TEST_F(MessagingFailures, RedisDataLossLogsNobodyOutAndSessionsComeBack) {
    auto& cl = start("msg-fail-redis");
    auto a = cl.user("rda");
    auto b = cl.user("rdb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    const auto tablet_token = cl.login_token(a, "tablet");  // issued (and cached) before the loss
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    auto r1 = send_and_wait(*ca, make_send(*ca, b.id, random_cmid(), "before", 1, 0));
    ASSERT_TRUE(r1.has_value());
    ASSERT_EQ(r1->code(), client::ERROR_NONE);
    ASSERT_TRUE(cb->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv); }).has_value());

    Status status(cl.redis_prefix());
    ASSERT_TRUE(eventually([&] { return status.us.presence(a.id) && status.us.presence(b.id); }, Clock::now() + 5s));

    redis_delete_prefix(cl.redis_prefix());
    const auto t_wipe = Clock::now();

    // B still gets A's next message live, with the next seq (seq lives with the owner and MySQL).
    auto r2 = send_and_wait(*ca, make_send(*ca, b.id, random_cmid(), "after the loss", 2, 1));
    ASSERT_TRUE(r2.has_value()) << log_hint(cl);
    ASSERT_EQ(r2->code(), client::ERROR_NONE) << r2->ShortDebugString();
    EXPECT_EQ(r2->seq(), 2u);
    auto d2 = cb->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv) && e.deliver().seq() == 2; });
    ASSERT_TRUE(d2.has_value()) << "B did not get the message live after the Redis loss; " << log_hint(cl);
    EXPECT_EQ(d2->deliver().text(), "after the loss");

    // An old token logs in on a new connection: the cache is gone, MySQL is the truth.
    RawClient tab(cl.connector_port(1));
    auto res = tab.login(tablet_token, "tablet");
    ASSERT_TRUE(res.has_login_result()) << res.ShortDebugString();
    EXPECT_EQ(res.login_result().user_id(), a.id);

    // The connectors re-register their sessions within a few heartbeats (200 ms).
    const bool back = eventually(
        [&] {
            if (!status.us.presence(a.id) || !status.us.presence(b.id)) return false;
            return status.us.sessions_of(a.id).size() == 2;
        },
        t_wipe + 5s);
    const double back_s = seconds_since(t_wipe);
    EXPECT_TRUE(back) << "presence a=" << status.us.presence(a.id) << " b=" << status.us.presence(b.id)
                      << " a's sessions=" << status.us.sessions_of(a.id).size() << " after " << back_s << " s";
    EXPECT_LE(back_s, 3.0);
    bool both_connectors = eventually([&] { return status.us.live_connectors().size() == 2; }, Clock::now() + 3s);
    EXPECT_TRUE(both_connectors);

    // And everything keeps flowing to every session: A's tablet and B get the next one.
    auto r3 = send_and_wait(*ca, make_send(*ca, b.id, random_cmid(), "later", 3, 2));
    ASSERT_TRUE(r3.has_value());
    ASSERT_EQ(r3->code(), client::ERROR_NONE) << r3->ShortDebugString();
    EXPECT_EQ(r3->seq(), 3u);
    EXPECT_TRUE(cb->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv) && e.deliver().seq() == 3; })
                    .has_value());
    EXPECT_TRUE(tab.wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv) && e.deliver().seq() == 3; })
                    .has_value());
    EXPECT_FALSE(ca->closed());
    EXPECT_FALSE(cb->closed());
    EXPECT_EQ(cl.stored_messages(conv), 3u);
    std::printf("[ stats    ] sessions back in Redis %.3fs after the loss\n", back_s);
}

}  // namespace
}  // namespace im::test

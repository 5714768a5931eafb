// Issue 17, items 1, 5, 6 and 7: defects of the transfer's writer, each proven against the real
// binaries (im-rest, im-transfer, im-connectors) and the real servers, one private cluster per
// test, asserting on the raw frames and on what the list syncs show.
//  1. READ means read: a send moves no watermark of its sender; unread counts the peer's messages.
//  5. A message committed whose COMMIT reply was lost is pushed live when its resend dedupes.
//  6. Receipts are never dropped silently: kept through failed batches, refused aloud when full.
//  7. The conversation list sync never skips a row when two writer lanes (or two transfers)
//     commit one user's rows out of version order.
#include <gtest/gtest.h>

#include <cppconn/resultset.h>

#include <cstdio>
#include <map>
#include <thread>

#include "messaging_test_util.hpp"

namespace im::test {
namespace {

using namespace msg;

// Waits until the transfer's log shows `needle` (a failpoint hit is logged at warn, flushed at
// once).
bool wait_log(Cluster& cl, const std::string& needle, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (cl.transfer().log_contents().find(needle) != std::string::npos) return true;
        std::this_thread::sleep_for(5ms);
    }
    return false;
}

std::optional<client::ConversationInfo> info_of(RawClient& c, std::uint64_t conv) {
    auto list = sync_conversations(c, 0);
    if (!list) return std::nullopt;
    return find_conversation(*list, conv);
}

std::optional<client::ReceiptEvent> wait_receipt_event(RawClient& c, std::uint64_t conv,
                                                       client::ReceiptKind kind,
                                                       std::uint64_t up_to,
                                                       std::chrono::milliseconds timeout = 5s) {
    auto e = c.wait_for(
        [&](const Envelope& f) {
            return f.has_receipt_event() && f.receipt_event().conversation_id() == conv &&
                   f.receipt_event().kind() == kind && f.receipt_event().up_to_seq() == up_to;
        },
        timeout);
    if (!e) return std::nullopt;
    return e->receipt_event();
}

// ------------------------------------------------------------------------------------ item 1
TEST(Issue17, Item1ReadMeansReadASendMovesNoWatermarkOfItsSender) {
    Cluster cl(ClusterOptions{2, {}, {}, {}, "i17-read"});
    auto a = cl.user("rda");
    auto b = cl.user("rdb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");

    // B's question and A's unrelated message cross: A sends without having read B's message.
    auto r1 = send_and_wait(*cb, make_send(*cb, a.id, random_cmid(), "question", 1, 0));
    ASSERT_TRUE(r1 && r1->code() == client::ERROR_NONE)
        << (r1 ? r1->ShortDebugString() : "no answer");
    auto r2 = send_and_wait(*ca, make_send(*ca, b.id, random_cmid(), "crossing", 1, 0));
    ASSERT_TRUE(r2 && r2->code() == client::ERROR_NONE)
        << (r2 ? r2->ShortDebugString() : "no answer");
    EXPECT_EQ(r2->seq(), 2u);

    auto ia = info_of(*ca, conv);
    ASSERT_TRUE(ia.has_value());
    EXPECT_EQ(ia->last_seq(), 2u);
    EXPECT_EQ(ia->my_read_seq(), 0u) << "A read nothing: its own send is not a read";
    EXPECT_EQ(ia->my_delivered_seq(), 0u) << "no device of A acknowledged anything";
    EXPECT_EQ(ia->unread(), 1u) << "B's message is unread; A's own message never counts";
    auto ib = info_of(*cb, conv);
    ASSERT_TRUE(ib.has_value());
    EXPECT_EQ(ib->peer_read_seq(), 0u) << "B must not see its question as read by A";
    EXPECT_EQ(ib->peer_delivered_seq(), 0u);
    EXPECT_EQ(ib->my_read_seq(), 0u);
    EXPECT_EQ(ib->unread(), 1u) << "A's message is B's only unread one";
    auto rest = cl.http().get("/v1/conversations", a.token);
    ASSERT_EQ(rest.status, 200) << rest.body;
    ASSERT_EQ(rest.json()["conversations"].size(), 1u) << rest.body;
    EXPECT_EQ(rest.json()["conversations"][0]["unread"], 1) << rest.body;
    EXPECT_EQ(rest.json()["conversations"][0]["my_read_seq"], 0) << rest.body;

    // Only a Receipt moves a watermark. A reads B's question (seq 1): nothing of B's is left.
    send_receipt(*ca, conv, client::READ, 1);
    ASSERT_TRUE(wait_receipt_event(*cb, conv, client::READ, 1)) << log_hint(cl);
    ia = info_of(*ca, conv);
    ASSERT_TRUE(ia.has_value());
    EXPECT_EQ(ia->my_read_seq(), 1u);
    EXPECT_EQ(ia->unread(), 0u);

    // B sends seq 3; A reads up to its own seq 2: B's seq 3 is still unread.
    auto r3 = send_and_wait(*cb, make_send(*cb, a.id, random_cmid(), "again", 2, 1));
    ASSERT_TRUE(r3 && r3->code() == client::ERROR_NONE);
    EXPECT_EQ(r3->seq(), 3u);
    send_receipt(*ca, conv, client::READ, 2);
    ASSERT_TRUE(wait_receipt_event(*cb, conv, client::READ, 2)) << log_hint(cl);
    ia = info_of(*ca, conv);
    ASSERT_TRUE(ia.has_value());
    EXPECT_EQ(ia->my_read_seq(), 2u);
    EXPECT_EQ(ia->unread(), 1u);
    // A stale receipt changes nothing; the last one clears it.
    send_receipt(*ca, conv, client::READ, 1);
    send_receipt(*ca, conv, client::READ, 3);
    ASSERT_TRUE(wait_receipt_event(*cb, conv, client::READ, 3)) << log_hint(cl);
    ia = info_of(*ca, conv);
    ASSERT_TRUE(ia.has_value());
    EXPECT_EQ(ia->my_read_seq(), 3u);
    EXPECT_EQ(ia->unread(), 0u);
    ib = info_of(*cb, conv);
    ASSERT_TRUE(ib.has_value());
    EXPECT_EQ(ib->peer_read_seq(), 3u);
    EXPECT_EQ(ib->unread(), 1u) << "B has read nothing of A's";
    EXPECT_EQ(ib->my_read_seq(), 0u) << "B's two sends moved none of B's watermarks";
    rest = cl.http().get("/v1/conversations", a.token);
    ASSERT_EQ(rest.status, 200) << rest.body;
    EXPECT_EQ(rest.json()["conversations"][0]["unread"], 0) << rest.body;
}

// ------------------------------------------------------------------------------------ item 5
TEST(Issue17, Item5ALostCommitReplyIsPushedLiveWhenItsResendDedupes) {
    Cluster cl(ClusterOptions{
        2, {}, {"testing.failpoints=writer.after_commit=error_once"}, {}, "i17-lost"});
    auto a = cl.user("lca");
    auto b = cl.user("lcb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto ca2 = cl.connect(1, cl.login_token(a, "dev2"), "dev2");
    auto cb = cl.connect(1, b.token, "dev1");

    // The batch commits, then fails as if the COMMIT's reply had been lost: A gets UNAVAILABLE.
    const auto cmid = random_cmid();
    auto first = send_and_wait(*ca, make_send(*ca, b.id, cmid, "lost reply", 1, 0));
    ASSERT_TRUE(first.has_value()) << log_hint(cl);
    EXPECT_EQ(first->code(), client::UNAVAILABLE) << first->ShortDebugString();
    EXPECT_TRUE(first->retryable());
    ASSERT_EQ(rows_with_cmid(cl, a.id, cmid), 1u)
        << "the failpoint fires after COMMIT: the message is stored";

    // The resend dedupes from storage: SENT with the original.
    auto again = send_and_wait(*ca, make_send(*ca, b.id, cmid, "lost reply", 1, 0));
    ASSERT_TRUE(again.has_value()) << log_hint(cl);
    ASSERT_EQ(again->code(), client::ERROR_NONE) << again->ShortDebugString();
    EXPECT_EQ(again->seq(), 1u);
    const auto t0 = Clock::now();

    // The recipient and the sender's other device get it live, without asking for it.
    auto is_it = [conv](const Envelope& e) {
        return is_deliver_of(e, conv) && e.deliver().seq() == 1;
    };
    auto db = cb->wait_for(is_it, 5s);
    const double pushed_after = seconds_since(t0);
    EXPECT_TRUE(db.has_value()) << "B (online) never got the message: nothing pushed, no SyncHint; "
                                << log_hint(cl);
    if (db) {
        EXPECT_EQ(db->deliver().msg_id(), again->msg_id());
        EXPECT_EQ(db->deliver().text(), "lost reply");
        EXPECT_EQ(db->deliver().sender_device_id(), "dev1");
        EXPECT_EQ(db->deliver().client_msg_id(), cmid);
    }
    EXPECT_TRUE(ca2->wait_for(is_it, 5s).has_value())
        << "A's other device never got its own message";
    EXPECT_FALSE(ca->wait_for(is_it, 300ms).has_value())
        << "the resending session has its SendResult";
    EXPECT_EQ(rows_with_cmid(cl, a.id, cmid), 1u);
    EXPECT_EQ(cl.stored_messages(conv), 1u);
    EXPECT_GE(metric(cl.transfer_admin_port(), "im_transfer_batch_failures_total"), 1.0);
    EXPECT_EQ(metric(cl.transfer_admin_port(), "im_transfer_messages_redelivered_total"), 1.0);
    std::printf("[ stats    ] pushed to B %.3fs after the resend's SENT\n", pushed_after);
}

// ------------------------------------------------------------------------------------ item 6
TEST(Issue17, Item6ReceiptsAreNeverDroppedSilently) {
    // One lane with room for two queued requests; its first batch is held 3 s in its transaction;
    // the first three batches that carry receipts fail.
    Cluster cl(ClusterOptions{2,
                              {},
                              {"writer.threads=1", "writer.max_queue=2",
                               "testing.failpoints=writer.before_insert=pause_once(3000),writer."
                               "receipt_batch=error_times(3)"},
                              {},
                              "i17-rcpt"});
    auto a = cl.user("rca");
    auto b = cl.user("rcb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    // Both on connector 0: one link, so the transfer sees A's sends before B's receipt.
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(0, b.token, "dev1");

    // 1. A full queue: the lane holds message 1, messages 2 and 3 fill the queue.
    OutStream out(*ca, b.id);
    out.send_new("m1");
    ASSERT_TRUE(wait_log(cl, "failpoint hit: writer.before_insert")) << log_hint(cl);
    out.send_new("m2");
    out.send_new("m3");
    Envelope rc;
    rc.set_request_id(cb->next_request_id());
    rc.mutable_receipt()->set_conversation_id(conv);
    rc.mutable_receipt()->set_kind(client::DELIVERED);
    rc.mutable_receipt()->set_up_to_seq(1);
    cb->send(rc);
    const auto rid = rc.request_id();
    auto answer = cb->wait_for([rid](const Envelope& e) { return e.request_id() == rid; }, 5s);
    EXPECT_TRUE(answer.has_value())
        << "a receipt the transfer could not queue was dropped without a word";
    if (answer) {
        EXPECT_TRUE(answer->has_error()) << answer->ShortDebugString();
        EXPECT_EQ(answer->error().code(), client::OVERLOADED) << answer->ShortDebugString();
        EXPECT_TRUE(answer->error().retryable()) << answer->ShortDebugString();
    }

    // 2. The held batch commits and the queue drains.
    ASSERT_TRUE(out.wait_all_answered(Clock::now() + 15s)) << out.summary();
    ASSERT_TRUE(out.all_sent()) << out.summary();
    Inbox inbox(conv);
    ASSERT_TRUE(inbox.wait_live(
        *cb, [&] { return inbox.complete(3); }, Clock::now() + 10s))
        << inbox.gaps(3);

    // 3. B's READ up to 3 meets three failing batches: it is kept and stored by the fourth.
    const auto failures_before =
        metric(cl.transfer_admin_port(), "im_transfer_batch_failures_total");
    send_receipt(*cb, conv, client::READ, 3);
    auto ev = wait_receipt_event(*ca, conv, client::READ, 3, 10s);
    EXPECT_TRUE(ev.has_value()) << "B's READ was dropped after failed batches; " << log_hint(cl);
    EXPECT_GE(
        metric(cl.transfer_admin_port(), "im_transfer_batch_failures_total") - failures_before, 3.0)
        << "the receipt batches did not fail as armed";
    auto ib = info_of(*cb, conv);
    ASSERT_TRUE(ib.has_value());
    EXPECT_EQ(ib->my_read_seq(), 3u) << "B's READ watermark was never stored";
    EXPECT_EQ(ib->unread(), 0u);
    EXPECT_EQ(metric(cl.transfer_admin_port(), "im_transfer_receipts_refused_total"), 1.0)
        << "the refusal of step 1 is counted";
}

// ------------------------------------------------------------------------------------ item 7
TEST(Issue17, Item7ListSyncSkipsNoRowWhenTwoLanesCommitOutOfVersionOrder) {
    // Two writer lanes; the first batch that reaches its commit is held there for 2 s.
    Cluster cl(ClusterOptions{
        2,
        {},
        {"writer.threads=2", "testing.failpoints=writer.before_commit=pause_once(2000)"},
        {},
        "i17-lanes"});
    auto u = cl.user("lnu");
    auto x = cl.user("lnx");
    // A conversation goes to lane shard % lanes (transfer/message_writer.cpp): Y's conversation
    // with U must be on the other lane than X's.
    const auto lane = [](std::uint64_t conv) { return shard_of(conv) % 2; };
    const auto ux = conversation_id(u.id, x.id);
    std::optional<TestUser> y;
    for (int i = 0; i < 32 && !y; ++i) {
        auto c = cl.user("lny" + std::to_string(i));
        if (lane(conversation_id(u.id, c.id)) != lane(ux)) y = c;
    }
    ASSERT_TRUE(y.has_value()) << "no user found whose conversation with U is on the other lane";
    const auto uy = conversation_id(u.id, y->id);
    cl.befriend(u, x);
    cl.befriend(u, *y);
    auto cu = cl.connect(0, u.token, "dev1");
    auto cx = cl.connect(1, x.token, "dev1");
    auto cy = cl.connect(1, y->token, "dev1");

    // X's message: its batch writes U's row (and its version), then holds its transaction open.
    auto sx = make_send(*cx, u.id, random_cmid(), "from x", 1, 0);
    cx->send(sx);
    ASSERT_TRUE(wait_log(cl, "failpoint hit: writer.before_commit")) << log_hint(cl);
    // Y's message on the other lane, then U syncs its list while X's batch is still open.
    const auto t0 = Clock::now();
    auto ry = send_and_wait(*cy, make_send(*cy, u.id, random_cmid(), "from y", 1, 0));
    ASSERT_TRUE(ry && ry->code() == client::ERROR_NONE)
        << (ry ? ry->ShortDebugString() : "no answer");
    const double y_after = seconds_since(t0);
    auto l1 = sync_conversations(*cu, 0);
    ASSERT_TRUE(l1.has_value());
    auto rx = cx->wait_for([&](const Envelope& e) {
        return e.request_id() == sx.request_id() && e.has_send_result();
    });
    ASSERT_TRUE(rx && rx->send_result().code() == client::ERROR_NONE)
        << (rx ? rx->ShortDebugString() : "no answer");
    // U continues from its cursor, as every client does.
    auto l2 = sync_conversations(*cu, l1->next_cursor());
    ASSERT_TRUE(l2.has_value());

    std::map<std::uint64_t, client::ConversationInfo> seen;
    for (const auto* l : {&*l1, &*l2}) {
        for (const auto& c : l->conversations())
            seen[c.conversation_id()] = c;
    }
    auto full = sync_conversations(*cu, 0);
    ASSERT_TRUE(full.has_value());
    std::string versions;
    for (const auto& c : full->conversations()) {
        versions += " conv " + std::to_string(c.conversation_id()) + " last_seq " +
                    std::to_string(c.last_seq());
    }
    EXPECT_EQ(seen.count(uy), 1u) << "Y's conversation is missing";
    ASSERT_EQ(seen.count(ux), 1u)
        << "U's list sync skipped X's conversation: its row committed with a version below the "
        << "cursor U already had (" << l1->next_cursor() << "); first sync had "
        << l1->conversations_size() << " rows, the second " << l2->conversations_size()
        << "; a full sync shows" << versions;
    EXPECT_EQ(seen[ux].last_seq(), 1u);
    EXPECT_EQ(seen[uy].last_seq(), 1u);
    std::printf(
        "[ stats    ] Y's SENT after %.3fs; cursor after the first sync %lu, after the second "
        "%lu\n",
        y_after, static_cast<unsigned long>(l1->next_cursor()),
        static_cast<unsigned long>(l2->next_cursor()));
}

// The same race across processes: one user's conversations owned by two transfers.
TEST(Issue17, Item7ListSyncSkipsNoRowWhenTwoTransfersCommitOutOfVersionOrder) {
    // Two transfers; the first batch that reaches its commit on each is held there for 2 s.
    ClusterOptions o;
    o.name = "i17-xfers";
    o.transfers = 2;
    o.transfer_sets = {"testing.failpoints=writer.before_commit=pause_once(2000)"};
    Cluster cl(o);
    ASSERT_TRUE(cl.wait_shards_settled())
        << "shards: " << cl.owned_shards(0) << " + " << cl.owned_shards(1);
    auto owner = [&](std::uint64_t conv) {
        auto& st = cl.db().db().prepare("SELECT transfer_id FROM shard_owner WHERE shard = ?");
        st.setUInt(1, shard_of(conv));
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        return rs->next() ? rs->getString(1).asStdString() : std::string();
    };
    auto index_of = [&](const std::string& id) {
        return id == cl.transfer_id(0) ? 0 : id == cl.transfer_id(1) ? 1 : -1;
    };
    auto u = cl.user("xpu");
    auto x = cl.user("xpx");
    const auto ux = conversation_id(u.id, x.id);
    std::optional<TestUser> y;
    for (int i = 0; i < 32 && !y; ++i) {
        auto c = cl.user("xpy" + std::to_string(i));
        if (owner(conversation_id(u.id, c.id)) != owner(ux)) y = c;
    }
    ASSERT_TRUE(y.has_value()) << "no user found whose conversation with U has the other owner";
    const auto uy = conversation_id(u.id, y->id);
    const int tx = index_of(owner(ux)), ty = index_of(owner(uy));
    ASSERT_TRUE(tx >= 0 && ty >= 0 && tx != ty) << owner(ux) << " / " << owner(uy);
    cl.befriend(u, x);
    cl.befriend(u, *y);
    auto cu = cl.connect(0, u.token, "dev1");
    auto cx = cl.connect(1, x.token, "dev1");
    auto cy = cl.connect(1, y->token, "dev1");

    // Y's transfer spends its held commit on a first message, before the race.
    auto warm = send_and_wait(*cy, make_send(*cy, u.id, random_cmid(), "warm-up", 1, 0));
    ASSERT_TRUE(warm && warm->code() == client::ERROR_NONE)
        << (warm ? warm->ShortDebugString() : "no answer");
    // X's message: its transfer writes U's row (and its version), then holds its transaction open.
    auto sx = make_send(*cx, u.id, random_cmid(), "from x", 1, 0);
    cx->send(sx);
    const auto deadline = Clock::now() + 5s;
    bool held = false;
    while (!held && Clock::now() < deadline) {
        held = cl.transfer(tx).log_contents().find("failpoint hit: writer.before_commit") !=
               std::string::npos;
        if (!held) std::this_thread::sleep_for(5ms);
    }
    ASSERT_TRUE(held) << "X's transfer never held its commit; " << log_hint(cl);
    // Y's second message on the other transfer, then U syncs while X's batch is still open.
    const auto t0 = Clock::now();
    auto ry = send_and_wait(*cy, make_send(*cy, u.id, random_cmid(), "from y", 2, 1));
    ASSERT_TRUE(ry && ry->code() == client::ERROR_NONE)
        << (ry ? ry->ShortDebugString() : "no answer");
    const double y_after = seconds_since(t0);
    auto l1 = sync_conversations(*cu, 0);
    ASSERT_TRUE(l1.has_value());
    auto rx = cx->wait_for([&](const Envelope& e) {
        return e.request_id() == sx.request_id() && e.has_send_result();
    });
    ASSERT_TRUE(rx && rx->send_result().code() == client::ERROR_NONE)
        << (rx ? rx->ShortDebugString() : "no answer");
    auto l2 = sync_conversations(*cu, l1->next_cursor());
    ASSERT_TRUE(l2.has_value());

    std::map<std::uint64_t, client::ConversationInfo> seen;
    for (const auto* l : {&*l1, &*l2}) {
        for (const auto& c : l->conversations())
            seen[c.conversation_id()] = c;
    }
    EXPECT_EQ(seen[uy].last_seq(), 2u) << "Y's conversation is missing or stale";
    ASSERT_EQ(seen.count(ux), 1u)
        << "U's list sync skipped X's conversation: its row committed on transfer " << tx
        << " with a version below the cursor U already had (" << l1->next_cursor()
        << "); first sync had " << l1->conversations_size() << " rows, the second "
        << l2->conversations_size();
    EXPECT_EQ(seen[ux].last_seq(), 1u);
    std::printf("[ stats    ] Y's SENT after %.3fs; X on transfer %d, Y on transfer %d\n", y_after,
                tx, ty);
}

}  // namespace
}  // namespace im::test

// The message path end to end against real binaries (im-rest, im-transfer, 2 im-connectors) and
// real servers: text both ways across connectors and on one connector, SENT with msg_id and seq,
// DELIVERED and READ watermarks, unread counts, login rules, forged senders, policy.
#include <gtest/gtest.h>

#include <cppconn/prepared_statement.h>

#include "cluster.hpp"
#include "im/server/mysql.hpp"
#include "im/wire/frame_codec.hpp"
#include "im/wire/ids.hpp"

namespace im::test {
namespace {

using client::Envelope;

class Messaging : public ::testing::Test {
protected:
    static void SetUpTestSuite() { cluster_ = new Cluster(ClusterOptions{2, {}, {}, {}, "msg-basic"}); }
    static void TearDownTestSuite() {
        delete cluster_;
        cluster_ = nullptr;
    }
    static Cluster* cluster_;

    // Sends and waits for the SendResult.
    static client::SendResult send_text(RawClient& c, std::uint64_t peer, const std::string& text, std::uint64_t stream_seq,
                                        std::uint64_t acked = 0) {
        auto env = c.make_send(peer, text, stream_seq, acked);
        const auto rid = env.request_id();
        c.send(env);
        auto res = c.wait_for([rid](const Envelope& e) { return e.request_id() == rid && e.has_send_result(); });
        if (!res) throw std::runtime_error("no SendResult");
        return res->send_result();
    }
};
Cluster* Messaging::cluster_ = nullptr;

TEST_F(Messaging, TextBothWaysAcrossConnectorsWithReceipts) {
    auto& cl = *cluster_;
    auto a = cl.user("alice");
    auto b = cl.user("bob");
    cl.befriend(a, b);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    EXPECT_EQ(ca->user_id, a.id);
    EXPECT_NE(ca->login_epoch, 0u);

    const auto conv = conversation_id(a.id, b.id);
    auto r1 = send_text(*ca, b.id, "hello bob", 1);
    ASSERT_EQ(r1.code(), client::ERROR_NONE) << r1.message();
    EXPECT_EQ(r1.conversation_id(), conv);
    EXPECT_EQ(r1.seq(), 1u);
    EXPECT_NE(r1.msg_id(), 0u);

    auto d1 = cb->wait_body(Envelope::kDeliver);
    ASSERT_TRUE(d1.has_value());
    EXPECT_EQ(d1->deliver().text(), "hello bob");
    EXPECT_EQ(d1->deliver().seq(), 1u);
    EXPECT_EQ(d1->deliver().msg_id(), r1.msg_id());
    EXPECT_EQ(d1->deliver().sender_user_id(), a.id);
    EXPECT_EQ(d1->deliver().sender_device_id(), "dev1");
    EXPECT_EQ(d1->request_id(), 0u) << "pushes carry request_id 0";

    auto r2 = send_text(*cb, a.id, "hi alice", 1);
    ASSERT_EQ(r2.code(), client::ERROR_NONE);
    EXPECT_EQ(r2.seq(), 2u) << "one conversation, one seq counter";
    auto d2 = ca->wait_body(Envelope::kDeliver);
    ASSERT_TRUE(d2.has_value());
    EXPECT_EQ(d2->deliver().text(), "hi alice");

    // B's DELIVERED up to 1 reaches A; then READ.
    Envelope rc;
    rc.set_request_id(cb->next_request_id());
    rc.mutable_receipt()->set_conversation_id(conv);
    rc.mutable_receipt()->set_kind(client::DELIVERED);
    rc.mutable_receipt()->set_up_to_seq(1);
    cb->send(rc);
    auto ev = ca->wait_body(Envelope::kReceiptEvent);
    ASSERT_TRUE(ev.has_value());
    EXPECT_EQ(ev->receipt_event().conversation_id(), conv);
    EXPECT_EQ(ev->receipt_event().user_id(), b.id);
    EXPECT_EQ(ev->receipt_event().kind(), client::DELIVERED);
    EXPECT_EQ(ev->receipt_event().up_to_seq(), 1u);
    rc.mutable_receipt()->set_kind(client::READ);
    rc.mutable_receipt()->set_up_to_seq(2);
    cb->send(rc);
    auto ev2 = ca->wait_for([](const Envelope& e) { return e.has_receipt_event() && e.receipt_event().kind() == client::READ; });
    ASSERT_TRUE(ev2.has_value());
    EXPECT_EQ(ev2->receipt_event().up_to_seq(), 2u);

    // The conversation lists: A has 1 unread (B's message), B has 0 (read up to 2).
    Envelope sync;
    sync.set_request_id(ca->next_request_id());
    sync.mutable_sync_conversations()->set_cursor(0);
    ca->send(sync);
    auto la = ca->wait_body(Envelope::kConversationList);
    ASSERT_TRUE(la.has_value());
    ASSERT_EQ(la->conversation_list().conversations_size(), 1);
    const auto& ia = la->conversation_list().conversations(0);
    EXPECT_EQ(ia.conversation_id(), conv);
    EXPECT_EQ(ia.peer_user_id(), b.id);
    EXPECT_EQ(ia.last_seq(), 2u);
    EXPECT_EQ(ia.unread(), 1u);
    EXPECT_EQ(ia.peer_read_seq(), 2u);
    EXPECT_EQ(ia.peer_delivered_seq(), 2u);
    EXPECT_EQ(ia.my_read_seq(), 0u) << "sending moves none of your watermarks: only a Receipt does";
    EXPECT_GT(la->conversation_list().next_cursor(), 0u);

    sync.set_request_id(cb->next_request_id());
    cb->send(sync);
    auto lb = cb->wait_body(Envelope::kConversationList);
    ASSERT_TRUE(lb.has_value());
    EXPECT_EQ(lb->conversation_list().conversations(0).unread(), 0u);
    EXPECT_EQ(cl.stored_messages(conv), 2u);
}

TEST_F(Messaging, BothOnOneConnectorAndSecondDevice) {
    auto& cl = *cluster_;
    auto a = cl.user("carol");
    auto b = cl.user("dave");
    cl.befriend(a, b);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(0, b.token, "dev1");
    auto ca2 = cl.connect(1, cl.login_token(a, "tablet"), "tablet");
    auto r = send_text(*ca, b.id, "same connector", 1);
    ASSERT_EQ(r.code(), client::ERROR_NONE);
    auto d = cb->wait_body(Envelope::kDeliver);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->deliver().text(), "same connector");
    // A's other device sees A's own message; the sending session gets only its SendResult.
    auto own = ca2->wait_body(Envelope::kDeliver);
    ASSERT_TRUE(own.has_value());
    EXPECT_EQ(own->deliver().sender_user_id(), a.id);
    EXPECT_EQ(own->deliver().client_msg_id().size(), 16u);
    EXPECT_FALSE(ca->wait_body(Envelope::kDeliver, std::chrono::milliseconds(300)).has_value());
}

TEST_F(Messaging, FramesBeforeLoginAreRefusedAndOversizeClosesOnlyThatSession) {
    auto& cl = *cluster_;
    auto a = cl.user("eve");
    RawClient raw(cl.connector_port(0));
    raw.send(raw.make_send(a.id, "too early", 1));
    auto err = raw.wait_body(Envelope::kError);
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->error().code(), client::NOT_LOGGED_IN);
    EXPECT_FALSE(raw.closed()) << "the connection stays for a Login";

    auto other = cl.connect(0, a.token, "dev1");
    std::string big(4, '\0');
    wire::write_header(big.data(), 10 << 20);  // announces 10 MiB
    raw.send_bytes(big);
    auto tooLarge = raw.wait_body(Envelope::kError);
    ASSERT_TRUE(tooLarge.has_value());
    EXPECT_EQ(tooLarge->error().code(), client::FRAME_TOO_LARGE);
    EXPECT_TRUE(raw.wait_closed(std::chrono::seconds(5)));
    // The other session on that connector is unaffected.
    Envelope ping;
    ping.set_request_id(7);
    ping.mutable_ping()->set_client_time_ms(1);
    other->send(ping);
    EXPECT_TRUE(other->wait_body(Envelope::kPong).has_value());
}

TEST_F(Messaging, BadTokenAndWrongDeviceAreRefused) {
    auto& cl = *cluster_;
    auto a = cl.user("frank");
    RawClient bad(cl.connector_port(1));
    auto res = bad.login(std::string(43, 'x'), "dev1");
    ASSERT_TRUE(res.has_error());
    EXPECT_EQ(res.error().code(), client::UNAUTHENTICATED);
    EXPECT_TRUE(bad.wait_closed(std::chrono::seconds(5)));
    RawClient wrong(cl.connector_port(1));
    auto res2 = wrong.login(a.token, "another-device");
    ASSERT_TRUE(res2.has_error());
    EXPECT_EQ(res2.error().code(), client::UNAUTHENTICATED);
}

TEST_F(Messaging, PolicyNonFriendsAndBlocked) {
    auto& cl = *cluster_;
    auto a = cl.user("gina");
    auto b = cl.user("hank");
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    auto r = send_text(*ca, b.id, "not friends yet", 1);
    EXPECT_EQ(r.code(), client::FORBIDDEN);
    EXPECT_FALSE(r.retryable());
    cl.befriend(a, b);
    // The policy cache may hold the old answer for up to policy.cache_ttl (2 s).
    client::SendResult ok;
    for (std::uint64_t n = 2; n < 40; ++n) {
        ok = send_text(*ca, b.id, "friends now", n, n - 1);
        if (ok.code() == client::ERROR_NONE) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_EQ(ok.code(), client::ERROR_NONE);
    EXPECT_EQ(ok.seq(), 1u) << "refused messages were never stored";
    auto blk = cl.http().post("/v1/blocks", {{"user_id", a.id}}, b.token);
    ASSERT_EQ(blk.status, 201);
    client::SendResult refused;
    std::uint64_t n = 100;
    for (int i = 0; i < 40; ++i, ++n) {
        refused = send_text(*ca, b.id, "after the block", n, n - 1);
        if (refused.code() == client::BLOCKED) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(refused.code(), client::BLOCKED);
}

TEST_F(Messaging, ForgedSenderCannotImpersonate) {
    auto& cl = *cluster_;
    auto a = cl.user("ivan");
    auto b = cl.user("judy");
    auto m = cl.user("mallory");
    cl.befriend(a, b);
    cl.befriend(m, b);
    auto cm = cl.connect(0, m.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    // There is no sender field: the closest forgery is a Deliver frame sent by the client, and a
    // Send whose conversation would be (a, b).
    Envelope forged;
    forged.set_request_id(9);
    auto* d = forged.mutable_deliver();
    d->set_conversation_id(conversation_id(a.id, b.id));
    d->set_sender_user_id(a.id);
    d->set_text("I am alice");
    cm->send(forged);
    auto err = cm->wait_body(Envelope::kError);
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->error().code(), client::UNKNOWN_BODY);
    auto r = send_text(*cm, b.id, "from mallory", 1);
    ASSERT_EQ(r.code(), client::ERROR_NONE);
    auto got = cb->wait_body(Envelope::kDeliver);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->deliver().sender_user_id(), m.id);
    EXPECT_EQ(got->deliver().conversation_id(), conversation_id(m.id, b.id));
    EXPECT_EQ(cl.stored_messages(conversation_id(a.id, b.id)), 0u);
}

TEST_F(Messaging, RestConversationsHistoryAndRead) {
    auto& cl = *cluster_;
    auto a = cl.user("kate");
    auto b = cl.user("liam");
    cl.befriend(a, b);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    const auto conv = conversation_id(a.id, b.id);
    for (std::uint64_t i = 1; i <= 7; ++i) {
        ASSERT_EQ(send_text(*ca, b.id, "m" + std::to_string(i), i, i - 1).code(), client::ERROR_NONE);
    }
    auto list = cl.http().get("/v1/conversations", b.token);
    ASSERT_EQ(list.status, 200) << list.body;
    const auto convs = list.json()["conversations"];
    ASSERT_EQ(convs.size(), 1u) << list.body;
    EXPECT_EQ(convs[0]["id"], conv);
    EXPECT_EQ(convs[0]["unread"], 7);
    EXPECT_EQ(convs[0]["peer"]["id"], a.id);
    EXPECT_EQ(convs[0]["peer"]["username"], a.username);

    const auto base = "/v1/conversations/" + std::to_string(conv) + "/messages";
    auto after = cl.http().get(base + "?after_seq=2&limit=3", b.token);
    ASSERT_EQ(after.status, 200) << after.body;
    auto msgs = after.json()["messages"];
    ASSERT_EQ(msgs.size(), 3u);
    EXPECT_EQ(msgs[0]["seq"], 3);
    EXPECT_EQ(msgs[2]["text"], "m5");
    EXPECT_EQ(msgs[0]["sender_id"], a.id);
    EXPECT_EQ(after.json()["has_more"], true);
    auto before = cl.http().get(base + "?before_seq=7&limit=2", b.token);
    msgs = before.json()["messages"];
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[0]["seq"], 5) << "the page just below before_seq, ascending";
    EXPECT_EQ(msgs[1]["seq"], 6);
    // Strangers learn nothing.
    auto c = cl.user("mona");
    EXPECT_EQ(cl.http().get(base, c.token).status, 404);
    EXPECT_EQ(cl.http().get("/v1/conversations/12345/messages", b.token).status, 404);

    // Read through REST: the owner transfer stores it and A sees B's READ watermark.
    auto rd = cl.http().post("/v1/conversations/" + std::to_string(conv) + "/read", {{"up_to_seq", 6}}, b.token);
    ASSERT_EQ(rd.status, 204) << rd.body;
    auto ev = ca->wait_for([](const Envelope& e) { return e.has_receipt_event() && e.receipt_event().kind() == client::READ; });
    ASSERT_TRUE(ev.has_value());
    EXPECT_EQ(ev->receipt_event().up_to_seq(), 6u);
    EXPECT_EQ(ev->receipt_event().user_id(), b.id);
    auto again = cl.http().get("/v1/conversations", b.token);
    EXPECT_EQ(again.json()["conversations"][0]["unread"], 1);
    EXPECT_EQ(cl.http().post("/v1/conversations/" + std::to_string(conv) + "/read", {{"up_to_seq", 0}}, b.token).status, 400);
}

TEST(MessagingTokens, RevocationEndsTheSessionEvenWithoutAKickMessage) {
    // The token is revoked behind the platform's back (MySQL only, cache entry gone, no kick
    // published): the connector's periodic re-check must still end the session.
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.token_recheck_interval=300ms"}, "msg-recheck"});
    auto a = cl.user("nina");
    auto ca = cl.connect(0, a.token, "dev1");
    auto& st = cl.db().db().prepare("UPDATE sessions SET revoked_at = CURRENT_TIMESTAMP(3) WHERE user_id = ?");
    st.setUInt64(1, a.id);
    ASSERT_EQ(st.executeUpdate(), 1);
    redis_delete_prefix(cl.redis_prefix() + "tok:");
    auto kick = ca->wait_body(Envelope::kKick, std::chrono::seconds(10));
    ASSERT_TRUE(kick.has_value());
    EXPECT_EQ(kick->kick().reason(), client::LOGGED_OUT);
    EXPECT_TRUE(ca->wait_closed(std::chrono::seconds(5)));
    // And the token no longer logs in.
    RawClient again(cl.connector_port(0));
    auto res = again.login(a.token, "dev1");
    ASSERT_TRUE(res.has_error());
    EXPECT_EQ(res.error().code(), client::UNAUTHENTICATED);
}

}  // namespace
}  // namespace im::test

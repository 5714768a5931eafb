// The delivery contract (DESIGN.md "Delivery contract", docs/PROTOCOL.md "Sending", "Receiving",
// "Sync") end to end against the real binaries (im-rest, im-transfer, 2 im-connectors) and real
// servers, asserting on the raw frames a client receives:
// - an offline recipient logs in and syncs a 200-message backlog in pages bounded by messages and
//   bytes, exactly once and in order; its DELIVERED watermark reaches the sender's next login;
// - a recipient that pulls history slowly gets what is sent meanwhile live, and the merge of pages
//   and live Delivers by seq is complete;
// - resends (replay in the same login epoch, a new epoch, a resend while the first try is held
//   uncommitted by a failpoint) return the original msg_id and seq, store one row, deliver once;
// - stream order: a gap gets a retryable OUT_OF_ORDER with the expected number, nothing stored;
// - devices: every device of the recipient and the sender's other devices get the message, the
//   sending session does not; a reinstalled client (new device, fresh ids) is not deduped away.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <thread>

#include "messaging_test_util.hpp"

namespace im::test {
namespace {

using namespace msg;

// One cluster for the suite (ctest runs every TEST as its own process, so it is per test there).
class MessagingDelivery : public ::testing::Test {
protected:
    static void SetUpTestSuite() { cluster_ = new Cluster(ClusterOptions{2, {}, {}, {}, "msg-delivery"}); }
    static void TearDownTestSuite() {
        delete cluster_;
        cluster_ = nullptr;
    }
    static Cluster* cluster_;
};
Cluster* MessagingDelivery::cluster_ = nullptr;

std::uint32_t max_frame_of(const RawClient& c) {
    for (const auto& e : c.all_frames()) {
        if (e.has_login_result()) return e.login_result().max_frame_bytes();
    }
    return 0;
}

std::vector<std::uint64_t> seqs_of(const std::vector<client::Deliver>& ds) {
    std::vector<std::uint64_t> out;
    for (const auto& d : ds) out.push_back(d.seq());
    return out;
}

// 1. Offline, then login and sync.
TEST_F(MessagingDelivery, OfflineRecipientSyncsWholeBacklogOnceAndItsWatermarkReachesTheSenderLater) {
    auto& cl = *cluster_;
    auto a = cl.user("offa");
    auto b = cl.user("offb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    {
        auto was = cl.connect(1, b.token, "dev1");  // B was online once, then left
    }
    auto ca = cl.connect(0, a.token, "dev1");
    OutStream out(*ca, b.id);
    constexpr std::size_t kN = 200;
    constexpr std::size_t kTextBytes = 900;  // 200 x ~0.9 KiB does not fit one 64 KiB MessagePage
    const auto t0 = Clock::now();
    ASSERT_TRUE(out.pump(kN, 0, [](std::size_t i) { return text_of("offline", i, kTextBytes); }, Clock::now() + 60s));
    ASSERT_TRUE(out.wait_all_answered(Clock::now() + 60s)) << out.summary() << "; " << log_hint(cl);
    const double send_s = seconds_since(t0);
    ASSERT_TRUE(out.all_sent()) << out.summary();
    EXPECT_TRUE(out.anomalies().empty()) << out.anomalies().front();
    std::set<std::uint64_t> ids;
    for (std::size_t i = 0; i < kN; ++i) {
        const auto& r = *out.at(i).sent;
        EXPECT_EQ(r.seq(), i + 1) << "the conversation's seqs follow the stream order";
        EXPECT_EQ(r.conversation_id(), conv);
        EXPECT_NE(r.msg_id(), 0u);
        ids.insert(r.msg_id());
    }
    EXPECT_EQ(ids.size(), kN) << "msg_ids are unique";
    EXPECT_EQ(cl.stored_messages(conv), kN);
    EXPECT_TRUE(delivers_seen(*ca, conv).empty()) << "the sending session gets SendResults, never Delivers";

    // B logs in and syncs: the conversation list, then pages after seq 0.
    auto cb = cl.connect(1, b.token, "dev1");
    const auto max_frame = max_frame_of(*cb);
    ASSERT_GT(max_frame, 0u);
    auto list = sync_conversations(*cb, 0);
    ASSERT_TRUE(list.has_value());
    auto info = find_conversation(*list, conv);
    ASSERT_TRUE(info.has_value()) << list->ShortDebugString();
    EXPECT_EQ(info->peer_user_id(), a.id);
    EXPECT_EQ(info->last_seq(), kN);
    EXPECT_EQ(info->unread(), kN);
    EXPECT_EQ(info->my_read_seq(), 0u);
    EXPECT_EQ(info->peer_delivered_seq(), 0u) << "a send moves no watermark of its sender (READ means read)";

    Inbox inbox(conv);
    const auto t1 = Clock::now();
    const auto st = inbox.sync(*cb, 0, 0);
    const double sync_s = seconds_since(t1);
    ASSERT_TRUE(st.ok) << st.error;
    inbox.pump(*cb);
    EXPECT_GT(st.pages, 1) << "pages are bounded by bytes, not only by count";
    EXPECT_LE(st.max_frame_bytes, max_frame) << "a MessagePage must fit one client frame";
    EXPECT_TRUE(inbox.complete(kN)) << inbox.gaps(kN);
    EXPECT_EQ(inbox.duplicates(), 0u) << "nothing new was sent: every message exactly once";
    EXPECT_EQ(inbox.live(), 0u);
    EXPECT_TRUE(inbox.conflicts().empty()) << inbox.conflicts().front();
    for (std::size_t i = 0; i < kN; ++i) {
        auto it = inbox.by_seq().find(i + 1);
        if (it == inbox.by_seq().end()) continue;
        const auto& d = it->second;
        EXPECT_EQ(d.text(), out.at(i).text) << "seq " << i + 1;
        EXPECT_EQ(d.msg_id(), out.at(i).sent->msg_id()) << "seq " << i + 1;
        EXPECT_EQ(d.client_msg_id(), out.at(i).cmid) << "seq " << i + 1;
        EXPECT_EQ(d.sender_user_id(), a.id);
        EXPECT_EQ(d.sender_device_id(), "dev1");
    }
    std::printf("[ stats    ] 200 pipelined sends %.3fs; sync %d pages (largest %zu messages, %zu bytes of %u) %.3fs\n",
                send_s, st.pages, st.max_page, st.max_frame_bytes, max_frame, sync_s);

    // A leaves before B acknowledges; B's DELIVERED up to 200 is stored while A is offline. B's
    // other device gets the ReceiptEvent only after the commit: that is the barrier.
    ca.reset();
    auto cb2 = cl.connect(0, cl.login_token(b, "dev2"), "dev2");
    send_receipt(*cb, conv, client::DELIVERED, kN);
    auto ev = cb2->wait_for([conv](const Envelope& e) {
        return e.has_receipt_event() && e.receipt_event().conversation_id() == conv &&
               e.receipt_event().kind() == client::DELIVERED;
    });
    ASSERT_TRUE(ev.has_value()) << "B's other device never saw its own DELIVERED receipt; " << log_hint(cl);
    EXPECT_EQ(ev->receipt_event().user_id(), b.id);
    EXPECT_EQ(ev->receipt_event().up_to_seq(), kN);

    auto ca2 = cl.connect(0, a.token, "dev1");
    auto la = sync_conversations(*ca2, 0);
    ASSERT_TRUE(la.has_value());
    auto ia = find_conversation(*la, conv);
    ASSERT_TRUE(ia.has_value()) << la->ShortDebugString();
    EXPECT_EQ(ia->peer_delivered_seq(), kN) << ia->ShortDebugString();
    EXPECT_EQ(ia->last_seq(), kN);
    EXPECT_EQ(ia->peer_read_seq(), 0u);
    EXPECT_EQ(ia->unread(), 0u);
}

// 2. Sync race: live pushes while history is pulled slowly.
TEST_F(MessagingDelivery, LiveDeliversDuringSlowPagedSyncMergeToACompleteSet) {
    auto& cl = *cluster_;
    auto a = cl.user("racea");
    auto b = cl.user("raceb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    OutStream out(*ca, b.id);
    ASSERT_TRUE(out.pump(150, 0, [](std::size_t i) { return text_of("backlog", i); }, Clock::now() + 60s));
    ASSERT_TRUE(out.wait_all_answered(Clock::now() + 60s)) << out.summary();
    ASSERT_TRUE(out.all_sent()) << out.summary();

    auto cb = cl.connect(1, b.token, "dev1");  // registered (logged in) before the snapshot
    auto list = sync_conversations(*cb, 0);
    ASSERT_TRUE(list.has_value());
    auto info = find_conversation(*list, conv);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->last_seq(), 150u);

    Inbox inbox(conv);
    std::string err;
    auto p1 = Inbox::request_page(*cb, conv, 0, 50, &err);
    ASSERT_TRUE(p1.has_value()) << err;
    Inbox::SyncStats st;
    ASSERT_TRUE(inbox.add_page(*p1, 0, st)) << st.error;
    EXPECT_EQ(p1->message_page().messages_size(), 50);
    EXPECT_TRUE(p1->message_page().has_more());

    // The pause: B does not ask for page 2 while A sends 20 more.
    ASSERT_TRUE(out.pump(20, 0, [](std::size_t i) { return text_of("during-sync", i); }, Clock::now() + 30s));
    ASSERT_TRUE(out.wait_all_answered(Clock::now() + 30s)) << out.summary();
    ASSERT_TRUE(out.all_sent()) << out.summary();
    for (std::size_t i = 150; i < 170; ++i) EXPECT_EQ(out.at(i).sent->seq(), i + 1);
    ASSERT_TRUE(inbox.wait_live(*cb, [&] { return inbox.live() >= 20; }, Clock::now() + 10s))
        << "a registered session must get messages committed during its sync live; got " << inbox.live() << " live; "
        << log_hint(cl);
    for (std::uint64_t s = 151; s <= 170; ++s) EXPECT_EQ(inbox.copies(s), 1u) << "live seq " << s;
    EXPECT_EQ(inbox.size(), 70u) << "page 1 (1..50) and the live 151..170, nothing else yet";

    // Then the remaining pages.
    const auto st2 = inbox.sync(*cb, 50, 50);
    ASSERT_TRUE(st2.ok) << st2.error;
    inbox.pump(*cb);
    EXPECT_TRUE(inbox.complete(170)) << inbox.gaps(170);
    EXPECT_TRUE(inbox.conflicts().empty()) << inbox.conflicts().front();
    for (std::size_t i = 0; i < 170; ++i) {
        auto it = inbox.by_seq().find(i + 1);
        if (it != inbox.by_seq().end()) {
            EXPECT_EQ(it->second.text(), out.at(i).text) << "seq " << i + 1;
        }
    }
    std::printf("[ stats    ] 170 distinct seqs merged from %zu paged + %zu live copies; %zu arrived twice (paged after a live push)\n",
                inbox.paged(), inbox.live(), inbox.duplicates());
    RecordProperty("duplicates", static_cast<int>(inbox.duplicates()));
}

// 3a. A resend of an acked message: replay in the same epoch, and a fresh number in a new epoch.
TEST_F(MessagingDelivery, ResendOfAnAckedMessageReturnsTheOriginalAndIsDeliveredOnce) {
    auto& cl = *cluster_;
    auto a = cl.user("resa");
    auto b = cl.user("resb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    const auto m = random_cmid();

    auto r1 = send_and_wait(*ca, make_send(*ca, b.id, m, "only once", 1, 0));
    ASSERT_TRUE(r1.has_value());
    ASSERT_EQ(r1->code(), client::ERROR_NONE) << r1->ShortDebugString();
    EXPECT_EQ(r1->seq(), 1u);

    // Replay: same stream number, same cmid (the SENT was "lost" to the client).
    auto r2 = send_and_wait(*ca, make_send(*ca, b.id, m, "only once", 1, 0));
    ASSERT_TRUE(r2.has_value());
    EXPECT_EQ(r2->code(), client::ERROR_NONE) << r2->ShortDebugString();
    EXPECT_EQ(r2->msg_id(), r1->msg_id());
    EXPECT_EQ(r2->seq(), r1->seq());
    EXPECT_EQ(r2->client_msg_id(), m);

    // A new login epoch (the app restarted): numbering starts again at 1.
    auto ca2 = cl.connect(1, a.token, "dev1");
    ASSERT_NE(ca2->login_epoch, ca->login_epoch);
    auto r3 = send_and_wait(*ca2, make_send(*ca2, b.id, m, "only once", 1, 0));
    ASSERT_TRUE(r3.has_value());
    EXPECT_EQ(r3->code(), client::ERROR_NONE) << r3->ShortDebugString();
    EXPECT_EQ(r3->msg_id(), r1->msg_id());
    EXPECT_EQ(r3->seq(), r1->seq());

    // The resend consumed number 1 of the new stream; the next message is number 2, seq 2.
    auto r4 = send_and_wait(*ca2, make_send(*ca2, b.id, random_cmid(), "the next one", 2, 1));
    ASSERT_TRUE(r4.has_value());
    ASSERT_EQ(r4->code(), client::ERROR_NONE) << r4->ShortDebugString();
    EXPECT_EQ(r4->seq(), 2u);

    // Pushes keep the transfer's order on a link: once seq 2 is in, any duplicate of seq 1 would be too.
    ASSERT_TRUE(cb->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv) && e.deliver().seq() == 2; })
                    .has_value());
    EXPECT_EQ(seqs_of(delivers_seen(*cb, conv)), (std::vector<std::uint64_t>{1, 2}));
    EXPECT_EQ(rows_with_cmid(cl, a.id, m), 1u);
    EXPECT_EQ(cl.stored_messages(conv), 2u);
}

// 3c. Stream order.
TEST_F(MessagingDelivery, StreamGapIsRefusedRetryablyThenFilledInOrder) {
    auto& cl = *cluster_;
    auto a = cl.user("orda");
    auto b = cl.user("ordb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    const auto m1 = random_cmid(), m2 = random_cmid(), m3 = random_cmid();

    auto r1 = send_and_wait(*ca, make_send(*ca, b.id, m1, "first", 1, 0));
    ASSERT_TRUE(r1.has_value());
    ASSERT_EQ(r1->code(), client::ERROR_NONE);
    EXPECT_EQ(r1->seq(), 1u);

    auto r3 = send_and_wait(*ca, make_send(*ca, b.id, m3, "third", 3, 1));  // 2 is skipped
    ASSERT_TRUE(r3.has_value());
    EXPECT_EQ(r3->code(), client::OUT_OF_ORDER) << r3->ShortDebugString();
    EXPECT_TRUE(r3->retryable());
    EXPECT_EQ(r3->expected_stream_seq(), 2u);
    EXPECT_EQ(r3->seq(), 0u);
    EXPECT_EQ(r3->msg_id(), 0u);
    EXPECT_EQ(r3->client_msg_id(), m3);
    EXPECT_EQ(rows_with_cmid(cl, a.id, m3), 0u) << "nothing is stored for a refused number";
    EXPECT_EQ(cl.stored_messages(conv), 1u);

    // The client resends from its first unacked message, in order (pipelined).
    auto e2 = make_send(*ca, b.id, m2, "second", 2, 1);
    auto e3 = make_send(*ca, b.id, m3, "third", 3, 1);
    ca->send(e2);
    ca->send(e3);
    auto a2 = ca->wait_for([&](const Envelope& e) { return e.request_id() == e2.request_id() && e.has_send_result(); });
    auto a3 = ca->wait_for([&](const Envelope& e) { return e.request_id() == e3.request_id() && e.has_send_result(); });
    ASSERT_TRUE(a2.has_value() && a3.has_value());
    ASSERT_EQ(a2->send_result().code(), client::ERROR_NONE) << a2->ShortDebugString();
    ASSERT_EQ(a3->send_result().code(), client::ERROR_NONE) << a3->ShortDebugString();
    EXPECT_EQ(a2->send_result().seq(), 2u);
    EXPECT_EQ(a3->send_result().seq(), 3u);

    ASSERT_TRUE(cb->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv) && e.deliver().seq() == 3; })
                    .has_value());
    const auto seen = delivers_seen(*cb, conv);
    EXPECT_EQ(seqs_of(seen), (std::vector<std::uint64_t>{1, 2, 3}));
    if (seen.size() == 3) {
        EXPECT_EQ(seen[1].text(), "second");
        EXPECT_EQ(seen[2].text(), "third");
    }
    EXPECT_EQ(cl.stored_messages(conv), 3u);
}

// 4. Devices, and a reinstall.
TEST_F(MessagingDelivery, EveryDeviceGetsItTheSenderSessionDoesNotAndAReinstallIsNotDeduped) {
    auto& cl = *cluster_;
    auto a = cl.user("deva");
    auto b = cl.user("devb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto ca_tab = cl.connect(1, cl.login_token(a, "tablet"), "tablet");
    auto cb1 = cl.connect(0, b.token, "dev1");
    auto cb2 = cl.connect(1, cl.login_token(b, "phone2"), "phone2");

    const auto m = random_cmid();
    auto r = send_and_wait(*ca, make_send(*ca, b.id, m, "to every device", 1, 0));
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->code(), client::ERROR_NONE) << r->ShortDebugString();
    for (auto* c : {cb1.get(), cb2.get(), ca_tab.get()}) {
        auto d = c->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv); });
        ASSERT_TRUE(d.has_value()) << "a device of a participant did not get the message; " << log_hint(cl);
        EXPECT_EQ(d->deliver().seq(), 1u);
        EXPECT_EQ(d->deliver().msg_id(), r->msg_id());
        EXPECT_EQ(d->deliver().text(), "to every device");
        EXPECT_EQ(d->deliver().sender_user_id(), a.id);
        EXPECT_EQ(d->deliver().sender_device_id(), "dev1");
        EXPECT_EQ(d->deliver().client_msg_id(), m) << "the sender's devices match it to their SendResult";
    }
    // The transfer pushes before it answers, on the same link: a Deliver to the sending session
    // would have arrived before its SendResult. Also give a stray one a moment.
    EXPECT_FALSE(ca->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv); }, 300ms).has_value())
        << "the sending session got a Deliver of its own message";

    // A reinstall: a new device id, a fresh client (new random cmids, numbering from 1 in a new epoch).
    auto cre = cl.connect(0, cl.login_token(a, "reinstalled-1"), "reinstalled-1");
    OutStream fresh(*cre, b.id);
    ASSERT_TRUE(fresh.pump(3, 0, [](std::size_t i) { return text_of("after-reinstall", i); }, Clock::now() + 20s));
    ASSERT_TRUE(fresh.wait_all_answered(Clock::now() + 20s)) << fresh.summary();
    ASSERT_TRUE(fresh.all_sent()) << fresh.summary();
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(fresh.at(i).sent->seq(), i + 2) << "stored as new messages, not swallowed by dedupe";
        EXPECT_NE(fresh.at(i).sent->msg_id(), r->msg_id());
    }
    EXPECT_EQ(cl.stored_messages(conv), 4u);
    // B's devices and A's other devices (dev1, tablet) all get the three; the reinstalled session not.
    for (auto* c : {cb1.get(), cb2.get(), ca.get(), ca_tab.get()}) {
        Inbox in(conv);
        auto has_2_to_4 = [&] { return in.copies(2) > 0 && in.copies(3) > 0 && in.copies(4) > 0; };
        EXPECT_TRUE(in.wait_live(*c, has_2_to_4, Clock::now() + 10s)) << in.gaps(4);
        EXPECT_EQ(in.duplicates(), 0u);
        for (std::uint64_t s = 2; s <= 4; ++s) {
            auto it = in.by_seq().find(s);
            if (it != in.by_seq().end()) {
                EXPECT_EQ(it->second.sender_device_id(), "reinstalled-1");
            }
        }
    }
    // Every device saw seq 1..4 exactly once over the test (the sending dev1 saw 2..4 only).
    EXPECT_EQ(seqs_of(delivers_seen(*cb1, conv)), (std::vector<std::uint64_t>{1, 2, 3, 4}));
    EXPECT_EQ(seqs_of(delivers_seen(*cb2, conv)), (std::vector<std::uint64_t>{1, 2, 3, 4}));
    EXPECT_EQ(seqs_of(delivers_seen(*ca_tab, conv)), (std::vector<std::uint64_t>{1, 2, 3, 4}));
    EXPECT_EQ(seqs_of(delivers_seen(*ca, conv)), (std::vector<std::uint64_t>{2, 3, 4}));
    EXPECT_FALSE(cre->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv); }, 200ms).has_value());
}

// 3b. A resend while the first try is held uncommitted (writer.before_commit paused 1.5 s).
class MessagingDeliveryFailpoint : public ::testing::Test {
protected:
    void SetUp() override {
        cluster_ = std::make_unique<Cluster>(
            ClusterOptions{2, {}, {"testing.failpoints=writer.before_commit=pause_once(1500)"}, {}, "msg-delivery-fp"});
    }
    void TearDown() override { cluster_.reset(); }
    std::unique_ptr<Cluster> cluster_;
};

TEST_F(MessagingDeliveryFailpoint, ResendWhileTheFirstTryIsHeldUncommittedIsStoredAndDeliveredOnce) {
    auto& cl = *cluster_;
    auto a = cl.user("holda");
    auto b = cl.user("holdb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    const auto m = random_cmid();

    const auto t0 = Clock::now();
    auto first = make_send(*ca, b.id, m, "held", 1, 0);
    ca->send(first);
    // Wait until the writer sits in the paused transaction (the transfer logs the hit at warn,
    // flushed at once), then resend the same message with the same stream number.
    bool held = false;
    const auto deadline = Clock::now() + 5s;
    while (!held && Clock::now() < deadline) {
        held = cl.transfer().log_contents().find("failpoint hit: writer.before_commit") != std::string::npos;
        if (!held) std::this_thread::sleep_for(5ms);
    }
    ASSERT_TRUE(held) << "the failpoint never fired; " << log_hint(cl);
    auto again = make_send(*ca, b.id, m, "held", 1, 0);
    ca->send(again);

    auto r1 = ca->wait_for([&](const Envelope& e) { return e.request_id() == first.request_id() && e.has_send_result(); });
    auto r2 = ca->wait_for([&](const Envelope& e) { return e.request_id() == again.request_id() && e.has_send_result(); });
    const double held_s = seconds_since(t0);
    ASSERT_TRUE(r1.has_value() || r2.has_value()) << "no SendResult at all; " << log_hint(cl);
    std::optional<client::SendResult> sent;
    for (const auto& r : {r1, r2}) {
        if (!r) continue;
        const auto& s = r->send_result();
        if (s.code() != client::ERROR_NONE) {
            EXPECT_TRUE(s.retryable()) << s.ShortDebugString();
            continue;
        }
        if (sent) {
            EXPECT_EQ(s.msg_id(), sent->msg_id()) << "both tries must answer the same message";
            EXPECT_EQ(s.seq(), sent->seq());
        } else {
            sent = s;
        }
    }
    ASSERT_TRUE(sent.has_value()) << "neither try was SENT: " << (r1 ? r1->ShortDebugString() : "-") << " / "
                                  << (r2 ? r2->ShortDebugString() : "-");
    EXPECT_EQ(sent->seq(), 1u);
    EXPECT_GE(held_s, 1.4) << "the first try was not held by the failpoint";
    std::printf("[ stats    ] first try %s, resend %s, after %.3fs\n",
                r1 ? client::ErrorCode_Name(r1->send_result().code()).c_str() : "unanswered",
                r2 ? client::ErrorCode_Name(r2->send_result().code()).c_str() : "unanswered", held_s);

    // A barrier through the same writer and link: message 2, then B's frames are complete.
    auto r3 = send_and_wait(*ca, make_send(*ca, b.id, random_cmid(), "after", 2, 1));
    ASSERT_TRUE(r3.has_value());
    ASSERT_EQ(r3->code(), client::ERROR_NONE) << r3->ShortDebugString();
    EXPECT_EQ(r3->seq(), 2u);
    ASSERT_TRUE(cb->wait_for([conv](const Envelope& e) { return is_deliver_of(e, conv) && e.deliver().seq() == 2; })
                    .has_value());
    EXPECT_EQ(seqs_of(delivers_seen(*cb, conv)), (std::vector<std::uint64_t>{1, 2}));
    EXPECT_EQ(rows_with_cmid(cl, a.id, m), 1u);
    EXPECT_EQ(cl.stored_messages(conv), 2u);
}

}  // namespace
}  // namespace im::test

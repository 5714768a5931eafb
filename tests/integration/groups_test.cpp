// Group chat (issue 15) end to end against the real binaries (im-rest, im-transfer, 2 connectors)
// and real servers, asserting on the raw frames clients receive:
// - a group message fans out to every member's live sessions on both connectors; a non-member is
//   refused on every frame (Send FORBIDDEN, SyncMessages and ReadBy NOT_FOUND, nothing delivered);
// - a member removed while the owner pipelines messages receives nothing after the removal's seq
//   (the removal is a message in the group's own sequence), and is refused afterwards;
// - per-member READ receipts reach the sender as ReceiptEvents and ReadBy lists each member's
//   watermark; a member added later sees the group from the seq they joined at;
// - a 200-member group across 2 connectors: every member gets every message once, in order;
// - offline members get one push event each through the outbox (RabbitMQ, the webhook);
// - kill -9 of the owner transfer while a group's messages are in flight: after resends, every
//   member holds every acknowledged message exactly once, seqs dense.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "messaging_test_util.hpp"
#include "platform_test_util.hpp"

namespace im::test {
namespace {

using namespace msg;

std::uint64_t create_group(Cluster& cl, const TestUser& owner, const std::string& name,
                           const std::vector<TestUser>& members, std::uint64_t* seq = nullptr) {
    nlohmann::json ids = nlohmann::json::array();
    for (const auto& m : members) ids.push_back(m.id);
    const auto r = cl.http().post("/v1/groups", {{"name", name}, {"members", ids}}, owner.token);
    if (r.status != 201) throw std::runtime_error("POST /v1/groups: " + std::to_string(r.status) + " " + r.body);
    if (seq != nullptr) *seq = r.json().at("seq").get<std::uint64_t>();
    return r.json().at("group_id").get<std::uint64_t>();
}

Envelope group_send(RawClient& c, std::uint64_t group, const std::string& text, std::uint64_t stream_seq,
                    std::uint64_t stream_acked, const std::string& cmid) {
    Envelope env;
    env.set_request_id(c.next_request_id());
    auto* s = env.mutable_send();
    s->set_group_id(group);
    s->set_client_msg_id(cmid);
    s->set_stream_seq(stream_seq);
    s->set_stream_acked(stream_acked);
    s->set_type(client::TEXT);
    s->set_text(text);
    c.send(env);
    return env;
}

std::optional<client::SendResult> result_of(RawClient& c, std::uint64_t rid, std::chrono::milliseconds t = 10s) {
    auto e = c.wait_for([rid](const Envelope& f) { return f.request_id() == rid && f.has_send_result(); }, t);
    if (!e) return std::nullopt;
    return e->send_result();
}

// Every message of the group the client can see: its live Delivers merged with a full sync.
std::map<std::uint64_t, client::Deliver> view_of(RawClient& c, std::uint64_t group, bool sync = true) {
    std::map<std::uint64_t, client::Deliver> out;
    for (const auto& e : c.take_all(Envelope::kDeliver)) {
        if (e.deliver().conversation_id() == group) out.emplace(e.deliver().seq(), e.deliver());
    }
    std::uint64_t after = 0;
    for (int page = 0; sync && page < 100; ++page) {
        Envelope q;
        q.set_request_id(c.next_request_id());
        q.mutable_sync_messages()->set_conversation_id(group);
        q.mutable_sync_messages()->set_after_seq(after);
        c.send(q);
        const auto rid = q.request_id();
        auto a = c.wait_for([rid](const Envelope& f) { return f.request_id() == rid; }, 10s);
        if (!a || !a->has_message_page() || a->message_page().code() != client::ERROR_NONE) break;
        for (const auto& d : a->message_page().messages()) {
            out.emplace(d.seq(), d);
            after = std::max(after, d.seq());
        }
        if (!a->message_page().has_more()) break;
    }
    return out;
}

class Groups : public ::testing::Test {
protected:
    static void SetUpTestSuite() { cluster_ = new Cluster(ClusterOptions{2, {}, {}, {}, "groups"}); }
    static void TearDownTestSuite() {
        delete cluster_;
        cluster_ = nullptr;
    }
    static Cluster* cluster_;
};
Cluster* Groups::cluster_ = nullptr;

TEST_F(Groups, MessagesFanOutToEveryMemberAcrossConnectorsAndANonMemberIsRefusedOnEveryFrame) {
    auto& cl = *cluster_;
    auto a = cl.user("ga"), b = cl.user("gb"), c = cl.user("gc"), d = cl.user("gd");
    cl.befriend(a, b);
    cl.befriend(a, c);
    cl.befriend(a, d);
    cl.befriend(d, b);
    auto ca = cl.connect(0, a.token, "dev1");
    auto ca2 = cl.connect(1, cl.login_token(a, "dev2"), "dev2");
    auto cb = cl.connect(1, b.token, "dev1");
    auto cc = cl.connect(0, c.token, "dev1");
    auto cd = cl.connect(1, d.token, "dev1");
    std::uint64_t created_seq = 0;
    const auto g = create_group(cl, a, "trip", {b, c}, &created_seq);
    EXPECT_EQ(created_seq, 1u);
    // The creation is the group's first message, pushed to the members.
    for (auto* m : {cb.get(), cc.get()}) {
        auto e = m->wait_for([g](const Envelope& f) { return is_deliver_of(f, g); }, 10s);
        ASSERT_TRUE(e) << log_hint(cl);
        EXPECT_EQ(e->deliver().type(), client::GROUP_EVENT);
        EXPECT_EQ(e->deliver().group_event().kind(), client::GROUP_CREATED);
        EXPECT_EQ(e->deliver().seq(), 1u);
    }
    constexpr int kN = 5;
    for (int i = 0; i < kN; ++i) {
        const auto s = group_send(*ca, g, "hello " + std::to_string(i), static_cast<std::uint64_t>(i + 1),
                                  static_cast<std::uint64_t>(i), random_cmid());
        auto r = result_of(*ca, s.request_id());
        ASSERT_TRUE(r) << log_hint(cl);
        ASSERT_EQ(r->code(), client::ERROR_NONE) << r->message();
        EXPECT_EQ(r->conversation_id(), g);
        EXPECT_EQ(r->seq(), static_cast<std::uint64_t>(i + 2));
    }
    for (auto* m : {cb.get(), cc.get(), ca2.get()}) {
        std::vector<std::uint64_t> seqs;
        while (seqs.size() < kN) {
            auto e = m->wait_for(
                [g](const Envelope& f) { return is_deliver_of(f, g) && f.deliver().type() == client::TEXT; }, 10s);
            ASSERT_TRUE(e) << "got " << seqs.size() << " of " << kN << "; " << log_hint(cl);
            EXPECT_EQ(e->deliver().sender_user_id(), a.id);
            seqs.push_back(e->deliver().seq());
        }
        EXPECT_EQ(seqs, (std::vector<std::uint64_t>{2, 3, 4, 5, 6}));
    }
    EXPECT_FALSE(ca->wait_for([g](const Envelope& f) { return is_deliver_of(f, g) && f.deliver().type() == client::TEXT; },
                              300ms))
        << "the sending session does not get its own message back";

    // d, a friend of members but not a member: refused on every frame, nothing stored or seen.
    const auto stored = cl.stored_messages(g);
    const auto s = group_send(*cd, g, "let me in", 1, 0, random_cmid());
    auto r = result_of(*cd, s.request_id());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code(), client::FORBIDDEN);
    EXPECT_FALSE(r->retryable());
    EXPECT_EQ(cl.stored_messages(g), stored);
    Envelope q;
    q.set_request_id(cd->next_request_id());
    q.mutable_sync_messages()->set_conversation_id(g);
    cd->send(q);
    auto page = cd->wait_for([&](const Envelope& f) { return f.request_id() == q.request_id(); }, 10s);
    ASSERT_TRUE(page);
    EXPECT_EQ(page->message_page().code(), client::NOT_FOUND);
    EXPECT_EQ(page->message_page().messages_size(), 0);
    Envelope rb;
    rb.set_request_id(cd->next_request_id());
    rb.mutable_read_by()->set_conversation_id(g);
    rb.mutable_read_by()->set_seq(2);
    cd->send(rb);
    auto rbr = cd->wait_for([&](const Envelope& f) { return f.request_id() == rb.request_id(); }, 10s);
    ASSERT_TRUE(rbr && rbr->has_read_by_result());
    EXPECT_EQ(rbr->read_by_result().code(), client::NOT_FOUND);
    EXPECT_EQ(rbr->read_by_result().members_size(), 0);
    // A receipt and typing from the stranger change nothing and reach no one.
    Envelope rc;
    rc.mutable_receipt()->set_conversation_id(g);
    rc.mutable_receipt()->set_kind(client::READ);
    rc.mutable_receipt()->set_up_to_seq(6);
    cd->send(rc);
    Envelope ty;
    ty.mutable_typing()->set_group_id(g);
    cd->send(ty);
    EXPECT_FALSE(ca->wait_for([&](const Envelope& f) { return f.has_receipt_event() || f.has_typing_event(); }, 1s));
    // The members' typing does reach the others.
    Envelope ty2;
    ty2.mutable_typing()->set_group_id(g);
    cb->send(ty2);
    auto te = cc->wait_for([&](const Envelope& f) { return f.has_typing_event(); }, 5s);
    ASSERT_TRUE(te);
    EXPECT_EQ(te->typing_event().conversation_id(), g);
    EXPECT_EQ(te->typing_event().user_id(), b.id);
    EXPECT_FALSE(cd->wait_for([&](const Envelope& f) { return f.has_deliver() || f.has_typing_event(); }, 300ms));
}

TEST_F(Groups, AMemberRemovedWhileMessagesAreInFlightGetsNothingAfterTheRemovalSeq) {
    auto& cl = *cluster_;
    auto a = cl.user("ra"), b = cl.user("rb"), c = cl.user("rc");
    cl.befriend(a, b);
    cl.befriend(a, c);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    auto cc = cl.connect(0, c.token, "dev1");
    const auto g = create_group(cl, a, "race", {b, c});
    constexpr std::uint64_t kN = 300;
    std::vector<std::uint64_t> rids;
    std::uint64_t removal_seq = 0;
    std::thread remover([&] {
        std::this_thread::sleep_for(20ms);
        const auto r = cl.http().del("/v1/groups/" + std::to_string(g) + "/members/" + std::to_string(b.id), a.token);
        if (r.status == 200) removal_seq = r.json().at("seq").get<std::uint64_t>();
    });
    for (std::uint64_t i = 1; i <= kN; ++i) {
        rids.push_back(group_send(*ca, g, "m" + std::to_string(i), i, 0, random_cmid()).request_id());
        if (i % 50 == 0) std::this_thread::sleep_for(10ms);
    }
    remover.join();
    ASSERT_GT(removal_seq, 1u) << log_hint(cl);
    std::uint64_t last = 0;
    for (auto rid : rids) {
        auto r = result_of(*ca, rid, 20s);
        ASSERT_TRUE(r) << log_hint(cl);
        ASSERT_EQ(r->code(), client::ERROR_NONE) << r->message();
        last = std::max(last, r->seq());
    }
    EXPECT_EQ(last, kN + 2) << "the creation, " << kN << " messages and the removal";
    // b: everything up to the removal (its own event included), nothing after.
    std::this_thread::sleep_for(500ms);
    const auto bv = view_of(*cb, g);
    ASSERT_FALSE(bv.empty());
    EXPECT_EQ(bv.rbegin()->first, removal_seq) << "b sees nothing after its removal";
    EXPECT_EQ(bv.size(), removal_seq) << "b holds every seq 1..removal, nothing else";
    EXPECT_EQ(bv.at(removal_seq).type(), client::GROUP_EVENT);
    EXPECT_EQ(bv.at(removal_seq).group_event().kind(), client::MEMBER_REMOVED);
    // c: everything.
    const auto cv = view_of(*cc, g);
    EXPECT_EQ(cv.size(), kN + 2);
    // b is refused from now on.
    const auto s = group_send(*cb, g, "still here?", 1, 0, random_cmid());
    auto r = result_of(*cb, s.request_id());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code(), client::FORBIDDEN);
}

TEST_F(Groups, ReadReceiptsPerMemberReachTheSenderAndReadByListsEachMembersWatermark) {
    auto& cl = *cluster_;
    auto a = cl.user("wa"), b = cl.user("wb"), c = cl.user("wc"), late = cl.user("wl");
    cl.befriend(a, b);
    cl.befriend(a, c);
    cl.befriend(a, late);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    const auto g = create_group(cl, a, "receipts", {b, c});
    const auto s = group_send(*ca, g, "read me", 1, 0, random_cmid());
    auto r = result_of(*ca, s.request_id());
    ASSERT_TRUE(r && r->code() == client::ERROR_NONE);
    const auto seq = r->seq();
    Envelope rc;
    rc.mutable_receipt()->set_conversation_id(g);
    rc.mutable_receipt()->set_kind(client::READ);
    rc.mutable_receipt()->set_up_to_seq(seq);
    cb->send(rc);
    auto ev = ca->wait_for(
        [&](const Envelope& f) { return f.has_receipt_event() && f.receipt_event().user_id() == b.id; }, 10s);
    ASSERT_TRUE(ev) << log_hint(cl);
    EXPECT_EQ(ev->receipt_event().conversation_id(), g);
    EXPECT_EQ(ev->receipt_event().kind(), client::READ);
    EXPECT_EQ(ev->receipt_event().up_to_seq(), seq);
    Envelope rb;
    rb.set_request_id(ca->next_request_id());
    rb.mutable_read_by()->set_conversation_id(g);
    rb.mutable_read_by()->set_seq(seq);
    ca->send(rb);
    auto res = ca->wait_for([&](const Envelope& f) { return f.request_id() == rb.request_id(); }, 10s);
    ASSERT_TRUE(res && res->has_read_by_result());
    EXPECT_EQ(res->read_by_result().code(), client::ERROR_NONE);
    std::map<std::uint64_t, client::MemberReceipt> m;
    for (const auto& x : res->read_by_result().members()) m[x.user_id()] = x;
    ASSERT_EQ(m.size(), 2u) << "every member but the asker";
    EXPECT_EQ(m[b.id].read_seq(), seq);
    EXPECT_EQ(m[b.id].delivered_seq(), seq) << "read implies delivered";
    EXPECT_EQ(m[c.id].read_seq(), 0u);

    // A member added later sees the group from the seq they joined at, nothing before.
    const auto add = cl.http().post("/v1/groups/" + std::to_string(g) + "/members", {{"user_ids", {late.id}}}, a.token);
    ASSERT_EQ(add.status, 200) << add.body;
    const auto joined = add.json().at("seq").get<std::uint64_t>();
    EXPECT_EQ(joined, seq + 1);
    const auto s2 = group_send(*ca, g, "welcome", 2, 1, random_cmid());
    ASSERT_TRUE(result_of(*ca, s2.request_id()));
    auto cl8 = cl.connect(1, late.token, "dev1");  // offline until now: syncs
    const auto lv = view_of(*cl8, g);
    ASSERT_EQ(lv.size(), 2u);
    EXPECT_EQ(lv.begin()->first, joined);
    EXPECT_EQ(lv.begin()->second.group_event().kind(), client::MEMBERS_ADDED);
    EXPECT_EQ(lv.rbegin()->second.text(), "welcome");
    // The conversation list carries the group with its title and unread count.
    Envelope sc;
    sc.set_request_id(cl8->next_request_id());
    sc.mutable_sync_conversations();
    cl8->send(sc);
    auto list = cl8->wait_for([&](const Envelope& f) { return f.request_id() == sc.request_id(); }, 10s);
    ASSERT_TRUE(list && list->has_conversation_list());
    bool found = false;
    for (const auto& ci : list->conversation_list().conversations()) {
        if (ci.conversation_id() != g) continue;
        found = true;
        EXPECT_TRUE(ci.group());
        EXPECT_EQ(ci.title(), "receipts");
        EXPECT_EQ(ci.joined_seq(), joined);
        EXPECT_EQ(ci.member_count(), 4u);
        EXPECT_EQ(ci.unread(), 2u) << "the join event (by a) and the welcome";
    }
    EXPECT_TRUE(found);
}

TEST_F(Groups, AGroupThatShowsItsHistoryLetsALateMemberSyncFromTheFirstSeq) {
    auto& cl = *cluster_;
    auto a = cl.user("ha"), b = cl.user("hb"), late = cl.user("hl");
    cl.befriend(a, b);
    cl.befriend(a, late);
    auto ca = cl.connect(0, a.token, "dev1");
    const auto r = cl.http().post("/v1/groups", {{"name", "open"}, {"members", {b.id}}, {"history_visible", true}}, a.token);
    ASSERT_EQ(r.status, 201) << r.body;
    const auto g = r.json().at("group_id").get<std::uint64_t>();
    const auto bad = cl.http().post("/v1/groups", {{"name", "x"}, {"members", {b.id}}, {"history_visible", "yes"}}, a.token);
    EXPECT_EQ(bad.status, 400) << bad.body;
    for (std::uint64_t i = 1; i <= 3; ++i) {
        const auto s = group_send(*ca, g, "before " + std::to_string(i), i, i - 1, random_cmid());
        ASSERT_TRUE(result_of(*ca, s.request_id()));
    }
    const auto add = cl.http().post("/v1/groups/" + std::to_string(g) + "/members", {{"user_ids", {late.id}}}, a.token);
    ASSERT_EQ(add.status, 200) << add.body;
    auto cl8 = cl.connect(1, late.token, "dev1");
    const auto v = view_of(*cl8, g);
    ASSERT_EQ(v.size(), 5u) << "creation, 3 messages before joining, the join";
    EXPECT_EQ(v.begin()->first, 1u);
    EXPECT_EQ(v.at(2).text(), "before 1");
    const auto h = cl.http().get("/v1/conversations/" + std::to_string(g) + "/messages?after_seq=0", late.token);
    ASSERT_EQ(h.status, 200) << h.body;
    EXPECT_EQ(h.json().at("messages").size(), 5u) << h.body;
    const auto info = cl.http().get("/v1/groups/" + std::to_string(g), late.token);
    EXPECT_EQ(info.json().value("history_visible", false), true) << info.body;
}

TEST_F(Groups, TwoHundredMembersAcrossTwoConnectorsGetEveryMessageOnceInOrder) {
    auto& cl = *cluster_;
    auto owner = cl.user("big0");
    std::vector<TestUser> members;
    for (int i = 1; i < 200; ++i) {
        members.push_back(cl.user("big" + std::to_string(i)));
        cl.befriend(owner, members.back());
    }
    std::vector<std::unique_ptr<RawClient>> clients;
    for (std::size_t i = 0; i < members.size(); ++i)
        clients.push_back(cl.connect(static_cast<int>(i % 2), members[i].token, "dev1"));
    auto co = cl.connect(0, owner.token, "dev1");
    const auto g = create_group(cl, owner, "two hundred", members);
    constexpr std::uint64_t kN = 20;
    std::vector<std::uint64_t> rids;
    for (std::uint64_t i = 1; i <= kN; ++i) rids.push_back(group_send(*co, g, "all " + std::to_string(i), i, 0, random_cmid()).request_id());
    for (auto rid : rids) {
        auto r = result_of(*co, rid, 20s);
        ASSERT_TRUE(r && r->code() == client::ERROR_NONE) << log_hint(cl);
    }
    std::size_t complete = 0;
    for (std::size_t i = 0; i < clients.size(); ++i) {
        std::vector<std::uint64_t> seqs;
        const auto deadline = Clock::now() + 20s;
        while (seqs.size() < kN + 1) {
            auto e = clients[i]->wait_for([g](const Envelope& f) { return is_deliver_of(f, g); }, left(deadline));
            if (!e) break;
            seqs.push_back(e->deliver().seq());
        }
        std::vector<std::uint64_t> want(kN + 1);
        for (std::uint64_t s = 0; s <= kN; ++s) want[s] = s + 1;
        EXPECT_EQ(seqs, want) << "member " << i;
        EXPECT_FALSE(clients[i]->wait_for([g](const Envelope& f) { return is_deliver_of(f, g); }, 0ms))
            << "no duplicate";
        if (seqs == want) ++complete;
    }
    EXPECT_EQ(complete, members.size());
}

TEST_F(Groups, KillNineOfTheOwnerTransferMidFanOutLosesAndDuplicatesNothing) {
    auto& cl = *cluster_;
    auto a = cl.user("ka"), b = cl.user("kb"), c = cl.user("kc");
    cl.befriend(a, b);
    cl.befriend(a, c);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    auto cc = cl.connect(0, c.token, "dev1");
    const auto g = create_group(cl, a, "crash", {b, c});
    constexpr std::uint64_t kN = 200;
    std::vector<std::string> cmids;
    std::map<std::uint64_t, std::uint64_t> rid_of;  // rid -> index
    for (std::uint64_t i = 0; i < kN; ++i) cmids.push_back(random_cmid());
    for (std::uint64_t i = 0; i < kN; ++i) rid_of[group_send(*ca, g, "k" + std::to_string(i), i + 1, 0, cmids[i]).request_id()] = i;
    cl.stop_transfer(SIGKILL);
    cl.start_transfer();
    ASSERT_TRUE(cl.wait_connector_ready(0) && cl.wait_connector_ready(1)) << log_hint(cl);
    // Collect the answers; resend every unacknowledged message (same cmid and stream number, the
    // acknowledged prefix in stream_acked) until all are SENT.
    std::vector<std::optional<std::uint64_t>> seq_of(kN);
    const auto deadline = Clock::now() + 60s;
    for (int round = 0; round < 30 && Clock::now() < deadline; ++round) {
        while (auto e = ca->wait_for([](const Envelope& f) { return f.has_send_result(); }, 300ms)) {
            auto it = rid_of.find(e->request_id());
            if (it == rid_of.end()) continue;
            if (e->send_result().code() == client::ERROR_NONE) seq_of[it->second] = e->send_result().seq();
        }
        std::uint64_t acked = 0;
        while (acked < kN && seq_of[acked]) ++acked;
        if (acked == kN) break;
        for (std::uint64_t i = acked; i < kN; ++i) {
            if (!seq_of[i]) rid_of[group_send(*ca, g, "k" + std::to_string(i), i + 1, acked, cmids[i]).request_id()] = i;
        }
    }
    for (std::uint64_t i = 0; i < kN; ++i) ASSERT_TRUE(seq_of[i]) << "message " << i << " never SENT; " << log_hint(cl);
    for (std::uint64_t i = 1; i < kN; ++i) EXPECT_EQ(*seq_of[i], *seq_of[i - 1] + 1) << "order and density";
    EXPECT_EQ(cl.stored_messages(g), kN + 1) << "no message stored twice";
    for (auto* m : {cb.get(), cc.get()}) {
        const auto v = view_of(*m, g);
        ASSERT_EQ(v.size(), kN + 1);
        std::set<std::string> seen;
        for (const auto& [seq, d] : v) {
            if (d.type() == client::TEXT) {
                EXPECT_TRUE(seen.insert(d.client_msg_id()).second) << "duplicate at " << seq;
            }
        }
        EXPECT_EQ(seen.size(), kN);
    }
}

TEST(GroupsPush, EveryOfflineMemberGetsOnePushEventAndOnlineMembersNone) {
    platform::Webhook hook;
    Cluster cl(platform::push_cluster_options("groups-push", hook.server.url("/hook")));
    auto a = cl.user("pa"), b = cl.user("pb"), c = cl.user("pc"), on = cl.user("pon");
    cl.befriend(a, b);
    cl.befriend(a, c);
    cl.befriend(a, on);
    auto ca = cl.connect(0, a.token, "dev1");
    auto con = cl.connect(1, on.token, "dev1");
    const auto g = create_group(cl, a, "push", {b, c, on});
    for (std::uint64_t i = 1; i <= 3; ++i) {
        const auto s = group_send(*ca, g, "p" + std::to_string(i), i, i - 1, random_cmid());
        auto r = result_of(*ca, s.request_id());
        ASSERT_TRUE(r && r->code() == client::ERROR_NONE) << log_hint(cl);
    }
    for (const auto& u : {b, c}) {
        ASSERT_TRUE(platform::eventually([&] { return !hook.events_for(u.id, g).empty(); }, 15s))
            << "no webhook call for " << u.username << "; calls:\n" << hook.dump();
    }
    std::this_thread::sleep_for(1500ms);  // > coalesce_delay + poll interval: a split burst shows now
    for (const auto& u : {b, c}) {
        const auto ev = hook.events_for(u.id, g);
        ASSERT_EQ(ev.size(), 1u) << "one coalesced event per member; calls:\n" << hook.dump();
        const auto j = nlohmann::json::parse(ev[0].body);
        EXPECT_EQ(j["up_to_seq"].get<std::uint64_t>(), 4u) << ev[0].body;
        EXPECT_EQ(j["from_user_id"].get<std::uint64_t>(), a.id);
        EXPECT_EQ(j["unread"].get<std::uint64_t>(), 4u) << "the seqs after the member's read watermark";
    }
    EXPECT_TRUE(hook.events_for(on.id, g).empty()) << "an online member gets the messages live, no push";
    EXPECT_TRUE(hook.events_for(a.id, g).empty()) << "nor the sender";
}

}  // namespace
}  // namespace im::test

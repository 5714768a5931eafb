// Groups in imclient: sends on the group's stream, group Delivers and system messages, seqs a
// member may not see, ReadBy, members' receipts on my messages, the merged conversation list.

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "client_harness.hpp"
#include "state_record.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kMe = 1;  // FakeConnector's default user
constexpr std::uint64_t kBob = 3;
constexpr std::uint64_t kGroup = 7;  // also a user id: its stream must not be user 7's

Envelope group_deliver(std::uint64_t seq, std::uint64_t sender, const std::string& text) {
    return FakeConnector::deliver(kGroup, seq, sender, text);
}

Envelope group_event(std::uint64_t seq, im::client::GroupEventKind kind, std::uint64_t actor,
                     std::vector<std::uint64_t> users, const std::string& name = "") {
    Envelope env = FakeConnector::deliver(kGroup, seq, actor, "");
    auto* d = env.mutable_deliver();
    d->set_type(im::client::GROUP_EVENT);
    d->clear_client_msg_id();
    auto* g = d->mutable_group_event();
    g->set_kind(kind);
    g->set_actor_user_id(actor);
    for (auto u : users)
        g->add_user_ids(u);
    g->set_name(name);
    return env;
}

std::vector<std::uint64_t> delivered_receipts(const FakeConnector& fc, std::uint64_t conv) {
    std::vector<std::uint64_t> out;
    for (const auto& f : fc.frames(Envelope::kReceipt)) {
        const auto& r = f.frame.receipt();
        if (r.conversation_id() == conv && r.kind() == im::client::DELIVERED)
            out.push_back(r.up_to_seq());
    }
    return out;
}

TEST(ClientGroup, GroupSendUsesGroupIdAndTheGroupsOwnStream) {
    FakeConnector fc;
    std::atomic<std::uint64_t> next_seq{1};
    fc.set_script([&](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSend) return false;
        const std::uint64_t conv = e.send().group_id() != 0
                                       ? e.send().group_id()
                                       : imclient::conversation_id(kMe, e.send().peer_user_id());
        f.send(FakeConnector::send_ok(e, conv, next_seq++), conn);
        return true;
    });
    Recorder rec;
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    const auto a = client.send_group_text(kGroup, "a");
    const auto b = client.send_group_text(kGroup, "b");
    const auto c = client.send_text(kGroup, "to user 7");  // same number, another stream
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 3; }));
    const auto sends = fc.frames(Envelope::kSend);
    ASSERT_EQ(sends.size(), 3u);
    std::map<std::string, im::client::Send> by_id;
    for (const auto& f : sends)
        by_id[hex(f.frame.send().client_msg_id())] = f.frame.send();
    EXPECT_EQ(by_id[a].group_id(), kGroup);
    EXPECT_EQ(by_id[a].peer_user_id(), 0u);
    EXPECT_EQ(by_id[a].stream_seq(), 1u);
    EXPECT_EQ(by_id[b].group_id(), kGroup);
    EXPECT_EQ(by_id[b].stream_seq(), 2u);
    EXPECT_EQ(by_id[c].group_id(), 0u);
    EXPECT_EQ(by_id[c].peer_user_id(), kGroup);
    EXPECT_EQ(by_id[c].stream_seq(), 1u);  // user 7's stream starts at 1 on its own
    rec.locked([&] {
        for (const auto& ack : rec.acks) {
            if (ack.client_msg_id == c) {
                EXPECT_EQ(ack.group_id, 0u);
                EXPECT_EQ(ack.peer_user_id, kGroup);
            } else {
                EXPECT_EQ(ack.group_id, kGroup);
                EXPECT_EQ(ack.peer_user_id, 0u);
                EXPECT_EQ(ack.conversation_id, kGroup);
            }
        }
        return 0;
    });
    EXPECT_THROW(client.send_group_text(0, "x"), imclient::Error);
    EXPECT_THROW(client.send_group_text(1ULL << 31, "x"), imclient::Error);
}

TEST(ClientGroup, NonMemberSendFailsForGoodWithTheGroup) {
    FakeConnector fc;
    fc.set_script([](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSend) return false;
        f.send(FakeConnector::send_error(e, im::client::FORBIDDEN), conn);
        return true;
    });
    Recorder rec;
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    const auto id = client.send_group_text(kGroup, "let me in");
    ASSERT_TRUE(rec.wait([&] { return rec.failures.size() == 1; }));
    const auto f = rec.locked([&] { return rec.failures[0]; });
    EXPECT_EQ(f.client_msg_id, id);
    EXPECT_EQ(f.code, imclient::ErrorCode::forbidden);
    EXPECT_EQ(f.group_id, kGroup);
    EXPECT_EQ(f.conversation_id, kGroup);
    EXPECT_EQ(client.pending_sends(), 0u);
}

TEST(ClientGroup, GroupEventIsDecodedAndAcknowledged) {
    FakeConnector fc;
    Recorder rec;
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    fc.send(group_event(1, im::client::GROUP_CREATED, kBob, {kMe, 4}, "team"));
    fc.send(group_deliver(2, kBob, "hello all"));
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() == 2; }));
    const auto ev = rec.locked([&] { return rec.messages[0]; });
    EXPECT_EQ(ev.conversation_id, kGroup);
    EXPECT_EQ(ev.type, imclient::MessageType::group_event);
    EXPECT_EQ(ev.group_event.kind, imclient::GroupEventKind::created);
    EXPECT_EQ(ev.group_event.actor_user_id, kBob);
    EXPECT_EQ(ev.group_event.user_ids, (std::vector<std::uint64_t>{kMe, 4}));
    EXPECT_EQ(ev.group_event.name, "team");
    const auto text = rec.locked([&] { return rec.messages[1]; });
    EXPECT_EQ(text.type, imclient::MessageType::text);
    EXPECT_EQ(text.text, "hello all");
    EXPECT_EQ(text.group_event.kind, imclient::GroupEventKind::unspecified);
    ASSERT_TRUE(fc.wait_for([&] {
        auto r = delivered_receipts(fc, kGroup);
        return !r.empty() && r.back() == 2;
    }));
}

// Added at seq 5 of a running group: the push of seq 5 leaves a "gap" 1..4 the server will never
// fill (I may not see it). The sync page starting at 5 says so; the client must hand out 5, 6 and
// acknowledge them instead of waiting for 1..4 forever.
TEST(ClientGroup, JoinedLateGroupDeliverIsHandedOutAndAcknowledged) {
    FakeConnector fc;
    fc.set_script([](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSyncMessages ||
            e.sync_messages().conversation_id() != kGroup)
            return false;
        Envelope out;
        out.set_request_id(e.request_id());
        auto* p = out.mutable_message_page();
        p->set_conversation_id(kGroup);
        if (e.sync_messages().after_seq() < 5)
            *p->add_messages() = group_event(5, im::client::MEMBERS_ADDED, kBob, {kMe}).deliver();
        if (e.sync_messages().after_seq() < 6)
            *p->add_messages() = group_deliver(6, kBob, "welcome").deliver();
        f.send(out, conn);
        return true;
    });
    Recorder rec;
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    fc.send(group_event(5, im::client::MEMBERS_ADDED, kBob, {kMe}));
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() >= 2; }, 3000ms));
    std::this_thread::sleep_for(100ms);
    rec.locked([&] {
        EXPECT_EQ(rec.messages.size(), 2u);
        EXPECT_EQ(rec.messages[0].seq, 5u);
        EXPECT_EQ(rec.messages[0].group_event.kind, imclient::GroupEventKind::members_added);
        EXPECT_EQ(rec.messages[1].seq, 6u);
        return 0;
    });
    ASSERT_TRUE(fc.wait_for([&] {
        auto r = delivered_receipts(fc, kGroup);
        return !r.empty() && r.back() == 6;
    }));
}

// A group listed at login that I joined at seq 10: its sync from 0 answers 10..12 (nothing before
// is visible). The client hands them out and acknowledges 12 instead of waiting for 1..9.
TEST(ClientGroup, ListedGroupJoinedLateIsSyncedAndAcknowledged) {
    FakeConnector fc;
    fc.set_script([](FakeConnector& f, int conn, const Envelope& e) {
        Envelope out;
        out.set_request_id(e.request_id());
        if (e.body_case() == Envelope::kSyncConversations) {
            auto* ci = out.mutable_conversation_list()->add_conversations();
            ci->set_conversation_id(kGroup);
            ci->set_group(true);
            ci->set_title("team");
            ci->set_joined_seq(10);
            ci->set_last_seq(12);
            out.mutable_conversation_list()->set_next_cursor(1);
        } else if (e.body_case() == Envelope::kSyncMessages &&
                   e.sync_messages().conversation_id() == kGroup) {
            auto* p = out.mutable_message_page();
            p->set_conversation_id(kGroup);
            for (std::uint64_t s = std::max<std::uint64_t>(10, e.sync_messages().after_seq() + 1);
                 s <= 12; ++s)
                *p->add_messages() = group_deliver(s, kBob, "m" + std::to_string(s)).deliver();
        } else {
            return false;
        }
        f.send(out, conn);
        return true;
    });
    Recorder rec;
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() >= 3; }, 3000ms));
    rec.locked([&] {
        EXPECT_EQ(rec.messages.size(), 3u);
        EXPECT_EQ(rec.messages[0].seq, 10u);
        EXPECT_EQ(rec.messages[2].seq, 12u);
        return 0;
    });
    ASSERT_TRUE(fc.wait_for([&] {
        auto r = delivered_receipts(fc, kGroup);
        return !r.empty() && r.back() == 12;
    }));
}

TEST(ClientGroup, ReadByRoundTrip) {
    FakeConnector fc;
    fc.set_script([](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kReadBy) return false;
        Envelope out;
        out.set_request_id(e.request_id());
        auto* r = out.mutable_read_by_result();
        if (e.read_by().conversation_id() != kGroup) {
            r->set_code(im::client::FORBIDDEN);
        } else {
            r->set_conversation_id(kGroup);
            r->set_seq(e.read_by().seq());
            auto* m = r->add_members();
            m->set_user_id(kBob);
            m->set_delivered_seq(9);
            m->set_read_seq(8);
            m->set_role(im::client::OWNER);
            m = r->add_members();
            m->set_user_id(4);
            m->set_delivered_seq(5);
            m->set_read_seq(2);
            m->set_role(im::client::MEMBER);
        }
        f.send(out, conn);
        return true;
    });
    imclient::Client client(test_options(fc));
    ASSERT_TRUE(login(client, fc));
    auto fut = client.read_by(kGroup, 8);
    ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
    const auto r = fut.get();
    EXPECT_EQ(r.conversation_id, kGroup);
    EXPECT_EQ(r.seq, 8u);
    ASSERT_EQ(r.members.size(), 2u);
    EXPECT_EQ(r.members[0].user_id, kBob);
    EXPECT_EQ(r.members[0].delivered_seq, 9u);
    EXPECT_EQ(r.members[0].read_seq, 8u);
    EXPECT_EQ(r.members[0].role, imclient::GroupRole::owner);
    EXPECT_EQ(r.members[1].role, imclient::GroupRole::member);
    EXPECT_EQ(r.delivered_count(), 1u);
    EXPECT_EQ(r.read_count(), 1u);
    const auto q = fc.frames(Envelope::kReadBy).at(0).frame.read_by();
    EXPECT_EQ(q.conversation_id(), kGroup);
    EXPECT_EQ(q.seq(), 8u);

    auto refused = client.read_by(kGroup + 1, 1);
    ASSERT_EQ(refused.wait_for(5s), std::future_status::ready);
    try {
        refused.get();
        ADD_FAILURE() << "read_by of a group I am not in succeeded";
    } catch (const imclient::Error& e) {
        EXPECT_EQ(e.code(), imclient::ErrorCode::forbidden);
    }
}

TEST(ClientGroup, MemberReceiptReportsMyMessagesOnce) {
    FakeConnector fc;
    std::atomic<std::uint64_t> next_seq{3};
    fc.set_script([&](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSend) return false;
        f.send(FakeConnector::send_ok(e, kGroup, next_seq++), conn);
        return true;
    });
    Recorder rec;
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    fc.send(group_deliver(1, kBob, "one"));
    fc.send(group_deliver(2, kBob, "two"));
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() == 2; }));
    client.send_group_text(kGroup, "three");
    client.send_group_text(kGroup, "four");
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 2; }));
    fc.send(group_deliver(5, kMe, "five, from my laptop"));  // another device of mine
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() == 3; }));

    auto receipt = [&](std::uint64_t user, im::client::ReceiptKind kind, std::uint64_t seq) {
        Envelope env;
        auto* r = env.mutable_receipt_event();
        r->set_conversation_id(kGroup);
        r->set_user_id(user);
        r->set_kind(kind);
        r->set_up_to_seq(seq);
        fc.send(env);
    };
    receipt(kBob, im::client::READ, 2);  // covers nothing of mine
    receipt(kBob, im::client::READ, 4);
    receipt(kMe, im::client::READ, 5);   // my own other device: not a member receipt
    receipt(kBob, im::client::READ, 4);  // repeated
    receipt(kBob, im::client::DELIVERED, 5);
    receipt(kBob, im::client::READ, 6);
    ASSERT_TRUE(rec.wait([&] { return rec.receipts.size() == 6; }));  // on_receipt sees all
    std::this_thread::sleep_for(100ms);
    const auto events = rec.locked([&] { return rec.member_receipts; });
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events[0].user_id, kBob);
    EXPECT_EQ(events[0].conversation_id, kGroup);
    EXPECT_EQ(events[0].kind, imclient::ReceiptKind::read);
    EXPECT_EQ(events[0].up_to_seq, 4u);
    EXPECT_EQ(events[0].my_seqs, (std::vector<std::uint64_t>{3, 4}));
    EXPECT_EQ(events[1].kind, imclient::ReceiptKind::delivered);
    EXPECT_EQ(events[1].my_seqs, (std::vector<std::uint64_t>{3, 4, 5}));
    EXPECT_EQ(events[2].kind, imclient::ReceiptKind::read);
    EXPECT_EQ(events[2].my_seqs, (std::vector<std::uint64_t>{5}));
}

TEST(ClientGroup, ConversationListMergesGroupsListedOnEveryPage) {
    FakeConnector fc;
    const std::uint64_t one_to_one_a = imclient::conversation_id(kMe, kBob);
    const std::uint64_t one_to_one_b = imclient::conversation_id(kMe, 4);
    fc.set_script([&](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSyncConversations) return false;
        const bool first = e.sync_conversations().cursor() == 0;
        Envelope out;
        out.set_request_id(e.request_id());
        auto* list = out.mutable_conversation_list();
        auto* c = list->add_conversations();
        c->set_conversation_id(first ? one_to_one_a : one_to_one_b);
        c->set_peer_user_id(first ? kBob : 4);
        c->set_last_seq(3);
        auto* g = list->add_conversations();
        g->set_conversation_id(kGroup);
        g->set_group(true);
        g->set_title("team");
        g->set_member_count(5);
        g->set_joined_seq(1);
        g->set_last_seq(first ? 40 : 41);
        g->set_unread(first ? 6 : 7);
        list->set_next_cursor(first ? 100 : 200);
        list->set_has_more(first);
        f.send(out, conn);
        return true;
    });
    imclient::Client client(test_options(fc));
    ASSERT_TRUE(login(client, fc));
    auto fut = client.conversations();
    ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
    const auto list = fut.get();
    ASSERT_EQ(list.size(), 3u);
    int groups = 0;
    for (const auto& c : list) {
        if (c.conversation_id != kGroup) {
            EXPECT_FALSE(c.group);
            continue;
        }
        ++groups;
        EXPECT_TRUE(c.group);
        EXPECT_EQ(c.title, "team");
        EXPECT_EQ(c.member_count, 5u);
        EXPECT_EQ(c.peer_user_id, 0u);
        EXPECT_EQ(c.last_seq, 41u);  // the later page's
        EXPECT_EQ(c.unread, 7u);
    }
    EXPECT_EQ(groups, 1);
}

TEST(ClientGroup, GroupTypingCarriesTheGroup) {
    FakeConnector fc;
    Recorder rec;
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    client.group_typing(kGroup);
    client.typing(kBob);
    ASSERT_TRUE(fc.wait_count(Envelope::kTyping, 2));
    const auto t = fc.frames(Envelope::kTyping);
    EXPECT_EQ(t[0].frame.typing().group_id(), kGroup);
    EXPECT_EQ(t[0].frame.typing().peer_user_id(), 0u);
    EXPECT_EQ(t[1].frame.typing().peer_user_id(), kBob);
    EXPECT_EQ(t[1].frame.typing().group_id(), 0u);
    Envelope ev;
    ev.mutable_typing_event()->set_conversation_id(kGroup);
    ev.mutable_typing_event()->set_user_id(kBob);
    fc.send(ev);
    ASSERT_TRUE(rec.wait([&] { return rec.typing.size() == 1; }));
    EXPECT_EQ(rec.locked([&] { return rec.typing[0]; }),
              (std::pair<std::uint64_t, std::uint64_t>{kGroup, kBob}));
}

TEST(ClientGroup, StateRecordKeepsTheGroupOfAQueuedMessage) {
    imclient::detail::OutMessage m;
    m.client_msg_id = std::string(16, 'g');
    m.owner = kMe;
    m.group = kGroup;
    m.text = "queued for the group";
    std::string log;
    imclient::detail::state::append_add(log, m);
    const auto parsed = imclient::detail::state::parse(log, 0);
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->record.kind, imclient::detail::state::Kind::add);
    EXPECT_EQ(parsed->record.message.group, kGroup);
    EXPECT_EQ(parsed->record.message.peer, 0u);
    EXPECT_EQ(parsed->record.message.text, "queued for the group");
}

}  // namespace
}  // namespace im::test

// Options::state_dir at the Client's API, against the fake connector: restored messages go first,
// in order, renumbered in the new epoch, with their client_msg_ids; they go only as the user who
// queued them; a second Client on the directory is refused; the cursors make a restart ask for
// nothing it has.

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <thread>

#include "client_harness.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kMe = 1;
constexpr std::uint64_t kPeer = 2;

struct StateDir {
    std::string path;
    StateDir() {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/imclient-client-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path = tmpl + "/state";
    }
    ~StateDir() {
        std::error_code ec;
        std::filesystem::remove_all(std::filesystem::path(path).parent_path(), ec);
    }
};

imclient::Options with_state(const FakeConnector& fc, const StateDir& dir) {
    auto o = test_options(fc);
    o.state_dir = dir.path;
    return o;
}

FakeConnector::Script swallow_sends() {
    return [](FakeConnector&, int, const Envelope& e) { return e.body_case() == Envelope::kSend; };
}

// Acknowledges every Send with the next seq of its conversation.
FakeConnector::Script auto_ack() {
    auto seqs = std::make_shared<std::map<std::uint64_t, std::uint64_t>>();
    return [seqs](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSend) return false;
        const auto conv = imclient::conversation_id(f.user_id, e.send().peer_user_id());
        f.send(FakeConnector::send_ok(e, conv, ++(*seqs)[conv]), conn);
        return true;
    };
}

TEST(ClientState, RestoredMessagesGoFirstInOrderRenumberedWithTheirIds) {
    StateDir dir;
    std::vector<std::string> ids;
    {
        FakeConnector fc;
        fc.set_script(swallow_sends());  // never answered
        Recorder rec;
        imclient::Client client(with_state(fc, dir));
        rec.attach(client);
        ASSERT_TRUE(login(client, fc));
        for (int i = 0; i < 3; ++i)
            ids.push_back(client.send_text(kPeer, "m" + std::to_string(i)));
        ASSERT_TRUE(fc.wait_count(Envelope::kSend, 3));
    }
    FakeConnector fc;
    fc.set_script(auto_ack());
    Recorder rec;
    imclient::Client client(with_state(fc, dir));
    rec.attach(client);
    EXPECT_EQ(client.pending_sends(), 3u);
    ASSERT_EQ(client.restored_sends().size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(client.restored_sends()[i].client_msg_id, ids[i]);
        EXPECT_EQ(client.restored_sends()[i].peer_user_id, kPeer);
        EXPECT_EQ(client.restored_sends()[i].text, "m" + std::to_string(i));
    }
    ids.push_back(client.send_text(kPeer, "m3"));  // queued before the login: after the others
    ASSERT_TRUE(login(client, fc));
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 4; }));
    const auto sends = fc.frames(Envelope::kSend);
    ASSERT_EQ(sends.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(hex(sends[i].frame.send().client_msg_id()), ids[i]);
        EXPECT_EQ(sends[i].frame.send().text(), "m" + std::to_string(i));
        EXPECT_EQ(sends[i].frame.send().stream_seq(), i + 1) << "numbered in the new epoch";
        EXPECT_EQ(rec.acks[i].client_msg_id, ids[i]);
    }
    EXPECT_EQ(client.pending_sends(), 0u);
}

TEST(ClientState, RestoredMessagesGoOnlyAsTheUserWhoQueuedThem) {
    StateDir dir;
    std::string id;
    {
        FakeConnector fc;
        fc.set_script(swallow_sends());
        imclient::Client client(with_state(fc, dir));
        ASSERT_TRUE(login(client, fc));  // user 1
        id = client.send_text(kPeer, "from user 1");
        ASSERT_TRUE(fc.wait_count(Envelope::kSend, 1));
    }
    {
        FakeConnector fc;
        fc.user_id = 9;  // another account logs in with the same directory
        fc.set_script(auto_ack());
        Recorder rec;
        imclient::Client client(with_state(fc, dir));
        rec.attach(client);
        EXPECT_EQ(client.pending_sends(), 1u);
        ASSERT_TRUE(login(client, fc));
        ASSERT_TRUE(rec.wait([&] { return rec.failures.size() == 1; }));
        EXPECT_EQ(rec.failures[0].client_msg_id, id);
        EXPECT_EQ(rec.failures[0].code, imclient::ErrorCode::other_user);
        EXPECT_EQ(rec.failures[0].conversation_id, imclient::conversation_id(kMe, kPeer));
        EXPECT_EQ(client.pending_sends(), 0u);
        std::this_thread::sleep_for(200ms);
        EXPECT_EQ(fc.count(Envelope::kSend), 0u) << "sent as the wrong user";
    }
    FakeConnector fc;
    imclient::Client client(with_state(fc, dir));
    EXPECT_EQ(client.pending_sends(), 0u) << "dropped for good";
}

TEST(ClientState, ASecondClientOnTheDirectoryIsRefused) {
    StateDir dir;
    FakeConnector fc;
    auto first = std::make_unique<imclient::Client>(with_state(fc, dir));
    try {
        imclient::Client second(with_state(fc, dir));
        FAIL() << "two clients on one state directory";
    } catch (const imclient::Error& e) {
        EXPECT_EQ(e.code(), imclient::ErrorCode::state_locked);
        EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
    }
    first.reset();
    imclient::Client again(with_state(fc, dir));  // free once the first is gone
}

// A restart asks for the messages after the stored watermark and the list after the stored
// cursor, not from 0.
TEST(ClientState, ARestartSyncsFromTheStoredCursorAndWatermark) {
    StateDir dir;
    const auto conv = imclient::conversation_id(kMe, kPeer);
    {
        FakeConnector fc;
        // The burst goes out only after the list answer (same connection, in order): the client
        // stores cursor 42 before it sees the burst, whose receipt the test waits for.
        std::atomic<bool> listed{false};
        fc.set_script([&listed](FakeConnector& f, int conn, const Envelope& e) {
            if (e.body_case() != Envelope::kSyncConversations) return false;
            Envelope r;
            r.set_request_id(e.request_id());
            r.mutable_conversation_list()->set_next_cursor(42);
            f.send(r, conn);
            listed = true;
            return true;
        });
        Recorder rec;
        imclient::Client client(with_state(fc, dir));
        rec.attach(client);
        ASSERT_TRUE(login(client, fc));
        ASSERT_TRUE(fc.wait_count(Envelope::kSyncConversations, 1));
        for (int i = 0; i < 500 && !listed; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        ASSERT_TRUE(listed);
        std::vector<Envelope> burst;
        for (std::uint64_t seq = 1; seq <= 5; ++seq)
            burst.push_back(FakeConnector::deliver(conv, seq, kPeer, "d" + std::to_string(seq)));
        fc.send_batch(burst);
        ASSERT_TRUE(rec.wait([&] { return rec.messages.size() == 5; }));
        ASSERT_TRUE(fc.wait_count(Envelope::kReceipt, 1));  // sent with the burst's store flush
    }
    FakeConnector fc;
    fc.set_script([conv](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSyncConversations) return false;
        Envelope r;
        r.set_request_id(e.request_id());
        auto* list = r.mutable_conversation_list();
        auto* c = list->add_conversations();
        c->set_conversation_id(conv);
        c->set_peer_user_id(kPeer);
        c->set_last_seq(6);
        list->set_next_cursor(77);
        f.send(r, conn);
        return true;
    });
    imclient::Client client(with_state(fc, dir));
    ASSERT_TRUE(login(client, fc));
    ASSERT_TRUE(fc.wait_count(Envelope::kSyncMessages, 1));
    const auto list = fc.frames(Envelope::kSyncConversations);
    ASSERT_FALSE(list.empty());
    EXPECT_EQ(list[0].frame.sync_conversations().cursor(), 42u) << "lists from the stored cursor";
    const auto pages = fc.frames(Envelope::kSyncMessages);
    EXPECT_EQ(pages[0].frame.sync_messages().after_seq(), 5u) << "downloads from the watermark";
}

}  // namespace
}  // namespace im::test

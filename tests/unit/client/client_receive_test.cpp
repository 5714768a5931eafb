// The receive side: dedupe, gaps and sync, receipts after on_message, cursors across restarts.

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "client_harness.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kMe = 1;
constexpr std::uint64_t kPeer = 2;
const std::uint64_t kConv = imclient::conversation_id(kMe, kPeer);

std::vector<std::uint64_t> seqs(Recorder& rec) {
    return rec.locked([&] {
        std::vector<std::uint64_t> out;
        for (const auto& m : rec.messages)
            out.push_back(m.seq);
        return out;
    });
}

std::vector<ReceivedFrame> receipts(const FakeConnector& fc, im::client::ReceiptKind kind) {
    std::vector<ReceivedFrame> out;
    for (auto& f : fc.frames(Envelope::kReceipt)) {
        if (f.frame.receipt().kind() == kind) out.push_back(f);
    }
    return out;
}

Envelope page(std::uint64_t request_id, std::uint64_t conv, std::uint64_t from, std::uint64_t to,
              bool has_more = false) {
    Envelope env;
    env.set_request_id(request_id);
    auto* p = env.mutable_message_page();
    p->set_conversation_id(conv);
    for (std::uint64_t s = from; s <= to; ++s) {
        *p->add_messages() =
            FakeConnector::deliver(conv, s, kPeer, "s" + std::to_string(s)).deliver();
    }
    p->set_has_more(has_more);
    return env;
}

TEST(ClientReceive, DeliverIsHandedOutOnceAndDuplicatesAreDropped) {
    FakeConnector fc;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    fc.send(FakeConnector::deliver(kConv, 1, kPeer, "hi"));
    fc.send(FakeConnector::deliver(kConv, 1, kPeer, "hi"));
    fc.send(FakeConnector::deliver(kConv, 2, kPeer, "there"));
    fc.send(FakeConnector::deliver(kConv, 1, kPeer, "hi"));
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() >= 2; }));
    std::this_thread::sleep_for(150ms);
    EXPECT_EQ(seqs(rec), (std::vector<std::uint64_t>{1, 2}));
    const auto m = rec.locked([&] { return rec.messages[0]; });
    EXPECT_EQ(m.text, "hi");
    EXPECT_EQ(m.conversation_id, kConv);
    EXPECT_EQ(m.sender_user_id, kPeer);
    EXPECT_EQ(m.sender_device_id, "phone");
    EXPECT_EQ(m.msg_id, 1001u);
    EXPECT_EQ(m.client_msg_id.size(), 32u);
    EXPECT_EQ(fc.count(Envelope::kSyncMessages), 0u);
}

TEST(ClientReceive, GapTriggersSyncAndMergesInOrder) {
    FakeConnector fc;
    fc.set_script([](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSyncMessages || e.sync_messages().after_seq() != 1)
            return false;
        f.send(page(e.request_id(), kConv, 2, 4), conn);
        return true;
    });
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    fc.send(FakeConnector::deliver(kConv, 1, kPeer, "one"));
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() == 1; }));
    fc.send(FakeConnector::deliver(kConv, 4, kPeer, "four"));
    ASSERT_TRUE(fc.wait_count(Envelope::kSyncMessages, 1));
    const auto sync = fc.frames(Envelope::kSyncMessages)[0].frame.sync_messages();
    EXPECT_EQ(sync.conversation_id(), kConv);
    EXPECT_EQ(sync.after_seq(), 1u);
    EXPECT_EQ(sync.before_seq(), 0u);
    EXPECT_EQ(sync.limit(), 200u);
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() >= 4; }));
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(seqs(rec), (std::vector<std::uint64_t>{1, 2, 3, 4}));
    ASSERT_TRUE(fc.wait_for([&] {
        auto r = receipts(fc, im::client::DELIVERED);
        return !r.empty() && r.back().frame.receipt().up_to_seq() == 4;
    }));
}

TEST(ClientReceive, SyncPagesUntilHasMoreIsFalse) {
    FakeConnector fc;
    fc.set_script([](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSyncMessages) return false;
        const auto after = e.sync_messages().after_seq();
        if (after == 0) return false;
        // pages of 2: 2..3, 4..5, 6..7 (has_more false)
        f.send(page(e.request_id(), kConv, after + 1, after + 2, after + 2 < 7), conn);
        return true;
    });
    auto opts = test_options(fc);
    opts.sync_page = 2;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(opts);
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    fc.send_batch({FakeConnector::deliver(kConv, 1, kPeer, "1"),
                   FakeConnector::deliver(kConv, 7, kPeer, "7")});
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() >= 7; }));
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(seqs(rec), (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7}));
    const auto syncs = fc.frames(Envelope::kSyncMessages);
    ASSERT_GE(syncs.size(), 3u);
    EXPECT_EQ(syncs[0].frame.sync_messages().after_seq(), 1u);
    EXPECT_EQ(syncs[1].frame.sync_messages().after_seq(), 3u);
    EXPECT_EQ(syncs[2].frame.sync_messages().after_seq(), 5u);
    EXPECT_EQ(syncs[0].frame.sync_messages().limit(), 2u);
}

TEST(ClientReceive, DeliveredReceiptOnlyAfterOnMessageReturned) {
    FakeConnector fc;
    std::promise<void> entered;
    std::promise<void> release;
    auto release_future = release.get_future().share();
    std::atomic<bool> first{true};
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.before_message = [&](const imclient::Message&) {
        if (first.exchange(false)) {
            entered.set_value();
            release_future.wait();
        }
    };
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    fc.send(FakeConnector::deliver(kConv, 1, kPeer, "slow"));
    ASSERT_EQ(entered.get_future().wait_for(5s), std::future_status::ready);
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(receipts(fc, im::client::DELIVERED).size(), 0u)
        << "a receipt before on_message returned";
    release.set_value();
    ASSERT_TRUE(fc.wait_for([&] { return !receipts(fc, im::client::DELIVERED).empty(); }));
    const auto r = receipts(fc, im::client::DELIVERED)[0].frame.receipt();
    EXPECT_EQ(r.conversation_id(), kConv);
    EXPECT_EQ(r.up_to_seq(), 1u);
}

TEST(ClientReceive, ReceiptsAreCoalescedPerBurst) {
    FakeConnector fc;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    std::vector<Envelope> burst;
    for (std::uint64_t s = 1; s <= 5; ++s)
        burst.push_back(FakeConnector::deliver(kConv, s, kPeer, "b"));
    fc.send_batch(burst);
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() == 5; }));
    ASSERT_TRUE(fc.wait_for([&] { return !receipts(fc, im::client::DELIVERED).empty(); }));
    std::this_thread::sleep_for(200ms);
    const auto r = receipts(fc, im::client::DELIVERED);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].frame.receipt().up_to_seq(), 5u);
}

TEST(ClientReceive, OwnSendResultCountsTowardTheWatermark) {
    FakeConnector fc;
    fc.set_script([](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSend) return false;
        f.send(FakeConnector::send_ok(e, kConv, 1), conn);
        return true;
    });
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    client.send_text(kPeer, "mine");
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 1; }));
    fc.send(FakeConnector::deliver(kConv, 2, kPeer, "theirs"));
    // Our own device's message at 3 (another device of ours): fires on_message too.
    fc.send(FakeConnector::deliver(kConv, 3, kMe, "from my laptop", "laptop"));
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() == 2; }));
    EXPECT_EQ(seqs(rec), (std::vector<std::uint64_t>{2, 3}));
    EXPECT_EQ(fc.count(Envelope::kSyncMessages), 0u);
}

TEST(ClientReceive, LoginSyncPullsMissedMessagesAndReportsPeerWatermarks) {
    FakeConnector fc;
    fc.set_script([](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() == Envelope::kSyncConversations && e.sync_conversations().cursor() == 0) {
            Envelope out;
            out.set_request_id(e.request_id());
            auto* l = out.mutable_conversation_list();
            auto* c = l->add_conversations();
            c->set_conversation_id(kConv);
            c->set_peer_user_id(kPeer);
            c->set_last_seq(3);
            c->set_peer_delivered_seq(2);
            c->set_peer_read_seq(1);
            l->set_next_cursor(77);
            f.send(out, conn);
            return true;
        }
        if (e.body_case() == Envelope::kSyncMessages && e.sync_messages().after_seq() == 0) {
            f.send(page(e.request_id(), kConv, 1, 3), conn);
            return true;
        }
        return false;
    });
    auto store = std::make_shared<imclient::MemoryCursorStore>();
    auto opts = test_options(fc);
    opts.cursor_store = store;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(opts);
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() == 3; }));
    EXPECT_EQ(seqs(rec), (std::vector<std::uint64_t>{1, 2, 3}));
    ASSERT_TRUE(rec.wait([&] { return rec.receipts.size() == 2; }));
    EXPECT_EQ(rec.receipts[0].user_id, kPeer);
    EXPECT_EQ(rec.receipts[0].kind, imclient::ReceiptKind::delivered);
    EXPECT_EQ(rec.receipts[0].up_to_seq, 2u);
    EXPECT_EQ(rec.receipts[1].kind, imclient::ReceiptKind::read);
    EXPECT_EQ(rec.receipts[1].up_to_seq, 1u);
    ASSERT_TRUE(fc.wait_for([&] { return store->sync_cursor() == 77; }));
    EXPECT_EQ(store->delivered(kConv), 3u);
}

TEST(ClientReceive, SyncHintSyncsTheConversationOrEverything) {
    FakeConnector fc;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    ASSERT_TRUE(fc.wait_count(Envelope::kSyncConversations, 1));
    fc.send(FakeConnector::deliver(kConv, 1, kPeer, "1"));
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() == 1; }));
    Envelope hint;
    hint.mutable_sync_hint()->set_conversation_id(kConv);
    fc.send(hint);
    ASSERT_TRUE(fc.wait_count(Envelope::kSyncMessages, 1));
    EXPECT_EQ(fc.frames(Envelope::kSyncMessages)[0].frame.sync_messages().after_seq(), 1u);
    Envelope all;
    all.mutable_sync_hint()->set_conversation_id(0);
    fc.send(all);
    EXPECT_TRUE(fc.wait_count(Envelope::kSyncConversations, 2));
}

TEST(ClientReceive, ReceiptEventsAndMarkRead) {
    FakeConnector fc;
    auto store = std::make_shared<imclient::MemoryCursorStore>();
    auto opts = test_options(fc);
    opts.cursor_store = store;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(opts);
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    Envelope ev;
    auto* r = ev.mutable_receipt_event();
    r->set_conversation_id(kConv);
    r->set_user_id(kPeer);
    r->set_kind(im::client::READ);
    r->set_up_to_seq(9);
    fc.send(ev);
    ASSERT_TRUE(rec.wait([&] { return rec.receipts.size() == 1; }));
    EXPECT_EQ(rec.receipts[0].kind, imclient::ReceiptKind::read);
    EXPECT_EQ(rec.receipts[0].up_to_seq, 9u);

    client.mark_read(kConv, 4);
    ASSERT_TRUE(fc.wait_for([&] { return !receipts(fc, im::client::READ).empty(); }));
    EXPECT_EQ(receipts(fc, im::client::READ)[0].frame.receipt().up_to_seq(), 4u);
    EXPECT_EQ(store->read(kConv), 4u);
}

TEST(ClientReceive, AReceiptRefusedRetryablyIsSentAgain) {
    // The owner transfer refuses a receipt it cannot queue with a retryable Error carrying the
    // receipt's request id (docs/PROTOCOL.md "Receipts are watermarks").
    FakeConnector fc;
    std::atomic<int> refused{0};
    fc.set_script([&](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kReceipt || refused.fetch_add(1) != 0) return false;
        Envelope err;
        err.set_request_id(e.request_id());
        err.mutable_error()->set_code(im::client::OVERLOADED);
        err.mutable_error()->set_retryable(true);
        f.send(err, conn);
        return true;
    });
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    client.mark_read(kConv, 4);
    ASSERT_TRUE(fc.wait_for([&] { return receipts(fc, im::client::READ).size() >= 2; }))
        << "the refused READ was never sent again";
    for (const auto& r : receipts(fc, im::client::READ)) {
        EXPECT_EQ(r.frame.receipt().conversation_id(), kConv);
        EXPECT_EQ(r.frame.receipt().up_to_seq(), 4u);
    }
}

TEST(ClientReceive, FileCursorStoreSurvivesANewClient) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("imclient-test-" + std::to_string(::getpid()) + "-" +
                      std::to_string(Clock::now().time_since_epoch().count()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "cursors").string();
    FakeConnector fc;
    {
        auto opts = test_options(fc);
        opts.cursor_store = std::make_shared<imclient::FileCursorStore>(path);
        Recorder rec;  // outlives the client: callbacks may run until it is gone
        imclient::Client client(opts);
        rec.attach(client);
        ASSERT_TRUE(login(client, fc));
        fc.send_batch({FakeConnector::deliver(kConv, 1, kPeer, "1"),
                       FakeConnector::deliver(kConv, 2, kPeer, "2"),
                       FakeConnector::deliver(kConv, 3, kPeer, "3")});
        ASSERT_TRUE(rec.wait([&] { return rec.messages.size() == 3; }));
        client.mark_read(kConv, 2);
        ASSERT_TRUE(fc.wait_for([&] { return !receipts(fc, im::client::READ).empty(); }));
    }
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    imclient::FileCursorStore reloaded(path);
    EXPECT_EQ(reloaded.owner(), 1u);
    EXPECT_EQ(reloaded.delivered(kConv), 3u);
    EXPECT_EQ(reloaded.read(kConv), 2u);

    const std::size_t receipts_before = fc.count(Envelope::kReceipt);
    auto opts = test_options(fc);
    opts.cursor_store = std::make_shared<imclient::FileCursorStore>(path);
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(opts);
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    // The stored watermarks are resent after the login.
    ASSERT_TRUE(fc.wait_for([&] { return fc.count(Envelope::kReceipt) >= receipts_before + 2; }));
    const auto all = fc.frames(Envelope::kReceipt);
    bool delivered3 = false;
    bool read2 = false;
    for (std::size_t i = receipts_before; i < all.size(); ++i) {
        const auto& rc = all[i].frame.receipt();
        delivered3 |= rc.kind() == im::client::DELIVERED && rc.up_to_seq() == 3;
        read2 |= rc.kind() == im::client::READ && rc.up_to_seq() == 2;
    }
    EXPECT_TRUE(delivered3);
    EXPECT_TRUE(read2);
    fc.send_batch({FakeConnector::deliver(kConv, 2, kPeer, "2"),
                   FakeConnector::deliver(kConv, 3, kPeer, "3"),
                   FakeConnector::deliver(kConv, 4, kPeer, "4")});
    ASSERT_TRUE(rec.wait([&] { return rec.messages.size() >= 1; }));
    std::this_thread::sleep_for(150ms);
    EXPECT_EQ(seqs(rec), (std::vector<std::uint64_t>{4}));
    std::filesystem::remove_all(dir);
}

TEST(ClientReceive, ConversationsAndHistoryFutures) {
    FakeConnector fc;
    fc.set_script([](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() == Envelope::kSyncConversations) {
            Envelope out;
            out.set_request_id(e.request_id());
            auto* l = out.mutable_conversation_list();
            const auto cursor = e.sync_conversations().cursor();
            const std::uint64_t first_peer = cursor == 0 ? 2 : 4;
            for (std::uint64_t p = first_peer; p < first_peer + (cursor == 0 ? 2 : 1); ++p) {
                auto* c = l->add_conversations();
                c->set_conversation_id(imclient::conversation_id(kMe, p));
                c->set_peer_user_id(p);
                c->set_unread(p);
            }
            l->set_next_cursor(cursor == 0 ? 10 : 20);
            l->set_has_more(cursor == 0);
            f.send(out, conn);
            return true;
        }
        if (e.body_case() == Envelope::kSyncMessages && e.sync_messages().before_seq() == 10) {
            f.send(page(e.request_id(), kConv, 8, 9), conn);
            return true;
        }
        return false;
    });
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    auto convs = client.conversations();
    ASSERT_EQ(convs.wait_for(5s), std::future_status::ready);
    const auto list = convs.get();
    ASSERT_EQ(list.size(), 3u);
    EXPECT_EQ(list[0].peer_user_id, 2u);
    EXPECT_EQ(list[2].peer_user_id, 4u);
    EXPECT_EQ(list[2].unread, 4u);

    auto hist = client.history(kConv, 10, 2);
    ASSERT_EQ(hist.wait_for(5s), std::future_status::ready);
    const auto msgs = hist.get();
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[0].seq, 8u);
    EXPECT_EQ(msgs[1].seq, 9u);
    EXPECT_EQ(msgs[1].text, "s9");
    bool history_request = false;
    for (const auto& f : fc.frames(Envelope::kSyncMessages)) {
        history_request |=
            f.frame.sync_messages().before_seq() == 10 && f.frame.sync_messages().limit() == 2;
    }
    EXPECT_TRUE(history_request);
    EXPECT_EQ(rec.message_count(), 0u);  // history never fires on_message
}

}  // namespace
}  // namespace im::test

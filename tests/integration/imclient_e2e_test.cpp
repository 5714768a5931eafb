// The client library (client-lib/, imclient::Client) end to end against a real private cluster
// per test: im-rest for the login, im-transfer and two im-connectors as child processes, real
// MariaDB, Redis and RabbitMQ. Chat both ways across connectors with receipts, unread counts and
// history; offline delivery with a persisted cursor; resends across a connector SIGKILL (receiver
// and sender side) and a transfer SIGKILL; exactly-once to the app across an app crash between
// on_message and the cursor flush. Plus what the real servers' limits revealed (docs/CLIENT.md):
// the connector's per-session pending limit (bursts, many conversations at login), sub-second
// heartbeats, receipts dropped during a transfer outage, app requests across a transfer restart.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"
#include "imclient/imclient.hpp"
#include "imclient_app.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;
using imclient::ReceiptKind;
using imclient::State;

std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t last) {
    std::vector<std::uint64_t> out;
    for (std::uint64_t s = first; s <= last; ++s) out.push_back(s);
    return out;
}

class ImclientE2e : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = TestEnv::get().run_dir + "/imclient-e2e-" + unique_suffix();
        std::filesystem::create_directories(dir_);
    }
    // A private cluster for this test: im-rest, im-transfer, two im-connectors.
    Cluster& start(std::vector<std::string> transfer_sets = {}, std::vector<std::string> connector_sets = {}) {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        cluster_ = std::make_unique<Cluster>(ClusterOptions{2, {}, std::move(transfer_sets), std::move(connector_sets),
                                                            std::string("imclient-") + info->name()});
        return *cluster_;
    }
    void TearDown() override {
        cluster_.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    std::string connector_address(int i) const { return "127.0.0.1:" + std::to_string(cluster_->connector_port(i)); }

    // A counter or gauge of the running im-transfer (its /metrics), 0 when absent.
    double transfer_metric(const std::string& name) { return metric(cluster_->transfer_admin_port(), name); }
    double connector_metric(int i, const std::string& name) { return metric(cluster_->connector_admin_port(i), name); }
    static double metric(std::uint16_t admin_port, const std::string& name) {
        HttpClient admin("127.0.0.1", admin_port);
        const auto body = admin.get("/metrics").body;
        for (std::size_t pos = 0; pos < body.size();) {
            const auto end = std::min(body.find('\n', pos), body.size());
            const auto line = body.substr(pos, end - pos);
            if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
            pos = end + 1;
        }
        return 0;
    }

    // A logged-in Client for `u` on the connectors `order` (the first one is tried first).
    std::unique_ptr<App> open(const TestUser& u, const std::vector<int>& order, const std::string& device,
                              std::shared_ptr<imclient::CursorStore> store = nullptr,
                              const std::function<void(Events&)>& before_login = {}) {
        imclient::Options o;
        o.rest_url = "http://127.0.0.1:" + std::to_string(cluster_->rest().port());
        for (int i : order) o.connectors.push_back(connector_address(i));
        o.device_id = device;
        o.cursor_store = std::move(store);
        auto app = std::make_unique<App>();
        app->client = std::make_unique<imclient::Client>(o);
        app->ev.attach(*app->client);
        if (before_login) before_login(app->ev);
        app->info = await(app->client->login(u.username, u.password));
        return app;
    }

    // A Client for `u` that keeps its state in `state_dir` (Options::state_dir), not logged in yet.
    std::unique_ptr<App> make_with_state(const std::vector<int>& order, const std::string& device,
                                         const std::string& state_dir) {
        imclient::Options o;
        o.rest_url = "http://127.0.0.1:" + std::to_string(cluster_->rest().port());
        for (int i : order) o.connectors.push_back(connector_address(i));
        o.device_id = device;
        o.state_dir = state_dir;
        auto app = std::make_unique<App>();
        app->client = std::make_unique<imclient::Client>(o);
        app->ev.attach(*app->client);
        return app;
    }
    std::unique_ptr<App> open_with_state(const TestUser& u, const std::vector<int>& order, const std::string& device,
                                         const std::string& state_dir) {
        auto app = make_with_state(order, device, state_dir);
        app->info = await(app->client->login(u.username, u.password));
        return app;
    }

    std::unique_ptr<Cluster> cluster_;
    std::string dir_;
};

// ---- 1. chat both ways across connectors ---------------------------------------------------

TEST_F(ImclientE2e, TwoClientsChatBothWaysAcrossConnectors) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone");
    EXPECT_EQ(pa->info.user_id, a.id);
    EXPECT_EQ(pb->info.user_id, b.id);
    EXPECT_EQ(pa->info.connector, connector_address(0));
    EXPECT_EQ(pb->info.connector, connector_address(1));
    EXPECT_NE(pa->info.login_epoch, 0u);
    EXPECT_EQ(pa->info.heartbeat_interval_s, 5u);
    EXPECT_EQ((*pa)->state(), State::connected);
    const auto conv = imclient::conversation_id(a.id, b.id);

    // A -> B: five messages, each acknowledged with on_sent (msg_id, seq), delivered once each.
    std::vector<std::string> ids;
    for (int i = 0; i < 5; ++i) ids.push_back((*pa)->send_text(b.id, "a to b #" + std::to_string(i)));
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() == 5; })) << pa->ev.ack_count();
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 5; })) << pb->ev.message_count();
    pa->ev.locked([&] {
        for (std::size_t i = 0; i < 5; ++i) {
            const auto& ack = pa->ev.acks[i];
            EXPECT_EQ(ack.client_msg_id, ids[i]);
            EXPECT_EQ(ack.seq, i + 1);
            EXPECT_NE(ack.msg_id, 0u);
            EXPECT_EQ(ack.conversation_id, conv);
            EXPECT_EQ(ack.peer_user_id, b.id);
        }
    });
    pb->ev.locked([&] {
        for (std::size_t i = 0; i < 5; ++i) {
            const auto& m = pb->ev.messages[i];
            EXPECT_EQ(m.seq, i + 1);
            EXPECT_EQ(m.conversation_id, conv);
            EXPECT_EQ(m.text, "a to b #" + std::to_string(i));
            EXPECT_EQ(m.sender_user_id, a.id);
            EXPECT_EQ(m.sender_device_id, "laptop");
            EXPECT_EQ(m.client_msg_id, ids[i]);
            EXPECT_EQ(m.msg_id, pa->ev.locked([&] { return pa->ev.acks[i].msg_id; }));
        }
    });

    // B's library acknowledged them: DELIVERED up to 5 reaches A.
    ASSERT_TRUE(pa->ev.wait([&] {
        for (const auto& r : pa->ev.receipts) {
            if (r.conversation_id == conv && r.user_id == b.id && r.kind == ReceiptKind::delivered && r.up_to_seq >= 5) return true;
        }
        return false;
    }));

    // Unread counts move with mark_read; READ watermarks reach the sender.
    auto conversation_of = [&](App& app) {
        auto list = await(app->conversations());
        EXPECT_EQ(list.size(), 1u);
        return list.empty() ? imclient::Conversation{} : list.front();
    };
    auto wait_unread = [&](App& app, std::uint64_t unread) {
        imclient::Conversation c;
        for (int i = 0; i < 100; ++i) {
            c = conversation_of(app);
            if (c.unread == unread) break;
            std::this_thread::sleep_for(50ms);
        }
        return c;
    };
    auto cb = wait_unread(*pb, 5);
    EXPECT_EQ(cb.conversation_id, conv);
    EXPECT_EQ(cb.peer_user_id, a.id);
    EXPECT_EQ(cb.last_seq, 5u);
    EXPECT_EQ(cb.unread, 5u);
    EXPECT_EQ(cb.my_read_seq, 0u);
    EXPECT_EQ(wait_unread(*pa, 0).unread, 0u) << "the sender's own messages never count as unread";

    (*pb)->mark_read(conv, 3);
    ASSERT_TRUE(pa->ev.wait([&] {
        return std::any_of(pa->ev.receipts.begin(), pa->ev.receipts.end(), [&](const ReceiptSeen& r) {
            return r.conversation_id == conv && r.user_id == b.id && r.kind == ReceiptKind::read && r.up_to_seq == 3;
        });
    }));
    EXPECT_EQ(wait_unread(*pb, 2).unread, 2u);
    (*pb)->mark_read(conv, 5);
    ASSERT_TRUE(pa->ev.wait([&] {
        return std::any_of(pa->ev.receipts.begin(), pa->ev.receipts.end(), [&](const ReceiptSeen& r) {
            return r.conversation_id == conv && r.user_id == b.id && r.kind == ReceiptKind::read && r.up_to_seq == 5;
        });
    }));
    EXPECT_EQ(wait_unread(*pb, 0).unread, 0u);

    // B -> A: three messages (seq 6..8).
    std::vector<std::string> back;
    for (int i = 0; i < 3; ++i) back.push_back((*pb)->send_text(a.id, "b to a #" + std::to_string(i)));
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.acks.size() == 3; }));
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.messages.size() >= 3; }));
    pb->ev.locked([&] {
        for (std::size_t i = 0; i < 3; ++i) {
            EXPECT_EQ(pb->ev.acks[i].client_msg_id, back[i]);
            EXPECT_EQ(pb->ev.acks[i].seq, 6 + i);
        }
    });
    pa->ev.locked([&] {
        for (std::size_t i = 0; i < 3; ++i) {
            EXPECT_EQ(pa->ev.messages[i].seq, 6 + i);
            EXPECT_EQ(pa->ev.messages[i].text, "b to a #" + std::to_string(i));
            EXPECT_EQ(pa->ev.messages[i].sender_user_id, b.id);
        }
    });
    ASSERT_TRUE(pb->ev.wait([&] {
        return std::any_of(pb->ev.receipts.begin(), pb->ev.receipts.end(), [&](const ReceiptSeen& r) {
            return r.conversation_id == conv && r.user_id == a.id && r.kind == ReceiptKind::delivered && r.up_to_seq >= 8;
        });
    }));
    auto ca = wait_unread(*pa, 3);
    EXPECT_EQ(ca.last_seq, 8u);
    EXPECT_EQ(ca.unread, 3u);
    (*pa)->mark_read(conv, 8);
    ASSERT_TRUE(pb->ev.wait([&] {
        return std::any_of(pb->ev.receipts.begin(), pb->ev.receipts.end(), [&](const ReceiptSeen& r) {
            return r.conversation_id == conv && r.user_id == a.id && r.kind == ReceiptKind::read && r.up_to_seq == 8;
        });
    }));
    EXPECT_EQ(wait_unread(*pa, 0).unread, 0u);

    // Both at once: 20 each way, interleaved. Every seq is either one of ours (on_sent) or one of
    // the peer's (on_message), exactly once, in order.
    std::vector<std::string> a_ids, b_ids;
    std::thread ta([&] {
        for (int i = 0; i < 20; ++i) a_ids.push_back((*pa)->send_text(b.id, "both a" + std::to_string(i)));
    });
    std::thread tb([&] {
        for (int i = 0; i < 20; ++i) b_ids.push_back((*pb)->send_text(a.id, "both b" + std::to_string(i)));
    });
    ta.join();
    tb.join();
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() == 25 && pa->ev.messages.size() >= 23; }));
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.acks.size() == 23 && pb->ev.messages.size() >= 25; }));
    for (auto* app : {pa.get(), pb.get()}) {
        app->ev.locked([&] {
            std::vector<std::uint64_t> all;
            std::vector<std::uint64_t> received;
            for (const auto& m : app->ev.messages) {
                received.push_back(m.seq);
                all.push_back(m.seq);
            }
            for (const auto& k : app->ev.acks) all.push_back(k.seq);
            EXPECT_TRUE(std::is_sorted(received.begin(), received.end()));
            EXPECT_EQ(std::set<std::uint64_t>(received.begin(), received.end()).size(), received.size());
            std::sort(all.begin(), all.end());
            EXPECT_EQ(all, range(1, 48));
        });
    }
    pb->ev.locked([&] {
        for (std::size_t i = 0; i < 20; ++i) EXPECT_EQ(pb->ev.messages[5 + i].client_msg_id, a_ids[i]);
    });
    pa->ev.locked([&] {
        for (std::size_t i = 0; i < 20; ++i) EXPECT_EQ(pa->ev.messages[3 + i].client_msg_id, b_ids[i]);
    });
    // Each side's DELIVERED covers the newest message the other side sent (a receipt is only due
    // for messages handed to on_message: the server moved the sender's own watermark at the send).
    const auto last_of = [](Events& ev) { return ev.locked([&] { return ev.acks.back().seq; }); };
    const auto a_last = last_of(pa->ev), b_last = last_of(pb->ev);
    EXPECT_EQ(std::max(a_last, b_last), 48u);
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.receipt_unlocked(conv, b.id, ReceiptKind::delivered) >= a_last; }));
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.receipt_unlocked(conv, a.id, ReceiptKind::delivered) >= b_last; }));

    // History: the newest n ascending; a page below a seq; everything.
    auto newest = await((*pa)->history(conv, 0, 4));
    ASSERT_EQ(newest.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(newest[i].seq, 45 + i);
    auto below = await((*pb)->history(conv, 6, 3));
    ASSERT_EQ(below.size(), 3u);
    EXPECT_EQ(below[0].seq, 3u);
    EXPECT_EQ(below[2].seq, 5u);
    EXPECT_EQ(below[0].text, "a to b #2");
    EXPECT_EQ(below[0].client_msg_id, ids[2]);
    auto all = await((*pb)->history(conv, 0, 100));
    ASSERT_EQ(all.size(), 48u);
    for (std::size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].seq, i + 1);

    // Nothing came twice, nothing failed; history fired no on_message.
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(pa->ev.message_count(), 23u);
    EXPECT_EQ(pb->ev.message_count(), 25u);
    EXPECT_TRUE(pa->ev.locked([&] { return pa->ev.failures.empty(); }));
    EXPECT_TRUE(pb->ev.locked([&] { return pb->ev.failures.empty(); }));
}

// Typing indicators reach the online friend; presence follows the peer's session.
TEST_F(ImclientE2e, TypingAndPresence) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone");
    ASSERT_TRUE(pa->ev.wait([&] {
        return std::count(pa->ev.presence.begin(), pa->ev.presence.end(), std::make_pair(b.id, true)) > 0;
    })) << "A never saw B come online";
    (*pa)->typing(b.id);
    ASSERT_TRUE(pb->ev.wait([&] { return !pb->ev.typing.empty(); }));
    EXPECT_EQ(pb->ev.locked([&] { return pb->ev.typing.front(); }), std::make_pair(conv, a.id));
    pb.reset();
    ASSERT_TRUE(pa->ev.wait([&] { return !pa->ev.presence.empty() && pa->ev.presence.back() == std::make_pair(b.id, false); }))
        << "A never saw B go offline";
}

// Without Options::connectors the library connects where im-rest's login answer says (the live
// connectors registered in Redis).
TEST_F(ImclientE2e, LoginFollowsTheRestConnectorList) {
    auto& cl = start();
    const auto a = cl.user("alice");
    auto pa = open(a, {}, "laptop");
    EXPECT_EQ(pa->info.user_id, a.id);
    EXPECT_TRUE(pa->info.connector == connector_address(0) || pa->info.connector == connector_address(1))
        << pa->info.connector;
    EXPECT_EQ((*pa)->state(), State::connected);
}

// ---- 2. offline delivery with a persisted cursor --------------------------------------------

TEST_F(ImclientE2e, OfflineDeliveryWithPersistedCursor) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    const std::string path = dir_ + "/bob.cursors";
    auto pa = open(a, {0, 1}, "laptop");
    {
        auto pb = open(b, {1, 0}, "phone", std::make_shared<imclient::FileCursorStore>(path));
        for (int i = 0; i < 5; ++i) (*pa)->send_text(b.id, "old " + std::to_string(i));
        ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 5; }));
        // B's receipt went out in the same burst as its store flush.
        ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.receipt_unlocked(conv, b.id, ReceiptKind::delivered) >= 5; }));
        EXPECT_EQ(pb->ev.message_seqs(), range(1, 5));
    }  // B's app exits
    EXPECT_EQ(imclient::FileCursorStore(path).delivered(conv), 5u);
    EXPECT_EQ(imclient::FileCursorStore(path).owner(), b.id);

    std::vector<std::string> ids;
    for (int i = 0; i < 50; ++i) ids.push_back((*pa)->send_text(b.id, "new " + std::to_string(i)));
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() == 55; }));

    auto pb = open(b, {1, 0}, "phone", std::make_shared<imclient::FileCursorStore>(path));
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 50; })) << pb->ev.message_count();
    std::this_thread::sleep_for(500ms);
    pb->ev.locked([&] {
        ASSERT_EQ(pb->ev.messages.size(), 50u) << "exactly the new ones, none of the old ones again";
        for (std::size_t i = 0; i < 50; ++i) {
            EXPECT_EQ(pb->ev.messages[i].seq, 6 + i);
            EXPECT_EQ(pb->ev.messages[i].text, "new " + std::to_string(i));
            EXPECT_EQ(pb->ev.messages[i].client_msg_id, ids[i]);
        }
    });
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.receipt_unlocked(conv, b.id, ReceiptKind::delivered) >= 55; }));
    pb.reset();
    EXPECT_EQ(imclient::FileCursorStore(path).delivered(conv), 55u);
}

// B's app starts (and restarts) while A keeps sending: the login sync and the live pushes of the
// same conversation merge by seq, no gap, no duplicate, nothing at or below the stored watermark.
TEST_F(ImclientE2e, LoginSyncMergesWithLivePushes) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    const std::string path = dir_ + "/bob.cursors";
    auto pa = open(a, {0, 1}, "laptop");
    for (int i = 0; i < 120; ++i) (*pa)->send_text(b.id, "before " + std::to_string(i));
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() == 120; }));

    constexpr std::size_t kTotal = 520;
    std::atomic<bool> stop{false};
    std::thread sender([&] {
        for (std::size_t i = 120; i < kTotal && !stop; ++i) {
            (*pa)->send_text(b.id, "during " + std::to_string(i));
            std::this_thread::sleep_for(3ms);
        }
    });
    struct Join {
        std::atomic<bool>& stop;
        std::thread& t;
        ~Join() {
            stop = true;
            if (t.joinable()) t.join();
        }
    } join_on_exit{stop, sender};  // also when an assertion returns early
    std::vector<imclient::Message> all;
    std::uint64_t watermark = 0;
    for (int round = 0; round < 4; ++round) {
        auto pb = open(b, {round % 2, 1 - round % 2}, "phone", std::make_shared<imclient::FileCursorStore>(path));
        std::this_thread::sleep_for(std::chrono::milliseconds(150 + 100 * round));
        // The client goes first: a message handed to the app between a copy of its events and
        // the client's end would be in the stored watermark but not in the copy.
        pb->client.reset();
        auto got = pb->ev.locked([&] { return pb->ev.messages; });
        pb.reset();
        ASSERT_FALSE(got.empty()) << "round " << round;
        EXPECT_EQ(got.front().seq, watermark + 1) << "round " << round << ": resumes right above the stored watermark";
        for (std::size_t i = 1; i < got.size(); ++i) ASSERT_EQ(got[i].seq, got[i - 1].seq + 1) << "round " << round;
        all.insert(all.end(), got.begin(), got.end());
        const auto stored = imclient::FileCursorStore(path).delivered(conv);
        EXPECT_LE(stored, got.back().seq);
        EXPECT_GE(stored, got.front().seq - 1);
        watermark = stored;
    }
    sender.join();
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() == kTotal; }, 60s));
    auto pb = open(b, {1, 0}, "phone", std::make_shared<imclient::FileCursorStore>(path));
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= kTotal - watermark; }, 60s));
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(pb->ev.message_seqs(), range(watermark + 1, kTotal));
    // Across all the lifetimes: every seq, and a seq seen twice (a burst whose flush did not
    // happen) is the same message.
    for (const auto& m : pb->ev.locked([&] { return pb->ev.messages; })) all.push_back(m);
    std::map<std::uint64_t, std::uint64_t> msg_of_seq;
    for (const auto& m : all) {
        auto [it, inserted] = msg_of_seq.emplace(m.seq, m.msg_id);
        EXPECT_EQ(it->second, m.msg_id) << m.seq;
    }
    ASSERT_EQ(msg_of_seq.size(), kTotal);
    EXPECT_EQ(msg_of_seq.begin()->first, 1u);
    EXPECT_EQ(msg_of_seq.rbegin()->first, kTotal);
}

// ---- 3. resend across a connector kill -----------------------------------------------------

TEST_F(ImclientE2e, ConnectorKillReconnectsAndLosesNothing) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone");
    ASSERT_EQ(pb->info.connector, connector_address(1));

    std::vector<std::string> ids(100);
    std::thread sender([&] {
        for (std::size_t i = 0; i < 100; ++i) {
            ids[i] = (*pa)->send_text(b.id, "k" + std::to_string(i));
            std::this_thread::sleep_for(15ms);
        }
    });
    const bool got30 = pb->ev.wait([&] { return pb->ev.messages.size() >= 30; });
    cl.stop_connector(1, SIGKILL);
    sender.join();
    ASSERT_TRUE(got30);

    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() >= 100; }, 60s)) << pa->ev.ack_count();
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 100; }, 60s)) << pb->ev.message_count();
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(pb->ev.message_seqs(), range(1, 100));
    pb->ev.locked([&] {
        for (std::size_t i = 0; i < std::min<std::size_t>(100, pb->ev.messages.size()); ++i) {
            EXPECT_EQ(pb->ev.messages[i].client_msg_id, ids[i]) << i;
        }
        // reconnecting, then connected on connector 0.
        std::size_t reconnecting = pb->ev.states.size();
        for (std::size_t i = 0; i < pb->ev.states.size(); ++i) {
            if (pb->ev.states[i].first == State::reconnecting) {
                reconnecting = i;
                break;
            }
        }
        ASSERT_LT(reconnecting, pb->ev.states.size()) << "B never reported reconnecting";
        ASSERT_EQ(pb->ev.states.back().first, State::connected);
        EXPECT_EQ(pb->ev.states.back().second, connector_address(0));
    });
    pa->ev.locked([&] {
        ASSERT_EQ(pa->ev.acks.size(), 100u);
        for (std::size_t i = 0; i < 100; ++i) {
            EXPECT_EQ(pa->ev.acks[i].client_msg_id, ids[i]);
            EXPECT_EQ(pa->ev.acks[i].seq, i + 1);
        }
        EXPECT_TRUE(pa->ev.failures.empty());
        EXPECT_TRUE(std::none_of(pa->ev.states.begin(), pa->ev.states.end(),
                                 [](const auto& s) { return s.first == State::reconnecting; }))
            << "A's connector stayed up";
    });
    EXPECT_EQ(cl.stored_messages(conv), 100u);
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.receipt_unlocked(conv, b.id, ReceiptKind::delivered) >= 100; }));

    // Connector 1 comes back; both still chat.
    cl.start_connector(1);
    ASSERT_TRUE(cl.wait_connector_ready(1));
    (*pa)->send_text(b.id, "after the restart");
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() == 101; }));
    (*pb)->send_text(a.id, "still here");
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.messages.size() == 1; }));
    EXPECT_EQ(pa->ev.locked([&] { return pa->ev.messages[0].text; }), "still here");
    EXPECT_EQ(pa->ev.locked([&] { return pa->ev.messages[0].seq; }), 102u);
    EXPECT_EQ(pb->ev.locked([&] { return pb->ev.messages[100].seq; }), 101u);
}

// ---- 3b. the sender's connector dies with Sends committed but unanswered -------------------

TEST_F(ImclientE2e, SenderConnectorKillResendsCommittedButUnansweredOnce) {
    // Every commit waits 300 ms: at the kill, a batch of A's Sends is inside the transfer and gets
    // committed after A's session is gone (its SendResults are lost with it).
    auto& cl = start({"testing.failpoints=writer.before_commit=pause(300)"});
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone");

    std::vector<std::string> ids(100);
    std::thread sender([&] {
        for (std::size_t i = 0; i < 100; ++i) {
            ids[i] = (*pa)->send_text(b.id, "s" + std::to_string(i));
            std::this_thread::sleep_for(5ms);
        }
    });
    const bool got = pb->ev.wait([&] { return pb->ev.messages.size() >= 20; });
    cl.stop_connector(0, SIGKILL);
    const std::size_t acked_at_kill = pa->ev.ack_count();
    sender.join();
    ASSERT_TRUE(got);
    EXPECT_LT(acked_at_kill, 100u);

    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() >= 100; }, 60s)) << pa->ev.ack_count();
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 100; }, 60s)) << pb->ev.message_count();
    std::this_thread::sleep_for(700ms);
    EXPECT_EQ(cl.stored_messages(conv), 100u);
    EXPECT_EQ(pb->ev.message_seqs(), range(1, 100));
    pb->ev.locked([&] {
        for (std::size_t i = 0; i < std::min<std::size_t>(100, pb->ev.messages.size()); ++i) {
            EXPECT_EQ(pb->ev.messages[i].client_msg_id, ids[i]) << i;
        }
    });
    pa->ev.locked([&] {
        ASSERT_EQ(pa->ev.acks.size(), 100u);
        for (std::size_t i = 0; i < 100; ++i) {
            EXPECT_EQ(pa->ev.acks[i].client_msg_id, ids[i]) << i;
            EXPECT_EQ(pa->ev.acks[i].seq, i + 1) << i;
        }
        EXPECT_TRUE(pa->ev.failures.empty());
        ASSERT_FALSE(pa->ev.states.empty());
        EXPECT_EQ(pa->ev.states.back().first, State::connected);
        EXPECT_EQ(pa->ev.states.back().second, connector_address(1));
    });
    EXPECT_EQ(pa->ev.message_count(), 0u) << "A's own messages never come back as on_message";
    // Evidence the resends met committed originals: the transfer answered some with the original.
    EXPECT_GT(transfer_metric("im_transfer_messages_deduped_total"), 0.0);
}

// ---- bursts and paging against the real limits ---------------------------------------------

// 1000 messages queued at once: more than the connector's per-session pending limit (256) once a
// sync request is in flight too. Everything is SENT once, in order, and reaches B once, in order.
TEST_F(ImclientE2e, BurstBeyondTheConnectorPendingLimit) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone");
    std::vector<std::string> ids;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i) ids.push_back((*pa)->send_text(b.id, "burst " + std::to_string(i)));
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() >= 1000; }, 120s)) << pa->ev.ack_count();
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 1000; }, 60s)) << pb->ev.message_count();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    std::cerr << "1000 messages SENT and delivered in " << took.count() << " ms; OUT_OF_ORDER answers: "
              << transfer_metric("im_transfer_out_of_order_total") << "\n";
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(pb->ev.message_seqs(), range(1, 1000));
    pa->ev.locked([&] {
        for (std::size_t i = 0; i < 1000; ++i) {
            EXPECT_EQ(pa->ev.acks[i].client_msg_id, ids[i]);
            EXPECT_EQ(pa->ev.acks[i].seq, i + 1);
        }
        EXPECT_TRUE(pa->ev.failures.empty());
    });
    EXPECT_EQ(cl.stored_messages(conv), 1000u);
}

// Two conversations at once: 2 x 256 Sends in flight would exceed the connector's per-session
// pending limit (sessions.max_pending_requests, 256).
TEST_F(ImclientE2e, BurstToTwoPeersStaysWithinTheSessionPendingLimit) {
    // Slow commits: answers take a while, so the Sends in flight really pile up at the connector.
    auto& cl = start({"testing.failpoints=writer.before_commit=pause(100)"});
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    const auto c = cl.user("carol");
    cl.befriend(a, b);
    cl.befriend(a, c);
    auto pa = open(a, {0, 1}, "laptop");  // alone on connector 0
    auto pb = open(b, {1, 0}, "phone");
    auto pc = open(c, {1, 0}, "tablet");
    const double frames_before = connector_metric(0, "im_connector_client_frames_total");
    std::vector<std::string> to_b, to_c;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 600; ++i) {
        to_b.push_back((*pa)->send_text(b.id, "b" + std::to_string(i)));
        to_c.push_back((*pa)->send_text(c.id, "c" + std::to_string(i)));
    }
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() >= 1200; }, 120s)) << pa->ev.ack_count();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 600; }, 60s));
    ASSERT_TRUE(pc->ev.wait([&] { return pc->ev.messages.size() >= 600; }, 60s));
    std::cerr << "1200 messages to two peers SENT in " << took.count() << " ms; OUT_OF_ORDER answers: "
              << transfer_metric("im_transfer_out_of_order_total")
              << ", deduped resends: " << transfer_metric("im_transfer_messages_deduped_total") << "\n";
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(pb->ev.message_seqs(), range(1, 600));
    EXPECT_EQ(pc->ev.message_seqs(), range(1, 600));
    EXPECT_TRUE(pa->ev.locked([&] { return pa->ev.failures.empty(); }));
    EXPECT_EQ(cl.stored_messages(imclient::conversation_id(a.id, b.id)), 600u);
    EXPECT_EQ(cl.stored_messages(imclient::conversation_id(a.id, c.id)), 600u);
    // One Send per message: none refused with OVERLOADED and sent again (A's stream would go
    // again from its first unacknowledged message each time).
    const double frames = connector_metric(0, "im_connector_client_frames_total") - frames_before;
    EXPECT_GE(frames, 1200.0);
    EXPECT_LE(frames, 1230.0) << "Sends beyond the connector's sessions.max_pending_requests";
}

// Offline while 300 friends wrote (more conversations than the connector's per-session pending
// limit): the login sync pulls every one of them, and never floods the connector.
TEST_F(ImclientE2e, LoginSyncOfManyConversationsStaysWithinTheSessionPendingLimit) {
    auto& cl = start();
    const auto b = cl.user("bob");
    const std::string path = dir_ + "/bob.cursors";
    { auto pb = open(b, {1, 0}, "phone", std::make_shared<imclient::FileCursorStore>(path)); }
    constexpr int kPeers = 300;
    std::set<std::uint64_t> convs;
    const auto t_setup = std::chrono::steady_clock::now();
    for (int i = 0; i < kPeers; ++i) {
        const auto p = cl.user("p" + std::to_string(i));
        cl.befriend(p, b);
        auto raw = cl.connect(i % 2, p.token, "dev1");
        for (std::uint64_t n = 1; n <= 2; ++n) {
            auto env = raw->make_send(b.id, "from " + std::to_string(i) + " #" + std::to_string(n), n, n - 1);
            const auto rid = env.request_id();
            raw->send(env);
            auto res = raw->wait_for([rid](const client::Envelope& e) { return e.request_id() == rid && e.has_send_result(); });
            ASSERT_TRUE(res.has_value());
            ASSERT_EQ(res->send_result().code(), client::ERROR_NONE) << res->send_result().message();
        }
        convs.insert(imclient::conversation_id(p.id, b.id));
    }
    std::cerr << "setup of " << kPeers << " peers: "
              << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t_setup).count()
              << " ms\n";
    const double frames_before = connector_metric(1, "im_connector_client_frames_total");
    const auto t0 = std::chrono::steady_clock::now();
    auto pb = open(b, {1, 0}, "phone", std::make_shared<imclient::FileCursorStore>(path));
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 2 * kPeers; }, 60s)) << pb->ev.message_count();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    std::this_thread::sleep_for(500ms);
    const double frames = connector_metric(1, "im_connector_client_frames_total") - frames_before;
    std::cerr << "login sync of " << kPeers << " conversations: " << took.count() << " ms, " << frames << " frames\n";
    pb->ev.locked([&] {
        ASSERT_EQ(pb->ev.messages.size(), 2u * kPeers);
        std::map<std::uint64_t, std::vector<std::uint64_t>> by_conv;
        for (const auto& m : pb->ev.messages) by_conv[m.conversation_id].push_back(m.seq);
        EXPECT_EQ(by_conv.size(), convs.size());
        for (const auto& [conv, seqs] : by_conv) {
            EXPECT_TRUE(convs.count(conv));
            EXPECT_EQ(seqs, range(1, 2));
        }
    });
    // Login, the list, one SyncMessages and one DELIVERED per conversation, the watermarks resent:
    // nothing refused and asked again.
    EXPECT_LE(frames, 2.0 * kPeers + 20) << "sync requests beyond the connector's sessions.max_pending_requests";
    pb.reset();
    imclient::FileCursorStore stored(path);
    for (const auto conv : convs) EXPECT_EQ(stored.delivered(conv), 2u);
}

// Offline from two peers, with texts large enough that the server cuts pages by bytes (64 KiB
// frames), and more messages than one page holds by count: the login sync pages through both.
TEST_F(ImclientE2e, OfflineSyncPagesThroughTwoConversations) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto c = cl.user("carol");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    cl.befriend(c, b);
    const auto conv_ab = imclient::conversation_id(a.id, b.id);
    const auto conv_cb = imclient::conversation_id(c.id, b.id);
    const std::string path = dir_ + "/bob.cursors";
    {
        auto pb = open(b, {1, 0}, "phone", std::make_shared<imclient::FileCursorStore>(path));
    }
    auto pa = open(a, {0, 1}, "laptop");
    auto pc = open(c, {1, 0}, "tablet");
    const std::string big(12 * 1024, 'x');
    for (int i = 0; i < 60; ++i) (*pa)->send_text(b.id, std::to_string(i) + ":" + big);
    for (int i = 0; i < 450; ++i) (*pc)->send_text(b.id, "c" + std::to_string(i));
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() >= 60; }, 60s));
    ASSERT_TRUE(pc->ev.wait([&] { return pc->ev.acks.size() >= 450; }, 60s));

    auto pb = open(b, {1, 0}, "phone", std::make_shared<imclient::FileCursorStore>(path));
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 510; }, 60s)) << pb->ev.message_count();
    std::this_thread::sleep_for(300ms);
    pb->ev.locked([&] {
        ASSERT_EQ(pb->ev.messages.size(), 510u);
        std::vector<std::uint64_t> ab, cb;
        for (const auto& m : pb->ev.messages) {
            if (m.conversation_id == conv_ab) {
                EXPECT_EQ(m.text, std::to_string(ab.size()) + ":" + big);
                ab.push_back(m.seq);
            } else if (m.conversation_id == conv_cb) {
                EXPECT_EQ(m.text, "c" + std::to_string(cb.size()));
                cb.push_back(m.seq);
            }
        }
        EXPECT_EQ(ab, range(1, 60));
        EXPECT_EQ(cb, range(1, 450));
    });
    auto convs = await((*pb)->conversations());
    EXPECT_EQ(convs.size(), 2u);
    pb.reset();
    EXPECT_EQ(imclient::FileCursorStore(path).delivered(conv_ab), 60u);
    EXPECT_EQ(imclient::FileCursorStore(path).delivered(conv_cb), 450u);
}

// ---- heartbeats and a draining connector ---------------------------------------------------

// Idle for well over 3 heartbeat intervals: the library's Pings keep the session (no IDLE kick).
TEST_F(ImclientE2e, HeartbeatKeepsAnIdleSessionAlive) {
    auto& cl = start({}, {"sessions.heartbeat_interval=1s"});
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone");
    EXPECT_EQ(pa->info.heartbeat_interval_s, 1u);
    std::this_thread::sleep_for(5s);
    (*pa)->send_text(b.id, "still there?");
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() == 1; }));
    for (auto* app : {pa.get(), pb.get()}) {
        app->ev.locked([&] {
            for (const auto& [st, why] : app->ev.states) EXPECT_NE(st, State::reconnecting) << why;
        });
    }
}

// The same user and device logs in again on the other connector: the older Client is kicked
// (REPLACED, through the cross-connector kick channel) and stays down; the new one works.
TEST_F(ImclientE2e, SecondLoginOfTheSameDeviceReplacesTheFirst) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    auto pa = open(a, {0, 1}, "laptop");
    auto old_b = open(b, {1, 0}, "phone");
    auto new_b = open(b, {0, 1}, "phone");
    ASSERT_TRUE(old_b->ev.wait([&] { return !old_b->ev.states.empty() && old_b->ev.states.back().first == State::kicked; }))
        << imclient::to_string((*old_b)->state());
    (*pa)->send_text(b.id, "to the new one");
    ASSERT_TRUE(new_b->ev.wait([&] { return new_b->ev.messages.size() == 1; }));
    std::this_thread::sleep_for(1500ms);  // longer than any reconnect backoff
    EXPECT_EQ((*old_b)->state(), State::kicked);
    EXPECT_EQ((*new_b)->state(), State::connected);
    EXPECT_EQ(old_b->ev.message_count(), 0u);
    new_b->ev.locked([&] {
        for (const auto& [st, why] : new_b->ev.states) EXPECT_NE(st, State::reconnecting) << why;
    });
}

// SIGTERM: the connector drains with Kick{RECONNECT}; the library moves to the next connector at
// once and nothing is lost.
TEST_F(ImclientE2e, DrainingConnectorMovesTheClientOn) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone");
    std::vector<std::string> ids(60);
    std::thread sender([&] {
        for (std::size_t i = 0; i < 60; ++i) {
            ids[i] = (*pa)->send_text(b.id, "d" + std::to_string(i));
            std::this_thread::sleep_for(10ms);
        }
    });
    const bool got = pb->ev.wait([&] { return pb->ev.messages.size() >= 15; });
    const auto t0 = std::chrono::steady_clock::now();
    cl.stop_connector(1, SIGTERM);
    std::cerr << "connector 1 drained in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
              << " ms\n";
    sender.join();
    ASSERT_TRUE(got);
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 60; }, 60s)) << pb->ev.message_count();
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(pb->ev.message_seqs(), range(1, 60));
    pb->ev.locked([&] {
        bool kicked = false;
        for (const auto& [st, why] : pb->ev.states) {
            if (st == State::reconnecting && why.find("RECONNECT") != std::string::npos) kicked = true;
        }
        EXPECT_TRUE(kicked) << "no Kick{RECONNECT} seen";
        EXPECT_EQ(pb->ev.states.back().first, State::connected);
        EXPECT_EQ(pb->ev.states.back().second, connector_address(0));
    });
}

// ---- 4. transfer restart -------------------------------------------------------------------

TEST_F(ImclientE2e, TransferKillResendsWithTheSameIds) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone");

    std::vector<std::string> ids(50);
    std::thread sender([&] {
        for (std::size_t i = 0; i < 50; ++i) {
            ids[i] = (*pa)->send_text(b.id, "t" + std::to_string(i));
            std::this_thread::sleep_for(4ms);
        }
    });
    const bool got10 = pb->ev.wait([&] { return pb->ev.messages.size() >= 10; });
    cl.stop_transfer(SIGKILL);
    const std::size_t acked_at_kill = pa->ev.ack_count();
    // Down for a while: every resend meanwhile gets UNAVAILABLE from the connector (no link).
    std::this_thread::sleep_for(1500ms);
    const std::size_t acked_while_down = pa->ev.ack_count();
    cl.start_transfer();
    sender.join();
    ASSERT_TRUE(got10);
    EXPECT_LT(acked_at_kill, 50u) << "the kill came too late to test anything";
    EXPECT_EQ(acked_while_down, acked_at_kill) << "nothing can be SENT without a transfer";
    std::cerr << "acked at the kill: " << acked_at_kill << ", B held " << pb->ev.message_count() << "\n";

    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() >= 50; }, 90s)) << pa->ev.ack_count();
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 50; }, 60s)) << pb->ev.message_count();
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(cl.stored_messages(conv), 50u);
    EXPECT_EQ(pb->ev.message_seqs(), range(1, 50));
    pb->ev.locked([&] {
        for (std::size_t i = 0; i < std::min<std::size_t>(50, pb->ev.messages.size()); ++i) {
            EXPECT_EQ(pb->ev.messages[i].client_msg_id, ids[i]) << i;
            EXPECT_EQ(pb->ev.messages[i].text, "t" + std::to_string(i));
        }
    });
    pa->ev.locked([&] {
        ASSERT_EQ(pa->ev.acks.size(), 50u);
        for (std::size_t i = 0; i < 50; ++i) {
            EXPECT_EQ(pa->ev.acks[i].client_msg_id, ids[i]);
            EXPECT_EQ(pa->ev.acks[i].seq, i + 1);
        }
        EXPECT_TRUE(pa->ev.failures.empty());
    });
    EXPECT_EQ((*pa)->pending_sends(), 0u);
}

// The app asks for its conversations and history while im-transfer restarts: like sends, the
// requests ride out the outage (within request_timeout) instead of failing with UNAVAILABLE.
TEST_F(ImclientE2e, AppRequestsRideOutATransferRestart) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    auto pa = open(a, {0, 1}, "laptop");
    for (int i = 0; i < 10; ++i) (*pa)->send_text(b.id, "h" + std::to_string(i));
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() == 10; }));
    cl.stop_transfer(SIGKILL);
    std::this_thread::sleep_for(300ms);  // the connectors noticed: no transfer link
    auto convs = (*pa)->conversations();
    auto page = (*pa)->history(conv, 0, 5);
    std::this_thread::sleep_for(1s);
    cl.start_transfer();
    try {
        const auto list = await(std::move(convs));
        ASSERT_EQ(list.size(), 1u);
        EXPECT_EQ(list[0].last_seq, 10u);
    } catch (const imclient::Error& e) {
        ADD_FAILURE() << "conversations() failed: " << e.what() << " (" << imclient::to_string(e.code()) << ")";
    }
    try {
        const auto msgs = await(std::move(page));
        ASSERT_EQ(msgs.size(), 5u);
        EXPECT_EQ(msgs.front().seq, 6u);
        EXPECT_EQ(msgs.back().seq, 10u);
    } catch (const imclient::Error& e) {
        ADD_FAILURE() << "history() failed: " << e.what() << " (" << imclient::to_string(e.code()) << ")";
    }
}

// Receipts sent while the connector has no transfer link are dropped by the connector (they get
// no answer). The library learns of the outage from SyncHint{0} and sends its watermarks again
// once the cluster answers: the READ of B reaches A and the unread counts are right.
TEST_F(ImclientE2e, WatermarksSentDuringATransferOutageAreNotLost) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone");
    for (int i = 0; i < 5; ++i) (*pa)->send_text(b.id, "r" + std::to_string(i));
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() == 5; }));
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.receipt_unlocked(conv, b.id, ReceiptKind::delivered) >= 5; }));
    cl.stop_transfer(SIGKILL);
    std::this_thread::sleep_for(300ms);  // the connectors noticed: no transfer link
    (*pb)->mark_read(conv, 5);
    std::this_thread::sleep_for(700ms);
    cl.start_transfer();
    EXPECT_TRUE(pa->ev.wait([&] { return pa->ev.receipt_unlocked(conv, b.id, ReceiptKind::read) >= 5; }, 20s))
        << "B's READ was lost with the transfer link";
    imclient::Conversation c;
    for (int i = 0; i < 100; ++i) {
        auto list = await((*pb)->conversations());
        ASSERT_EQ(list.size(), 1u);
        c = list[0];
        if (c.unread == 0) break;
        std::this_thread::sleep_for(100ms);
    }
    EXPECT_EQ(c.unread, 0u);
    EXPECT_EQ(c.my_read_seq, 5u);
}

// ---- 5. exactly once across an app restart -------------------------------------------------

// A FileCursorStore whose process "dies" at a chosen moment: from then on flush() pretends to
// succeed and writes nothing, so the file keeps what the last flush before the crash wrote.
class CrashableStore : public imclient::CursorStore {
public:
    explicit CrashableStore(std::string path) : inner_(std::move(path)) {}
    std::atomic<bool> crashed{false};

    std::uint64_t owner() const override { return inner_.owner(); }
    void set_owner(std::uint64_t u) override { inner_.set_owner(u); }
    void clear() override { inner_.clear(); }
    std::uint64_t sync_cursor() const override { return inner_.sync_cursor(); }
    void set_sync_cursor(std::uint64_t c) override { inner_.set_sync_cursor(c); }
    std::uint64_t delivered(std::uint64_t conv) const override { return inner_.delivered(conv); }
    void set_delivered(std::uint64_t conv, std::uint64_t seq) override { inner_.set_delivered(conv, seq); }
    std::uint64_t read(std::uint64_t conv) const override { return inner_.read(conv); }
    void set_read(std::uint64_t conv, std::uint64_t seq) override { inner_.set_read(conv, seq); }
    std::vector<imclient::ConversationCursor> conversations() const override { return inner_.conversations(); }
    bool flush() override { return crashed ? true : inner_.flush(); }

private:
    imclient::FileCursorStore inner_;
};

TEST_F(ImclientE2e, ExactlyOnceAcrossAnAppCrashBeforeTheCursorFlush) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    const std::string path = dir_ + "/bob.cursors";
    auto pa = open(a, {0, 1}, "laptop");

    auto store = std::make_shared<CrashableStore>(path);
    auto pb = open(b, {1, 0}, "phone", store, [&](Events& ev) {
        // The crash: right after on_message of seq 10 returned, before the burst's flush.
        ev.after_message = [store](const imclient::Message& m) {
            if (m.seq == 10) store->crashed = true;
        };
    });
    for (int i = 0; i < 20; ++i) {
        (*pa)->send_text(b.id, "x" + std::to_string(i));
        std::this_thread::sleep_for(10ms);
    }
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 20; }));
    const auto first = pb->ev.locked([&] { return pb->ev.messages; });
    pb.reset();  // the process is gone

    const std::uint64_t stored = imclient::FileCursorStore(path).delivered(conv);
    EXPECT_LT(stored, 10u) << "the burst of seq 10 was never flushed";

    auto again = open(b, {1, 0}, "phone", std::make_shared<imclient::FileCursorStore>(path));
    ASSERT_TRUE(again->ev.wait([&] { return again->ev.messages.size() >= 20 - stored; }));
    std::this_thread::sleep_for(500ms);
    const auto second = again->ev.locked([&] { return again->ev.messages; });
    ASSERT_EQ(first.size(), 20u);
    for (std::size_t i = 0; i < first.size(); ++i) EXPECT_EQ(first[i].seq, i + 1);
    // Nothing at or below the stored watermark; everything above it, once, in order, same ids.
    ASSERT_EQ(second.size(), 20 - stored);
    for (std::size_t i = 0; i < second.size(); ++i) {
        EXPECT_EQ(second[i].seq, stored + 1 + i);
        EXPECT_EQ(second[i].msg_id, first[stored + i].msg_id);
        EXPECT_EQ(second[i].client_msg_id, first[stored + i].client_msg_id);
    }
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.receipt_unlocked(conv, b.id, ReceiptKind::delivered) >= 20; }));
    again.reset();
    EXPECT_EQ(imclient::FileCursorStore(path).delivered(conv), 20u);
}

TEST_F(ImclientE2e, AbruptDestroyMidStreamNeverMissesNorRepeatsBelowTheWatermark) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    const std::string path = dir_ + "/bob.cursors";
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone", std::make_shared<imclient::FileCursorStore>(path));

    std::vector<std::string> ids;
    for (int i = 0; i < 20; ++i) ids.push_back((*pa)->send_text(b.id, "y" + std::to_string(i)));
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 10; }));
    pb.reset();  // mid-stream, whatever was in flight
    const std::uint64_t stored = imclient::FileCursorStore(path).delivered(conv);
    ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() == 20; }));

    auto again = open(b, {0, 1}, "phone", std::make_shared<imclient::FileCursorStore>(path));
    ASSERT_TRUE(again->ev.wait([&] { return again->ev.messages.size() >= 20 - stored; }));
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(again->ev.message_seqs(), range(stored + 1, 20));
    again->ev.locked([&] {
        for (const auto& m : again->ev.messages) EXPECT_EQ(m.client_msg_id, ids[m.seq - 1]);
    });
}

// ---- files: send_file and download with progress and sha256 checks ---------------------------

std::string file_sha256(const std::string& data) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data.data(), data.size(), d, &n, EVP_sha256(), nullptr);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < n; ++i) {
        out.push_back(hex[d[i] >> 4]);
        out.push_back(hex[d[i] & 0xF]);
    }
    return out;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(ImclientE2e, SendFileAndDownloadWithProgressAndSha256) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    const auto c = cl.user("carol");
    cl.befriend(a, b);
    auto pa = open(a, {0, 1}, "laptop");
    auto pb = open(b, {1, 0}, "phone");
    auto pc = open(c, {0, 1}, "tablet");

    std::string data(3 * 1024 * 1024 + 17, '\0');
    std::mt19937_64 rng(42);
    for (auto& ch : data)
        ch = static_cast<char>(rng() & 0xFF);
    const std::string src = dir_ + "/holiday photo.jpg";
    std::ofstream(src, std::ios::binary)
        .write(data.data(), static_cast<std::streamsize>(data.size()));

    std::atomic<std::uint64_t> up_done{0}, up_total{0};
    std::atomic<int> up_calls{0};
    auto sent = await((*pa)->send_file(b.id, src, [&](std::uint64_t done, std::uint64_t total) {
        up_done = done;
        up_total = total;
        ++up_calls;
    }));
    EXPECT_EQ(sent.file.sha256, file_sha256(data));
    EXPECT_EQ(sent.file.size, data.size());
    EXPECT_EQ(sent.file.name, "holiday photo.jpg");
    EXPECT_NE(sent.file.file_id, 0u);
    ASSERT_TRUE(pa->ev.wait([&] { return !pa->ev.acks.empty(); }));
    EXPECT_EQ(pa->ev.locked([&] { return pa->ev.acks[0].client_msg_id; }), sent.client_msg_id);
    // Progress reports run on the client thread after the transfer; they may trail the future.
    ASSERT_TRUE(pa->ev.wait([&] { return up_done.load() == data.size(); }, 5s));
    EXPECT_EQ(up_total.load(), data.size());
    EXPECT_GE(up_calls.load(), 2);

    ASSERT_TRUE(pb->ev.wait([&] { return !pb->ev.messages.empty(); }));
    const auto msg = pb->ev.locked([&] { return pb->ev.messages[0]; });
    EXPECT_EQ(msg.type, imclient::MessageType::file);
    EXPECT_EQ(msg.file.file_id, sent.file.file_id);
    EXPECT_EQ(msg.file.sha256, sent.file.sha256);
    EXPECT_EQ(msg.file.name, "holiday photo.jpg");

    std::atomic<std::uint64_t> down_done{0};
    const std::string dst = dir_ + "/received.jpg";
    auto got = await((*pb)->download(
        msg.file.file_id, dst, [&](std::uint64_t done, std::uint64_t) { down_done = done; },
        msg.file.sha256));
    EXPECT_EQ(got.sha256, msg.file.sha256);
    EXPECT_EQ(got.size, data.size());
    EXPECT_TRUE(read_file(dst) == data);
    EXPECT_FALSE(std::filesystem::exists(dst + ".part"));
    ASSERT_TRUE(pb->ev.wait([&] { return down_done.load() == data.size(); }, 5s));

    // The server's sha256 (ETag) is checked when the app gives none; a wrong expectation fails
    // and leaves nothing behind.
    EXPECT_EQ(await((*pb)->download(msg.file.file_id, dir_ + "/again.jpg")).sha256,
              msg.file.sha256);
    const std::string bad = dir_ + "/bad.jpg";
    try {
        await((*pb)->download(msg.file.file_id, bad, {}, std::string(64, '0')));
        ADD_FAILURE() << "a wrong sha256 was accepted";
    } catch (const imclient::Error& e) {
        EXPECT_EQ(e.code(), imclient::ErrorCode::integrity) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(bad));
    EXPECT_FALSE(std::filesystem::exists(bad + ".part"));

    // A third user is refused as if the file did not exist.
    try {
        await((*pc)->download(msg.file.file_id, dir_ + "/stolen.jpg"));
        ADD_FAILURE() << "carol downloaded a file of a conversation she is not in";
    } catch (const imclient::Error& e) {
        EXPECT_EQ(e.code(), imclient::ErrorCode::not_found) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/stolen.jpg"));

    // An empty file works too; a missing one is a local error.
    const std::string empty = dir_ + "/empty.txt";
    std::ofstream(empty).close();
    auto sent0 = await((*pa)->send_file(b.id, empty));
    EXPECT_EQ(sent0.file.size, 0u);
    EXPECT_EQ(sent0.file.sha256, file_sha256(""));
    // The future holds once the message is queued; the peer may read the file once it is stored.
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 2; }));
    EXPECT_EQ(await((*pb)->download(sent0.file.file_id, dir_ + "/empty-copy.txt")).size, 0u);
    try {
        await((*pa)->send_file(b.id, dir_ + "/does-not-exist"));
        ADD_FAILURE() << "a missing file was sent";
    } catch (const imclient::Error& e) {
        EXPECT_EQ(e.code(), imclient::ErrorCode::io_error) << e.what();
    }
}

}  // namespace
}  // namespace im::test

namespace im::test {
namespace {

// ---- 6. persistent state (Options::state_dir; issue 17 item 8) ------------------------------

// B's app receives 30 messages and exits; started again on the same state directory it downloads
// none of them again (the cursors survived), and gets exactly the new ones.
TEST_F(ImclientE2e, PersistentOutboxAndCursors_RestartDownloadsNoHistoryAgain) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    const std::string state = dir_ + "/bob-state";
    auto pa = open(a, {0, 1}, "laptop");
    {
        auto pb = open_with_state(b, {1, 0}, "phone", state);
        for (int i = 0; i < 30; ++i) (*pa)->send_text(b.id, "m" + std::to_string(i));
        ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 30; })) << pb->ev.message_count();
        ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.receipt_unlocked(conv, b.id, ReceiptKind::delivered) >= 30; }));
        EXPECT_EQ(pb->ev.message_seqs(), range(1, 30));
    }  // B's app exits

    auto pb = open_with_state(b, {1, 0}, "phone", state);
    // The login sync is over once the conversation list answered and nothing was behind.
    ASSERT_EQ(await((*pb)->conversations()).size(), 1u);
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(pb->ev.message_count(), 0u) << "the history was downloaded and handed out again";

    for (int i = 30; i < 33; ++i) (*pa)->send_text(b.id, "m" + std::to_string(i));
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 3; }));
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(pb->ev.message_seqs(), range(31, 33));
}

// A's app queues 10 messages while im-transfer is down and goes away before any is SENT: a new
// Client on the same state directory restores them (pending_sends, restored_sends) and sends them
// once each, in order, with their original client_msg_ids. Then it goes away in the middle of a
// burst (some committed and answered, some committed and not answered, some never sent): the next
// one sends what is left; nothing is lost or stored twice.
TEST_F(ImclientE2e, PersistentOutboxAndCursors_UnsentMessagesSurviveTheAppAndGoOnce) {
    auto& cl = start();
    const auto a = cl.user("alice");
    const auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto conv = imclient::conversation_id(a.id, b.id);
    const std::string state = dir_ + "/alice-state";
    auto pb = open(b, {1, 0}, "phone");

    std::vector<std::string> ids;
    std::vector<std::string> texts;
    {
        auto pa = open_with_state(a, {0, 1}, "laptop", state);
        cl.stop_transfer(SIGKILL);
        for (int i = 0; i < 10; ++i) {
            texts.push_back("queued " + std::to_string(i));
            ids.push_back((*pa)->send_text(b.id, texts.back()));
        }
        std::this_thread::sleep_for(500ms);
        EXPECT_EQ(pa->ev.ack_count(), 0u) << "nothing can be SENT without a transfer";
    }  // the app goes away with 10 unacknowledged messages
    cl.start_transfer();
    ASSERT_TRUE(cl.wait_connector_ready(0));
    ASSERT_TRUE(cl.wait_connector_ready(1));

    {
        auto pa = make_with_state({0, 1}, "laptop", state);
        EXPECT_EQ((*pa)->pending_sends(), 10u);
        const auto restored = (*pa)->restored_sends();
        ASSERT_EQ(restored.size(), 10u);
        for (std::size_t i = 0; i < restored.size(); ++i) {
            EXPECT_EQ(restored[i].client_msg_id, ids[i]);
            EXPECT_EQ(restored[i].peer_user_id, b.id);
            EXPECT_EQ(restored[i].text, texts[i]);
        }
        pa->info = await((*pa)->login(a.username, a.password));
        ASSERT_TRUE(pa->ev.wait([&] { return pa->ev.acks.size() >= 10; })) << pa->ev.ack_count();
        pa->ev.locked([&] {
            for (std::size_t i = 0; i < pa->ev.acks.size(); ++i) {
                EXPECT_EQ(pa->ev.acks[i].client_msg_id, ids[i]) << i;
                EXPECT_EQ(pa->ev.acks[i].seq, i + 1) << i;
            }
        });
        // A burst, and the app goes away at once.
        for (int i = 0; i < 40; ++i) {
            texts.push_back("burst " + std::to_string(i));
            ids.push_back((*pa)->send_text(b.id, texts.back()));
        }
    }
    {
        auto pa = open_with_state(a, {0, 1}, "laptop", state);
        ASSERT_TRUE(pa->ev.wait([&] { return (*pa)->pending_sends() == 0; }, 30s)) << (*pa)->pending_sends();
        EXPECT_TRUE(pa->ev.locked([&] { return pa->ev.failures.empty(); }));
    }
    ASSERT_TRUE(pb->ev.wait([&] { return pb->ev.messages.size() >= 50; })) << pb->ev.message_count();
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(cl.stored_messages(conv), 50u);
    EXPECT_EQ(pb->ev.message_seqs(), range(1, 50));
    pb->ev.locked([&] {
        for (std::size_t i = 0; i < std::min<std::size_t>(50, pb->ev.messages.size()); ++i) {
            EXPECT_EQ(pb->ev.messages[i].client_msg_id, ids[i]) << i;
            EXPECT_EQ(pb->ev.messages[i].text, texts[i]) << i;
        }
    });
    // Everything was acknowledged: nothing is restored any more.
    auto pa = make_with_state({0, 1}, "laptop", state);
    EXPECT_EQ((*pa)->pending_sends(), 0u);
}

}  // namespace
}  // namespace im::test

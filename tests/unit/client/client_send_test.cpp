// The send side of the delivery contract: client_msg_ids, streams, resends, final errors.

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "client_harness.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kMe = 1;
constexpr std::uint64_t kPeer = 2;
const std::uint64_t kConv = imclient::conversation_id(kMe, kPeer);

// Acknowledges every Send with the next seq of its conversation.
FakeConnector::Script auto_ack() {
    auto seqs = std::make_shared<std::map<std::uint64_t, std::uint64_t>>();
    auto mu = std::make_shared<std::mutex>();
    return [seqs, mu](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSend) return false;
        const auto conv = imclient::conversation_id(kMe, e.send().peer_user_id());
        std::uint64_t seq = 0;
        {
            std::lock_guard lock(*mu);
            seq = ++(*seqs)[conv];
        }
        f.send(FakeConnector::send_ok(e, conv, seq), conn);
        return true;
    };
}

FakeConnector::Script swallow_sends() {
    return [](FakeConnector&, int, const Envelope& e) { return e.body_case() == Envelope::kSend; };
}

TEST(ClientSend, SendTextIsAckedWithOnSent) {
    FakeConnector fc;
    fc.set_script(auto_ack());
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    const std::string id = client.send_text(kPeer, "hello");
    EXPECT_EQ(id.size(), 32u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 1; }));
    EXPECT_EQ(rec.acks[0].client_msg_id, id);
    EXPECT_EQ(rec.acks[0].seq, 1u);
    EXPECT_EQ(rec.acks[0].conversation_id, kConv);
    EXPECT_EQ(rec.acks[0].peer_user_id, kPeer);
    EXPECT_EQ(rec.acks[0].msg_id, 5001u);
    EXPECT_EQ(client.pending_sends(), 0u);

    const auto sends = fc.frames(Envelope::kSend);
    ASSERT_EQ(sends.size(), 1u);
    const auto& s = sends[0].frame.send();
    EXPECT_EQ(s.peer_user_id(), kPeer);
    EXPECT_EQ(s.text(), "hello");
    EXPECT_EQ(s.type(), im::client::TEXT);
    EXPECT_EQ(hex(s.client_msg_id()), id);
    EXPECT_EQ(s.stream_seq(), 1u);
    EXPECT_EQ(s.stream_acked(), 0u);
    // Our own message: no on_message for it.
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(rec.message_count(), 0u);
}

TEST(ClientSend, StreamNumbersAndStreamAckedPerConversation) {
    FakeConnector fc;
    fc.set_script(auto_ack());
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    for (std::size_t i = 1; i <= 3; ++i) {
        client.send_text(kPeer, "m" + std::to_string(i));
        ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == i; }));
    }
    client.send_text(3, "other conversation");
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 4; }));
    imclient::FileRef file{9, "a.png", 10, "ab", "image/png"};
    client.send_file(kPeer, file);
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 5; }));

    const auto sends = fc.frames(Envelope::kSend);
    ASSERT_EQ(sends.size(), 5u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(sends[i].frame.send().stream_seq(), i + 1);
        EXPECT_EQ(sends[i].frame.send().stream_acked(), i);
    }
    EXPECT_EQ(sends[3].frame.send().peer_user_id(), 3u);
    EXPECT_EQ(sends[3].frame.send().stream_seq(), 1u);
    EXPECT_EQ(sends[3].frame.send().stream_acked(), 0u);
    EXPECT_EQ(sends[4].frame.send().stream_seq(), 4u);
    EXPECT_EQ(sends[4].frame.send().stream_acked(), 3u);
    EXPECT_EQ(sends[4].frame.send().type(), im::client::FILE);
    EXPECT_EQ(sends[4].frame.send().file().file_id(), 9u);
    EXPECT_EQ(sends[4].frame.send().file().name(), "a.png");
}

TEST(ClientSend, OutOfOrderResendsFromTheFirstUnackedInOrder) {
    FakeConnector fc;
    fc.set_script(swallow_sends());
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    const std::string id1 = client.send_text(kPeer, "one");
    const std::string id2 = client.send_text(kPeer, "two");
    const std::string id3 = client.send_text(kPeer, "three");
    ASSERT_TRUE(fc.wait_count(Envelope::kSend, 3));
    auto first = fc.frames(Envelope::kSend);
    // 1 is committed; the owner lost 2 and answers 2 and 3 with OUT_OF_ORDER (expects 2).
    fc.send_batch({FakeConnector::send_ok(first[0].frame, kConv, 1),
                   FakeConnector::send_error(first[1].frame, im::client::OUT_OF_ORDER, 2),
                   FakeConnector::send_error(first[2].frame, im::client::OUT_OF_ORDER, 2)});
    ASSERT_TRUE(fc.wait_count(Envelope::kSend, 5));
    std::this_thread::sleep_for(200ms);
    auto sends = fc.frames(Envelope::kSend);
    ASSERT_EQ(sends.size(), 5u) << "the stale OUT_OF_ORDER of 3 must not cause a second resend";
    EXPECT_EQ(hex(sends[3].frame.send().client_msg_id()), id2);
    EXPECT_EQ(sends[3].frame.send().stream_seq(), 2u);
    EXPECT_EQ(sends[3].frame.send().stream_acked(), 1u);
    EXPECT_EQ(hex(sends[4].frame.send().client_msg_id()), id3);
    EXPECT_EQ(sends[4].frame.send().stream_seq(), 3u);
    EXPECT_EQ(sends[4].frame.send().stream_acked(), 1u);
    EXPECT_NE(sends[3].frame.request_id(), first[1].frame.request_id());

    fc.send_batch({FakeConnector::send_ok(sends[3].frame, kConv, 2),
                   FakeConnector::send_ok(sends[4].frame, kConv, 3)});
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 3; }));
    EXPECT_EQ(rec.acks[0].client_msg_id, id1);
    EXPECT_EQ(rec.acks[1].client_msg_id, id2);
    EXPECT_EQ(rec.acks[2].client_msg_id, id3);
}

TEST(ClientSend, RetryableErrorResendsAfterBackoffAndTimeoutCountsAsUnavailable) {
    FakeConnector fc;
    std::atomic<int> seen{0};
    fc.set_script([&](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSend) return false;
        const int n = ++seen;
        if (n == 1) f.send(FakeConnector::send_error(e, im::client::UNAVAILABLE), conn);
        if (n == 3) f.send(FakeConnector::send_ok(e, kConv, 1), conn);
        return true;  // n == 2: no answer at all (times out)
    });
    auto opts = test_options(fc);
    opts.request_timeout = 500ms;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(opts);
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    const std::string id = client.send_text(kPeer, "x");
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 1; }, 5s));
    const auto sends = fc.frames(Envelope::kSend);
    ASSERT_EQ(sends.size(), 3u);
    for (const auto& s : sends) {
        EXPECT_EQ(hex(s.frame.send().client_msg_id()), id);
        EXPECT_EQ(s.frame.send().stream_seq(), 1u);
    }
    EXPECT_GE(sends[1].at - sends[0].at, 40ms);   // a backoff after UNAVAILABLE
    EXPECT_GE(sends[2].at - sends[1].at, 450ms);  // no answer: the request timeout
}

TEST(ClientSend, FinalErrorFailsTheMessageAndConsumesItsStreamNumber) {
    FakeConnector fc;
    std::atomic<int> seen{0};
    fc.set_script([&](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSend) return false;
        if (++seen == 1) {
            f.send(FakeConnector::send_error(e, im::client::FORBIDDEN), conn);
        } else {
            f.send(FakeConnector::send_ok(e, kConv, 1), conn);
        }
        return true;
    });
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    const std::string id1 = client.send_text(kPeer, "not friends");
    ASSERT_TRUE(rec.wait([&] { return rec.failures.size() == 1; }));
    EXPECT_EQ(rec.failures[0].client_msg_id, id1);
    EXPECT_EQ(rec.failures[0].code, imclient::ErrorCode::forbidden);
    EXPECT_EQ(rec.failures[0].conversation_id, kConv);
    client.send_text(kPeer, "again");
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 1; }));
    const auto sends = fc.frames(Envelope::kSend);
    ASSERT_EQ(sends.size(), 2u);
    EXPECT_EQ(sends[1].frame.send().stream_seq(), 2u);
    EXPECT_EQ(sends[1].frame.send().stream_acked(), 1u);
    EXPECT_EQ(client.pending_sends(), 0u);
}

TEST(ClientSend, DroppedConnectionResendsUnackedInTheNewEpochFromOne) {
    FakeConnector fc;
    auto ack = auto_ack();
    fc.set_script([&](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() != Envelope::kSend) return false;
        if (conn == 1) return true;  // the first connection never answers
        return ack(f, conn, e);
    });
    auto opts = test_options(fc);
    opts.reconnect_min = 300ms;
    opts.reconnect_max = 1000ms;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(opts);
    rec.attach(client);
    imclient::LoginInfo first;
    ASSERT_TRUE(login(client, fc, &first));
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i)
        ids.push_back(client.send_text(kPeer, "m" + std::to_string(i)));
    ASSERT_TRUE(fc.wait_count(Envelope::kSend, 3));
    EXPECT_EQ(client.pending_sends(), 3u);
    const auto t0 = Clock::now();
    fc.drop(1);
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 3; }, 5s));
    const auto times = fc.connect_times();
    ASSERT_EQ(times.size(), 2u);
    EXPECT_GE(times[1] - t0, 150ms);  // the backoff was honoured (equal jitter >= min/2)
    EXPECT_EQ(fc.last_epoch(), 2u);

    std::vector<ReceivedFrame> resent;
    for (const auto& f : fc.frames(Envelope::kSend)) {
        if (f.conn == 2) resent.push_back(f);
    }
    ASSERT_EQ(resent.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(hex(resent[i].frame.send().client_msg_id()), ids[i]);
        EXPECT_EQ(resent[i].frame.send().stream_seq(), i + 1);
        EXPECT_EQ(resent[i].frame.send().stream_acked(), 0u);
        EXPECT_EQ(rec.acks[i].client_msg_id, ids[i]);
    }
    // The resends follow the new LoginResult.
    const auto logins = fc.frames(Envelope::kLogin);
    ASSERT_EQ(logins.size(), 2u);
    EXPECT_GT(resent[0].at, logins[1].at);
}

TEST(ClientSend, MessagesQueuedWhileOfflineGoOutAfterLogin) {
    FakeConnector fc;
    fc.set_script(auto_ack());
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    const std::string id = client.send_text(kPeer, "early");
    EXPECT_EQ(client.pending_sends(), 1u);
    ASSERT_TRUE(login(client, fc));
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == 1; }));
    EXPECT_EQ(rec.acks[0].client_msg_id, id);
}

TEST(ClientSend, OutboxIsBounded) {
    FakeConnector fc;
    auto opts = test_options(fc);
    opts.max_outbox = 3;
    imclient::Client client(opts);
    for (int i = 0; i < 3; ++i)
        client.send_text(kPeer, "x");
    try {
        client.send_text(kPeer, "one too many");
        FAIL() << "no error";
    } catch (const imclient::Error& e) {
        EXPECT_EQ(e.code(), imclient::ErrorCode::outbox_full);
    }
    EXPECT_THROW(client.send_text(0, "nobody"), imclient::Error);
}

TEST(ClientSend, TooLargeForTheFrameLimitFailsLocally) {
    FakeConnector fc;
    fc.set_script(auto_ack());
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    client.send_text(kPeer, std::string(70 * 1024, 'x'));  // LoginResult says 64 KiB
    client.send_text(kPeer, "small");
    ASSERT_TRUE(rec.wait([&] { return rec.failures.size() == 1 && rec.acks.size() == 1; }));
    EXPECT_EQ(rec.failures[0].code, imclient::ErrorCode::message_too_large);
    const auto sends = fc.frames(Envelope::kSend);
    ASSERT_EQ(sends.size(), 1u);
    EXPECT_EQ(sends[0].frame.send().stream_seq(), 1u);
}

TEST(ClientSend, SendFromFourThreads) {
    FakeConnector fc;
    fc.set_script(auto_ack());
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    constexpr int kThreads = 4;
    constexpr int kEach = 50;
    std::vector<std::thread> threads;
    std::mutex ids_mu;
    std::set<std::string> ids;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kEach; ++i) {
                auto id =
                    client.send_text(kPeer, "t" + std::to_string(t) + "-" + std::to_string(i));
                std::lock_guard lock(ids_mu);
                ids.insert(id);
            }
        });
    }
    for (auto& th : threads)
        th.join();
    EXPECT_EQ(ids.size(), std::size_t{kThreads * kEach});
    ASSERT_TRUE(rec.wait([&] { return rec.acks.size() == kThreads * kEach; }, 10s));
    const auto sends = fc.frames(Envelope::kSend);
    ASSERT_EQ(sends.size(), std::size_t{kThreads * kEach});
    std::map<std::string, int> last_of_thread;  // per sending thread, texts arrive in order
    for (std::size_t i = 0; i < sends.size(); ++i) {
        EXPECT_EQ(sends[i].frame.send().stream_seq(), i + 1);
        const std::string& text = sends[i].frame.send().text();
        const auto dash = text.find('-');
        const int n = std::stoi(text.substr(dash + 1));
        auto [it, fresh] = last_of_thread.try_emplace(text.substr(0, dash), n);
        if (!fresh) {
            EXPECT_GT(n, it->second);
            it->second = n;
        }
    }
    for (std::size_t i = 0; i < rec.acks.size(); ++i)
        EXPECT_EQ(rec.acks[i].seq, i + 1);
    EXPECT_EQ(client.pending_sends(), 0u);
}

}  // namespace
}  // namespace im::test

// The client's pure pieces: the outbox's stream logic, the JSON reader, URLs, cursor files.

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "imclient/cursor_store.hpp"
#include "imclient/types.hpp"
#include "json_lite.hpp"
#include "outbox.hpp"
#include "rest_login.hpp"

namespace imclient::detail {
namespace {

using namespace std::chrono_literals;

OutMessage msg(std::uint64_t peer, char id) {
    OutMessage m;
    m.peer = peer;
    m.client_msg_id = std::string(16, id);
    m.text = std::string(1, id);
    return m;
}

struct Wire {
    struct Sent {
        std::string id;
        std::uint64_t stream_seq;
        std::uint64_t acked;
        std::uint64_t rid;
    };
    std::vector<Sent> sent;
    std::uint64_t next_rid = 100;
    Outbox::Transmit transmit() {
        return [this](const OutMessage& m, std::uint64_t acked) {
            sent.push_back({m.client_msg_id, m.stream_seq, acked, ++next_rid});
            return next_rid;
        };
    }
};

TEST(Outbox, NumbersStreamsPerPeerAndCarriesAcked) {
    Outbox box({});
    Wire w;
    const auto now = Clock::now();
    box.add(msg(2, 'a'));
    box.add(msg(2, 'b'));
    box.add(msg(3, 'c'));
    box.pump(now, w.transmit());
    ASSERT_EQ(w.sent.size(), 3u);
    EXPECT_EQ(w.sent[0].stream_seq, 1u);
    EXPECT_EQ(w.sent[1].stream_seq, 2u);
    EXPECT_EQ(w.sent[2].stream_seq, 1u);  // another conversation, another stream
    ASSERT_TRUE(box.finish(std::string(16, 'a')));
    EXPECT_EQ(box.stream_acked(2), 1u);
    box.add(msg(2, 'd'));
    box.pump(now, w.transmit());
    ASSERT_EQ(w.sent.size(), 4u);
    EXPECT_EQ(w.sent[3].stream_seq, 3u);
    EXPECT_EQ(w.sent[3].acked, 1u);
    EXPECT_FALSE(box.finish(std::string(16, 'a')));  // a duplicate answer
    EXPECT_EQ(box.size(), 3u);
}

TEST(Outbox, RetryResendsTheWholeStreamInOrderAndIgnoresStaleAnswers) {
    Outbox box({});
    Wire w;
    const auto now = Clock::now();
    for (char c : {'a', 'b', 'c'})
        box.add(msg(2, c));
    box.pump(now, w.transmit());
    ASSERT_TRUE(box.finish(std::string(16, 'a')));
    EXPECT_TRUE(box.retry(std::string(16, 'b'), w.sent[1].rid, true, 2, now));
    EXPECT_FALSE(box.retry(std::string(16, 'c'), w.sent[2].rid, true, 2, now));  // stale
    box.pump(now, w.transmit());
    ASSERT_EQ(w.sent.size(), 5u);
    EXPECT_EQ(w.sent[3].id, std::string(16, 'b'));
    EXPECT_EQ(w.sent[3].stream_seq, 2u);
    EXPECT_EQ(w.sent[3].acked, 1u);
    EXPECT_EQ(w.sent[4].id, std::string(16, 'c'));
    EXPECT_EQ(w.sent[4].stream_seq, 3u);
}

TEST(Outbox, OutOfOrderWithAnotherExpectedNumberRenumbers) {
    Outbox box({});
    Wire w;
    const auto now = Clock::now();
    for (char c : {'a', 'b'})
        box.add(msg(2, c));
    box.pump(now, w.transmit());
    // The owner already consumed 1 and 2 (answers lost) and expects 3.
    EXPECT_TRUE(box.retry(std::string(16, 'a'), w.sent[0].rid, true, 3, now));
    box.pump(now, w.transmit());
    ASSERT_EQ(w.sent.size(), 4u);
    EXPECT_EQ(w.sent[2].id, std::string(16, 'a'));
    EXPECT_EQ(w.sent[2].stream_seq, 3u);
    EXPECT_EQ(w.sent[3].stream_seq, 4u);
}

TEST(Outbox, RetryableErrorsBackOffAndTimeoutsRetry) {
    Outbox box({256, 1000ms, 100ms, 1000ms});
    Wire w;
    const auto now = Clock::now();
    box.add(msg(2, 'a'));
    box.pump(now, w.transmit());
    EXPECT_TRUE(box.retry(std::string(16, 'a'), w.sent[0].rid, false, 0, now));
    box.pump(now + 50ms, w.transmit());
    EXPECT_EQ(w.sent.size(), 1u);  // still backing off
    box.pump(now + 100ms, w.transmit());
    ASSERT_EQ(w.sent.size(), 2u);
    box.expire(now + 1050ms);  // not yet
    box.pump(now + 1050ms, w.transmit());
    EXPECT_EQ(w.sent.size(), 2u);
    box.expire(now + 1101ms);
    box.pump(now + 1101ms + 200ms, w.transmit());  // second failure: 200 ms backoff
    ASSERT_EQ(w.sent.size(), 3u);
    EXPECT_EQ(w.sent[2].stream_seq, 1u);
}

TEST(Outbox, RateLimitedWaitsForTheServersHintThenRestartsSlowly) {
    Outbox box({256, 10000ms, 100ms, 5000ms});
    Wire w;
    const auto now = Clock::now();
    for (char c : {'a', 'b', 'c', 'd', 'e'})
        box.add(msg(2, c));
    box.pump(now, w.transmit());
    ASSERT_EQ(w.sent.size(), 5u);
    // RATE_LIMITED with retry_after_ms 700: not after the 100 ms backoff, only after 700 ms.
    EXPECT_TRUE(box.retry(std::string(16, 'a'), w.sent[0].rid, false, 0, now, 700ms));
    box.pump(now + 650ms, w.transmit());
    EXPECT_EQ(w.sent.size(), 5u) << "resent before the server's retry_after_ms";
    // Then one message in flight, doubling with every SENT, in order.
    box.pump(now + 700ms, w.transmit());
    ASSERT_EQ(w.sent.size(), 6u);
    EXPECT_EQ(w.sent[5].id, std::string(16, 'a'));
    EXPECT_EQ(w.sent[5].stream_seq, 1u);
    ASSERT_TRUE(box.finish(std::string(16, 'a')));
    box.pump(now + 701ms, w.transmit());
    ASSERT_EQ(w.sent.size(), 8u);
    EXPECT_EQ(w.sent[6].id, std::string(16, 'b'));
    EXPECT_EQ(w.sent[7].id, std::string(16, 'c'));
    // A hint shorter than the backoff does not shorten it; the window starts at one again.
    EXPECT_TRUE(box.retry(std::string(16, 'b'), w.sent[6].rid, false, 0, now + 701ms, 10ms));
    box.pump(now + 750ms, w.transmit());
    EXPECT_EQ(w.sent.size(), 8u);  // backing off 100 ms
    box.pump(now + 801ms, w.transmit());
    ASSERT_EQ(w.sent.size(), 9u);
    EXPECT_EQ(w.sent[8].id, std::string(16, 'b'));
    // SENTs widen the window again: 1, 2, 4 ... up to max_in_flight.
    ASSERT_TRUE(box.finish(std::string(16, 'b')));
    box.pump(now + 802ms, w.transmit());
    ASSERT_EQ(w.sent.size(), 11u);
    EXPECT_EQ(w.sent[9].id, std::string(16, 'c'));
    EXPECT_EQ(w.sent[10].id, std::string(16, 'd'));
}

TEST(Outbox, RestartRenumbersFromOneAndWindowLimitsInFlight) {
    Outbox box({2, 1000ms, 100ms, 1000ms});
    Wire w;
    const auto now = Clock::now();
    for (char c : {'a', 'b', 'c'})
        box.add(msg(2, c));
    box.pump(now, w.transmit());
    EXPECT_EQ(w.sent.size(), 2u);  // window of 2
    box.restart_streams();
    w.sent.clear();
    box.pump(now, w.transmit());
    ASSERT_EQ(w.sent.size(), 2u);
    EXPECT_EQ(w.sent[0].id, std::string(16, 'a'));
    EXPECT_EQ(w.sent[0].stream_seq, 1u);
    EXPECT_EQ(w.sent[0].acked, 0u);
    ASSERT_TRUE(box.finish(std::string(16, 'a')));
    box.pump(now, w.transmit());
    ASSERT_EQ(w.sent.size(), 3u);
    EXPECT_EQ(w.sent[2].id, std::string(16, 'c'));
    EXPECT_EQ(w.sent[2].stream_seq, 3u);
}

TEST(Outbox, SessionBudgetIsSharedRoundRobinAndKeepsEachStreamInOrder) {
    Outbox box({});
    Wire w;
    const auto now = Clock::now();
    const std::map<std::uint64_t, std::string> ids{{2, "abcd"}, {3, "efgh"}, {4, "ijkl"}};
    std::map<char, std::uint64_t> peer_of_id;
    for (const auto& [peer, letters] : ids) {
        for (char c : letters) {
            box.add(msg(peer, c));
            peer_of_id[c] = peer;
        }
    }
    box.pump(now, w.transmit(), 6);  // 12 could go: each stream gets 2, its first two, in order
    ASSERT_EQ(w.sent.size(), 6u);
    std::map<std::uint64_t, std::string> sent_of;
    for (const auto& s : w.sent) {
        const auto peer = peer_of_id[s.id[0]];
        sent_of[peer] += s.id[0];
        EXPECT_EQ(s.stream_seq, sent_of[peer].size());
    }
    EXPECT_EQ(sent_of[2], "ab");
    EXPECT_EQ(sent_of[3], "ef");
    EXPECT_EQ(sent_of[4], "ij");
    box.pump(now, w.transmit(), 0);  // a spent budget sends nothing
    EXPECT_EQ(w.sent.size(), 6u);
    box.pump(now, w.transmit(), 100);  // a budget that covers everything: stream by stream
    ASSERT_EQ(w.sent.size(), 12u);
    EXPECT_EQ(w.sent[6].id[0], 'c');
    EXPECT_EQ(w.sent[6].stream_seq, 3u);
    EXPECT_EQ(w.sent[7].id[0], 'd');
    EXPECT_EQ(w.sent[8].id[0], 'g');
}

TEST(Outbox, RefusedMessagesAreHandedBackWithoutConsumingANumber) {
    Outbox box({});
    Wire w;
    box.add(msg(2, 'a'));
    box.add(msg(2, 'b'));
    auto refuse_a = [&](const OutMessage& m, std::uint64_t acked) -> std::uint64_t {
        if (m.client_msg_id[0] == 'a') return 0;
        return w.transmit()(m, acked);
    };
    const auto refused = box.pump(Clock::now(), refuse_a);
    ASSERT_EQ(refused.size(), 1u);
    EXPECT_EQ(refused[0].client_msg_id, std::string(16, 'a'));
    ASSERT_EQ(w.sent.size(), 1u);
    EXPECT_EQ(w.sent[0].stream_seq, 1u);
    EXPECT_EQ(box.size(), 1u);
}

TEST(JsonLite, ParsesTheLoginAnswer) {
    RestLoginResult r;
    parse_login_answer(
        201,
        R"({"token":"abc\u00e9\"","session_id":7,"expires_at":"x",)"
        R"( "user":{"id":18446744073709551615,"username":"alice"},"connectors":["h:1","h:2"]})",
        r);
    EXPECT_EQ(r.code, ErrorCode::none);
    EXPECT_EQ(r.token, "abc\xc3\xa9\"");
    EXPECT_EQ(r.user_id, 18446744073709551615ULL);
    EXPECT_EQ(r.connectors, (std::vector<std::string>{"h:1", "h:2"}));

    RestLoginResult e;
    parse_login_answer(429, R"({"error":{"code":"rate_limited","message":"slow down"}})", e);
    EXPECT_EQ(e.code, ErrorCode::rest_error);
    EXPECT_NE(e.message.find("rate_limited: slow down"), std::string::npos);

    RestLoginResult bad;
    parse_login_answer(201, "not json", bad);
    EXPECT_EQ(bad.code, ErrorCode::rest_error);
}

TEST(JsonLite, RejectsMalformedAndTooDeepInput) {
    EXPECT_FALSE(parse_json("{\"a\":}"));
    EXPECT_FALSE(parse_json("[1,2"));
    EXPECT_FALSE(parse_json("\"unterminated"));
    EXPECT_FALSE(parse_json("{} trailing"));
    EXPECT_FALSE(parse_json(std::string(100, '[') + std::string(100, ']')));
    EXPECT_TRUE(parse_json(" {\"a\": [true, false, null, -1.5e3, \"x\"]} "));
    EXPECT_EQ(json_quote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

TEST(RestUrl, ParsesSchemesHostsPortsAndPrefixes) {
    auto u = parse_rest_url("http://127.0.0.1:8080");
    ASSERT_TRUE(u);
    EXPECT_FALSE(u->tls);
    EXPECT_EQ(u->host, "127.0.0.1");
    EXPECT_EQ(u->port, "8080");
    EXPECT_EQ(u->base_path, "");
    u = parse_rest_url("https://im.example.com/api/");
    ASSERT_TRUE(u);
    EXPECT_TRUE(u->tls);
    EXPECT_EQ(u->port, "443");
    EXPECT_EQ(u->base_path, "/api");
    EXPECT_EQ(u->host_header, "im.example.com");
    u = parse_rest_url("http://[::1]:9/");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "::1");
    EXPECT_EQ(u->port, "9");
    EXPECT_FALSE(parse_rest_url("ftp://x"));
    EXPECT_FALSE(parse_rest_url("http://user@x"));
    EXPECT_FALSE(parse_rest_url("http://x:99999"));
}

TEST(CursorStore, FileStoreRoundTripsAndRejectsGarbage) {
    const auto dir =
        std::filesystem::temp_directory_path() / ("imclient-cursors-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "c").string();
    {
        FileCursorStore s(path);  // no file yet: empty
        EXPECT_EQ(s.sync_cursor(), 0u);
        s.set_owner(5);
        s.set_sync_cursor(99);
        s.set_delivered(10, 4);
        s.set_delivered(10, 3);  // never backwards
        s.set_read(10, 2);
        s.set_read(11, 1);
        EXPECT_TRUE(s.flush());
    }
    {
        FileCursorStore s(path);
        EXPECT_EQ(s.owner(), 5u);
        EXPECT_EQ(s.sync_cursor(), 99u);
        EXPECT_EQ(s.delivered(10), 4u);
        EXPECT_EQ(s.read(10), 2u);
        EXPECT_EQ(s.read(11), 1u);
        EXPECT_EQ(s.conversations().size(), 2u);
        s.clear();
        EXPECT_EQ(s.delivered(10), 0u);
    }
    std::ofstream(path) << "garbage\n";
    EXPECT_THROW(FileCursorStore{path}, std::runtime_error);
    std::filesystem::remove_all(dir);
}

TEST(Types, ConversationIdIsLowHigh) {
    EXPECT_EQ(conversation_id(2, 1), (1ULL << 32) | 2ULL);
    EXPECT_EQ(conversation_id(1, 2), (1ULL << 32) | 2ULL);
    EXPECT_EQ(peer_of(conversation_id(7, 3), 7), 3u);
    EXPECT_EQ(peer_of(conversation_id(7, 3), 3), 7u);
    EXPECT_STREQ(to_string(ErrorCode::out_of_order), "out_of_order");
    EXPECT_STREQ(to_string(State::auth_failed), "auth_failed");
}

}  // namespace
}  // namespace imclient::detail

// Abuse limits (issue 14, docs/OPERATIONS.md "Abuse limits") against the real binaries: each
// limit refuses with a clear answer (RATE_LIMITED with retry_after_ms, OVERLOADED, HTTP 429 with
// Retry-After), counts the refusal in a metric, and leaves everyone else alone.
//   im-connector: messages / receipts / typing per session and per user, connections per client
//   address, sessions.max, frames before login, the login timeout; imclient waits out RATE_LIMITED.
//   im-rest: requests per address and per token, connections per address, uploads per user
//   (at once and bytes per window).
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"
#include "im/wire/frame_codec.hpp"
#include "imclient/imclient.hpp"
#include "imclient_app.hpp"
#include "platform_test_util.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;
using client::Envelope;
using platform::eventually;
using platform::metric_value;

double metric(const std::string& host, std::uint16_t admin_port, const std::string& series) {
    HttpClient admin(host, admin_port);
    return metric_value(admin.get("/metrics").body, series);
}

double connector_metric(Cluster& cl, const std::string& series, int i = 0) {
    return metric(cl.connector_host(i), cl.connector_admin_port(i), series);
}

// Every frame in one write, so the connector reads them in one go (refusal counts are exact).
void send_together(RawClient& c, const std::vector<Envelope>& frames) {
    std::string bytes;
    for (const auto& f : frames) bytes += wire::encode_frame(f);
    c.send_bytes(bytes);
}

Envelope receipt(RawClient& c, std::uint64_t conv, std::uint64_t seq) {
    Envelope e;
    e.set_request_id(c.next_request_id());
    e.mutable_receipt()->set_conversation_id(conv);
    e.mutable_receipt()->set_kind(client::DELIVERED);
    e.mutable_receipt()->set_up_to_seq(seq);
    return e;
}

Envelope typing(RawClient& c, std::uint64_t peer) {
    Envelope e;
    e.set_request_id(c.next_request_id());
    e.mutable_typing()->set_peer_user_id(peer);
    return e;
}

std::optional<Envelope> answer_to(RawClient& c, std::uint64_t rid, std::chrono::milliseconds timeout = 10s) {
    return c.wait_for([rid](const Envelope& e) { return e.request_id() == rid; }, timeout);
}

// ---- im-connector: rates per session and per user --------------------------------------------

TEST(ConnectorLimits, MessagesOverTheSessionRateAreRateLimitedWithAHintAndPassAfterIt) {
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.messages_per_second=5", "sessions.messages_burst=5"}, "abuse-msg"});
    auto a = cl.user("flood");
    auto b = cl.user("calm");
    cl.befriend(a, b);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(0, b.token, "dev1");

    std::vector<Envelope> burst;
    for (std::uint64_t s = 1; s <= 20; ++s) burst.push_back(ca->make_send(b.id, "burst " + std::to_string(s), s));
    send_together(*ca, burst);
    int sent = 0, limited = 0;
    std::uint32_t max_hint = 0;
    for (std::size_t i = 0; i < burst.size(); ++i) {
        auto r = answer_to(*ca, burst[i].request_id());
        ASSERT_TRUE(r && r->has_send_result()) << "no SendResult for #" << i + 1;
        const auto& sr = r->send_result();
        if (i < 5) {
            EXPECT_EQ(sr.code(), client::ERROR_NONE) << "#" << i + 1 << " within the burst: " << sr.ShortDebugString();
            ++sent;
            continue;
        }
        EXPECT_EQ(sr.code(), client::RATE_LIMITED) << "#" << i + 1 << ": " << sr.ShortDebugString();
        if (sr.code() != client::RATE_LIMITED) continue;
        EXPECT_TRUE(sr.retryable());
        EXPECT_EQ(sr.client_msg_id(), burst[i].send().client_msg_id());
        EXPECT_GT(sr.retry_after_ms(), 0u);
        EXPECT_LE(sr.retry_after_ms(), 200u);  // one token every 200 ms
        EXPECT_NE(sr.message().find("session_messages"), std::string::npos) << sr.message();
        max_hint = std::max(max_hint, sr.retry_after_ms());
        ++limited;
    }
    std::printf("[ info   ] 20 sends in one write at 5/s, burst 5: %d SENT, %d RATE_LIMITED (hint <= %u ms)\n", sent,
                limited, max_hint);
    EXPECT_EQ(limited, 15);
    EXPECT_EQ(cl.stored_messages(conversation_id(a.id, b.id)), 5u) << "refused messages were stored";
    EXPECT_EQ(connector_metric(cl, "im_connector_refused_frames_total{limit=\"session_messages\"}"), 15.0);

    // Refused means not read for a while: a Send written right after the refusals is read only
    // once the hint has passed, and then a token is back and it passes.
    const auto t_refused = std::chrono::steady_clock::now();
    auto next = platform::send_text(*ca, b.id, "right after the refusals", 6, 5);
    const double waited_ms = platform::elapsed_ms(t_refused);
    std::printf("[ timing ] a Send written right after the refusals was answered after %.0f ms\n", waited_ms);
    EXPECT_EQ(next.code(), client::ERROR_NONE) << next.ShortDebugString();
    EXPECT_GE(waited_ms, 100) << "the connector went on reading a client it had just refused";
    // Another session on the same connector is not affected by the flood.
    for (std::uint64_t s = 1; s <= 5; ++s) {
        EXPECT_EQ(platform::send_text(*cb, a.id, "calm " + std::to_string(s), s, s - 1).code(), client::ERROR_NONE);
    }
    // After the hint, the flooder's next message passes too.
    std::this_thread::sleep_for(std::chrono::milliseconds(max_hint + 50));
    auto r = platform::send_text(*ca, b.id, "after the pause", 7, 6);
    EXPECT_EQ(r.code(), client::ERROR_NONE) << r.ShortDebugString();
    EXPECT_EQ(r.seq(), 12u);  // 6 of a's, 5 of b's, this one
}

TEST(ConnectorLimits, UserMessagesAreLimitedAcrossTheUsersSessionsOnTheConnector) {
    Cluster cl(ClusterOptions{1, {}, {}, {"users.messages_per_second=3", "users.messages_burst=3"}, "abuse-user"});
    auto a = cl.user("twodev");
    auto b = cl.user("peer");
    cl.befriend(a, b);
    auto phone = cl.connect(0, a.token, "dev1");
    auto laptop = cl.connect(0, cl.login_token(a, "laptop"), "laptop");
    auto cb = cl.connect(0, b.token, "dev1");
    // phone: 2 (budget 3 left 1); laptop: 2 -> its second is the user's fourth.
    EXPECT_EQ(platform::send_text(*phone, b.id, "p1", 1).code(), client::ERROR_NONE);
    EXPECT_EQ(platform::send_text(*phone, b.id, "p2", 2, 1).code(), client::ERROR_NONE);
    EXPECT_EQ(platform::send_text(*laptop, b.id, "l1", 1).code(), client::ERROR_NONE);
    auto refused = platform::send_text(*laptop, b.id, "l2", 2, 1);
    EXPECT_EQ(refused.code(), client::RATE_LIMITED) << refused.ShortDebugString();
    EXPECT_NE(refused.message().find("user_messages"), std::string::npos) << refused.message();
    EXPECT_GT(refused.retry_after_ms(), 0u);
    EXPECT_EQ(connector_metric(cl, "im_connector_refused_frames_total{limit=\"user_messages\"}"), 1.0);
    EXPECT_EQ(connector_metric(cl, "im_connector_refused_frames_total{limit=\"session_messages\"}"), 0.0);
    // Another user has a budget of its own.
    for (std::uint64_t s = 1; s <= 3; ++s) {
        EXPECT_EQ(platform::send_text(*cb, a.id, "b" + std::to_string(s), s, s - 1).code(), client::ERROR_NONE);
    }
}

TEST(ConnectorLimits, ReceiptsAndTypingOverTheRateAreRefusedReceiptsRetryableTypingNot) {
    Cluster cl(ClusterOptions{1,
                              {},
                              {},
                              {"sessions.receipts_per_second=2", "sessions.receipts_burst=2",
                               "sessions.typing_per_second=1", "sessions.typing_burst=1"},
                              "abuse-rcpt"});
    auto a = cl.user("reader");
    auto b = cl.user("writer");
    cl.befriend(a, b);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(0, b.token, "dev1");
    ASSERT_EQ(platform::send_text(*cb, a.id, "hello", 1).code(), client::ERROR_NONE);
    const auto conv = conversation_id(a.id, b.id);

    std::vector<Envelope> frames;
    for (int i = 0; i < 5; ++i) frames.push_back(receipt(*ca, conv, 1));
    for (int i = 0; i < 3; ++i) frames.push_back(typing(*ca, b.id));
    send_together(*ca, frames);
    int receipts_refused = 0, typing_refused = 0;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        const bool is_receipt = frames[i].has_receipt();
        const bool admitted = (is_receipt && i < 2) || (!is_receipt && i == 5);
        auto r = answer_to(*ca, frames[i].request_id(), admitted ? 300ms : 5s);
        if (admitted) {
            EXPECT_FALSE(r.has_value()) << "frame " << i << " within its burst was answered: " << r->ShortDebugString();
            continue;
        }
        ASSERT_TRUE(r && r->has_error()) << "frame " << i << " over the limit got no Error";
        EXPECT_EQ(r->error().code(), client::RATE_LIMITED);
        EXPECT_GT(r->error().retry_after_ms(), 0u);
        EXPECT_EQ(r->error().retryable(), is_receipt) << "receipts are resent, typing indicators dropped";
        (is_receipt ? receipts_refused : typing_refused)++;
    }
    EXPECT_EQ(receipts_refused, 3);
    EXPECT_EQ(typing_refused, 2);
    EXPECT_EQ(connector_metric(cl, "im_connector_refused_frames_total{limit=\"session_receipts\"}"), 3.0);
    EXPECT_EQ(connector_metric(cl, "im_connector_refused_frames_total{limit=\"session_typing\"}"), 2.0);
    // The admitted receipt reached the owner: b sees a's DELIVERED watermark; the admitted typing
    // indicator reached b, once.
    EXPECT_TRUE(cb->wait_for([&](const Envelope& e) { return e.has_receipt_event() && e.receipt_event().up_to_seq() == 1; }, 5s));
    EXPECT_TRUE(cb->wait_body(Envelope::kTypingEvent, 5s).has_value());
    EXPECT_FALSE(cb->wait_body(Envelope::kTypingEvent, 500ms).has_value());
}

TEST(ConnectorLimits, FramesOverTheSessionRateAreHandledThenTheSessionIsReadSlowly) {
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.frames_per_second=500", "sessions.frames_burst=10"}, "abuse-frames"});
    auto u = cl.user("pinger");
    auto c = cl.connect(0, u.token, "dev1");
    std::vector<Envelope> pings;
    for (int i = 0; i < 500; ++i) {
        Envelope e;
        e.set_request_id(c->next_request_id());
        e.mutable_ping()->set_client_time_ms(i);
        pings.push_back(e);
    }
    send_together(*c, pings);
    for (const auto& p : pings) {  // nothing is refused: every one is answered
        auto pong = answer_to(*c, p.request_id(), 5s);
        ASSERT_TRUE(pong && pong->has_pong()) << "Ping " << p.ping().client_time_ms() << " got no Pong";
    }
    // 490 frames over the burst at 500 a second: the session is not read for about a second.
    const auto t0 = std::chrono::steady_clock::now();
    Envelope ping;
    ping.set_request_id(c->next_request_id());
    ping.mutable_ping();
    c->send(ping);
    ASSERT_TRUE(answer_to(*c, ping.request_id(), 5s).has_value());
    const double ms = platform::elapsed_ms(t0);
    std::printf("[ timing ] 500 Pings at once (500/s, burst 10): all answered; the next one waited %.0f ms\n", ms);
    EXPECT_GE(ms, 600) << "a flood of frames was not slowed down";
    EXPECT_GE(connector_metric(cl, "im_connector_throttled_frames_total"), 480.0);
    EXPECT_FALSE(c->closed());
}

TEST(ConnectorLimits, ASessionAtItsPendingRequestBoundIsNotReadUntilAnAnswerOrASecond) {
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.max_pending_requests=2", "links.timeout=10s"}, "abuse-pending"});
    auto a = cl.user("busy");
    auto ca = cl.connect(0, a.token, "dev1");
    // The transfer stops answering: two syncs stay in flight, the third is over the bound.
    const pid_t transfer = cl.transfer(0).pid();
    ASSERT_EQ(::kill(transfer, SIGSTOP), 0);
    struct Resume {
        pid_t pid;
        ~Resume() { ::kill(pid, SIGCONT); }
    } resume{transfer};
    std::vector<Envelope> syncs;
    for (int i = 0; i < 3; ++i) {
        Envelope e;
        e.set_request_id(ca->next_request_id());
        e.mutable_sync_conversations()->set_cursor(0);
        syncs.push_back(e);
    }
    send_together(*ca, syncs);
    auto over = answer_to(*ca, syncs[2].request_id(), 5s);
    ASSERT_TRUE(over && over->has_error()) << "the third request got no answer";
    EXPECT_EQ(over->error().code(), client::OVERLOADED);
    EXPECT_TRUE(over->error().retryable());
    const auto t0 = std::chrono::steady_clock::now();
    Envelope ping;
    ping.set_request_id(ca->next_request_id());
    ping.mutable_ping();
    ca->send(ping);
    auto pong = answer_to(*ca, ping.request_id(), 5s);
    const double ms = platform::elapsed_ms(t0);
    std::printf("[ timing ] a Ping written after the OVERLOADED was answered after %.0f ms (no answer frees a place)\n", ms);
    ASSERT_TRUE(pong.has_value());
    EXPECT_GE(ms, 700) << "the connector went on reading a session at its pending bound";
    // Again, and this time the transfer answers after 300 ms: reading resumes with that answer.
    Envelope third;
    third.set_request_id(ca->next_request_id());
    third.mutable_sync_conversations()->set_cursor(0);
    ca->send(third);
    auto over2 = answer_to(*ca, third.request_id(), 5s);
    ASSERT_TRUE(over2 && over2->has_error() && over2->error().code() == client::OVERLOADED);
    const auto t1 = std::chrono::steady_clock::now();
    ping.set_request_id(ca->next_request_id());
    ca->send(ping);
    std::this_thread::sleep_for(300ms);
    ::kill(transfer, SIGCONT);
    auto pong2 = answer_to(*ca, ping.request_id(), 5s);
    const double ms2 = platform::elapsed_ms(t1);
    std::printf("[ timing ] with an answer after 300 ms the Ping was answered after %.0f ms\n", ms2);
    ASSERT_TRUE(pong2.has_value());
    EXPECT_LT(ms2, 800) << "reading did not resume when an answer freed a place";
    EXPECT_TRUE(answer_to(*ca, syncs[0].request_id(), 5s).has_value());
    EXPECT_EQ(connector_metric(cl, "im_connector_refused_frames_total{limit=\"pending_requests\"}"), 2.0);
}

// ---- im-connector: connections ---------------------------------------------------------------

// A connection the connector refused at accept: the Error frame it got, then the close.
std::optional<Envelope> refused_at_accept(std::uint16_t port) {
    RawClient c(port);
    auto e = c.wait_body(Envelope::kError, 5s);
    if (!c.wait_closed(5s)) return std::nullopt;
    return e;
}

TEST(ConnectorLimits, ConnectionsPerAddressAreBoundedWithARateLimitedFrame) {
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.max_per_address=3"}, "abuse-addr"});
    const auto port = cl.connector_port(0);
    // The fixture's own probe of the port counts until the connector has seen it close.
    ASSERT_TRUE(eventually([&] { return connector_metric(cl, "im_connector_sessions") == 0.0; }));
    auto u = cl.user("many");
    auto first = cl.connect(0, u.token, "dev1");
    auto second = std::make_unique<RawClient>(port);
    RawClient third(port);
    ASSERT_TRUE(platform::ping_ok(*second));  // Ping is answered before a login
    ASSERT_TRUE(platform::ping_ok(third));
    auto refused = refused_at_accept(port);
    ASSERT_TRUE(refused.has_value()) << "the fourth connection from 127.0.0.1 was not refused with a frame";
    EXPECT_EQ(refused->error().code(), client::RATE_LIMITED);
    EXPECT_TRUE(refused->error().retryable());
    EXPECT_GT(refused->error().retry_after_ms(), 0u);
    EXPECT_NE(refused->error().message().find("sessions.max_per_address"), std::string::npos);
    EXPECT_EQ(connector_metric(cl, "im_connector_refused_connections_total{limit=\"connections_per_address\"}"), 1.0);
    EXPECT_TRUE(platform::ping_ok(*first)) << "the open sessions stay";
    // A closed connection frees its place.
    second.reset();
    EXPECT_TRUE(eventually(
        [&] {
            RawClient c(port);
            return platform::ping_ok(c, 1s);
        },
        10s));
}

TEST(ConnectorLimits, AFullConnectorRefusesWithOverloaded) {
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.max=2"}, "abuse-max"});
    const auto port = cl.connector_port(0);
    ASSERT_TRUE(eventually([&] { return connector_metric(cl, "im_connector_sessions") == 0.0; }));
    RawClient one(port), two(port);
    ASSERT_TRUE(platform::ping_ok(one));
    ASSERT_TRUE(platform::ping_ok(two));
    auto refused = refused_at_accept(port);
    ASSERT_TRUE(refused.has_value()) << "the connection over sessions.max got no frame";
    EXPECT_EQ(refused->error().code(), client::OVERLOADED);
    EXPECT_TRUE(refused->error().retryable());
    EXPECT_EQ(connector_metric(cl, "im_connector_rejected_sessions_total"), 1.0);
}

TEST(ConnectorLimits, FramesBeforeLoginAreBoundedThenTheConnectionIsClosed) {
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.max_frames_before_login=4"}, "abuse-prelogin"});
    auto u = cl.user("early");
    RawClient raw(cl.connector_port(0));
    std::vector<Envelope> frames;
    for (std::uint64_t s = 1; s <= 8; ++s) frames.push_back(raw.make_send(u.id + 1, "too early", s));
    send_together(raw, frames);
    int not_logged_in = 0;
    std::string last;
    while (auto e = raw.wait_body(Envelope::kError, 2s)) {
        EXPECT_EQ(e->error().code(), client::NOT_LOGGED_IN);
        ++not_logged_in;
        last = e->error().message();
    }
    EXPECT_TRUE(raw.wait_closed(5s)) << "the connection stays open after " << not_logged_in << " frames";
    EXPECT_EQ(not_logged_in, 5) << "4 answered NOT_LOGGED_IN, the 5th closes the connection";
    EXPECT_NE(last.find("too many frames before login"), std::string::npos) << last;
    EXPECT_EQ(connector_metric(cl, "im_connector_refused_connections_total{limit=\"frames_before_login\"}"), 1.0);
    // A client that logs in first is not affected.
    auto ok = cl.connect(0, u.token, "dev1");
    EXPECT_TRUE(platform::ping_ok(*ok));
}

TEST(ConnectorLimits, AClientThatDoesNotLogInInTimeIsClosedAndCounted) {
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.login_timeout=1s"}, "abuse-login-time"});
    RawClient raw(cl.connector_port(0));
    const auto t0 = std::chrono::steady_clock::now();
    auto e = raw.wait_body(Envelope::kError, 5s);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->error().code(), client::NOT_LOGGED_IN);
    EXPECT_TRUE(raw.wait_closed(5s));
    const double ms = platform::elapsed_ms(t0);
    std::printf("[ timing ] closed %.0f ms after connecting (sessions.login_timeout=1s, 1 s sweep)\n", ms);
    EXPECT_LT(ms, 3000);
    EXPECT_EQ(connector_metric(cl, "im_connector_refused_connections_total{limit=\"login_timeout\"}"), 1.0);
}

// ---- imclient waits out RATE_LIMITED ---------------------------------------------------------

TEST(ConnectorLimits, ImclientWaitsOutRateLimitedAndDeliversEverythingOnceInOrder) {
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.messages_per_second=10", "sessions.messages_burst=10"}, "abuse-imclient"});
    auto a = cl.user("burster");
    auto b = cl.user("receiver");
    cl.befriend(a, b);
    auto rb = cl.connect(0, b.token, "dev1");
    imclient::Options o;
    o.rest_url = "http://127.0.0.1:" + std::to_string(cl.rest().port());
    o.connectors = {cl.connector_address(0)};
    o.device_id = "app";
    App app;
    app.client = std::make_unique<imclient::Client>(o);
    app.ev.attach(*app.client);
    app.info = await(app.client->login(a.username, a.password));

    constexpr int kMessages = 60;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kMessages; ++i) app->send_text(b.id, "m" + std::to_string(i));
    ASSERT_TRUE(app.ev.wait([&] { return app.ev.acks.size() == kMessages; }, 60s)) << app.ev.ack_count() << " acked";
    const double ms = platform::elapsed_ms(t0);
    EXPECT_EQ(app.ev.locked([&] { return app.ev.failures.size(); }), 0u) << "a rate-limited send was reported failed";
    for (std::uint64_t seq = 1; seq <= kMessages; ++seq) {
        auto d = rb->wait_for([&](const Envelope& e) { return e.has_deliver() && e.deliver().seq() == seq; }, 10s);
        ASSERT_TRUE(d.has_value()) << "seq " << seq << " not delivered";
        EXPECT_EQ(d->deliver().text(), "m" + std::to_string(seq - 1)) << "out of order";
    }
    EXPECT_FALSE(rb->wait_body(Envelope::kDeliver, 300ms).has_value()) << "a message was delivered twice";
    const double refused = connector_metric(cl, "im_connector_refused_frames_total{limit=\"session_messages\"}");
    std::printf("[ info   ] %d messages at 10/s (burst 10) took %.0f ms; %.0f sends refused RATE_LIMITED and resent\n",
                kMessages, ms, refused);
    EXPECT_GT(refused, 0.0);
    // The slow start after a refusal: a few refused resends per message, not the whole backlog
    // again at every retry (about 1,200 for these 60 without it).
    EXPECT_LT(refused, 500.0);
    EXPECT_GE(ms, 4000) << "(60 - 10 burst) / 10 per second = 5 s at least";
    EXPECT_EQ(cl.stored_messages(conversation_id(a.id, b.id)), static_cast<std::uint64_t>(kMessages));
}

// ---- im-rest ---------------------------------------------------------------------------------

double rest_metric(RestServer& rest, const std::string& series) {
    return metric("127.0.0.1", rest.admin_port(), series);
}

TEST(RestLimits, RequestsPerAddressGet429WithRetryAfter) {
    TestDatabase db;
    RestServer rest(db, "im:t" + unique_suffix() + ":",
                    RestOptions{{"rate_limit.address_per_second=2", "rate_limit.address_burst=5"}, "abuse-rest-addr"});
    auto http = rest.client();
    int ok = 0;
    HttpResult last;
    for (int i = 0; i < 8; ++i) {
        last = http->get("/v1/users/me");  // 401 without a token: still a request from this address
        if (last.status == 401) ++ok;
        else break;
    }
    EXPECT_EQ(ok, 5);
    EXPECT_EQ(last.status, 429) << last.body;
    EXPECT_EQ(last.json()["error"]["code"], "rate_limited");
    EXPECT_GE(std::stoi(last.header("retry-after")), 1);
    EXPECT_EQ(http->get("/healthz").status, 200) << "probes are not limited";
    EXPECT_GE(rest_metric(rest, "im_rest_rate_limited_total{limit=\"requests_per_address\"}"), 1.0);
    std::this_thread::sleep_for(600ms);  // one token every 500 ms
    EXPECT_EQ(http->get("/v1/users/me").status, 401);
}

TEST(RestLimits, RequestsPerTokenGet429WithRetryAfterOtherTokensGoOn) {
    TestDatabase db;
    RestServer rest(db, "im:t" + unique_suffix() + ":",
                    RestOptions{{"rate_limit.token_per_second=1", "rate_limit.token_burst=3"}, "abuse-rest-token"});
    auto http = rest.client();
    auto a = register_and_login(*http, "tok_a");
    auto b = register_and_login(*http, "tok_b");
    for (int i = 0; i < 3; ++i) EXPECT_EQ(http->get("/v1/users/me", a.token).status, 200) << i;
    auto r = http->get("/v1/users/me", a.token);
    EXPECT_EQ(r.status, 429) << r.body;
    EXPECT_EQ(r.json()["error"]["code"], "rate_limited");
    EXPECT_GE(std::stoi(r.header("retry-after")), 1);
    EXPECT_EQ(http->get("/v1/users/me", b.token).status, 200) << "another token has its own budget";
    EXPECT_EQ(rest_metric(rest, "im_rest_rate_limited_total{limit=\"requests_per_token\"}"), 1.0);
}

// A raw keep-alive HTTP connection (its requests are written by hand).
class RawHttp {
public:
    explicit RawHttp(std::uint16_t port) : socket_(io_) {
        socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
        timeval tv{5, 0};
        ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    void write(const std::string& bytes) { boost::asio::write(socket_, boost::asio::buffer(bytes)); }
    // What arrives until the peer closes or `first_only` and something came (5 s at most).
    std::string read(bool first_only) {
        std::string out;
        char buf[4096];
        for (;;) {
            boost::system::error_code ec;
            const auto n = socket_.read_some(boost::asio::buffer(buf), ec);
            if (ec) break;
            out.append(buf, n);
            if (first_only) break;
        }
        return out;
    }

private:
    boost::asio::io_context io_;
    boost::asio::ip::tcp::socket socket_;
};

TEST(RestLimits, ConnectionsPerAddressAreBoundedWithA429) {
    TestDatabase db;
    RestServer rest(db, "im:t" + unique_suffix() + ":", RestOptions{{"http.max_connections_per_address=2"}, "abuse-rest-conn"});
    // The fixture's own probe of the port counts until im-rest has seen it close.
    ASSERT_TRUE(eventually([&] { return rest_metric(rest, "im_http_connections") == 0.0; }));
    auto one = std::make_unique<RawHttp>(rest.port());
    RawHttp two(rest.port());
    const std::string get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    one->write(get);
    two.write(get);
    EXPECT_NE(one->read(true).find("200 OK"), std::string::npos);
    EXPECT_NE(two.read(true).find("200 OK"), std::string::npos);
    RawHttp three(rest.port());
    const auto refused = three.read(false);  // the server closes it after its answer
    EXPECT_NE(refused.find("HTTP/1.1 429"), std::string::npos) << refused;
    EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos) << refused;
    EXPECT_NE(refused.find("rate_limited"), std::string::npos) << refused;
    EXPECT_EQ(rest_metric(rest, "im_rest_rate_limited_total{limit=\"connections_per_address\"}"), 1.0);
    one.reset();
    EXPECT_TRUE(eventually([&] {
        RawHttp again(rest.port());
        again.write(get);
        return again.read(true).find("200 OK") != std::string::npos;
    }));
}

HttpResult upload(HttpClient& http, const std::string& token, const std::string& body) {
    return http.request("POST", "/v1/files?name=f.bin", body,
                        {{"Authorization", "Bearer " + token}, {"Content-Type", "application/octet-stream"}});
}

TEST(RestLimits, UploadsPerUserAtOnceAndBytesPerWindow) {
    TestDatabase db;
    RestServer rest(db, "im:t" + unique_suffix() + ":",
                    RestOptions{{"files.max_uploads_per_user=1", "files.max_bytes=1000", "files.upload_bytes_per_user=1500",
                                 "files.upload_bytes_window=1h"},
                                "abuse-rest-upload"});
    auto http = rest.client();
    auto a = register_and_login(*http, "up_a");
    auto b = register_and_login(*http, "up_b");
    {
        // a's first upload streams slowly (its body is not complete): a second one of a's waits.
        RawHttp slow(rest.port());
        slow.write("POST /v1/files?name=slow.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + a.token +
                   "\r\nContent-Length: 900\r\n\r\n" + std::string(100, 's'));
        const auto tmp = std::filesystem::path(rest.files_dir()) / "tmp";
        ASSERT_TRUE(eventually([&] {  // its temporary file exists: it holds a's upload slot
            return std::distance(std::filesystem::directory_iterator(tmp), std::filesystem::directory_iterator{}) == 1;
        }));
        auto busy = upload(*http, a.token, "x");
        EXPECT_EQ(busy.status, 429) << busy.body;
        EXPECT_EQ(busy.json()["error"]["code"], "rate_limited");
        EXPECT_EQ(busy.header("retry-after"), "1");
        EXPECT_EQ(upload(*http, b.token, "another user's").status, 201) << "b has uploads of its own";
        EXPECT_EQ(rest_metric(rest, "im_rest_rate_limited_total{limit=\"uploads_per_user\"}"), 1.0);
        slow.write(std::string(800, 's'));  // completes it (900 bytes)
        EXPECT_NE(slow.read(true).find("201"), std::string::npos);
        // Its places are given back once the upload object is gone (just after the answer).
        EXPECT_TRUE(eventually([&] { return rest_metric(rest, "im_rest_file_uploads_in_flight") == 0.0; }));
    }
    // 900 of a's 1500 bytes this hour are used: 700 more is refused (and not counted), 600 fits.
    auto over = upload(*http, a.token, std::string(700, 'o'));
    EXPECT_EQ(over.status, 429) << over.body;
    EXPECT_GE(std::stoi(over.header("retry-after")), 1);
    EXPECT_EQ(rest_metric(rest, "im_rest_rate_limited_total{limit=\"upload_bytes_per_user\"}"), 1.0);
    EXPECT_EQ(upload(*http, a.token, std::string(600, 'f')).status, 201);
    EXPECT_EQ(upload(*http, a.token, "1").status, 429) << "1500 of 1500 used";
    EXPECT_EQ(upload(*http, b.token, std::string(600, 'b')).status, 201);
}

}  // namespace
}  // namespace im::test

// Session life cycle: login (token and REST), kicks, auth failures, heartbeat, reconnects.

#include <gtest/gtest.h>

#include <thread>

#include "client_harness.hpp"
#include "http_test_server.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;
using imclient::State;

TEST(ClientSession, LoginSendsLoginFrameAndResolvesWithLoginResult) {
    FakeConnector fc;
    fc.user_id = 42;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    imclient::LoginInfo info;
    ASSERT_TRUE(login(client, fc, &info));
    EXPECT_EQ(info.user_id, 42u);
    EXPECT_EQ(info.login_epoch, 1u);
    EXPECT_EQ(info.connector_id, "fake");
    EXPECT_EQ(info.connector, fc.address());
    EXPECT_EQ(client.user_id(), 42u);
    EXPECT_EQ(client.state(), State::connected);

    const auto logins = fc.frames(Envelope::kLogin);
    ASSERT_EQ(logins.size(), 1u);
    EXPECT_EQ(logins[0].frame.login().token(), "tok");
    EXPECT_EQ(logins[0].frame.login().device_id(), "test-device");
    EXPECT_EQ(logins[0].frame.login().protocol_version(), 1u);
    EXPECT_EQ(logins[0].frame.login().client_version(), "imclient/0.1");
    EXPECT_NE(logins[0].frame.request_id(), 0u);
    EXPECT_EQ(fc.frames().front().frame.body_case(), Envelope::kLogin);  // the first frame

    // Every login syncs the conversation list from the stored cursor.
    ASSERT_TRUE(fc.wait_count(Envelope::kSyncConversations, 1));
    EXPECT_EQ(fc.frames(Envelope::kSyncConversations)[0].frame.sync_conversations().cursor(), 0u);
    EXPECT_TRUE(rec.wait(
        [&] { return !rec.states.empty() && rec.states.back().first == State::connected; }));
}

TEST(ClientSession, RestLoginThenConnectsToTheAnsweredConnector) {
    FakeConnector fc;
    fc.user_id = 7;
    HttpTestServer rest([&](const HttpTestRequest& req) {
        if (req.method != "POST" || req.target != "/v1/sessions") return HttpTestReply{404, "{}"};
        return HttpTestReply{
            201, R"({"token":"T-123","session_id":3,"user":{"id":7,"username":"alice"},)"
                 R"("connectors":[")" +
                     fc.address() + R"("]})"};
    });
    auto opts = test_options(fc);
    opts.connectors.clear();  // use the login answer
    opts.rest_url = "http://127.0.0.1:" + std::to_string(rest.port());
    imclient::Client client(opts);
    auto f = client.login("alice", "secret \"pw\"");
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    const auto info = f.get();
    EXPECT_EQ(info.user_id, 7u);
    EXPECT_EQ(info.token, "T-123");

    const auto reqs = rest.requests();
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_EQ(reqs[0].content_type, "application/json");
    EXPECT_NE(reqs[0].body.find(R"("username":"alice")"), std::string::npos);
    EXPECT_NE(reqs[0].body.find(R"("password":"secret \"pw\"")"), std::string::npos);
    EXPECT_NE(reqs[0].body.find(R"("device_id":"test-device")"), std::string::npos);
    ASSERT_EQ(fc.count(Envelope::kLogin), 1u);
    EXPECT_EQ(fc.frames(Envelope::kLogin)[0].frame.login().token(), "T-123");
}

TEST(ClientSession, RestLoginRefusedIsAuthFailed) {
    FakeConnector fc;
    HttpTestServer rest([](const HttpTestRequest&) {
        return HttpTestReply{401, R"({"error":{"code":"invalid_credentials","message":"no"}})"};
    });
    auto opts = test_options(fc);
    opts.rest_url = "http://127.0.0.1:" + std::to_string(rest.port());
    imclient::Client client(opts);
    auto f = client.login("alice", "wrong");
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    try {
        f.get();
        FAIL() << "login succeeded";
    } catch (const imclient::Error& e) {
        EXPECT_EQ(e.code(), imclient::ErrorCode::unauthenticated);
        EXPECT_NE(std::string(e.what()).find("invalid_credentials"), std::string::npos);
    }
    EXPECT_EQ(client.state(), State::auth_failed);
    EXPECT_EQ(fc.connections(), 0);
}

TEST(ClientSession, TokenRefusedByConnectorIsAuthFailedWithoutRetry) {
    FakeConnector fc;
    fc.refuse_login = true;
    imclient::Client client(test_options(fc));
    auto f = client.login_with_token("bad", 0, {fc.address()});
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_THROW(f.get(), imclient::Error);
    EXPECT_EQ(client.state(), State::auth_failed);
    std::this_thread::sleep_for(400ms);  // 8x reconnect_min
    EXPECT_EQ(fc.connections(), 1);
}

TEST(ClientSession, NoConnectorReachableFailsTheLogin) {
    std::string dead;
    {
        FakeConnector gone;
        dead = gone.address();
    }
    FakeConnector fc;
    auto opts = test_options(fc);
    imclient::Client client(opts);
    auto f = client.login_with_token("tok", 0, {dead});
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    try {
        f.get();
        FAIL() << "login succeeded";
    } catch (const imclient::Error& e) {
        EXPECT_EQ(e.code(), imclient::ErrorCode::unreachable);
    }
    EXPECT_EQ(client.state(), State::closed);
}

TEST(ClientSession, KickReplacedDoesNotReconnect) {
    FakeConnector fc;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    Envelope kick;
    kick.mutable_kick()->set_reason(im::client::REPLACED);
    kick.mutable_kick()->set_message("logged in elsewhere");
    fc.send(kick);
    ASSERT_TRUE(
        rec.wait([&] { return !rec.states.empty() && rec.states.back().first == State::kicked; }));
    std::this_thread::sleep_for(500ms);  // 10x reconnect_min
    EXPECT_EQ(fc.connections(), 1);
    EXPECT_EQ(client.state(), State::kicked);
}

TEST(ClientSession, KickReconnectGoesToTheNextConnectorAtOnce) {
    FakeConnector a;
    FakeConnector b;
    auto opts = test_options(a);
    opts.reconnect_min = 3000ms;  // a backoff would be visible
    opts.reconnect_max = 5000ms;
    imclient::Client client(opts);
    auto f = client.login_with_token("tok", 0, {a.address(), b.address()});
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    f.get();
    Envelope kick;
    kick.mutable_kick()->set_reason(im::client::RECONNECT);
    const auto t0 = Clock::now();
    a.send(kick);
    ASSERT_TRUE(b.wait_count(Envelope::kLogin, 1, 2000ms));
    EXPECT_LT(Clock::now() - t0, 1500ms);
    EXPECT_EQ(a.connections(), 1);
}

TEST(ClientSession, DroppedConnectionReconnectsWithBackoff) {
    FakeConnector fc;
    auto opts = test_options(fc);
    opts.reconnect_min = 400ms;
    opts.reconnect_max = 1000ms;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(opts);
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    const auto t0 = Clock::now();
    fc.drop();
    ASSERT_TRUE(fc.wait_count(Envelope::kLogin, 2, 5000ms));
    const auto times = fc.connect_times();
    ASSERT_EQ(times.size(), 2u);
    EXPECT_GE(times[1] - t0, 200ms);  // equal jitter: at least half of reconnect_min
    ASSERT_TRUE(rec.wait([&] { return rec.states.back().first == State::connected; }));
    EXPECT_TRUE(rec.saw_state(State::reconnecting));
}

TEST(ClientSession, HeartbeatPingIsSent) {
    FakeConnector fc;
    fc.heartbeat_s = 1;
    imclient::Client client(test_options(fc));
    ASSERT_TRUE(login(client, fc));
    EXPECT_TRUE(fc.wait_count(Envelope::kPing, 1, 2500ms));
    EXPECT_TRUE(fc.wait_count(Envelope::kPing, 2, 2500ms));
}

TEST(ClientSession, SilentServerMakesTheClientReconnect) {
    FakeConnector fc;
    fc.heartbeat_s = 1;
    fc.answer_pings = false;  // nothing comes back after LoginResult
    imclient::Client client(test_options(fc));
    ASSERT_TRUE(login(client, fc));
    const auto t0 = Clock::now();
    ASSERT_TRUE(fc.wait_count(Envelope::kLogin, 2, 8000ms));
    EXPECT_GE(Clock::now() - t0, 2000ms);  // 3 intervals of silence
    EXPECT_EQ(fc.connections(), 2);
}

TEST(ClientSession, CloseFailsPendingRequestsAndStops) {
    FakeConnector fc;
    fc.set_script([](FakeConnector& f, int conn, const Envelope& e) {
        if (e.body_case() == Envelope::kSyncConversations && e.sync_conversations().cursor() == 0 &&
            f.count(Envelope::kSyncConversations) > 1) {
            return true;  // never answer the app's request
        }
        (void)conn;
        return false;
    });
    imclient::Client client(test_options(fc));
    ASSERT_TRUE(login(client, fc));
    ASSERT_TRUE(fc.wait_count(Envelope::kSyncConversations, 1));
    auto convs = client.conversations();
    ASSERT_TRUE(fc.wait_count(Envelope::kSyncConversations, 2));
    client.close();
    ASSERT_EQ(convs.wait_for(2s), std::future_status::ready);
    try {
        convs.get();
        FAIL() << "no error";
    } catch (const imclient::Error& e) {
        EXPECT_EQ(e.code(), imclient::ErrorCode::closed);
    }
    EXPECT_EQ(client.state(), State::closed);
}

TEST(ClientSession, TypingAndPresenceEvents) {
    FakeConnector fc;
    Recorder rec;  // outlives the client: callbacks may run until it is gone
    imclient::Client client(test_options(fc));
    rec.attach(client);
    ASSERT_TRUE(login(client, fc));
    client.typing(2);
    ASSERT_TRUE(fc.wait_count(Envelope::kTyping, 1));
    EXPECT_EQ(fc.frames(Envelope::kTyping)[0].frame.typing().peer_user_id(), 2u);
    Envelope t;
    t.mutable_typing_event()->set_conversation_id(imclient::conversation_id(1, 2));
    t.mutable_typing_event()->set_user_id(2);
    Envelope p;
    p.mutable_presence()->set_user_id(2);
    p.mutable_presence()->set_online(true);
    fc.send_batch({t, p});
    ASSERT_TRUE(rec.wait([&] { return !rec.typing.empty() && !rec.presence.empty(); }));
    EXPECT_EQ(rec.typing[0].first, imclient::conversation_id(1, 2));
    EXPECT_EQ(rec.presence[0], std::make_pair(std::uint64_t{2}, true));
}

}  // namespace
}  // namespace im::test

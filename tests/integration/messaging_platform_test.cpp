// The platform around the message path, end to end against real binaries (im-rest, im-transfer,
// im-connectors) and real servers: offline push through the outbox, RabbitMQ and a webhook
// (coalescing, no push while online), TLS on the client port, presence, typing, kicks (logout,
// device revoke, replaced on another and on the same connector), SIGTERM draining, slow consumers.
//
// A Cluster per test where the settings differ; presence, typing and kicks share one. The
// RabbitMQ restart case lives in push_restart_test.cpp (it stops the run's shared broker, so ctest
// runs it alone).
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "im/wire/frame_codec.hpp"
#include "platform_test_util.hpp"
#include "socket_client.hpp"

namespace im::test {
namespace {

using namespace platform;

// ---- Presence, typing, kicks: one shared cluster (2 connectors, default settings) ------------

class Platform : public ::testing::Test {
protected:
    static void SetUpTestSuite() { cluster_ = new Cluster(ClusterOptions{2, {}, {}, {}, "plat"}); }
    static void TearDownTestSuite() {
        delete cluster_;
        cluster_ = nullptr;
    }
    static Cluster* cluster_;
    static inline std::string last_friends_;  // the last GET /v1/friends answer (for failure messages)

    static auto presence_of(std::uint64_t user, bool online) {
        return [user, online](const Envelope& e) {
            return e.has_presence() && e.presence().user_id() == user && e.presence().online() == online;
        };
    }
    // B's "online" flag in A's GET /v1/friends; nullopt when B is not listed.
    static std::optional<bool> friend_online(const TestUser& a, std::uint64_t b) {
        auto r = cluster_->http().get("/v1/friends", a.token);
        last_friends_ = std::to_string(r.status) + " " + r.body;
        if (r.status != 200) return std::nullopt;
        const auto body = r.json();  // (iterating r.json()["friends"] directly would dangle)
        for (const auto& f : body["friends"]) {
            if (f["id"].get<std::uint64_t>() == b) return f["online"].get<bool>();
        }
        return std::nullopt;
    }
    static void typing(RawClient& c, std::uint64_t peer) {
        Envelope t;
        t.set_request_id(c.next_request_id());
        t.mutable_typing()->set_peer_user_id(peer);
        c.send(t);
    }
};
Cluster* Platform::cluster_ = nullptr;

TEST_F(Platform, PresenceGoesToFriendsOnlyAndRestShowsIt) {
    auto& cl = *cluster_;
    auto a = cl.user("pa");
    auto b = cl.user("pb");
    auto c = cl.user("pc");
    cl.befriend(a, b);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cc = cl.connect(1, c.token, "dev1");
    EXPECT_EQ(friend_online(a, b.id), std::optional<bool>(false)) << last_friends_;

    const auto t0 = Clock::now();
    auto cb = cl.connect(1, b.token, "dev1");
    auto on = ca->wait_for(presence_of(b.id, true), 5s);
    ASSERT_TRUE(on.has_value()) << "A got no PresenceEvent{B online}; A's frames:\n" << describe(ca->all_frames());
    EXPECT_EQ(on->request_id(), 0u);
    EXPECT_GT(on->presence().changed_ms(), 0);
    std::printf("[ timing ] presence online reached the friend after %.0f ms\n", elapsed_ms(t0));
    EXPECT_TRUE(eventually([&] { return friend_online(a, b.id) == std::optional<bool>(true); }, 3s))
        << "GET /v1/friends still shows B offline while connected: " << last_friends_;

    auto pa = cl.http().get("/v1/users/" + std::to_string(b.id) + "/presence", a.token);
    ASSERT_EQ(pa.status, 200) << pa.body;
    EXPECT_EQ(pa.json()["user_id"].get<std::uint64_t>(), b.id);
    EXPECT_EQ(pa.json()["online"], true);
    auto pc = cl.http().get("/v1/users/" + std::to_string(b.id) + "/presence", c.token);
    EXPECT_EQ(pc.status, 403) << pc.body;
    EXPECT_EQ(pc.json()["error"]["code"], "not_friends") << pc.body;

    const auto t1 = Clock::now();
    cb.reset();  // B disconnects
    auto off = ca->wait_for(presence_of(b.id, false), 5s);
    ASSERT_TRUE(off.has_value()) << "A got no PresenceEvent{B offline}; A's frames:\n" << describe(ca->all_frames());
    std::printf("[ timing ] presence offline reached the friend after %.0f ms\n", elapsed_ms(t1));
    EXPECT_TRUE(eventually([&] { return friend_online(a, b.id) == std::optional<bool>(false); }, 3s))
        << "GET /v1/friends still shows B online after B disconnected: " << last_friends_;
    auto pa2 = cl.http().get("/v1/users/" + std::to_string(b.id) + "/presence", a.token);
    ASSERT_EQ(pa2.status, 200) << pa2.body;
    EXPECT_EQ(pa2.json()["online"], false);

    std::this_thread::sleep_for(300ms);
    int about_b = 0;
    for (const auto& f : ca->all_frames()) {
        if (f.has_presence() && f.presence().user_id() == b.id) ++about_b;
    }
    EXPECT_EQ(about_b, 2) << "exactly one online and one offline event:\n" << describe(ca->all_frames());
    for (const auto& f : cc->all_frames()) {
        EXPECT_FALSE(f.has_presence()) << "C (not a friend) got " << f.ShortDebugString();
    }
}

TEST_F(Platform, TypingReachesOnlineFriendsOnlyAndIsRateLimited) {
    auto& cl = *cluster_;
    auto a = cl.user("ta");
    auto b = cl.user("tb");
    auto d = cl.user("td");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cd = cl.connect(0, d.token, "dev1");
    auto cb = cl.connect(1, b.token, "dev1");
    ASSERT_TRUE(ca->wait_for(presence_of(b.id, true), 5s).has_value()) << "sync point: the transfer knows B is online";

    typing(*ca, b.id);
    auto ev = cb->wait_body(Envelope::kTypingEvent, 3s);
    ASSERT_TRUE(ev.has_value()) << "B got no TypingEvent; B's frames:\n" << describe(cb->all_frames());
    EXPECT_EQ(ev->typing_event().conversation_id(), conv);
    EXPECT_EQ(ev->typing_event().user_id(), a.id);
    EXPECT_EQ(ev->request_id(), 0u);

    // To a non-friend: nothing (and no error to the sender).
    typing(*ca, d.id);
    EXPECT_FALSE(cd->wait_body(Envelope::kTypingEvent, 1s).has_value()) << "a non-friend got a TypingEvent";

    // To an offline friend: dropped, no error.
    cb.reset();
    ASSERT_TRUE(ca->wait_for(presence_of(b.id, false), 5s).has_value());
    std::this_thread::sleep_for(600ms);  // past the rate limit window (policy.typing_per_second = 2)
    typing(*ca, b.id);
    std::this_thread::sleep_for(800ms);
    EXPECT_TRUE(ca->take_all(Envelope::kError).empty()) << describe(ca->all_frames());
    EXPECT_TRUE(ping_ok(*ca)) << "the typing session stays usable";

    // Rate limit: 10 Typing frames within 100 ms give at most 2 TypingEvents.
    cb = cl.connect(1, b.token, "dev1");
    ASSERT_TRUE(ca->wait_for(presence_of(b.id, true), 5s).has_value());
    std::this_thread::sleep_for(600ms);
    const auto t0 = Clock::now();
    for (int i = 0; i < 10; ++i) typing(*ca, b.id);
    const auto burst_ms = elapsed_ms(t0);
    EXPECT_LT(burst_ms, 100.0);
    std::this_thread::sleep_for(1500ms);
    const auto got = cb->take_all(Envelope::kTypingEvent);
    EXPECT_GE(got.size(), 1u);
    EXPECT_LE(got.size(), 2u) << "10 Typing frames in " << burst_ms << " ms";
    for (const auto& g : got) EXPECT_EQ(g.typing_event().user_id(), a.id);
    EXPECT_TRUE(ca->take_all(Envelope::kError).empty());
    EXPECT_TRUE(cd->take_all(Envelope::kTypingEvent).empty());
}

TEST_F(Platform, LogoutKicksTheLiveSessionWithLoggedOut) {
    auto& cl = *cluster_;
    auto u = cl.user("ka");
    auto cu = cl.connect(0, u.token, "dev1");
    const auto t0 = Clock::now();
    auto out = cl.http().del("/v1/sessions/current", u.token);
    ASSERT_EQ(out.status, 204) << out.body;
    auto kick = cu->wait_body(Envelope::kKick, 3s);
    ASSERT_TRUE(kick.has_value()) << "no Kick after logout; frames:\n" << describe(cu->all_frames());
    EXPECT_EQ(kick->kick().reason(), client::LOGGED_OUT);
    EXPECT_TRUE(cu->wait_closed(3s)) << "the session was not closed after the Kick";
    std::printf("[ timing ] logout -> kicked and closed in %.0f ms\n", elapsed_ms(t0));

    RawClient again(cl.connector_port(1));
    auto res = again.login(u.token, "dev1");
    ASSERT_TRUE(res.has_error()) << res.ShortDebugString();
    EXPECT_EQ(res.error().code(), client::UNAUTHENTICATED);
}

TEST_F(Platform, DeviceRevokeKicksOnlyThatDevice) {
    auto& cl = *cluster_;
    auto u = cl.user("kb");
    auto login2 = cl.http().post("/v1/sessions", {{"username", u.username}, {"password", u.password}, {"device_id", "dev2"}});
    ASSERT_EQ(login2.status, 201) << login2.body;
    const auto token2 = login2.json()["token"].get<std::string>();
    const auto session2 = login2.json()["session_id"].get<std::uint64_t>();
    auto c1 = cl.connect(0, u.token, "dev1");
    auto c2 = cl.connect(1, token2, "dev2");

    const auto t0 = Clock::now();
    auto rv = cl.http().del("/v1/sessions/" + std::to_string(session2), u.token);
    ASSERT_EQ(rv.status, 204) << rv.body;
    auto kick = c2->wait_body(Envelope::kKick, 3s);
    ASSERT_TRUE(kick.has_value()) << "the revoked device got no Kick; frames:\n" << describe(c2->all_frames());
    EXPECT_EQ(kick->kick().reason(), client::LOGGED_OUT);
    EXPECT_TRUE(c2->wait_closed(3s));
    std::printf("[ timing ] device revoke -> kicked and closed in %.0f ms\n", elapsed_ms(t0));

    EXPECT_FALSE(c1->wait_body(Envelope::kKick, 1s).has_value()) << "the other device was kicked too";
    EXPECT_FALSE(c1->closed());
    EXPECT_TRUE(ping_ok(*c1));
}

TEST_F(Platform, SecondLoginOfTheSameDeviceReplacesTheFirstOnAnyConnector) {
    auto& cl = *cluster_;
    auto v = cl.user("kv");
    auto w = cl.user("kw");
    cl.befriend(v, w);
    auto cw = cl.connect(0, w.token, "dev1");
    auto c1 = cl.connect(0, v.token, "dev1");

    // Another connector, a fresh token for the same device.
    const auto t0 = Clock::now();
    auto c2 = cl.connect(1, cl.login_token(v, "dev1"), "dev1");
    auto k1 = c1->wait_body(Envelope::kKick, 3s);
    ASSERT_TRUE(k1.has_value()) << "the first session got no Kick; frames:\n" << describe(c1->all_frames());
    EXPECT_EQ(k1->kick().reason(), client::REPLACED);
    EXPECT_TRUE(c1->wait_closed(3s));
    std::printf("[ timing ] replaced across connectors in %.0f ms\n", elapsed_ms(t0));
    EXPECT_FALSE(c2->closed());

    // The same connector (and the first, still valid token).
    auto c3 = cl.connect(1, v.token, "dev1");
    auto k2 = c2->wait_body(Envelope::kKick, 3s);
    ASSERT_TRUE(k2.has_value()) << "the second session got no Kick; frames:\n" << describe(c2->all_frames());
    EXPECT_EQ(k2->kick().reason(), client::REPLACED);
    EXPECT_TRUE(c2->wait_closed(3s));

    // The new session is not hit by a late kick meant for an older one, and it works.
    EXPECT_FALSE(c3->wait_body(Envelope::kKick, 1500ms).has_value()) << describe(c3->all_frames());
    ASSERT_FALSE(c3->closed());
    auto r = send_text(*c3, w.id, "from the newest session", 1);
    ASSERT_EQ(r.code(), client::ERROR_NONE) << r.ShortDebugString();
    auto d = cw->wait_body(Envelope::kDeliver, 5s);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->deliver().text(), "from the newest session");
    auto r2 = send_text(*cw, v.id, "back to v", 1);
    ASSERT_EQ(r2.code(), client::ERROR_NONE);
    auto d2 = c3->wait_body(Envelope::kDeliver, 5s);
    ASSERT_TRUE(d2.has_value()) << "the newest session gets pushes";
    EXPECT_EQ(d2->deliver().seq(), 2u);
    // Still online in user-status (the late offline of a replaced session must not remove it).
    EXPECT_TRUE(eventually(
        [&] {
            auto p = cl.http().get("/v1/users/" + std::to_string(v.id) + "/presence", w.token);
            return p.status == 200 && p.json()["online"] == true;
        },
        3s));
    std::this_thread::sleep_for(500ms);
    auto p = cl.http().get("/v1/users/" + std::to_string(v.id) + "/presence", w.token);
    EXPECT_EQ(p.json()["online"], true) << p.body;
}

// ---- Offline push end to end ----------------------------------------------------------------

TEST(PlatformPush, OfflineBurstsCoalesceIntoOneWebhookEventEachAndNoneWhileOnline) {
    Webhook hook;
    Cluster cl(push_cluster_options("plat-push", hook.server.url("/hook")));
    auto a = cl.user("qa");
    auto b = cl.user("qb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");

    // Burst 1: 10 messages to B, who never connected.
    double write_ms = 0;
    auto t0 = Clock::now();
    auto r1 = send_burst(*ca, b.id, 1, 10, "burst one", &write_ms);
    std::printf("[ timing ] burst 1: frames written in %.1f ms, all SENT after %.0f ms\n", write_ms, elapsed_ms(t0));
    EXPECT_LT(write_ms, 100.0);
    for (std::size_t i = 0; i < r1.size(); ++i) {
        ASSERT_EQ(r1[i].code(), client::ERROR_NONE) << r1[i].ShortDebugString();
        EXPECT_EQ(r1[i].seq(), i + 1);
    }
    ASSERT_TRUE(eventually([&] { return !hook.events_for(b.id, conv).empty(); }, 15s))
        << "no webhook call; calls:\n" << hook.dump() << "\nrest log: " << cl.rest().process().log_file();
    std::printf("[ timing ] burst 1: webhook called %.0f ms after the first send\n", elapsed_ms(t0));
    std::this_thread::sleep_for(1500ms);  // > coalesce_delay + poll_interval: a split burst would show now
    auto ev = hook.events_for(b.id, conv);
    ASSERT_EQ(ev.size(), 1u) << "one coalesced event per burst; calls:\n" << hook.dump();
    {
        const auto j = nlohmann::json::parse(ev[0].body);
        const auto id = std::to_string(b.id) + ":" + std::to_string(conv) + ":10";
        EXPECT_EQ(ev[0].method, "POST");
        EXPECT_EQ(ev[0].target, "/hook");
        EXPECT_EQ(j["up_to_seq"].get<std::uint64_t>(), 10u) << ev[0].body;
        EXPECT_EQ(j["event_id"], id);
        EXPECT_EQ(ev[0].header("idempotency-key"), id);
        EXPECT_EQ(j["from_user_id"].get<std::uint64_t>(), a.id);
        EXPECT_EQ(j["unread"].get<std::uint64_t>(), 10u);
        EXPECT_GT(j["created_ms"].get<std::int64_t>(), 0);
    }
    EXPECT_TRUE(eventually([&] { return outbox_rows(cl) == 0; }, 5s)) << "the outbox row is deleted after the confirm";

    // Burst 2, later: one more event, up to seq 20.
    t0 = Clock::now();
    auto r2 = send_burst(*ca, b.id, 11, 10, "burst two", &write_ms);
    EXPECT_LT(write_ms, 100.0);
    for (std::size_t i = 0; i < r2.size(); ++i) {
        ASSERT_EQ(r2[i].code(), client::ERROR_NONE) << r2[i].ShortDebugString();
        EXPECT_EQ(r2[i].seq(), i + 11);
    }
    ASSERT_TRUE(eventually([&] { return hook.events_for(b.id, conv).size() >= 2; }, 15s)) << hook.dump();
    std::printf("[ timing ] burst 2: webhook called %.0f ms after the first send\n", elapsed_ms(t0));
    std::this_thread::sleep_for(1500ms);
    ev = hook.events_for(b.id, conv);
    ASSERT_EQ(ev.size(), 2u) << hook.dump();
    {
        const auto j = nlohmann::json::parse(ev[1].body);
        const auto id = std::to_string(b.id) + ":" + std::to_string(conv) + ":20";
        EXPECT_EQ(j["up_to_seq"].get<std::uint64_t>(), 20u) << ev[1].body;
        EXPECT_EQ(j["event_id"], id);
        EXPECT_EQ(ev[1].header("idempotency-key"), id);
        EXPECT_EQ(j["unread"].get<std::uint64_t>(), 20u);
    }

    // B online: messages are delivered live and nothing is pushed.
    auto cb = cl.connect(1, b.token, "dev1");
    ASSERT_TRUE(ca->wait_for([&](const Envelope& e) { return e.has_presence() && e.presence().user_id() == b.id && e.presence().online(); },
                             5s)
                    .has_value())
        << "sync point: the transfer knows B is online";
    auto r3 = send_burst(*ca, b.id, 21, 3, "while online");
    for (const auto& r : r3) ASSERT_EQ(r.code(), client::ERROR_NONE);
    for (std::uint64_t seq = 21; seq <= 23; ++seq) {
        auto d = cb->wait_for([seq](const Envelope& e) { return e.has_deliver() && e.deliver().seq() == seq; }, 5s);
        EXPECT_TRUE(d.has_value()) << "live Deliver seq " << seq;
    }
    std::this_thread::sleep_for(2000ms);
    EXPECT_EQ(hook.events_for(b.id, conv).size(), 2u) << "no push while B is online:\n" << hook.dump();
    EXPECT_EQ(hook.server.requests().size(), 2u) << hook.dump();
    EXPECT_EQ(outbox_rows(cl), 0u);
}

// ---- TLS on the client port -----------------------------------------------------------------

TEST(PlatformTls, LoginAndChatOverTlsAndAnUntrustingClientFails) {
    const auto dir = TestEnv::get().run_dir + "/conn-tls-" + unique_suffix();
    const std::string cmd =
        "set -e; mkdir -p " + dir + "; cd " + dir +
        "; openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=im-test-ca -keyout ca.key -out ca.pem 2>/dev/null"
        "; openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null"
        "; printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf"
        "; openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf "
        "-out server.pem 2>/dev/null"
        "; openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other -keyout other.key -out other.pem 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl failed";

    Cluster cl(ClusterOptions{2, {}, {},
                              {"tls.enabled=true", "tls.cert_file=" + dir + "/server.pem", "tls.key_file=" + dir + "/server.key"},
                              "plat-tls"});
    auto a = cl.user("sa");
    auto b = cl.user("sb");
    cl.befriend(a, b);
    const auto ca_file = dir + "/ca.pem";
    RawClient ca(cl.connector_port(0), ca_file);
    auto la = ca.login(a.token, "dev1");
    ASSERT_TRUE(la.has_login_result()) << la.ShortDebugString();
    EXPECT_EQ(la.login_result().user_id(), a.id);
    RawClient cb(cl.connector_port(1), ca_file);
    auto lb = cb.login(b.token, "dev1");
    ASSERT_TRUE(lb.has_login_result()) << lb.ShortDebugString();

    auto r = send_text(ca, b.id, "over TLS", 1);
    ASSERT_EQ(r.code(), client::ERROR_NONE) << r.ShortDebugString();
    auto d = cb.wait_body(Envelope::kDeliver, 5s);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->deliver().text(), "over TLS");
    // A large frame (several TLS records) both ways.
    const std::string big(12000, 'T');
    auto r2 = send_text(cb, a.id, big, 1);
    ASSERT_EQ(r2.code(), client::ERROR_NONE) << r2.ShortDebugString();
    auto d2 = ca.wait_body(Envelope::kDeliver, 5s);
    ASSERT_TRUE(d2.has_value());
    EXPECT_EQ(d2->deliver().text(), big);

    // A client that does not trust the CA fails the handshake.
    EXPECT_ANY_THROW(RawClient(cl.connector_port(0), dir + "/other.pem"));
    // A plain-TCP client on the TLS port gets no answer to its Login.
    {
        RawClient plain(cl.connector_port(0));
        EXPECT_ANY_THROW(plain.login(a.token, "dev2"));
    }
    EXPECT_TRUE(ping_ok(ca)) << "the TLS sessions are unaffected";
    EXPECT_TRUE(ping_ok(cb));
}

// ---- SIGTERM drains a connector -------------------------------------------------------------

TEST(PlatformDrain, SigtermKicksEverySessionWithReconnectAndExitsZero) {
    Cluster cl(ClusterOptions{1, {}, {}, {}, "plat-drain"});
    auto a = cl.user("da");
    auto b = cl.user("db");
    cl.befriend(a, b);
    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(0, b.token, "dev1");
    ASSERT_EQ(send_text(*ca, b.id, "before the drain", 1).code(), client::ERROR_NONE);

    const auto t0 = Clock::now();
    const auto status = cl.connector(0).stop(SIGTERM, std::chrono::seconds(10));
    const auto took = elapsed_ms(t0);
    std::printf("[ timing ] connector SIGTERM -> exit in %.0f ms\n", took);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status)) << "killed, not exited (status " << *status << "); log " << cl.connector(0).log_file();
    if (WIFEXITED(*status)) {
        EXPECT_EQ(WEXITSTATUS(*status), 0) << cl.connector(0).log_file();
    }
    EXPECT_LT(took, 5000.0);
    for (auto* c : {ca.get(), cb.get()}) {
        auto k = c->wait_body(Envelope::kKick, 2s);
        ASSERT_TRUE(k.has_value()) << "no Kick before the close; frames:\n" << describe(c->all_frames());
        EXPECT_EQ(k->kick().reason(), client::RECONNECT);
        EXPECT_TRUE(c->wait_closed(2s));
    }
    const auto log = cl.connector(0).log_contents();
    EXPECT_NE(log.find("draining 2 sessions"), std::string::npos);
    // The users are offline in user-status right away (the connector deregistered).
    EXPECT_TRUE(eventually(
        [&] {
            auto p = cl.http().get("/v1/users/" + std::to_string(b.id) + "/presence", a.token);
            return p.status == 200 && p.json()["online"] == false;
        },
        3s));
}

// ---- Slow consumer ----------------------------------------------------------------------------

TEST(PlatformSlowConsumer, ANonReadingClientIsDisconnectedOnceItStaysBehind) {
    // The default bounds (pushes dropped past 512 KiB queued, closed at 1 MiB) and a 1 s
    // slow-consumer timeout: messages come in rounds of 4 x 8 KiB, so a session that reads stays
    // far below the push bound, and one that does not read reaches it once the kernel buffers
    // fill (a few MiB), and is closed 1 s later.
    Cluster cl(ClusterOptions{1, {}, {}, {"sessions.slow_consumer_timeout=1s"}, "plat-slow"});
    auto a = cl.user("wa");
    auto b = cl.user("wb");
    cl.befriend(a, b);
    auto ca = cl.connect(0, a.token, "dev1");

    // B logs in by hand and then never reads (a small receive buffer: the kernel buffers fill soon).
    SocketClient sb(cl.connector_port(0), 4096);
    auto lr = sb.login(b.token, "dev1");
    ASSERT_TRUE(lr.has_value() && lr->has_login_result()) << (lr ? lr->ShortDebugString() : "no frame");
    ASSERT_TRUE(ca->wait_for([&](const Envelope& e) { return e.has_presence() && e.presence().user_id() == b.id && e.presence().online(); },
                             5s)
                    .has_value());
    // B's second device reads everything: the control that must survive.
    auto reader = cl.connect(0, cl.login_token(b, "dev2"), "dev2");

    HttpClient admin("127.0.0.1", cl.connector_admin_port(0));
    auto slow = [&] { return metric_value(admin.get("/metrics").body, "im_connector_slow_consumers_total"); };
    EXPECT_LE(slow(), 0.0);

    const std::string text(8 * 1024 - 32, 'x');
    std::uint64_t next = 1;
    const auto t0 = Clock::now();
    double value = 0;
    std::uint64_t pings = 0;
    while (elapsed_ms(t0) < 20000) {
        // B writes (never reads) a Ping now and then so the idle sweep is not what closes it.
        Envelope ping;
        ping.set_request_id(1000 + ++pings);
        ping.mutable_ping()->set_client_time_ms(1);
        sb.write_all(wire::encode_frame(ping));
        if (next <= 800) {
            auto rs = send_burst(*ca, b.id, next, 4, text);
            for (const auto& r : rs) ASSERT_EQ(r.code(), client::ERROR_NONE) << r.ShortDebugString();
            next += 4;
        } else {
            std::this_thread::sleep_for(100ms);
        }
        value = slow();
        if (value >= 1) break;
    }
    const auto pushed = next - 1;
    std::printf("[ timing ] slow consumer detected after %llu messages (%.1f MiB) in %.0f ms\n",
                static_cast<unsigned long long>(pushed), static_cast<double>(pushed) * 8.0 / 1024.0, elapsed_ms(t0));
    ASSERT_GE(value, 1.0) << "pushed " << pushed << " x 8 KiB to a client that never reads; connector log "
                          << cl.connector(0).log_file();
    // The socket is closed: after draining what the kernel buffered, EOF or a reset.
    auto drained = sb.drain(20s);
    std::uint64_t last_seq = 0;
    bool kicked = false;
    for (const auto& f : drained.frames) {
        if (f.has_deliver()) last_seq = f.deliver().seq();
        if (f.has_kick()) kicked = true;
    }
    std::printf("[ info   ] slow consumer drained %zu bytes, %zu frames up to seq %llu (eof=%d reset=%d, kick=%d)\n",
                drained.bytes, drained.frames.size(), static_cast<unsigned long long>(last_seq), drained.eof,
                drained.reset, kicked);
    EXPECT_TRUE(drained.eof || drained.reset) << "the connector did not close the slow consumer's socket";
    // One session was closed once: the counter says so (its help text: "Sessions closed because
    // their write queue overflowed or was not written out in time").
    EXPECT_EQ(slow(), 1.0) << "im_connector_slow_consumers_total counts one closed session more than once";

    // The reading device got everything and stays; A is unaffected; B's first device is offline.
    for (std::uint64_t seq = 1; seq <= pushed; ++seq) {
        auto d = reader->wait_for([seq](const Envelope& e) { return e.has_deliver() && e.deliver().seq() == seq; }, 5s);
        ASSERT_TRUE(d.has_value()) << "the reading device missed seq " << seq;
    }
    EXPECT_FALSE(reader->closed());
    EXPECT_TRUE(ping_ok(*reader));
    EXPECT_TRUE(ping_ok(*ca));
    auto r = send_text(*ca, b.id, "after the disconnect", next, next - 1);
    EXPECT_EQ(r.code(), client::ERROR_NONE) << r.ShortDebugString();
    auto d = reader->wait_for([&](const Envelope& e) { return e.has_deliver() && e.deliver().seq() == pushed + 1; }, 5s);
    EXPECT_TRUE(d.has_value());
}

}  // namespace
}  // namespace im::test

// im-rest accounts and sessions against real MariaDB and Redis: registration, login, tokens
// (logout, expiry, revocation, Redis data loss), profile lookups, password change, devices, the
// connectors answered at login (live ones from Redis first) and the kicks published on revocation.
#include <gtest/gtest.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"
#include "im/user_status/user_status.hpp"
#include "rest_fixture.hpp"

namespace im::test {
namespace {

class RestAccounts : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        db_ = new TestDatabase();
        prefix_ = "im:t" + unique_suffix() + ":";
        rest_ = new RestServer(*db_, prefix_, {{"auth.token_refresh_after=0s"}, "rest-accounts"});
    }
    static void TearDownTestSuite() {
        delete rest_;
        delete db_;
    }
    void SetUp() override { http_ = rest_->client(); }

    static redis::RedisConfig redis_config() {
        redis::RedisConfig c;
        c.port = TestEnv::get().redis_port;
        c.key_prefix = prefix_;
        return c;
    }
    // Logs in on `device`; returns {token, session id}.
    std::pair<std::string, std::uint64_t> login(const TestUser& u, const std::string& device,
                                                const std::string& password = {}) {
        auto r = http_->post("/v1/sessions", {{"username", u.username},
                                              {"password", password.empty() ? u.password : password},
                                              {"device_id", device}});
        EXPECT_EQ(r.status, 201) << r.body;
        return {r.json().value("token", std::string()), r.json().value("session_id", std::uint64_t{0})};
    }

    static std::string fresh(const std::string& base) { return base + unique_suffix().substr(0, 6); }

    static TestDatabase* db_;
    static RestServer* rest_;
    static std::string prefix_;
    std::unique_ptr<HttpClient> http_;
};
TestDatabase* RestAccounts::db_ = nullptr;
RestServer* RestAccounts::rest_ = nullptr;
std::string RestAccounts::prefix_;

void expect_error(const HttpResult& r, int status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.body;
    const auto j = r.json();
    ASSERT_TRUE(j.is_object()) << r.body;
    ASSERT_TRUE(j.contains("error")) << r.body;
    EXPECT_EQ(j["error"]["code"], code) << r.body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_EQ(r.header("content-type"), "application/json");
}

TEST_F(RestAccounts, RegisterCreatesUserWithArgon2Hash) {
    const auto name = fresh("reg");
    auto r = http_->post("/v1/users", {{"username", name}, {"password", "password123"}, {"display_name", "Reg"}});
    ASSERT_EQ(r.status, 201) << r.body;
    const auto j = r.json();
    EXPECT_EQ(j["username"], name);
    EXPECT_EQ(j["display_name"], "Reg");
    EXPECT_EQ(j["origin"], "local");
    EXPECT_FALSE(j.contains("password_hash"));

    auto& st = db_->db().prepare("SELECT password_hash FROM users WHERE username = ?");
    st.setString(1, name);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    ASSERT_TRUE(rs->next());
    const auto hash = rs->getString(1).asStdString();
    EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u) << hash;
    EXPECT_EQ(hash.find("password123"), std::string::npos);
}

TEST_F(RestAccounts, RegisterValidation) {
    expect_error(http_->post("/v1/users", {{"username", "ab"}, {"password", "password123"}}), 400, "invalid_username");
    expect_error(http_->post("/v1/users", {{"username", "has space"}, {"password", "password123"}}), 400,
                 "invalid_username");
    expect_error(http_->post("/v1/users", {{"username", "_under"}, {"password", "password123"}}), 400,
                 "invalid_username");
    expect_error(http_->post("/v1/users", {{"username", fresh("short")}, {"password", "1234567"}}), 400,
                 "invalid_password");
    expect_error(http_->post("/v1/users", {{"password", "password123"}}), 400, "missing_field");
    expect_error(http_->post("/v1/users", {{"username", 42}, {"password", "password123"}}), 400, "invalid_field");
    expect_error(http_->post("/v1/users", {{"username", fresh("ctl")}, {"password", "password123"},
                                           {"display_name", std::string("a\x01") + "b"}}),
                 400, "invalid_display_name");
}

TEST_F(RestAccounts, DuplicateUsernameIsConflictCaseInsensitively) {
    const auto name = fresh("dup");
    ASSERT_EQ(http_->post("/v1/users", {{"username", name}, {"password", "password123"}}).status, 201);
    expect_error(http_->post("/v1/users", {{"username", name}, {"password", "password456"}}), 409, "username_taken");
    std::string upper = name;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    expect_error(http_->post("/v1/users", {{"username", upper}, {"password", "password456"}}), 409, "username_taken");
}

TEST_F(RestAccounts, SqlMetacharactersAreStoredVerbatim) {
    const std::string evil = "Robert'); DROP TABLE users;-- \"quoted\" \\ back % _ \xF0\x9F\x98\x80";
    const auto name = fresh("bobby");
    auto r = http_->post("/v1/users", {{"username", name}, {"password", "password123"}, {"display_name", evil}});
    ASSERT_EQ(r.status, 201) << r.body;
    auto login = http_->post("/v1/sessions", {{"username", name}, {"password", "password123"}, {"device_id", "d"}});
    ASSERT_EQ(login.status, 201) << login.body;
    auto me = http_->get("/v1/users/me", login.json()["token"]);
    ASSERT_EQ(me.status, 200);
    EXPECT_EQ(me.json()["display_name"], evil);
    auto lookup = http_->get("/v1/users?username=" + name, login.json()["token"]);
    EXPECT_EQ(lookup.json()["display_name"], evil);
}

TEST_F(RestAccounts, LoginReturnsTokenUserAndConnectors) {
    const auto name = fresh("login");
    auto u = register_and_login(*http_, name);
    EXPECT_EQ(u.token.size(), 43u);
    auto r = http_->post("/v1/sessions", {{"username", name}, {"password", u.password}, {"device_id", "tablet-1"}});
    ASSERT_EQ(r.status, 201) << r.body;
    const auto j = r.json();
    EXPECT_EQ(j["user"]["id"], u.id);
    EXPECT_EQ(j["user"]["username"], name);
    EXPECT_TRUE(j["expires_at"].is_string());
    ASSERT_TRUE(j["connectors"].is_array());
    EXPECT_FALSE(j["connectors"].empty());
    EXPECT_NE(j["token"], u.token);

    // Only the SHA-256 of the token is stored.
    auto& st = db_->db().prepare("SELECT COUNT(*) FROM sessions WHERE token_hash = ? OR token_hash = SHA2(?, 256)");
    st.setString(1, j["token"].get<std::string>());
    st.setString(2, j["token"].get<std::string>());
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    rs->next();
    EXPECT_EQ(rs->getInt(1), 0) << "neither the token nor its hex hash is stored";
}

TEST_F(RestAccounts, LoginFailures) {
    const auto name = fresh("lf");
    auto u = register_and_login(*http_, name);
    expect_error(http_->post("/v1/sessions", {{"username", name}, {"password", "wrong-password"}, {"device_id", "d"}}),
                 401, "invalid_credentials");
    expect_error(http_->post("/v1/sessions", {{"username", fresh("nobody")}, {"password", "whatever1"}, {"device_id", "d"}}),
                 401, "invalid_credentials");
    expect_error(http_->post("/v1/sessions", {{"username", name}, {"password", ""}, {"device_id", "d"}}), 400,
                 "invalid_password");
    expect_error(http_->post("/v1/sessions", {{"username", name}, {"password", u.password}, {"device_id", "bad id!"}}),
                 400, "invalid_device_id");
    expect_error(http_->post("/v1/sessions", {{"username", name}, {"password", u.password}}), 400, "missing_field");
}

TEST_F(RestAccounts, TokenRequiredAndValidated) {
    expect_error(http_->get("/v1/users/me"), 401, "unauthenticated");
    expect_error(http_->get("/v1/users/me", "not-a-token"), 401, "unauthenticated");
    expect_error(http_->get("/v1/users/me", std::string(43, 'A')), 401, "unauthenticated");
    expect_error(http_->request("GET", "/v1/users/me", {}, {{"Authorization", "Basic dXNlcjpwYXNz"}}), 401,
                 "unauthenticated");
}

TEST_F(RestAccounts, LogoutRevokesTheToken) {
    auto u = register_and_login(*http_, fresh("out"));
    ASSERT_EQ(http_->get("/v1/users/me", u.token).status, 200);
    ASSERT_EQ(http_->del("/v1/sessions/current", u.token).status, 204);
    expect_error(http_->get("/v1/users/me", u.token), 401, "unauthenticated");
    // Also after Redis lost its data: MySQL says revoked.
    redis_delete_prefix(prefix_);
    expect_error(http_->get("/v1/users/me", u.token), 401, "unauthenticated");
}

TEST_F(RestAccounts, RedisDataLossLogsNobodyOut) {
    auto u = register_and_login(*http_, fresh("flush"));
    ASSERT_EQ(http_->get("/v1/users/me", u.token).status, 200);  // cached now
    redis_delete_prefix(prefix_);
    auto r = http_->get("/v1/users/me", u.token);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["id"], u.id);
}

TEST_F(RestAccounts, ExpiredTokenIsRefused) {
    TestDatabase db;
    RestServer short_lived(db, "im:t" + unique_suffix() + ":", {{"auth.token_ttl=2s", "auth.token_refresh_after=0s"}, "rest-ttl"});
    auto http = short_lived.client();
    auto u = register_and_login(*http, "ttl" + unique_suffix().substr(0, 5));
    ASSERT_EQ(http->get("/v1/users/me", u.token).status, 200);
    // Sliding: a use at 1 s extends it.
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    ASSERT_EQ(http->get("/v1/users/me", u.token).status, 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    ASSERT_EQ(http->get("/v1/users/me", u.token).status, 200) << "the previous use slid the expiry";
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    expect_error(http->get("/v1/users/me", u.token), 401, "unauthenticated");
}

TEST_F(RestAccounts, UserLookups) {
    auto a = register_and_login(*http_, fresh("look"));
    auto me = http_->get("/v1/users/me", a.token);
    ASSERT_EQ(me.status, 200);
    EXPECT_EQ(me.json()["id"], a.id);
    EXPECT_EQ(me.json()["origin"], "local");

    auto by_id = http_->get("/v1/users/" + std::to_string(a.id), a.token);
    ASSERT_EQ(by_id.status, 200);
    EXPECT_EQ(by_id.json()["username"], a.username);
    EXPECT_FALSE(by_id.json().contains("origin")) << "public profile only";

    expect_error(http_->get("/v1/users/999999999", a.token), 404, "user_not_found");
    expect_error(http_->get("/v1/users/abc", a.token), 404, "not_found");
    expect_error(http_->get("/v1/users/-1", a.token), 404, "not_found");
    auto q = http_->get("/v1/users?username=" + a.username, a.token);
    ASSERT_EQ(q.status, 200);
    EXPECT_EQ(q.json()["id"], a.id);
    expect_error(http_->get("/v1/users?username=nobody_" + unique_suffix(), a.token), 404, "user_not_found");
    expect_error(http_->get("/v1/users", a.token), 400, "missing_parameter");
}

TEST_F(RestAccounts, DevicesListAndRevoke) {
    const auto name = fresh("dev");
    auto phone = register_and_login(*http_, name, "phone");
    auto login2 = http_->post("/v1/sessions", {{"username", name}, {"password", phone.password}, {"device_id", "laptop"}});
    ASSERT_EQ(login2.status, 201);
    const auto laptop_token = login2.json()["token"].get<std::string>();
    const auto laptop_session = login2.json()["session_id"].get<std::uint64_t>();

    auto list = http_->get("/v1/sessions", phone.token);
    ASSERT_EQ(list.status, 200);
    const auto sessions = list.json()["sessions"];
    ASSERT_EQ(sessions.size(), 2u) << list.body;
    std::set<std::string> devices;
    for (const auto& s : sessions) {
        devices.insert(s["device_id"].get<std::string>());
        EXPECT_TRUE(s["created_at"].is_string());
        EXPECT_TRUE(s["last_seen_at"].is_string());
        EXPECT_EQ(s["current"], s["device_id"] == "phone");
    }
    EXPECT_EQ(devices, (std::set<std::string>{"phone", "laptop"}));

    // Somebody else cannot revoke it.
    auto other = register_and_login(*http_, fresh("oth"));
    expect_error(http_->del("/v1/sessions/" + std::to_string(laptop_session), other.token), 404, "session_not_found");
    ASSERT_EQ(http_->get("/v1/users/me", laptop_token).status, 200);

    ASSERT_EQ(http_->del("/v1/sessions/" + std::to_string(laptop_session), phone.token).status, 204);
    expect_error(http_->get("/v1/users/me", laptop_token), 401, "unauthenticated");
    EXPECT_EQ(http_->get("/v1/users/me", phone.token).status, 200);
    expect_error(http_->del("/v1/sessions/" + std::to_string(laptop_session), phone.token), 404, "session_not_found");
    EXPECT_EQ(http_->get("/v1/sessions", phone.token).json()["sessions"].size(), 1u);
}

TEST_F(RestAccounts, PasswordChangeRevokesOtherSessions) {
    const auto name = fresh("pwc");
    auto a = register_and_login(*http_, name, "phone");
    auto second = http_->post("/v1/sessions", {{"username", name}, {"password", a.password}, {"device_id", "laptop"}});
    const auto other_token = second.json()["token"].get<std::string>();
    ASSERT_EQ(http_->get("/v1/users/me", other_token).status, 200);  // cached in Redis now

    expect_error(http_->post("/v1/users/me/password", {{"old", "wrong-old-pw"}, {"new", "new-password-1"}}, a.token), 403,
                 "invalid_credentials");
    expect_error(http_->post("/v1/users/me/password", {{"old", a.password}, {"new", "short"}}, a.token), 400,
                 "invalid_password");
    auto ok = http_->post("/v1/users/me/password", {{"old", a.password}, {"new", "new-password-1"}}, a.token);
    ASSERT_EQ(ok.status, 200) << ok.body;
    EXPECT_EQ(ok.json()["revoked_sessions"], 1);

    EXPECT_EQ(http_->get("/v1/users/me", a.token).status, 200) << "the current session stays";
    expect_error(http_->get("/v1/users/me", other_token), 401, "unauthenticated");
    expect_error(http_->post("/v1/sessions", {{"username", name}, {"password", a.password}, {"device_id", "x"}}), 401,
                 "invalid_credentials");
    EXPECT_EQ(http_->post("/v1/sessions", {{"username", name}, {"password", "new-password-1"}, {"device_id", "x"}}).status,
              201);
}

TEST_F(RestAccounts, LoginRateLimitedPerUsername) {
    TestDatabase db;
    RestServer limited(db, "im:t" + unique_suffix() + ":", {{"rate_limit.login_per_user=3"}, "rest-ratelimit"});
    auto http = limited.client();
    const auto name = "rl" + unique_suffix().substr(0, 6);
    auto u = register_and_login(*http, name);  // attempt 1
    for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(http->post("/v1/sessions", {{"username", name}, {"password", "wrong-pass"}, {"device_id", "d"}}).status, 401);
    }
    auto r = http->post("/v1/sessions", {{"username", name}, {"password", u.password}, {"device_id", "d"}});
    expect_error(r, 429, "rate_limited");
    const auto retry = r.header("retry-after");
    ASSERT_FALSE(retry.empty());
    EXPECT_GE(std::stoi(retry), 1);
    EXPECT_LE(std::stoi(retry), 60);
    // Another username from the same address is not affected by this user's limit.
    EXPECT_EQ(register_and_login(*http, "rl2" + unique_suffix().substr(0, 6)).token.size(), 43u);
}

TEST_F(RestAccounts, LoginRateLimitedPerAddress) {
    TestDatabase db;
    RestServer limited(db, "im:t" + unique_suffix() + ":", {{"rate_limit.login_per_addr=4"}, "rest-ratelimit-addr"});
    auto http = limited.client();
    int limited_count = 0;
    for (int i = 0; i < 6; ++i) {
        auto r = http->post("/v1/sessions", {{"username", "user" + std::to_string(i) + "x"}, {"password", "whatever1"}, {"device_id", "d"}});
        if (r.status == 429) ++limited_count;
        else EXPECT_EQ(r.status, 401);
    }
    EXPECT_EQ(limited_count, 2);
}

TEST_F(RestAccounts, LoginAnswersLiveConnectorsLeastLoadedFirst) {
    auto u = register_and_login(*http_, fresh("conn"));
    const auto connectors = [&] {
        auto r = http_->post("/v1/sessions", {{"username", u.username}, {"password", u.password}, {"device_id", "d"}});
        EXPECT_EQ(r.status, 201) << r.body;
        return r.json()["connectors"].get<std::vector<std::string>>();
    };
    // None registered: the configured list.
    const std::vector<std::string> configured{"127.0.0.1:9000", "127.0.0.1:9001"};
    EXPECT_EQ(connectors(), configured);

    redis::RedisConnection conn(redis_config());
    user_status::UserStatus us(conn, prefix_);
    const auto busy = "busy-" + unique_suffix(), idle = "idle-" + unique_suffix(), dying = "dying-" + unique_suffix();
    us.connector_heartbeat({busy, 1, "10.0.0.1:7001", 50, 0}, std::chrono::seconds(30));
    us.connector_heartbeat({idle, 1, "10.0.0.2:7002", 3, 0}, std::chrono::seconds(30));
    us.connector_heartbeat({dying, 1, "10.0.0.3:7003", 0, 0}, std::chrono::milliseconds(300));
    EXPECT_EQ(connectors(), (std::vector<std::string>{"10.0.0.3:7003", "10.0.0.2:7002", "10.0.0.1:7001"}));
    std::this_thread::sleep_for(std::chrono::milliseconds(450));  // `dying` stops beating
    EXPECT_EQ(connectors(), (std::vector<std::string>{"10.0.0.2:7002", "10.0.0.1:7001"}));

    // The load changes: the order follows.
    us.connector_heartbeat({busy, 1, "10.0.0.1:7001", 0, 0}, std::chrono::seconds(30));
    EXPECT_EQ(connectors(), (std::vector<std::string>{"10.0.0.1:7001", "10.0.0.2:7002"}));

    us.connector_gone(busy);
    us.connector_gone(idle);
    EXPECT_EQ(connectors(), configured);
}

TEST_F(RestAccounts, LoginAnswersEachConnectorAddressOnce) {
    // Replicas behind one TCP load balancer (docker/docker-compose.yml) all advertise its address.
    auto u = register_and_login(*http_, fresh("lb"));
    redis::RedisConnection conn(redis_config());
    user_status::UserStatus us(conn, prefix_);
    const auto a = "lb-a-" + unique_suffix(), b = "lb-b-" + unique_suffix(), c = "lb-c-" + unique_suffix();
    us.connector_heartbeat({a, 1, "chat.example:9000", 5, 0}, std::chrono::seconds(30));
    us.connector_heartbeat({b, 1, "chat.example:9000", 1, 0}, std::chrono::seconds(30));
    us.connector_heartbeat({c, 1, "10.0.0.9:7009", 3, 0}, std::chrono::seconds(30));
    auto r = http_->post("/v1/sessions", {{"username", u.username}, {"password", u.password}, {"device_id", "d"}});
    ASSERT_EQ(r.status, 201) << r.body;
    // Least loaded first (b, c, a); the balancer's address once, where its least loaded replica is.
    EXPECT_EQ(r.json()["connectors"].get<std::vector<std::string>>(),
              (std::vector<std::string>{"chat.example:9000", "10.0.0.9:7009"}));
    us.connector_gone(a);
    us.connector_gone(b);
    us.connector_gone(c);
}

// Logout, revoking a device and a password change each publish a kick for every revoked session
// (what the connectors subscribe to), after the revocation; the kept session is not kicked.
TEST_F(RestAccounts, RevocationsPublishKicks) {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<user_status::KickRequest> kicks;
    user_status::KickSubscriber sub(redis_config(), [&](const user_status::KickRequest& k) {
        std::lock_guard lock(mu);
        kicks.push_back(k);
        cv.notify_all();
    });
    sub.start();
    for (int i = 0; i < 500 && !sub.connected(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(sub.connected());
    const auto kicked = [&](std::uint64_t session) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, std::chrono::seconds(10), [&] {
            return std::any_of(kicks.begin(), kicks.end(), [&](const auto& k) { return k.session_id == session; });
        });
    };

    auto u = register_and_login(*http_, fresh("kick"), "first");
    const auto [phone_token, phone] = login(u, "phone");
    const auto [laptop_token, laptop] = login(u, "laptop");
    const auto [tablet_token, tablet] = login(u, "tablet");
    const auto [watch_token, watch] = login(u, "watch");

    ASSERT_EQ(http_->del("/v1/sessions/current", phone_token).status, 204);
    ASSERT_TRUE(kicked(phone)) << "logout kicks the session";
    expect_error(http_->get("/v1/users/me", phone_token), 401, "unauthenticated");  // revoked before the kick

    ASSERT_EQ(http_->del("/v1/sessions/" + std::to_string(laptop), tablet_token).status, 204);
    ASSERT_TRUE(kicked(laptop)) << "revoking a device kicks it";

    auto pw = http_->post("/v1/users/me/password", {{"old", u.password}, {"new", "another-password-1"}}, tablet_token);
    ASSERT_EQ(pw.status, 200) << pw.body;
    EXPECT_EQ(pw.json()["revoked_sessions"], 2);  // "first" and the watch
    ASSERT_TRUE(kicked(watch)) << "a password change kicks every other session";

    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::lock_guard lock(mu);
    for (const auto& k : kicks) {
        EXPECT_EQ(k.user_id, u.id);
        EXPECT_EQ(k.reason, "logged_out");
        EXPECT_EQ(k.login_epoch, 0u) << "every connection of the session";
        EXPECT_NE(k.session_id, tablet) << "the session that changed the password stays";
        EXPECT_NE(k.session_id, 0u) << "never every session of the user";
    }
    EXPECT_EQ(kicks.size(), 4u);  // phone, laptop, first, watch
}

// Redis down: logout still works (the token is revoked in MySQL), and login falls back to the
// configured connectors.
TEST_F(RestAccounts, RedisDownDoesNotFailLogoutOrLogin) {
    TestDatabase db;
    const auto dead_redis = pick_free_port();
    RestServer rest(db, "im:t" + unique_suffix() + ":", {{"redis.port=" + std::to_string(dead_redis)}, "rest-noredis"});
    auto http = rest.client();
    const auto name = fresh("nored");
    ASSERT_EQ(http->post("/v1/users", {{"username", name}, {"password", "password123"}}).status, 201);
    auto r = http->post("/v1/sessions", {{"username", name}, {"password", "password123"}, {"device_id", "d"}});
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["connectors"], (nlohmann::json{"127.0.0.1:9000", "127.0.0.1:9001"}));
    const auto token = r.json()["token"].get<std::string>();
    EXPECT_EQ(http->del("/v1/sessions/current", token).status, 204);
    expect_error(http->get("/v1/users/me", token), 401, "unauthenticated");
}

}  // namespace
}  // namespace im::test

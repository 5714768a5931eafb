// im-rest logins through LDAP (the real slapd of scripts/services.sh, search-then-bind) and through
// an external HTTP auth service (an HttpTestServer playing it), all over HTTP against the real
// im-rest binary: first login creates the account, later logins reuse it, rejections, injection
// attempts, empty passwords, unreachable or slow back-ends, and no secret in a trace-level log.
//
// Seed users (scripts/services.sh): alice/alice_pass, bob/bob_pass, carol/carol_pass,
// dave/dave_pass; service account cn=reader,ou=services/reader_pass.
#include <gtest/gtest.h>
#include <ldap.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <chrono>
#include <csignal>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "http_test_server.hpp"
#include "im/server/mysql.hpp"
#include "rest_fixture.hpp"

namespace im::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string people_base() { return "ou=people," + TestEnv::get().ldap_base; }
std::string alice_dn() { return "uid=alice," + people_base(); }
std::string prefix() { return "im:t" + unique_suffix() + ":"; }

// --set values for LDAP search-then-bind against `url` (default: the test slapd).
std::vector<std::string> ldap_sets(const std::string& url = {}) {
    const auto& env = TestEnv::get();
    return {
        "auth.mode=ldap",
        "auth.ldap.url=" + (url.empty() ? env.ldap_url() : url),
        "auth.ldap.mode=search",
        "auth.ldap.service_dn=cn=reader,ou=services," + env.ldap_base,
        "auth.ldap.service_password=reader_pass",
        "auth.ldap.search_base=" + people_base(),
        "auth.ldap.connect_timeout=1s",
        "auth.ldap.timeout=2s",
    };
}

std::vector<std::string> external_sets(const std::string& url, const std::string& timeout = "2s") {
    return {"auth.mode=external", "auth.external.url=" + url, "auth.external.connect_timeout=1s",
            "auth.external.timeout=" + timeout};
}

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// A loopback port that nobody else can take. Not listening: connections to it are refused.
class ClosedPort {
public:
    ClosedPort() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        socklen_t len = sizeof addr;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::runtime_error("cannot reserve a loopback port");
        }
        port_ = ntohs(addr.sin_port);
    }
    ~ClosedPort() {
        if (fd_ >= 0) ::close(fd_);
    }
    ClosedPort(const ClosedPort&) = delete;
    ClosedPort& operator=(const ClosedPort&) = delete;
    std::uint16_t port() const { return port_; }

private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
};

// A raw simple bind with libldap, bypassing im-rest: what the directory itself accepts.
int raw_simple_bind(const std::string& dn, const std::string& password) {
    LDAP* ld = nullptr;
    int rc = ldap_initialize(&ld, TestEnv::get().ldap_url().c_str());
    if (rc != LDAP_SUCCESS) return rc;
    int version = LDAP_VERSION3;
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    berval cred{};
    cred.bv_len = password.size();
    cred.bv_val = const_cast<char*>(password.data());  // read only; the C API is not const-correct
    rc = ldap_sasl_bind_s(ld, dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
    ldap_unbind_ext_s(ld, nullptr, nullptr);
    return rc;
}

void expect_error(const HttpResult& r, int status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.body;
    const auto j = r.json();
    ASSERT_TRUE(j.is_object()) << r.body;
    ASSERT_TRUE(j.contains("error")) << r.body;
    EXPECT_EQ(j["error"]["code"], code) << r.body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_EQ(r.header("content-type"), "application/json");
}

void expect_unavailable(const HttpResult& r) {
    expect_error(r, 503, "auth_unavailable");
    const auto retry = r.header("retry-after");
    ASSERT_FALSE(retry.empty()) << "503 needs a Retry-After header";
    EXPECT_GE(std::stoi(retry), 1);
}

HttpResult login(HttpClient& http, const std::string& username, const std::string& password,
                 const std::string& device = "dev1") {
    return http.post("/v1/sessions", {{"username", username}, {"password", password}, {"device_id", device}});
}

struct UserRow {
    bool found = false;
    std::uint64_t id = 0;
    std::string username, display_name, origin, external_ref;
    bool hash_is_null = false;
};

UserRow user_row(TestDatabase& db, const std::string& where_column, const std::string& value) {
    auto& st = db.db().prepare(
        "SELECT id, username, display_name, origin, COALESCE(external_ref, ''), password_hash IS NULL FROM users WHERE " +
        where_column + " = ?");
    st.setString(1, value);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    UserRow r;
    if (!rs->next()) return r;
    r.found = true;
    r.id = rs->getUInt64(1);
    r.username = rs->getString(2).asStdString();
    r.display_name = rs->getString(3).asStdString();
    r.origin = rs->getString(4).asStdString();
    r.external_ref = rs->getString(5).asStdString();
    r.hash_is_null = rs->getBoolean(6);
    return r;
}

int user_count(TestDatabase& db) {
    std::unique_ptr<sql::ResultSet> rs(db.db().prepare("SELECT COUNT(*) FROM users").executeQuery());
    rs->next();
    return rs->getInt(1);
}

std::size_t occurrences(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
    return n;
}

// ============================================================================================
// LDAP
// ============================================================================================

class RestLdapLogin : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        db_ = new TestDatabase();
        rest_ = new RestServer(*db_, prefix(), {ldap_sets(), "rest-ldap"});
    }
    static void TearDownTestSuite() {
        delete rest_;
        delete db_;
    }
    void SetUp() override { http_ = rest_->client(); }

    static TestDatabase* db_;
    static RestServer* rest_;
    std::unique_ptr<HttpClient> http_;
};
TestDatabase* RestLdapLogin::db_ = nullptr;
RestServer* RestLdapLogin::rest_ = nullptr;

TEST_F(RestLdapLogin, AliceLogsInAndGetsOneLdapAccount) {
    auto r = login(*http_, "alice", "alice_pass");
    ASSERT_EQ(r.status, 201) << r.body;
    const auto j = r.json();
    const auto token = j["token"].get<std::string>();
    EXPECT_EQ(token.size(), 43u);
    const auto id = j["user"]["id"].get<std::uint64_t>();
    EXPECT_EQ(j["user"]["username"], "alice");
    EXPECT_EQ(j["user"]["display_name"], "Alice Liddell");

    auto me = http_->get("/v1/users/me", token);
    ASSERT_EQ(me.status, 200) << me.body;
    EXPECT_EQ(me.json()["id"], id);
    EXPECT_EQ(me.json()["origin"], "ldap");

    const auto row = user_row(*db_, "username", "alice");
    ASSERT_TRUE(row.found);
    EXPECT_EQ(row.id, id);
    EXPECT_EQ(row.origin, "ldap");
    EXPECT_EQ(row.external_ref, alice_dn());
    EXPECT_TRUE(row.hash_is_null) << "no local password for a directory account";

    // Later logins (other devices, other spellings) are the same account.
    auto again = login(*http_, "alice", "alice_pass", "laptop");
    ASSERT_EQ(again.status, 201) << again.body;
    EXPECT_EQ(again.json()["user"]["id"], id);
    EXPECT_NE(again.json()["token"], token);
    auto upper = login(*http_, "ALICE", "alice_pass", "tablet");
    ASSERT_EQ(upper.status, 201) << upper.body;
    EXPECT_EQ(upper.json()["user"]["id"], id);
    EXPECT_EQ(upper.json()["user"]["username"], "alice");
    auto& st = db_->db().prepare("SELECT COUNT(*) FROM users WHERE external_ref = ?");
    st.setString(1, alice_dn());
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    rs->next();
    EXPECT_EQ(rs->getInt(1), 1);
    EXPECT_EQ(http_->get("/v1/sessions", token).json()["sessions"].size(), 3u);
}

TEST_F(RestLdapLogin, OtherSeedUsersAreSeparateAccounts) {
    auto bob = login(*http_, "bob", "bob_pass");
    auto dave = login(*http_, "dave", "dave_pass");
    ASSERT_EQ(bob.status, 201) << bob.body;
    ASSERT_EQ(dave.status, 201) << dave.body;
    EXPECT_NE(bob.json()["user"]["id"], dave.json()["user"]["id"]);
    EXPECT_EQ(bob.json()["user"]["display_name"], "Bob Builder");
    EXPECT_EQ(dave.json()["user"]["display_name"], "Dave (QA) *star*");
    EXPECT_EQ(user_row(*db_, "username", "dave").external_ref, "uid=dave," + people_base());
}

TEST_F(RestLdapLogin, WrongPasswordAndUnknownUserAre401) {
    const int users_before = user_count(*db_);
    expect_error(login(*http_, "alice", "not-alices-password"), 401, "invalid_credentials");
    expect_error(login(*http_, "alice", "ALICE_PASS"), 401, "invalid_credentials");
    expect_error(login(*http_, "nobody" + unique_suffix().substr(0, 5), "whatever-pw"), 401, "invalid_credentials");
    // The service account is not a person (not under the search base).
    expect_error(login(*http_, "reader", "reader_pass"), 401, "invalid_credentials");
    EXPECT_EQ(user_count(*db_), users_before) << "no account for failed logins";
}

TEST_F(RestLdapLogin, FilterInjectionAttemptsAre401) {
    const std::vector<std::string> attempts = {
        "*)(uid=*))(|(uid=*", "*", "ali*", "alice)(uid=*", "*)(objectClass=*", "alice)(|(uid=*",
        "(uid=alice)", "alice\\2a", "a*e", "*alice*",
    };
    const int users_before = user_count(*db_);
    for (const auto& name : attempts) {
        SCOPED_TRACE(name);
        expect_error(login(*http_, name, "alice_pass"), 401, "invalid_credentials");
        expect_error(login(*http_, name, "bob_pass"), 401, "invalid_credentials");
    }
    EXPECT_EQ(user_count(*db_), users_before);
    // The directory is fine: alice herself still logs in.
    EXPECT_EQ(login(*http_, "alice", "alice_pass").status, 201);
}

TEST_F(RestLdapLogin, RegistrationIsDisabled) {
    const int users_before = user_count(*db_);
    expect_error(http_->post("/v1/users", {{"username", "newbie" + unique_suffix().substr(0, 4)},
                                           {"password", "password123"}}),
                 403, "registration_disabled");
    expect_error(http_->post("/v1/users", {{"username", "alice"}, {"password", "alice_pass"}}), 403,
                 "registration_disabled");
    EXPECT_EQ(user_count(*db_), users_before);
}

TEST_F(RestLdapLogin, EmptyPasswordIsRefusedBeforeTheDirectory) {
    // First: what the directory itself does with "alice's DN + empty password".
    const int raw = raw_simple_bind(alice_dn(), "");
    if (TestEnv::get().ldap_allow_anon_dn) {
        ASSERT_EQ(raw, LDAP_SUCCESS) << "slapd with `allow bind_anon_dn` should accept it: " << ldap_err2string(raw)
                                     << "; without that this test proves nothing";
    } else {
        ASSERT_NE(raw, LDAP_SUCCESS) << "slapd without `allow bind_anon_dn` should refuse it";
    }
    EXPECT_EQ(raw_simple_bind(alice_dn(), "alice_pass"), LDAP_SUCCESS);

    // im-rest logs every user bind at debug level (the fixture's level): count them.
    const std::string bind_line = "ldap: bind as user 'alice'";
    ASSERT_EQ(login(*http_, "alice", "alice_pass").status, 201);
    const auto before = occurrences(rest_->log(), bind_line);
    ASSERT_GE(before, 1u) << "the bind of a real login is logged:\n" << rest_->log();

    expect_error(login(*http_, "alice", ""), 400, "invalid_password");
    expect_error(login(*http_, "ALICE", ""), 400, "invalid_password");
    expect_error(login(*http_, "uid=alice," + people_base(), ""), 400, "invalid_password");
    auto no_password = http_->post("/v1/sessions", {{"username", "alice"}, {"device_id", "d"}});
    expect_error(no_password, 400, "missing_field");

    // A successful login afterwards, so that the log is known to be current when counted.
    ASSERT_EQ(login(*http_, "bob", "bob_pass").status, 201);
    const auto log = rest_->log();
    EXPECT_NE(log.find("ldap: bind as user 'bob'"), std::string::npos) << log;
    EXPECT_EQ(occurrences(log, bind_line), before) << "im-rest asked the directory with an empty password";
}

// Separate servers: the directory cannot be asked.
class RestLdapUnavailable : public ::testing::Test {
protected:
    TestDatabase db_;
};

TEST_F(RestLdapUnavailable, DirectoryDownIs503WithRetryAfter) {
    const ClosedPort closed;
    RestServer rest(db_, prefix(), {ldap_sets("ldap://127.0.0.1:" + std::to_string(closed.port())), "rest-ldap-down"});
    auto http = rest.client();
    const auto start = Clock::now();
    expect_unavailable(login(*http, "alice", "alice_pass"));
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
    expect_unavailable(login(*http, "nobody", "whatever-pw"));
    // Input checks still come first.
    expect_error(login(*http, "alice", ""), 400, "invalid_password");
    EXPECT_EQ(user_count(db_), 0);
}

TEST_F(RestLdapUnavailable, WrongServicePasswordIs503) {
    auto sets = ldap_sets();
    sets.push_back("auth.ldap.service_password=not-the-reader-pass");
    RestServer rest(db_, prefix(), {sets, "rest-ldap-badservice"});
    auto http = rest.client();
    expect_unavailable(login(*http, "alice", "alice_pass"));
}

// ============================================================================================
// External HTTP auth service
// ============================================================================================

// The fake auth service: see the brief at the top of each case.
HttpTestReply fake_auth_service(const HttpTestRequest& req) {
    const auto body = nlohmann::json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("username") || !body.contains("password")) return {400, R"({"error":"bad"})"};
    const auto user = body["username"].get<std::string>();
    const auto pass = body["password"].get<std::string>();
    if (user == "erin") {
        if (pass == "erin_pass") return {200, R"({"user_id": "ext-42", "username": "erin", "display_name": "Erin E."})"};
        return {401, R"({"error":"bad password"})"};
    }
    if (user == "locked") return {403, R"({"error":"locked"})"};
    if (user == "broken") return {500, R"({"error":"oops"})"};
    if (user == "slow") {
        HttpTestReply r{200, R"({"user_id": "ext-7", "username": "slow"})"};
        r.delay = std::chrono::seconds(3);
        return r;
    }
    if (user == "badname") return {200, R"({"user_id": "ext-99", "username": "Bad Name!", "display_name": "Bad"})"};
    return {401, R"({"error":"unknown"})"};
}

class RestExternalLogin : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        service_ = new HttpTestServer(fake_auth_service);
        db_ = new TestDatabase();
        rest_ = new RestServer(*db_, prefix(), {external_sets(service_->url("/auth/check"), "500ms"), "rest-external"});
    }
    static void TearDownTestSuite() {
        delete rest_;
        delete db_;
        delete service_;
    }
    void SetUp() override { http_ = rest_->client(); }

    static HttpTestServer* service_;
    static TestDatabase* db_;
    static RestServer* rest_;
    std::unique_ptr<HttpClient> http_;
};
HttpTestServer* RestExternalLogin::service_ = nullptr;
TestDatabase* RestExternalLogin::db_ = nullptr;
RestServer* RestExternalLogin::rest_ = nullptr;

TEST_F(RestExternalLogin, ErinLogsInAndGetsOneExternalAccount) {
    const auto seen_before = service_->requests().size();
    const int users_before = user_count(*db_);
    auto r = login(*http_, "erin", "erin_pass");
    ASSERT_EQ(r.status, 201) << r.body;
    const auto j = r.json();
    const auto id = j["user"]["id"].get<std::uint64_t>();
    const auto token = j["token"].get<std::string>();
    EXPECT_EQ(j["user"]["username"], "erin");
    EXPECT_EQ(j["user"]["display_name"], "Erin E.");

    // What the service was asked.
    const auto seen = service_->requests();
    ASSERT_EQ(seen.size(), seen_before + 1);
    const auto& req = seen.back();
    EXPECT_EQ(req.method, "POST");
    EXPECT_EQ(req.target, "/auth/check");
    EXPECT_EQ(req.content_type.substr(0, 16), "application/json");
    const auto sent = nlohmann::json::parse(req.body, nullptr, false);
    ASSERT_TRUE(sent.is_object()) << req.body;
    EXPECT_EQ(sent.size(), 2u) << req.body;
    EXPECT_EQ(sent["username"], "erin");
    EXPECT_EQ(sent["password"], "erin_pass");

    auto me = http_->get("/v1/users/me", token);
    ASSERT_EQ(me.status, 200) << me.body;
    EXPECT_EQ(me.json()["origin"], "external");
    EXPECT_EQ(me.json()["id"], id);
    const auto row = user_row(*db_, "username", "erin");
    ASSERT_TRUE(row.found);
    EXPECT_EQ(row.id, id);
    EXPECT_EQ(row.origin, "external");
    EXPECT_EQ(row.external_ref, "ext-42");
    EXPECT_TRUE(row.hash_is_null);

    auto again = login(*http_, "erin", "erin_pass", "laptop");
    ASSERT_EQ(again.status, 201) << again.body;
    EXPECT_EQ(again.json()["user"]["id"], id);
    EXPECT_NE(again.json()["token"], token);
    EXPECT_LE(user_count(*db_), users_before + 1);
    auto& st = db_->db().prepare("SELECT COUNT(*) FROM users WHERE external_ref = ?");
    st.setString(1, "ext-42");
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    rs->next();
    EXPECT_EQ(rs->getInt(1), 1);
}

TEST_F(RestExternalLogin, RejectionsAre401AndFailuresAre503) {
    const int users_before = user_count(*db_);
    expect_error(login(*http_, "erin", "wrong-password"), 401, "invalid_credentials");
    expect_error(login(*http_, "locked", "locked-pw-1"), 401, "invalid_credentials");
    expect_error(login(*http_, "stranger", "stranger-pw"), 401, "invalid_credentials");
    expect_unavailable(login(*http_, "broken", "broken-pw-1"));
    expect_error(login(*http_, "erin", ""), 400, "invalid_password");
    EXPECT_EQ(user_count(*db_), users_before);
}

TEST_F(RestExternalLogin, SlowServiceTimesOutWith503) {
    const int users_before = user_count(*db_);
    const auto start = Clock::now();
    auto r = login(*http_, "slow", "slow-pw-1");
    const auto elapsed = Clock::now() - start;
    expect_unavailable(r);
    EXPECT_GE(elapsed, milliseconds(400)) << "it should have waited for the answer";
    EXPECT_LT(elapsed, milliseconds(1500)) << "auth.external.timeout=500ms";
    EXPECT_EQ(user_count(*db_), users_before);
}

TEST_F(RestExternalLogin, UnusableUsernameIs403InvalidIdentity) {
    const int users_before = user_count(*db_);
    expect_error(login(*http_, "badname", "badname-pw-1"), 403, "invalid_identity");
    EXPECT_FALSE(user_row(*db_, "external_ref", "ext-99").found);
    EXPECT_EQ(user_count(*db_), users_before);
}

TEST_F(RestExternalLogin, RegistrationIsDisabled) {
    expect_error(http_->post("/v1/users", {{"username", "erin2"}, {"password", "password123"}}), 403,
                 "registration_disabled");
}

TEST(RestExternalUnavailable, UnreachableServiceIs503) {
    TestDatabase db;
    const ClosedPort closed;
    RestServer rest(db, prefix(),
                    {external_sets("http://127.0.0.1:" + std::to_string(closed.port()) + "/auth"), "rest-external-down"});
    auto http = rest.client();
    const auto start = Clock::now();
    expect_unavailable(login(*http, "erin", "erin_pass"));
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
    EXPECT_EQ(user_count(db), 0);
}

// ============================================================================================
// No secret in a trace-level log
// ============================================================================================

// Stops the server (so that everything is flushed), then checks its log.
void expect_no_secrets(RestServer& rest, const std::vector<std::string>& secrets) {
    rest.process().stop(SIGTERM);
    const auto log = rest.log();
    ASSERT_FALSE(log.empty());
    EXPECT_NE(log.find("log.level = trace"), std::string::npos) << "trace level was on:\n" << log;
    EXPECT_NE(log.find(" D "), std::string::npos) << "debug lines are there:\n" << log;
    EXPECT_NE(log.find("POST /v1/sessions -> 201"), std::string::npos) << log;
    EXPECT_NE(log.find("POST /v1/sessions -> 401"), std::string::npos) << log;
    for (const auto& s : secrets) {
        ASSERT_GE(s.size(), 8u);
        EXPECT_EQ(log.find(s), std::string::npos) << "secret '" << s << "' is in the log:\n" << log;
    }
}

TEST(RestLogs, NoSecretsInLdapModeLog) {
    TestDatabase db;
    RestServer rest(db, prefix(), {plus(ldap_sets(), {"log.level=trace"}), "rest-ldap-trace"});
    auto http = rest.client();
    std::vector<std::string> secrets = {"alice_pass", "bob_pass", "reader_pass", "wrong-alice-pw-7431",
                                        "zed-secret-pw-123", "inject-pw-5519"};
    for (const auto& [user, pass] : std::vector<std::pair<std::string, std::string>>{{"alice", "alice_pass"},
                                                                                      {"bob", "bob_pass"}}) {
        auto r = login(*http, user, pass);
        ASSERT_EQ(r.status, 201) << r.body;
        secrets.push_back(r.json()["token"].get<std::string>());
        EXPECT_EQ(http->get("/v1/users/me", secrets.back()).status, 200);
    }
    EXPECT_EQ(login(*http, "alice", "wrong-alice-pw-7431").status, 401);
    EXPECT_EQ(login(*http, "zed", "zed-secret-pw-123").status, 401);
    EXPECT_EQ(login(*http, "*)(uid=*", "inject-pw-5519").status, 401);
    // Logout with a token: the token must not be logged either.
    EXPECT_EQ(http->del("/v1/sessions/current", secrets.back()).status, 204);
    expect_no_secrets(rest, secrets);
    EXPECT_NE(rest.log().find("ldap: bind as user"), std::string::npos) << "the LDAP debug lines are there";
}

TEST(RestLogs, NoSecretsInExternalModeLog) {
    HttpTestServer service(fake_auth_service);
    TestDatabase db;
    RestServer rest(db, prefix(), {plus(external_sets(service.url("/auth/check")), {"log.level=trace"}), "rest-ext-trace"});
    auto http = rest.client();
    std::vector<std::string> secrets = {"erin_pass", "wrong-erin-pw-9917", "locked-pw-5521", "broken-pw-3381",
                                        "badname-pw-2290", "stranger-pw-4410"};
    auto ok = login(*http, "erin", "erin_pass");
    ASSERT_EQ(ok.status, 201) << ok.body;
    secrets.push_back(ok.json()["token"].get<std::string>());
    EXPECT_EQ(http->get("/v1/users/me", secrets.back()).status, 200);
    EXPECT_EQ(login(*http, "erin", "wrong-erin-pw-9917").status, 401);
    EXPECT_EQ(login(*http, "locked", "locked-pw-5521").status, 401);
    EXPECT_EQ(login(*http, "broken", "broken-pw-3381").status, 503);
    EXPECT_EQ(login(*http, "badname", "badname-pw-2290").status, 403);
    EXPECT_EQ(login(*http, "stranger", "stranger-pw-4410").status, 401);
    expect_no_secrets(rest, secrets);
    EXPECT_NE(rest.log().find("external auth:"), std::string::npos) << "the external auth debug lines are there";
}

TEST(RestLogs, NoSecretsInLocalModeLog) {
    TestDatabase db;
    RestServer rest(db, prefix(), {{"log.level=trace"}, "rest-local-trace"});
    auto http = rest.client();
    const std::string name = "loc" + unique_suffix().substr(0, 6);
    std::vector<std::string> secrets = {"local-secret-pw-8812", "local-wrong-pw-0042", "local-new-pw-7731"};
    ASSERT_EQ(http->post("/v1/users", {{"username", name}, {"password", "local-secret-pw-8812"}}).status, 201);
    auto ok = login(*http, name, "local-secret-pw-8812");
    ASSERT_EQ(ok.status, 201) << ok.body;
    const auto token = ok.json()["token"].get<std::string>();
    secrets.push_back(token);
    EXPECT_EQ(login(*http, name, "local-wrong-pw-0042").status, 401);
    EXPECT_EQ(http->post("/v1/users/me/password", {{"old", "local-secret-pw-8812"}, {"new", "local-new-pw-7731"}}, token)
                  .status,
              200);
    expect_no_secrets(rest, secrets);
}

}  // namespace
}  // namespace im::test

// Issue 17, item 9: an LDAP or external account is re-checked against its directory when one of its
// tokens is refreshed (auth.token_refresh_after), whoever refreshes it (im-rest for REST calls,
// im-transfer for the connectors' token checks), at most every auth.directory_recheck_interval.
// "The user is gone" revokes every session of the user (MySQL, Redis tombstones) and kicks their
// chat connections; "the directory cannot be asked" keeps the sessions and asks again at the next
// refresh. Real binaries (im-rest, im-transfer, im-connector), the real slapd of
// scripts/services.sh (entries added and deleted by the test as the directory's admin) and an
// HttpTestServer playing the external auth service.
#include <gtest/gtest.h>
#include <ldap.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"
#include "http_test_server.hpp"
#include "im/server/mysql.hpp"

namespace im::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string people_base() { return "ou=people," + TestEnv::get().ldap_base; }

// The directory's administrator (rootdn of the test slapd): adds and deletes people.
class LdapAdmin {
public:
    LdapAdmin() {
        const auto& env = TestEnv::get();
        int rc = ldap_initialize(&ld_, env.ldap_url().c_str());
        if (rc != LDAP_SUCCESS) throw std::runtime_error(std::string("ldap_initialize: ") + ldap_err2string(rc));
        int version = LDAP_VERSION3;
        ldap_set_option(ld_, LDAP_OPT_PROTOCOL_VERSION, &version);
        berval cred{};
        std::string password = env.ldap_admin_password;
        cred.bv_len = password.size();
        cred.bv_val = password.data();
        rc = ldap_sasl_bind_s(ld_, env.ldap_admin_dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
        if (rc != LDAP_SUCCESS) throw std::runtime_error(std::string("admin bind: ") + ldap_err2string(rc));
    }
    ~LdapAdmin() {
        for (const auto& dn : added_) ldap_delete_ext_s(ld_, dn.c_str(), nullptr, nullptr);  // leave the seed as it was
        ldap_unbind_ext_s(ld_, nullptr, nullptr);
    }
    LdapAdmin(const LdapAdmin&) = delete;
    LdapAdmin& operator=(const LdapAdmin&) = delete;

    // Adds uid=<uid>,ou=people with a cleartext password (slapd compares it at bind).
    std::string add_person(const std::string& uid, const std::string& password) {
        const std::string dn = "uid=" + uid + "," + people_base();
        std::vector<std::string> storage = {"inetOrgPerson", uid, uid + " Test", "Test", password};
        char* oc[] = {storage[0].data(), nullptr};
        char* uid_v[] = {storage[1].data(), nullptr};
        char* cn_v[] = {storage[2].data(), nullptr};
        char* sn_v[] = {storage[3].data(), nullptr};
        char* pw_v[] = {storage[4].data(), nullptr};
        char a_oc[] = "objectClass", a_uid[] = "uid", a_cn[] = "cn", a_sn[] = "sn", a_pw[] = "userPassword";
        LDAPMod m_oc{LDAP_MOD_ADD, a_oc, {oc}}, m_uid{LDAP_MOD_ADD, a_uid, {uid_v}}, m_cn{LDAP_MOD_ADD, a_cn, {cn_v}},
            m_sn{LDAP_MOD_ADD, a_sn, {sn_v}}, m_pw{LDAP_MOD_ADD, a_pw, {pw_v}};
        LDAPMod* mods[] = {&m_oc, &m_uid, &m_cn, &m_sn, &m_pw, nullptr};
        const int rc = ldap_add_ext_s(ld_, dn.c_str(), mods, nullptr, nullptr);
        if (rc != LDAP_SUCCESS) throw std::runtime_error("add " + dn + ": " + ldap_err2string(rc));
        added_.push_back(dn);
        return dn;
    }

    void remove(const std::string& dn) {
        const int rc = ldap_delete_ext_s(ld_, dn.c_str(), nullptr, nullptr);
        if (rc != LDAP_SUCCESS) throw std::runtime_error("delete " + dn + ": " + ldap_err2string(rc));
        std::erase(added_, dn);
    }

private:
    LDAP* ld_ = nullptr;
    std::vector<std::string> added_;
};

// A loopback port that nobody else can take. Not listening: connections to it are refused.
class ClosedPort {
public:
    ClosedPort() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::runtime_error("cannot reserve a loopback port");
        }
        port_ = ntohs(addr.sin_port);
    }
    ~ClosedPort() { ::close(fd_); }
    ClosedPort(const ClosedPort&) = delete;
    ClosedPort& operator=(const ClosedPort&) = delete;
    std::uint16_t port() const { return port_; }

private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
};

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(100ms);
    }
    return pred();
}

// A counter from im-rest's metrics (admin port), summed over label sets whose text contains
// `labels`; -1 when nothing answers there.
double rest_metric(const RestServer& rest, const std::string& name, const std::string& labels = {}) {
    try {
        HttpClient admin("127.0.0.1", rest.admin_port());
        const auto r = admin.get("/metrics");
        if (r.status != 200) return -1;
        std::istringstream in(r.body);
        std::string line;
        double sum = 0;
        while (std::getline(in, line)) {
            if (line.rfind(name, 0) != 0 || line.find(labels) == std::string::npos) continue;
            const auto rest_of = line.substr(name.size());
            if (!rest_of.empty() && rest_of[0] != ' ' && rest_of[0] != '{') continue;
            sum += std::stod(line.substr(line.rfind(' ') + 1));
        }
        return sum;
    } catch (const std::exception&) {
        return -1;
    }
}

HttpResult login(HttpClient& http, const std::string& user, const std::string& password, const std::string& device) {
    return http.post("/v1/sessions", {{"username", user}, {"password", password}, {"device_id", device}});
}

int live_sessions(TestDatabase& db, std::uint64_t user_id) {
    auto& st = db.db().prepare("SELECT COUNT(*) FROM sessions WHERE user_id = ? AND revoked_at IS NULL");
    st.setUInt64(1, user_id);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    rs->next();
    return rs->getInt(1);
}

std::vector<std::string> ldap_sets(const std::string& url) {
    const auto& env = TestEnv::get();
    return {"auth.mode=ldap",
            "auth.ldap.url=" + url,
            "auth.ldap.mode=search",
            "auth.ldap.service_dn=cn=reader,ou=services," + env.ldap_base,
            "auth.ldap.service_password=reader_pass",
            "auth.ldap.search_base=" + people_base(),
            "auth.ldap.connect_timeout=1s",
            "auth.ldap.timeout=2s"};
}

// Tokens slide every second (in im-rest and in im-transfer) and are cached for one second, so the
// connectors' token checks (every 300 ms) reach the transfer, which refreshes them.
const std::vector<std::string> kFastTokens = {"auth.token_refresh_after=1s", "auth.token_cache_ttl=1s"};
// Every refresh of a directory account asks for a re-check (shared by im-rest and im-transfer, as
// a deployment sets it); im-rest looks for requested re-checks every 200 ms.
const std::map<std::string, std::string> kRecheckEnv = {{"IM_AUTH_DIRECTORY_RECHECK_INTERVAL", "0s"},
                                                         {"IM_REST_AUTH_DIRECTORY_RECHECK_POLL", "200ms"}};

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

ClusterOptions ldap_cluster(const std::string& name) {
    ClusterOptions o;
    o.connectors = 1;
    o.rest_sets = plus(ldap_sets(TestEnv::get().ldap_url()), kFastTokens);
    o.transfer_sets = kFastTokens;
    // Long heartbeats: the raw clients of these tests never ping.
    o.connector_sets = {"sessions.token_recheck_interval=300ms", "sessions.heartbeat_interval=60s"};
    o.env = kRecheckEnv;
    o.name = name;
    return o;
}

struct Account {
    std::string token;
    std::uint64_t id = 0;
};

Account ldap_login(HttpClient& http, const std::string& uid, const std::string& password, const std::string& device) {
    auto r = login(http, uid, password, device);
    if (r.status != 201) throw std::runtime_error("LDAP login of " + uid + ": " + std::to_string(r.status) + " " + r.body);
    return {r.json()["token"].get<std::string>(), r.json()["user"]["id"].get<std::uint64_t>()};
}

bool kicked(RawClient& c, std::chrono::milliseconds timeout) {
    auto k = c.wait_body(client::Envelope::kKick, timeout);
    return k.has_value() && k->kick().reason() == client::LOGGED_OUT;
}

bool connected(RawClient& c) { return !c.closed() && c.take_all(client::Envelope::kKick).empty(); }

// ---- LDAP ----------------------------------------------------------------------------------

TEST(Issue17, Item9_LdapUserRemovedFromDirectoryLosesSessionsAtRefresh) {
    LdapAdmin directory;
    const auto sfx = unique_suffix().substr(0, 6);
    const std::string kept = "kept" + sfx, chat = "chat" + sfx, rest = "rest" + sfx;
    directory.add_person(kept, "kept_pass");
    const auto chat_dn = directory.add_person(chat, "chat_pass");
    const auto rest_dn = directory.add_person(rest, "rest_pass");

    Cluster cl(ldap_cluster("recheck-ldap"));
    const auto k = ldap_login(cl.http(), kept, "kept_pass", "phone");
    const auto c = ldap_login(cl.http(), chat, "chat_pass", "phone");
    const auto c_laptop = ldap_login(cl.http(), chat, "chat_pass", "laptop");  // never used again
    const auto r = ldap_login(cl.http(), rest, "rest_pass", "phone");
    auto kept_conn = cl.connect(0, k.token, "phone");
    auto chat_conn = cl.connect(0, c.token, "phone");

    // The directory removes two of them. `chat` only keeps its chat connection open (its token is
    // refreshed by the transfer, for the connector's token checks); `rest` only calls the REST API.
    directory.remove(chat_dn);
    directory.remove(rest_dn);
    const auto removed_at = Clock::now();

    EXPECT_TRUE(kicked(*chat_conn, 20s))
        << "the chat connection of a user removed from the directory was not ended within 20 s";
    bool rest_refused = eventually([&] { return cl.http().get("/v1/users/me", r.token).status == 401; }, 20s);
    EXPECT_TRUE(rest_refused) << "the REST token of a user removed from the directory still works after 20 s";
    if (rest_refused) {
        std::cerr << "access ended " << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - removed_at).count()
                  << " ms after the removal\n";
    }

    // Every session of a removed user is revoked, also the one nobody used since.
    EXPECT_EQ(cl.http().get("/v1/users/me", c.token).status, 401);
    EXPECT_EQ(cl.http().get("/v1/users/me", c_laptop.token).status, 401);
    EXPECT_EQ(live_sessions(cl.db(), c.id), 0);
    EXPECT_EQ(live_sessions(cl.db(), r.id), 0);
    // A removed user cannot come back with a new connection either.
    RawClient again(cl.connector_port(0));
    EXPECT_FALSE(again.login(c.token, "phone").has_login_result());

    // The user still in the directory was re-checked too, and kept everything.
    EXPECT_GE(rest_metric(cl.rest(), "im_rest_directory_rechecks_total", "result=\"active\""), 1);
    EXPECT_EQ(cl.http().get("/v1/users/me", k.token).status, 200);
    EXPECT_TRUE(connected(*kept_conn));
    EXPECT_EQ(live_sessions(cl.db(), k.id), 1);
    EXPECT_GE(rest_metric(cl.rest(), "im_rest_directory_rechecks_total", "result=\"gone\""), 2);
}

TEST(Issue17, Item9_UnreachableDirectoryKeepsSessionsAndAsksAgain) {
    LdapAdmin directory;
    const std::string uid = "flaky" + unique_suffix().substr(0, 6);
    const auto dn = directory.add_person(uid, "flaky_pass");
    Cluster cl(ldap_cluster("recheck-ldap-down"));
    const auto a = ldap_login(cl.http(), uid, "flaky_pass", "phone");
    auto conn = cl.connect(0, a.token, "phone");

    // The directory becomes unreachable for im-rest: another im-rest on the same database and
    // Redis, whose LDAP URL is a closed port, takes over.
    const ClosedPort closed;
    RestServer down(cl.db(), cl.redis_prefix(),
                    {plus(ldap_sets("ldap://127.0.0.1:" + std::to_string(closed.port())), kFastTokens),
                     "recheck-ldap-down-rest2", kRecheckEnv});
    cl.rest().process().stop(SIGTERM);
    auto http = down.client();

    // Every refresh asks again; none of them logs the user out.
    const bool retried = eventually(
        [&] {
            http->get("/v1/users/me", a.token);  // REST use refreshes too
            return rest_metric(down, "im_rest_directory_rechecks_total", "result=\"unavailable\"") >= 2;
        },
        20s);
    EXPECT_TRUE(retried) << "no repeated re-check attempts counted as unavailable within 20 s (metric "
                         << rest_metric(down, "im_rest_directory_rechecks_total", "result=\"unavailable\"") << ")";
    EXPECT_EQ(http->get("/v1/users/me", a.token).status, 200) << "an unreachable directory must not log anybody out";
    EXPECT_TRUE(connected(*conn));
    EXPECT_EQ(live_sessions(cl.db(), a.id), 1);

    // Back to the real directory, which no longer has the user: the next refresh ends it all.
    directory.remove(dn);
    down.process().stop(SIGTERM);
    cl.rest().restart();
    EXPECT_TRUE(kicked(*conn, 20s)) << "the user removed while the directory was unreachable kept the chat session";
    EXPECT_EQ(cl.http().get("/v1/users/me", a.token).status, 401);
    EXPECT_EQ(live_sessions(cl.db(), a.id), 0);
}

// ---- External service ----------------------------------------------------------------------

// The external auth service: logs erin in at /auth/login; answers account checks at /auth/status
// as `status` says (200 active, 503 out of order, 404 the account no longer exists).
struct FakeService {
    std::atomic<int> status{200};
    HttpTestServer server{[this](const HttpTestRequest& req) -> HttpTestReply {
        const auto body = nlohmann::json::parse(req.body, nullptr, false);
        if (req.target == "/auth/login") {
            if (body.value("username", "") == "erin" && body.value("password", "") == "erin_pass") {
                return {200, R"({"user_id": "ext-42", "username": "erin", "display_name": "Erin E."})"};
            }
            return {401, R"({"error":"no"})"};
        }
        if (req.target == "/auth/status") {
            const int s = status.load();
            if (s == 200) return {200, R"({"active": true})"};
            return {s, R"({"error":"status"})"};
        }
        return {404, "{}"};
    }};

    std::size_t status_requests() const {
        std::size_t n = 0;
        for (const auto& r : server.requests()) {
            if (r.target == "/auth/status") ++n;
        }
        return n;
    }
};

std::vector<std::string> external_sets(const FakeService& svc) {
    return plus({"auth.mode=external", "auth.external.url=" + svc.server.url("/auth/login"),
                 "auth.external.connect_timeout=1s", "auth.external.timeout=2s"},
                kFastTokens);
}

TEST(Issue17, Item9_ExternalUserRemovedFromServiceLosesSessionsAtRefresh) {
    FakeService svc;
    TestDatabase db;
    auto env = kRecheckEnv;
    env["IM_REST_AUTH_EXTERNAL_CHECK_URL"] = svc.server.url("/auth/status");
    RestServer rest(db, "im:t" + unique_suffix() + ":", {external_sets(svc), "recheck-external", env});
    auto http = rest.client();
    auto phone = login(*http, "erin", "erin_pass", "phone");
    auto laptop = login(*http, "erin", "erin_pass", "laptop");
    ASSERT_EQ(phone.status, 201) << phone.body;
    ASSERT_EQ(laptop.status, 201) << laptop.body;
    const auto token = phone.json()["token"].get<std::string>();
    const auto user_id = phone.json()["user"]["id"].get<std::uint64_t>();

    // The service is out of order: the refresh asks, gets a 503, and keeps the sessions.
    svc.status = 503;
    const bool asked = eventually(
        [&] {
            http->get("/v1/users/me", token);
            return svc.status_requests() >= 1;
        },
        15s);
    ASSERT_TRUE(asked) << "im-rest never asked the external service about the account (auth.external.check_url)";
    const auto req = svc.server.requests().back();
    EXPECT_EQ(req.method, "POST");
    const auto sent = nlohmann::json::parse(req.body, nullptr, false);
    EXPECT_EQ(sent, nlohmann::json({{"user_id", "ext-42"}, {"username", "erin"}})) << req.body;
    EXPECT_TRUE(eventually([&] { return rest_metric(rest, "im_rest_directory_rechecks_total", "result=\"unavailable\"") >= 1; }, 5s));
    EXPECT_EQ(http->get("/v1/users/me", token).status, 200) << "a failing service must not log anybody out";
    EXPECT_EQ(live_sessions(db, user_id), 2);

    // The account is gone (404): the next refresh revokes both sessions.
    svc.status = 404;
    const bool refused = eventually([&] { return http->get("/v1/users/me", token).status == 401; }, 15s);
    EXPECT_TRUE(refused) << "the token of an account the service no longer knows still works after 15 s";
    EXPECT_EQ(http->get("/v1/users/me", laptop.json()["token"].get<std::string>()).status, 401);
    EXPECT_EQ(live_sessions(db, user_id), 0);
    EXPECT_GE(rest_metric(rest, "im_rest_directory_rechecks_total", "result=\"gone\""), 1);
}

// Without auth.external.check_url there is nothing to ask without the password: such a session
// lives at most auth.token_ttl after the login that proved the account, even when used all along.
TEST(Issue17, Item9_ExternalWithoutCheckUrlEndsTokenTtlAfterLogin) {
    FakeService svc;
    TestDatabase db;
    RestServer rest(db, "im:t" + unique_suffix() + ":",
                    {plus(external_sets(svc), {"auth.token_ttl=4s"}), "recheck-external-nocheck", kRecheckEnv});
    auto http = rest.client();
    auto r = login(*http, "erin", "erin_pass", "phone");
    ASSERT_EQ(r.status, 201) << r.body;
    const auto token = r.json()["token"].get<std::string>();
    const auto start = Clock::now();

    // Used every 200 ms, the token slides (every second) but must end about 4 s after the login.
    int last = 200;
    while (Clock::now() - start < 10s && (last = http->get("/v1/users/me", token).status) == 200) {
        std::this_thread::sleep_for(200ms);
    }
    const auto lived = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    EXPECT_EQ(last, 401) << "a session of an account that cannot be re-checked still works "
                         << lived.count() << " ms after the login (auth.token_ttl=4s)";
    EXPECT_GE(lived, 3s) << "ended before auth.token_ttl";
    EXPECT_EQ(svc.status_requests(), 0u);
    // Logging in again proves the account anew.
    auto again = login(*http, "erin", "erin_pass", "phone");
    ASSERT_EQ(again.status, 201) << again.body;
    EXPECT_EQ(http->get("/v1/users/me", again.json()["token"].get<std::string>()).status, 200);
}

}  // namespace
}  // namespace im::test

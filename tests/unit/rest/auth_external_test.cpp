// ExternalAuthenticator against a real HTTP server on loopback (tests/support/http_test_server).

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include "auth.hpp"
#include "http_test_server.hpp"
#include "im/server/config.hpp"

namespace im::rest {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using test::HttpTestReply;
using test::HttpTestRequest;
using test::HttpTestServer;
using Clock = std::chrono::steady_clock;

const std::string kPassword = "pw-Zq8!unique-secret";

ExternalAuthConfig config_for(const std::string& url, milliseconds timeout = 2000ms) {
    ExternalAuthConfig c;
    c.url = url;
    c.connect_timeout = 1000ms;
    c.timeout = timeout;
    return c;
}

HttpTestServer::Handler reply(int status, std::string body, milliseconds delay = 0ms) {
    return [status, body = std::move(body), delay](const HttpTestRequest&) {
        HttpTestReply r;
        r.status = status;
        r.body = body;
        r.delay = delay;
        return r;
    };
}

// Logs in as alice against a server answering `status` with `body`.
AuthResult login_against(int status, const std::string& body) {
    HttpTestServer server(reply(status, body));
    return ExternalAuthenticator(config_for(server.url("/auth"))).authenticate("alice", kPassword);
}

void expect_no_password(const AuthResult& r) {
    EXPECT_EQ(r.detail.find(kPassword), std::string::npos) << r.detail;
}

std::uint16_t closed_port() {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor acceptor(
        io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    const auto port = acceptor.local_endpoint().port();
    acceptor.close();
    return port;
}

TEST(ExternalAuth, AcceptedSendsExactlyUsernameAndPasswordAsJson) {
    HttpTestServer server(
        reply(200, R"({"user_id": "u-42", "username": "alice", "display_name": "Alice A."})"));
    const ExternalAuthenticator auth(config_for(server.url("/auth/check?realm=im")));

    const auto r = auth.authenticate("alice", kPassword);

    ASSERT_EQ(r.outcome, AuthOutcome::ok) << r.detail;
    EXPECT_EQ(r.identity.external_ref, "u-42");
    EXPECT_EQ(r.identity.username, "alice");
    EXPECT_EQ(r.identity.display_name, "Alice A.");
    expect_no_password(r);

    const auto requests = server.requests();
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0].method, "POST");
    EXPECT_EQ(requests[0].target, "/auth/check?realm=im");
    EXPECT_EQ(requests[0].content_type, "application/json");
    const auto sent = nlohmann::json::parse(requests[0].body);
    EXPECT_EQ(sent, (nlohmann::json{{"username", "alice"}, {"password", kPassword}}));
}

TEST(ExternalAuth, UserIdMayBeAnInteger) {
    const auto r = login_against(200, R"({"user_id": 1234567890123, "username": "alice"})");
    ASSERT_EQ(r.outcome, AuthOutcome::ok) << r.detail;
    EXPECT_EQ(r.identity.external_ref, "1234567890123");
}

TEST(ExternalAuth, UserIdMayBeAString) {
    const auto r = login_against(200, R"({"user_id": "0042", "username": "alice"})");
    ASSERT_EQ(r.outcome, AuthOutcome::ok) << r.detail;
    EXPECT_EQ(r.identity.external_ref, "0042");
}

TEST(ExternalAuth, DisplayNameAbsentOrNullIsEmpty) {
    auto r = login_against(200, R"({"user_id": 7, "username": "alice"})");
    ASSERT_EQ(r.outcome, AuthOutcome::ok) << r.detail;
    EXPECT_EQ(r.identity.display_name, "");

    r = login_against(200, R"({"user_id": 7, "username": "alice", "display_name": null})");
    ASSERT_EQ(r.outcome, AuthOutcome::ok) << r.detail;
    EXPECT_EQ(r.identity.display_name, "");
}

TEST(ExternalAuth, UnauthorizedAndForbiddenAreRejected) {
    for (const int status : {401, 403}) {
        const auto r = login_against(status, R"({"error": "bad credentials"})");
        EXPECT_EQ(r.outcome, AuthOutcome::rejected) << status;
        EXPECT_NE(r.detail.find(std::to_string(status)), std::string::npos) << r.detail;
        expect_no_password(r);
    }
}

TEST(ExternalAuth, ServerErrorsAreUnavailable) {
    for (const int status : {500, 503, 404}) {
        const auto r = login_against(status, R"({"user_id": 1, "username": "alice"})");
        EXPECT_EQ(r.outcome, AuthOutcome::unavailable) << status;
        EXPECT_NE(r.detail.find(std::to_string(status)), std::string::npos) << r.detail;
    }
    // Only 200 accepts: another success code carries no identity.
    const auto r = login_against(204, "");
    EXPECT_EQ(r.outcome, AuthOutcome::unavailable);
    EXPECT_NE(r.detail.find("204"), std::string::npos) << r.detail;
}

TEST(ExternalAuth, MalformedAcceptanceIsUnavailable) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"{not json", "not valid JSON"},
        {"[1, 2]", "not a JSON object"},
        {"", "not valid JSON"},
        {R"({"username": "alice"})", "no user_id"},
        {R"({"user_id": "", "username": "alice"})", "user_id is empty"},
        {R"({"user_id": true, "username": "alice"})", "user_id"},
        {R"({"user_id": 1.5, "username": "alice"})", "user_id"},
        {R"({"user_id": 1})", "no username"},
        {R"({"user_id": 1, "username": ""})", "username is empty"},
        {R"({"user_id": 1, "username": 5})", "username is not a string"},
        {R"({"user_id": 1, "username": "alice", "display_name": 3})", "display_name"},
    };
    for (const auto& [body, why] : cases) {
        const auto r = login_against(200, body);
        EXPECT_EQ(r.outcome, AuthOutcome::unavailable) << body;
        EXPECT_NE(r.detail.find(why), std::string::npos) << body << " -> " << r.detail;
    }
}

TEST(ExternalAuth, SlowServiceTimesOutWithinTheConfiguredTimeout) {
    HttpTestServer server(reply(200, R"({"user_id": 1, "username": "alice"})", 2000ms));
    const ExternalAuthenticator auth(config_for(server.url("/auth"), 300ms));

    const auto start = Clock::now();
    const auto r = auth.authenticate("alice", kPassword);
    const auto elapsed = Clock::now() - start;

    EXPECT_EQ(r.outcome, AuthOutcome::unavailable);
    EXPECT_NE(r.detail.find("timed out"), std::string::npos) << r.detail;
    EXPECT_GE(elapsed, 250ms);
    EXPECT_LT(elapsed, 1500ms);
    EXPECT_EQ(server.requests().size(), 1u);
}

TEST(ExternalAuth, ConnectionRefusedIsUnavailableQuickly) {
    const ExternalAuthenticator auth(
        config_for("http://127.0.0.1:" + std::to_string(closed_port()) + "/auth"));

    const auto start = Clock::now();
    const auto r = auth.authenticate("alice", kPassword);

    EXPECT_EQ(r.outcome, AuthOutcome::unavailable);
    EXPECT_NE(r.detail.find("connect"), std::string::npos) << r.detail;
    EXPECT_LT(Clock::now() - start, 500ms);
    expect_no_password(r);
}

TEST(ExternalAuth, BadUrlIsUnavailableWithoutNetwork) {
    for (const std::string url :
         {"", "ftp://127.0.0.1/auth", "127.0.0.1:8080/auth", "http://", "http:///auth",
          "http://user:pw@127.0.0.1/auth", "http://127.0.0.1:0/auth", "http://127.0.0.1:70000/",
          "http://127.0.0.1:80x/", "http://exa mple/", "http://[::1/auth", "https://bad%host/"}) {
        const auto r = ExternalAuthenticator(config_for(url)).authenticate("alice", kPassword);
        EXPECT_EQ(r.outcome, AuthOutcome::unavailable) << url;
        EXPECT_NE(r.detail.find("auth.external.url"), std::string::npos)
            << url << " -> " << r.detail;
        EXPECT_EQ(r.detail.find("pw@"), std::string::npos) << "the url is not echoed: " << r.detail;
    }
}

TEST(ExternalAuth, UrlWithoutPathPostsToRoot) {
    HttpTestServer server(reply(200, R"({"user_id": 1, "username": "alice"})"));
    const auto url = "HTTP://127.0.0.1:" + std::to_string(server.port());
    const auto r = ExternalAuthenticator(config_for(url)).authenticate("alice", kPassword);
    ASSERT_EQ(r.outcome, AuthOutcome::ok) << r.detail;
    ASSERT_EQ(server.requests().size(), 1u);
    EXPECT_EQ(server.requests()[0].target, "/");
}

TEST(ExternalAuth, HugeAnswerIsUnavailable) {
    const auto r = login_against(200, std::string(1 << 20, 'x'));
    EXPECT_EQ(r.outcome, AuthOutcome::unavailable);
    EXPECT_NE(r.detail.find("larger than"), std::string::npos) << r.detail;
}

TEST(ExternalAuth, EmptyCredentialsAreRejectedBeforeAnyRequest) {
    HttpTestServer server(reply(200, R"({"user_id": 1, "username": "alice"})"));
    const ExternalAuthenticator auth(config_for(server.url("/auth")));

    EXPECT_EQ(auth.authenticate("alice", "").outcome, AuthOutcome::rejected);
    EXPECT_EQ(auth.authenticate("", kPassword).outcome, AuthOutcome::rejected);
    EXPECT_EQ(auth.authenticate("alice", "bad\xff utf-8").outcome, AuthOutcome::rejected);
    EXPECT_TRUE(server.requests().empty());
}

TEST(ExternalAuth, PasswordNeverAppearsInDetailEvenWhenEchoed) {
    const auto echo =
        R"({"error": "wrong password )" + kPassword + R"(", "password": ")" + kPassword + R"("})";
    for (const int status : {200, 401, 500}) {
        const auto r = login_against(status, echo);
        EXPECT_NE(r.outcome, AuthOutcome::ok);
        expect_no_password(r);
    }
    HttpTestServer slow(reply(200, "{}", 700ms));
    expect_no_password(ExternalAuthenticator(config_for(slow.url("/auth"), 200ms))
                           .authenticate("alice", kPassword));
}

TEST(ExternalAuthConfig, BindsFromYaml) {
    config::ConfigSource src;
    src.load_yaml_string(R"(
auth:
  external:
    url: https://auth.example.test:8443/v1/check?realm=im
    ca_file: /etc/im/ca.pem
    connect_timeout: 750ms
    timeout: 3s
)");
    ExternalAuthConfig c;
    config::Binder b(src, "IM_REST_");
    bind(b, c);
    ASSERT_NO_THROW(b.finish());
    EXPECT_EQ(c.url, "https://auth.example.test:8443/v1/check?realm=im");
    EXPECT_EQ(c.ca_file, "/etc/im/ca.pem");
    EXPECT_EQ(c.connect_timeout, 750ms);
    EXPECT_EQ(c.timeout, 3000ms);
}

TEST(ExternalAuthConfig, DefaultsAndEnvironmentOverride) {
    config::ConfigSource src(config::Env{{"IM_REST_AUTH_EXTERNAL_TIMEOUT", "4s"}});
    ExternalAuthConfig c;
    config::Binder b(src, "IM_REST_");
    bind(b, c);
    ASSERT_NO_THROW(b.finish());
    EXPECT_EQ(c.url, "");  // required only when auth.mode is external: the caller's rule
    EXPECT_EQ(c.connect_timeout, 2000ms);
    EXPECT_EQ(c.timeout, 4000ms);
}

TEST(ExternalAuthConfig, MalformedUrlOrTimeoutFailsAtStartup) {
    config::ConfigSource src;
    src.load_yaml_string(R"(
auth:
  external:
    url: ftp://auth.example.test/check
    timeout: 1ms
)");
    ExternalAuthConfig c;
    config::Binder b(src, "IM_REST_");
    bind(b, c);
    try {
        b.finish();
        FAIL() << "expected a ConfigError";
    } catch (const config::ConfigError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("auth.external.url"), std::string::npos) << what;
        EXPECT_NE(what.find("auth.external.timeout"), std::string::npos) << what;
    }
}

// ---- Account re-checks (issue 17, item 9): check_url, no password ---------------------------

AccountCheck check_against(int status, const std::string& body) {
    HttpTestServer server(reply(status, body));
    auto c = config_for(server.url("/auth"));
    c.check_url = server.url("/auth/status");
    return ExternalAuthenticator(c).check_account("ext-42", "erin");
}

TEST(ExternalAccountCheck, SendsTheUserIdAndUsernameOnly) {
    HttpTestServer server(reply(200, R"({"active": true})"));
    auto c = config_for(server.url("/auth"));
    c.check_url = server.url("/auth/status?realm=im");
    const auto r = ExternalAuthenticator(c).check_account("ext-42", "erin");
    EXPECT_EQ(r.status, AccountStatus::active) << r.detail;
    const auto seen = server.requests();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].method, "POST");
    EXPECT_EQ(seen[0].target, "/auth/status?realm=im");
    EXPECT_EQ(nlohmann::json::parse(seen[0].body),
              nlohmann::json({{"user_id", "ext-42"}, {"username", "erin"}}));
}

TEST(ExternalAccountCheck, AnswersMapToActiveGoneOrUnavailable) {
    EXPECT_EQ(check_against(200, R"({"active": true, "extra": 1})").status, AccountStatus::active);
    EXPECT_EQ(check_against(200, R"({"active": false})").status, AccountStatus::gone);
    EXPECT_EQ(check_against(404, R"({"error":"no such user"})").status, AccountStatus::gone);
    EXPECT_EQ(check_against(410, "").status, AccountStatus::gone);
    // Nothing else may end sessions: a broken or misconfigured service keeps everybody in.
    for (const auto& [status, body] :
         std::vector<std::pair<int, std::string>>{{200, ""},
                                                  {200, "not json"},
                                                  {200, "[]"},
                                                  {200, R"({"active": "no"})"},
                                                  {200, R"({})"},
                                                  {204, ""},
                                                  {401, "{}"},
                                                  {403, "{}"},
                                                  {400, "{}"},
                                                  {500, "{}"},
                                                  {503, "{}"}}) {
        const auto r = check_against(status, body);
        EXPECT_EQ(r.status, AccountStatus::unavailable)
            << status << " " << body << ": " << r.detail;
    }
}

TEST(ExternalAccountCheck, UnreachableOrSlowServiceIsUnavailable) {
    auto c = config_for("http://127.0.0.1:" + std::to_string(closed_port()) + "/auth");
    c.check_url = c.url + "/status";
    EXPECT_EQ(ExternalAuthenticator(c).check_account("ext-42", "erin").status,
              AccountStatus::unavailable);

    HttpTestServer slow(reply(200, R"({"active": false})", 2000ms));
    auto s = config_for(slow.url("/auth"), 300ms);
    s.check_url = slow.url("/auth/status");
    const auto start = Clock::now();
    EXPECT_EQ(ExternalAuthenticator(s).check_account("ext-42", "erin").status,
              AccountStatus::unavailable);
    EXPECT_LT(Clock::now() - start, 1500ms);
}

TEST(ExternalAccountCheck, WithoutCheckUrlNothingIsAsked) {
    HttpTestServer server(reply(404, "{}"));
    const ExternalAuthenticator auth(config_for(server.url("/auth")));
    EXPECT_FALSE(auth.can_check_accounts());
    EXPECT_EQ(auth.check_account("ext-42", "erin").status, AccountStatus::not_checkable);
    EXPECT_TRUE(server.requests().empty());
}

TEST(ExternalAuthConfig, CheckUrlIsOptionalButMustBeAUrl) {
    config::ConfigSource src(
        config::Env{{"IM_REST_AUTH_EXTERNAL_CHECK_URL", "https://auth.example.test/status"}});
    ExternalAuthConfig c;
    config::Binder b(src, "IM_REST_");
    bind(b, c);
    ASSERT_NO_THROW(b.finish());
    EXPECT_EQ(c.check_url, "https://auth.example.test/status");

    config::ConfigSource bad(
        config::Env{{"IM_REST_AUTH_EXTERNAL_CHECK_URL", "ftp://auth.example.test/status"}});
    ExternalAuthConfig c2;
    config::Binder b2(bad, "IM_REST_");
    bind(b2, c2);
    try {
        b2.finish();
        FAIL() << "expected a ConfigError";
    } catch (const config::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("auth.external.check_url"), std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace im::rest

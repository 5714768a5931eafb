// Pure pieces of im-rest: input rules, routing, URL decoding, token helpers.
#include <gtest/gtest.h>

#include "http_request.hpp"
#include "http_types.hpp"
#include "im/server/config.hpp"
#include "im/server/tokens.hpp"
#include "rest_config.hpp"
#include "rest_service.hpp"
#include "router.hpp"
#include "validation.hpp"

namespace im::rest {
namespace {

TEST(Validation, Usernames) {
    EXPECT_EQ(normalize_username("Alice"), "alice");
    EXPECT_EQ(normalize_username("bob.smith-2_x"), "bob.smith-2_x");
    EXPECT_EQ(normalize_username("9lives"), "9lives");
    EXPECT_FALSE(normalize_username("ab"));
    EXPECT_FALSE(normalize_username(std::string(33, 'a')));
    EXPECT_TRUE(normalize_username(std::string(32, 'a')));
    EXPECT_FALSE(normalize_username("_lead"));
    EXPECT_FALSE(normalize_username(".lead"));
    EXPECT_FALSE(normalize_username("with space"));
    EXPECT_FALSE(normalize_username("semi;colon"));
    EXPECT_FALSE(normalize_username("quote'"));
    EXPECT_FALSE(normalize_username("*)(uid=*"));
    EXPECT_FALSE(normalize_username("caf\xc3\xa9"));
    EXPECT_FALSE(normalize_username(std::string("nul\0l", 5)));
}

TEST(Validation, DisplayNamesPasswordsDevicesText) {
    EXPECT_TRUE(valid_display_name("Robert'); DROP TABLE users;--"));
    EXPECT_TRUE(valid_display_name("\xF0\x9F\x98\x80 emoji"));
    EXPECT_FALSE(valid_display_name(""));
    EXPECT_FALSE(valid_display_name("   "));
    EXPECT_FALSE(valid_display_name("tab\there"));
    EXPECT_FALSE(valid_display_name(std::string(129, 'x')));
    EXPECT_TRUE(valid_password("12345678"));
    EXPECT_FALSE(valid_password("1234567"));
    EXPECT_FALSE(valid_password(std::string(1025, 'p')));
    EXPECT_TRUE(valid_device_id("phone-1.home:a_b"));
    EXPECT_FALSE(valid_device_id(""));
    EXPECT_FALSE(valid_device_id("has space"));
    EXPECT_FALSE(valid_device_id(std::string(65, 'd')));
    EXPECT_TRUE(valid_text("line one\nline two\ttab", 512));
    EXPECT_FALSE(valid_text("bell\a", 512));
    EXPECT_FALSE(valid_text(std::string(513, 'm'), 512));
}

TEST(Validation, Ids) {
    EXPECT_TRUE(valid_user_id(1));
    EXPECT_TRUE(valid_user_id((1ull << 31) - 1));
    EXPECT_FALSE(valid_user_id(0));
    EXPECT_FALSE(valid_user_id(1ull << 31));
    EXPECT_EQ(parse_id("42"), 42u);
    EXPECT_FALSE(parse_id(""));
    EXPECT_FALSE(parse_id("-1"));
    EXPECT_FALSE(parse_id("4x"));
    EXPECT_FALSE(parse_id("99999999999999999999999"));
}

TEST(Validation, JsonFields) {
    const auto body = nlohmann::json::parse(R"({"s": "x", "n": 7, "ns": "8", "neg": -1, "big": 4294967296, "null": null})");
    EXPECT_EQ(string_field(body, "s"), "x");
    EXPECT_EQ(id_field(body, "n"), 7u);
    EXPECT_EQ(id_field(body, "ns"), 8u);
    EXPECT_FALSE(optional_string_field(body, "missing"));
    EXPECT_FALSE(optional_string_field(body, "null"));
    auto status_of = [](auto f) {
        try {
            f();
        } catch (const ApiError& e) {
            return e.status() * 1000 + (e.code() == "missing_field" ? 1 : 2);
        }
        return 0;
    };
    EXPECT_EQ(status_of([&] { string_field(body, "missing"); }), 400001);
    EXPECT_EQ(status_of([&] { string_field(body, "n"); }), 400002);
    EXPECT_EQ(status_of([&] { id_field(body, "neg"); }), 400002);
    EXPECT_EQ(status_of([&] { id_field(body, "big"); }), 400002);
    EXPECT_EQ(status_of([&] { id_field(body, "s"); }), 400002);
}

TEST(Validation, JsonObjectBody) {
    auto status_of = [](const std::string& content_type, const std::string& body) {
        HttpRequest req;
        if (!content_type.empty()) req.headers["content-type"] = content_type;
        req.body = body;
        try {
            json_object_body(req);
        } catch (const ApiError& e) {
            return e.status();
        }
        return 200;
    };
    EXPECT_EQ(status_of("application/json", R"({"a": 1})"), 200);
    EXPECT_EQ(status_of("Application/JSON ; charset=utf-8", "{}"), 200);
    EXPECT_EQ(status_of("", "{}"), 415);
    EXPECT_EQ(status_of("text/plain", "{}"), 415);
    EXPECT_EQ(status_of("application/json", "{"), 400);
    EXPECT_EQ(status_of("application/json", "[1]"), 400);
    EXPECT_EQ(status_of("application/json", "\"\xff\""), 400) << "invalid UTF-8 is malformed JSON";
    HttpRequest req;
    req.headers["content-type"] = "application/json";
    req.body = R"({"username": "alice"})";
    EXPECT_EQ(json_object_body(req).at("username"), "alice");
}

TEST(Validation, Iso8601) {
    EXPECT_EQ(iso8601(0), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(iso8601(1'795'000'000'123), "2026-11-18T11:06:40.123Z");
}

TEST(Router, LiteralBeatsParameterAndMethodMismatchIs405) {
    Router<int> r;
    r.add("GET", "/v1/users/{id}", 1);
    r.add("GET", "/v1/users/me", 2);
    r.add("POST", "/v1/users", 3);
    r.add("POST", "/v1/friends/requests/{id}/accept", 4);
    auto me = r.match("GET", "/v1/users/me");
    ASSERT_NE(me.target, nullptr);
    EXPECT_EQ(*me.target, 2);
    auto id = r.match("GET", "/v1/users/42");
    ASSERT_NE(id.target, nullptr);
    EXPECT_EQ(*id.target, 1);
    EXPECT_EQ(id.params.at("id"), "42");
    EXPECT_EQ(id.pattern, "/v1/users/{id}");
    auto acc = r.match("POST", "/v1/friends/requests/7/accept");
    ASSERT_NE(acc.target, nullptr);
    EXPECT_EQ(acc.params.at("id"), "7");
    auto wrong = r.match("DELETE", "/v1/users");
    EXPECT_EQ(wrong.target, nullptr);
    EXPECT_TRUE(wrong.method_mismatch);
    EXPECT_EQ(wrong.allow, "POST");
    auto none = r.match("GET", "/v1/unknown");
    EXPECT_EQ(none.target, nullptr);
    EXPECT_FALSE(none.method_mismatch);
    EXPECT_EQ(r.match("GET", "/v1/users/42/extra").target, nullptr);
    EXPECT_NE(r.match("GET", "/v1/users/42/").target, nullptr) << "a trailing slash is ignored";
}

// Two routes of the same method matched a path requested with another method: "Allow: GET, GET"
// (PUT /v1/users/me). Found by tests/fuzz/rest_request_fuzz.cpp.
TEST(Router, AllowListsEachMethodOnce) {
    Router<int> r;
    r.add("GET", "/v1/users/me", 1);
    r.add("GET", "/v1/users/{id}", 2);
    r.add("DELETE", "/v1/users/{id}", 3);
    const auto m = r.match("PUT", "/v1/users/me");
    EXPECT_EQ(m.target, nullptr);
    EXPECT_TRUE(m.method_mismatch);
    EXPECT_EQ(m.allow, "GET, DELETE");

    Router<RouteSpec> real;
    add_account_routes(real);
    add_social_routes(real);
    add_conversation_routes(real);
    add_file_routes(real);
    EXPECT_EQ(real.match("PUT", "/v1/users/me").allow, "GET");
    EXPECT_EQ(real.match("GET", "/v1/sessions/current").allow, "DELETE");
}

TEST(HttpTypes, UrlDecoding) {
    EXPECT_EQ(url_decode("a%20b+c", true), "a b c");
    EXPECT_EQ(url_decode("a+b", false), "a+b");
    EXPECT_EQ(url_decode("%41%4a%4A", false), "AJJ");
    EXPECT_FALSE(url_decode("%", false));
    EXPECT_FALSE(url_decode("%4", false));
    EXPECT_FALSE(url_decode("%zz", false));
    auto q = parse_query("a=1&b=x%20y&&c&a=2");
    ASSERT_TRUE(q);
    EXPECT_EQ(q->at("a"), "2");
    EXPECT_EQ(q->at("b"), "x y");
    EXPECT_EQ(q->at("c"), "");
    EXPECT_FALSE(parse_query("a=%G1"));
}

TEST(HttpTypes, RequestFromBeastHead) {
    namespace http = boost::beast::http;
    http::request<http::string_body> in(http::verb::post, "/v1/users/a%20b?x=1&y=%41+B", 11);
    in.set("X-Custom-Header", "v");
    in.set(http::field::content_type, "application/json");
    in.body() = "{}";
    bool bad = true;
    const auto r = to_request(std::move(in), "127.0.0.1", bad);
    EXPECT_FALSE(bad);
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.path, "/v1/users/a b");
    EXPECT_EQ(r.query.at("x"), "1");
    EXPECT_EQ(r.query.at("y"), "A B");
    ASSERT_NE(r.header("x-custom-header"), nullptr);
    EXPECT_EQ(*r.header("x-custom-header"), "v");
    EXPECT_EQ(*r.header("content-type"), "application/json");
    EXPECT_EQ(r.body, "{}");
    EXPECT_EQ(r.client_addr, "127.0.0.1");
    for (const char* target : {"/a%zz", "relative", "*", "/ok?a=%G1", ""}) {
        http::request_header<> h;
        h.method(http::verb::get);
        h.target(target);
        bool flagged = false;
        to_request(h, "peer", flagged);
        EXPECT_TRUE(flagged) << target;
    }
}

TEST(HttpTypes, ErrorBody) {
    const auto r = HttpResponse::error(409, "username_taken", "taken");
    EXPECT_EQ(r.status, 409);
    EXPECT_EQ(nlohmann::json::parse(r.body), nlohmann::json::parse(R"({"error":{"code":"username_taken","message":"taken"}})"));
}

TEST(Tokens, FormatAndHash) {
    const auto a = tokens::new_token();
    const auto b = tokens::new_token();
    EXPECT_EQ(a.size(), 43u);
    EXPECT_NE(a, b);
    EXPECT_EQ(tokens::hash_token(a).size(), 32u);
    EXPECT_EQ(tokens::to_hex(tokens::hash_token("abc")),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(tokens::bearer_token("Bearer " + a), a);
    EXPECT_EQ(tokens::bearer_token("bearer  " + a + " "), a);
    EXPECT_FALSE(tokens::bearer_token("Basic " + a));
    EXPECT_FALSE(tokens::bearer_token("Bearer " + a.substr(1)));
    EXPECT_FALSE(tokens::bearer_token("Bearer " + a.substr(1) + "!"));
    EXPECT_FALSE(tokens::bearer_token(""));
}

TEST(Tokens, CacheCodec) {
    tokens::SessionInfo s{12, 34, "dev|with|bars", 1'800'000'000'000};
    const auto enc = tokens::encode_cached_session(s);
    bool revoked = true;
    auto dec = tokens::decode_cached_session(enc, &revoked);
    ASSERT_TRUE(dec);
    EXPECT_FALSE(revoked);
    EXPECT_EQ(dec->session_id, 12u);
    EXPECT_EQ(dec->user_id, 34u);
    EXPECT_EQ(dec->device_id, "dev|with|bars");
    EXPECT_EQ(dec->expires_ms, 1'800'000'000'000);
    EXPECT_FALSE(tokens::decode_cached_session("r", &revoked));
    EXPECT_TRUE(revoked);
    EXPECT_FALSE(tokens::decode_cached_session("v|x|1|2|d"));
    EXPECT_FALSE(tokens::decode_cached_session("garbage"));
}

// Issue 17: the admin listener (item 10) and the account re-check keys (item 9).
TEST(RestConfig, AdminListenerAndRecheckDefaults) {
    const auto c = load_rest_config(config::ConfigSource(config::Env{{"IM_CLUSTER_SECRET", "a-test-cluster-secret"}}));
    EXPECT_EQ(c.admin_host, "127.0.0.1");
    EXPECT_EQ(c.admin_port, 8090);
    EXPECT_EQ(c.tokens.directory_recheck_interval, std::chrono::hours(1));
    EXPECT_EQ(c.directory_recheck_poll, std::chrono::seconds(5));
    EXPECT_TRUE(c.external.check_url.empty());
}

TEST(RestConfig, SharedRecheckIntervalAndAdminPortRules) {
    const auto c = load_rest_config(config::ConfigSource(
        config::Env{{"IM_AUTH_DIRECTORY_RECHECK_INTERVAL", "0s"}, {"IM_REST_ADMIN_PORT", "0"},
                    {"IM_CLUSTER_SECRET", "a-test-cluster-secret"}}));
    EXPECT_EQ(c.tokens.directory_recheck_interval, std::chrono::milliseconds(0));
    EXPECT_EQ(c.admin_port, 0);  // any free port
    try {
        load_rest_config(config::ConfigSource(config::Env{{"IM_REST_ADMIN_PORT", "8080"}}));
        FAIL() << "the admin port equal to http.port was accepted";
    } catch (const config::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("admin.port"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace im::rest

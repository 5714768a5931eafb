// im-rest friends and blocks against real MariaDB and Redis: the friend request state machine
// (send, accept, decline, cancel, crossing requests), friend removal, blocks and their effects,
// message round-trips, authentication of every endpoint, presence (the friend list's online flag
// and GET /v1/users/{id}/presence, from sessions registered in Redis as a connector would), and
// the state machine under concurrency.
#include <gtest/gtest.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <algorithm>
#include <atomic>
#include <latch>
#include <map>
#include <thread>
#include <vector>

#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"
#include "im/user_status/user_status.hpp"
#include "rest_fixture.hpp"

namespace im::test {
namespace {

class RestSocial : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        db_ = new TestDatabase();
        prefix_ = "im:t" + unique_suffix() + ":";
        rest_ = new RestServer(*db_, prefix_, {{}, "rest-social"});
    }
    static void TearDownTestSuite() {
        delete rest_;
        delete db_;
    }
    void SetUp() override { http_ = rest_->client(); }

    static std::string fresh(const std::string& base) { return base + unique_suffix().substr(0, 6); }
    TestUser user(const std::string& base) { return register_and_login(*http_, fresh(base)); }

    HttpResult send(const TestUser& from, std::uint64_t to, const std::string& message = "hi") {
        return http_->post("/v1/friends/requests", {{"to_user_id", to}, {"message", message}}, from.token);
    }
    // Sends a request that must succeed; returns its id.
    std::uint64_t send_ok(const TestUser& from, const TestUser& to, const std::string& message = "hi") {
        auto r = send(from, to.id, message);
        EXPECT_EQ(r.status, 201) << r.body;
        return r.json().value("id", std::uint64_t{0});
    }
    HttpResult act(const TestUser& who, std::uint64_t request_id, const std::string& verb) {
        return http_->post("/v1/friends/requests/" + std::to_string(request_id) + "/" + verb, nlohmann::json::object(),
                           who.token);
    }
    void make_friends(const TestUser& a, const TestUser& b) {
        const auto id = send_ok(a, b);
        auto r = act(b, id, "accept");
        ASSERT_EQ(r.status, 200) << r.body;
    }
    // The ids in GET /v1/friends of `u`, in the order listed.
    std::vector<std::uint64_t> friends_of(const TestUser& u) {
        auto r = http_->get("/v1/friends", u.token);
        EXPECT_EQ(r.status, 200) << r.body;
        std::vector<std::uint64_t> ids;
        const auto list = r.json()["friends"];  // a copy: the parsed document is a temporary
        for (const auto& f : list) ids.push_back(f["id"].get<std::uint64_t>());
        return ids;
    }
    std::vector<std::uint64_t> blocks_of(const TestUser& u) {
        auto r = http_->get("/v1/blocks", u.token);
        EXPECT_EQ(r.status, 200) << r.body;
        std::vector<std::uint64_t> ids;
        const auto list = r.json()["blocks"];
        for (const auto& f : list) ids.push_back(f["id"].get<std::uint64_t>());
        return ids;
    }
    nlohmann::json requests_of(const TestUser& u, const std::string& direction) {
        auto r = http_->get("/v1/friends/requests?direction=" + direction, u.token);
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json()["requests"];
    }
    static std::size_t count(const std::vector<std::uint64_t>& ids, std::uint64_t id) {
        return static_cast<std::size_t>(std::count(ids.begin(), ids.end(), id));
    }
    // Rows in `friendships` between a and b (either direction).
    static int friendship_rows(std::uint64_t a, std::uint64_t b) {
        auto& st = db_->db().prepare(
            "SELECT COUNT(*) FROM friendships WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)");
        st.setUInt64(1, a);
        st.setUInt64(2, b);
        st.setUInt64(3, b);
        st.setUInt64(4, a);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        rs->next();
        return rs->getInt(1);
    }
    static std::string request_status(std::uint64_t id) {
        auto& st = db_->db().prepare("SELECT status FROM friend_requests WHERE id = ?");
        st.setUInt64(1, id);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        return rs->next() ? rs->getString(1).asStdString() : std::string("<none>");
    }

    static TestDatabase* db_;
    static RestServer* rest_;
    static std::string prefix_;
    std::unique_ptr<HttpClient> http_;
};
TestDatabase* RestSocial::db_ = nullptr;
RestServer* RestSocial::rest_ = nullptr;
std::string RestSocial::prefix_;

void expect_error(const HttpResult& r, int status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.body;
    const auto j = r.json();
    ASSERT_TRUE(j.is_object()) << r.body;
    ASSERT_TRUE(j.contains("error")) << r.body;
    EXPECT_EQ(j["error"]["code"], code) << r.body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_EQ(r.header("content-type"), "application/json");
}

void expect_user(const nlohmann::json& j, const TestUser& u) {
    ASSERT_TRUE(j.is_object()) << j.dump();
    EXPECT_EQ(j["id"], u.id);
    EXPECT_EQ(j["username"], u.username);
    EXPECT_EQ(j["display_name"], u.username);
}

TEST_F(RestSocial, SendRequestReturnsItWithBothUsers) {
    auto a = user("sa");
    auto b = user("sb");
    auto r = send(a, b.id, "hello there");
    ASSERT_EQ(r.status, 201) << r.body;
    const auto j = r.json();
    EXPECT_GT(j["id"].get<std::uint64_t>(), 0u);
    EXPECT_EQ(j["from_user_id"], a.id);
    EXPECT_EQ(j["to_user_id"], b.id);
    EXPECT_EQ(j["message"], "hello there");
    EXPECT_EQ(j["status"], "pending");
    EXPECT_TRUE(j["created_at"].is_string());
    expect_user(j["from"], a);
    expect_user(j["to"], b);

    // The addressee sees it incoming (the default direction), the sender outgoing.
    for (const auto* target : {"/v1/friends/requests?direction=in", "/v1/friends/requests"}) {
        auto in = http_->get(target, b.token);
        ASSERT_EQ(in.status, 200) << in.body;
        const auto reqs = in.json()["requests"];
        ASSERT_EQ(reqs.size(), 1u) << in.body;
        EXPECT_EQ(reqs[0]["id"], j["id"]);
        EXPECT_EQ(reqs[0]["status"], "pending");
        expect_user(reqs[0]["from"], a);
    }
    const auto out = requests_of(a, "out");
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0]["id"], j["id"]);
    expect_user(out[0]["to"], b);
    EXPECT_TRUE(requests_of(a, "in").empty());
    EXPECT_TRUE(requests_of(b, "out").empty());

    expect_error(http_->get("/v1/friends/requests?direction=sideways", a.token), 400, "invalid_parameter");
    expect_error(http_->get("/v1/friends/requests?direction=", a.token), 400, "invalid_parameter");
}

TEST_F(RestSocial, SendRequestErrors) {
    auto a = user("ea");
    auto b = user("eb");
    expect_error(send(a, a.id), 400, "self_request");
    expect_error(send(a, 999999999), 404, "user_not_found");
    ASSERT_EQ(send(a, b.id).status, 201);
    expect_error(send(a, b.id, "again"), 409, "request_pending");

    const auto post = [&](const nlohmann::json& body) { return http_->post("/v1/friends/requests", body, a.token); };
    expect_error(post({{"to_user_id", "abc"}}), 400, "invalid_field");
    expect_error(post({{"to_user_id", 0}}), 400, "invalid_field");
    expect_error(post({{"to_user_id", -5}}), 400, "invalid_field");
    expect_error(post({{"to_user_id", 1.5}}), 400, "invalid_field");
    expect_error(post({{"to_user_id", std::uint64_t{1} << 31}}), 400, "invalid_field");
    expect_error(post({{"to_user_id", "18446744073709551616"}}), 400, "invalid_field");
    expect_error(post({{"to_user_id", nlohmann::json::array({b.id})}}), 400, "invalid_field");
    expect_error(post({{"message", "no addressee"}}), 400, "missing_field");
    expect_error(post({{"to_user_id", b.id}, {"message", 42}}), 400, "invalid_field");
    expect_error(http_->request("POST", "/v1/friends/requests", "{not json",
                                {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + a.token}}),
                 400, "malformed_json");
    // Still exactly the one pending request.
    EXPECT_EQ(requests_of(b, "in").size(), 1u);
}

TEST_F(RestSocial, AcceptOnlyByTheAddressee) {
    auto a = user("aa");
    auto b = user("ab");
    auto c = user("ac");
    const auto id = send_ok(a, b);

    expect_error(act(a, id, "accept"), 403, "not_addressee");
    expect_error(act(c, id, "accept"), 404, "request_not_found");
    expect_error(act(b, 999999999, "accept"), 404, "request_not_found");
    expect_error(act(b, 0, "accept"), 404, "not_found");
    expect_error(http_->post("/v1/friends/requests/abc/accept", nlohmann::json::object(), b.token), 404, "not_found");
    EXPECT_EQ(request_status(id), "pending");
    EXPECT_TRUE(friends_of(a).empty());

    auto ok = act(b, id, "accept");
    ASSERT_EQ(ok.status, 200) << ok.body;
    EXPECT_EQ(ok.json()["id"], id);
    EXPECT_EQ(ok.json()["status"], "accepted");
    EXPECT_EQ(request_status(id), "accepted");

    const auto fa = friends_of(a);
    const auto fb = friends_of(b);
    EXPECT_EQ(fa, std::vector<std::uint64_t>{b.id});
    EXPECT_EQ(fb, std::vector<std::uint64_t>{a.id});
    auto list = http_->get("/v1/friends", a.token).json()["friends"];
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0]["username"], b.username);
    EXPECT_TRUE(list[0]["since"].is_string());
    EXPECT_TRUE(friends_of(c).empty());
    EXPECT_EQ(friendship_rows(a.id, b.id), 2);

    expect_error(act(b, id, "accept"), 409, "not_pending");
    expect_error(act(b, id, "decline"), 409, "not_pending");
    expect_error(act(a, id, "cancel"), 409, "not_pending");
    expect_error(send(a, b.id), 409, "already_friends");
    expect_error(send(b, a.id), 409, "already_friends");
    EXPECT_TRUE(requests_of(b, "in").empty());
    EXPECT_TRUE(requests_of(a, "out").empty());
    EXPECT_EQ(friendship_rows(a.id, b.id), 2);
}

TEST_F(RestSocial, DeclineOnlyByTheAddressee) {
    auto a = user("da");
    auto b = user("db");
    auto c = user("dc");
    const auto id = send_ok(a, b);
    expect_error(act(a, id, "decline"), 403, "not_addressee");
    expect_error(act(c, id, "decline"), 404, "request_not_found");
    auto r = act(b, id, "decline");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["status"], "declined");
    EXPECT_EQ(request_status(id), "declined");
    expect_error(act(b, id, "decline"), 409, "not_pending");
    expect_error(act(b, id, "accept"), 409, "not_pending");
    EXPECT_TRUE(friends_of(a).empty());
    EXPECT_TRUE(friends_of(b).empty());
    EXPECT_TRUE(requests_of(b, "in").empty());
    EXPECT_TRUE(requests_of(a, "out").empty());

    // A declined request does not stop a new one.
    const auto again = send_ok(a, b, "second try");
    EXPECT_NE(again, id);
    ASSERT_EQ(act(b, again, "accept").status, 200);
    EXPECT_EQ(friends_of(a), std::vector<std::uint64_t>{b.id});
}

TEST_F(RestSocial, CancelOnlyByTheSender) {
    auto a = user("ca");
    auto b = user("cb");
    auto c = user("cc");
    const auto id = send_ok(a, b);
    expect_error(act(b, id, "cancel"), 403, "not_sender");
    expect_error(act(c, id, "cancel"), 404, "request_not_found");
    auto r = act(a, id, "cancel");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["status"], "canceled");
    EXPECT_EQ(request_status(id), "canceled");
    expect_error(act(a, id, "cancel"), 409, "not_pending");
    expect_error(act(b, id, "accept"), 409, "not_pending");
    EXPECT_TRUE(requests_of(b, "in").empty());
    EXPECT_TRUE(requests_of(a, "out").empty());
    EXPECT_TRUE(friends_of(b).empty());
    // A new request after canceling is possible.
    EXPECT_NE(send_ok(a, b), id);
}

TEST_F(RestSocial, CrossingRequestsMakeOneFriendship) {
    auto a = user("xa");
    auto b = user("xb");
    const auto ab = send_ok(a, b, "a to b");
    const auto ba = send_ok(b, a, "b to a");
    ASSERT_NE(ab, ba);
    EXPECT_EQ(requests_of(a, "in").size(), 1u);
    EXPECT_EQ(requests_of(a, "out").size(), 1u);

    auto r = act(b, ab, "accept");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(friends_of(a), std::vector<std::uint64_t>{b.id});
    EXPECT_EQ(friends_of(b), std::vector<std::uint64_t>{a.id});
    // B's crossing request was settled by the same friendship.
    EXPECT_EQ(request_status(ba), "accepted");
    expect_error(act(a, ba, "accept"), 409, "not_pending");
    EXPECT_EQ(friendship_rows(a.id, b.id), 2);
    EXPECT_EQ(friends_of(a), std::vector<std::uint64_t>{b.id});
    for (const auto* dir : {"in", "out"}) {
        EXPECT_TRUE(requests_of(a, dir).empty()) << dir;
        EXPECT_TRUE(requests_of(b, dir).empty()) << dir;
    }
}

TEST_F(RestSocial, RemoveFriend) {
    auto a = user("ra");
    auto b = user("rb");
    auto c = user("rc");
    make_friends(a, b);
    make_friends(a, c);
    EXPECT_EQ(friends_of(a).size(), 2u);

    EXPECT_EQ(http_->del("/v1/friends/" + std::to_string(b.id), a.token).status, 204);
    expect_error(http_->del("/v1/friends/" + std::to_string(b.id), a.token), 404, "not_friends");
    expect_error(http_->del("/v1/friends/" + std::to_string(a.id), b.token), 404, "not_friends");
    expect_error(http_->del("/v1/friends/abc", a.token), 404, "not_found");
    EXPECT_EQ(count(friends_of(a), b.id), 0u);
    EXPECT_EQ(count(friends_of(a), c.id), 1u) << "other friendships stay";
    EXPECT_TRUE(friends_of(b).empty());
    EXPECT_EQ(friendship_rows(a.id, b.id), 0);
    EXPECT_EQ(friendship_rows(a.id, c.id), 2);

    // The other side can remove too; afterwards they can become friends again.
    EXPECT_EQ(http_->del("/v1/friends/" + std::to_string(a.id), c.token).status, 204);
    EXPECT_TRUE(friends_of(a).empty());
    EXPECT_TRUE(friends_of(c).empty());
    make_friends(b, a);
    EXPECT_EQ(friends_of(a), std::vector<std::uint64_t>{b.id});
}

TEST_F(RestSocial, BlockStopsRequests) {
    auto a = user("ba");
    auto b = user("bb");
    auto r = http_->post("/v1/blocks", {{"user_id", b.id}}, a.token);
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["user_id"], b.id);

    expect_error(send(b, a.id), 403, "blocked");
    expect_error(send(a, b.id), 409, "you_blocked");
    EXPECT_EQ(blocks_of(a), std::vector<std::uint64_t>{b.id});
    auto list = http_->get("/v1/blocks", a.token).json()["blocks"];
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0]["username"], b.username);
    EXPECT_TRUE(list[0]["since"].is_string());
    EXPECT_TRUE(blocks_of(b).empty());

    // Blocking twice is harmless and lists once.
    EXPECT_EQ(http_->post("/v1/blocks", {{"user_id", b.id}}, a.token).status, 201);
    EXPECT_EQ(blocks_of(a), std::vector<std::uint64_t>{b.id});

    expect_error(http_->post("/v1/blocks", {{"user_id", a.id}}, a.token), 400, "self_block");
    expect_error(http_->post("/v1/blocks", {{"user_id", 999999999}}, a.token), 404, "user_not_found");
    expect_error(http_->post("/v1/blocks", {{"user_id", "x"}}, a.token), 400, "invalid_field");
    expect_error(http_->post("/v1/blocks", nlohmann::json::object(), a.token), 400, "missing_field");

    expect_error(http_->del("/v1/blocks/" + std::to_string(a.id), b.token), 404, "not_blocked");
    EXPECT_EQ(http_->del("/v1/blocks/" + std::to_string(b.id), a.token).status, 204);
    expect_error(http_->del("/v1/blocks/" + std::to_string(b.id), a.token), 404, "not_blocked");
    expect_error(http_->del("/v1/blocks/abc", a.token), 404, "not_found");
    EXPECT_TRUE(blocks_of(a).empty());

    // After the unblock both directions work again.
    const auto id = send_ok(b, a, "sorry");
    ASSERT_EQ(act(a, id, "accept").status, 200);
    EXPECT_EQ(friends_of(a), std::vector<std::uint64_t>{b.id});
}

TEST_F(RestSocial, BlockRemovesFriendshipAndClosesPendingRequests) {
    auto a = user("ka");
    auto b = user("kb");
    auto c = user("kc");
    auto d = user("kd");
    make_friends(a, b);
    make_friends(a, d);
    const auto ac = send_ok(a, c);
    const auto ca = send_ok(c, a);
    const auto db_req = send_ok(d, b);  // not involving the block: stays

    ASSERT_EQ(http_->post("/v1/blocks", {{"user_id", b.id}}, a.token).status, 201);
    EXPECT_EQ(friends_of(a), std::vector<std::uint64_t>{d.id});
    EXPECT_TRUE(friends_of(b).empty());
    EXPECT_EQ(friendship_rows(a.id, b.id), 0);
    EXPECT_EQ(friendship_rows(a.id, d.id), 2);

    // Blocked by the addressee of a pending request, and the other way round: both closed.
    ASSERT_EQ(http_->post("/v1/blocks", {{"user_id", a.id}}, c.token).status, 201);
    EXPECT_EQ(request_status(ac), "canceled");
    EXPECT_EQ(request_status(ca), "canceled");
    EXPECT_EQ(request_status(db_req), "pending");
    for (const auto* dir : {"in", "out"}) {
        EXPECT_TRUE(requests_of(a, dir).empty()) << dir;
        EXPECT_TRUE(requests_of(c, dir).empty()) << dir;
    }
    EXPECT_EQ(requests_of(b, "in").size(), 1u);
    expect_error(act(c, ac, "accept"), 409, "not_pending");
    expect_error(act(a, ca, "accept"), 409, "not_pending");
    expect_error(send(a, c.id), 403, "blocked");
    expect_error(send(c, a.id), 409, "you_blocked");

    // Unblocked: a fresh request works; the old ones stay closed.
    EXPECT_EQ(http_->del("/v1/blocks/" + std::to_string(a.id), c.token).status, 204);
    const auto again = send_ok(a, c, "friends again?");
    ASSERT_EQ(act(c, again, "accept").status, 200);
    EXPECT_EQ(friendship_rows(a.id, c.id), 2);
    EXPECT_EQ(request_status(ac), "canceled");
}

TEST_F(RestSocial, MessageRoundTripsVerbatim) {
    auto a = user("ma");
    auto b = user("mb");
    const std::string evil =
        "Robert'); DROP TABLE friend_requests;-- \"quoted\" 'single' `tick` \\ back\\slash \\' \\\" % _ ; "
        "<b>html</b> \xF0\x9F\x98\x80 \xE2\x9C\x93 caf\xC3\xA9\nsecond line\tTab";
    auto r = send(a, b.id, evil);
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["message"], evil);
    auto in = requests_of(b, "in");
    ASSERT_EQ(in.size(), 1u);
    EXPECT_EQ(in[0]["message"], evil);
    EXPECT_EQ(requests_of(a, "out")[0]["message"], evil);
    auto& st = db_->db().prepare("SELECT message FROM friend_requests WHERE id = ?");
    st.setUInt64(1, r.json()["id"].get<std::uint64_t>());
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    ASSERT_TRUE(rs->next());
    EXPECT_EQ(rs->getString(1).asStdString(), evil);
    auto ok = act(b, r.json()["id"].get<std::uint64_t>(), "accept");
    EXPECT_EQ(ok.json()["message"], evil);
    EXPECT_EQ(friendship_rows(a.id, b.id), 2) << "the tables are still there";

    // Empty and missing messages are fine.
    auto c = user("mc");
    auto empty = http_->post("/v1/friends/requests", {{"to_user_id", c.id}}, a.token);
    ASSERT_EQ(empty.status, 201) << empty.body;
    EXPECT_EQ(empty.json()["message"], "");
}

TEST_F(RestSocial, MessageLimits) {
    auto a = user("la");
    auto b = user("lb");
    std::string emoji512;
    for (int i = 0; i < 128; ++i) emoji512 += "\xF0\x9F\x98\x80";  // 128 x 4 bytes
    ASSERT_EQ(emoji512.size(), 512u);
    expect_error(send(a, b.id, std::string(513, 'x')), 400, "invalid_message");
    expect_error(send(a, b.id, emoji512 + "x"), 400, "invalid_message");
    expect_error(send(a, b.id, std::string("bell\x07")), 400, "invalid_message");
    expect_error(send(a, b.id, std::string("nul\0byte", 8)), 400, "invalid_message");
    EXPECT_TRUE(requests_of(b, "in").empty());
    auto r = send(a, b.id, emoji512);
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["message"], emoji512);
    EXPECT_EQ(requests_of(b, "in")[0]["message"], emoji512);
}

TEST_F(RestSocial, EveryEndpointNeedsAToken) {
    auto a = user("ta");
    auto b = user("tb");
    const auto id = send_ok(a, b);
    const std::string rid = std::to_string(id);
    const std::string bid = std::to_string(b.id);
    struct Call {
        std::string method, target;
        bool json_body;
    };
    const std::vector<Call> calls = {
        {"POST", "/v1/friends/requests", true},
        {"GET", "/v1/friends/requests", false},
        {"GET", "/v1/friends/requests?direction=out", false},
        {"POST", "/v1/friends/requests/" + rid + "/accept", true},
        {"POST", "/v1/friends/requests/" + rid + "/decline", true},
        {"POST", "/v1/friends/requests/" + rid + "/cancel", true},
        {"GET", "/v1/friends", false},
        {"DELETE", "/v1/friends/" + bid, false},
        {"POST", "/v1/blocks", true},
        {"DELETE", "/v1/blocks/" + bid, false},
        {"GET", "/v1/blocks", false},
        {"GET", "/v1/users/" + bid + "/presence", false},
    };
    const std::string body = nlohmann::json{{"to_user_id", b.id}, {"user_id", b.id}}.dump();
    for (const auto& c : calls) {
        SCOPED_TRACE(c.method + " " + c.target);
        std::map<std::string, std::string> headers;
        if (c.json_body) headers["Content-Type"] = "application/json";
        expect_error(http_->request(c.method, c.target, c.json_body ? body : "", headers), 401, "unauthenticated");
        headers["Authorization"] = "Bearer " + std::string(43, 'A');
        expect_error(http_->request(c.method, c.target, c.json_body ? body : "", headers), 401, "unauthenticated");
        headers["Authorization"] = "Basic dXNlcjpwYXNz";
        expect_error(http_->request(c.method, c.target, c.json_body ? body : "", headers), 401, "unauthenticated");
    }
    // Nothing happened.
    EXPECT_EQ(request_status(id), "pending");
    EXPECT_TRUE(blocks_of(a).empty());
    EXPECT_TRUE(friends_of(a).empty());
}

// The online flag of each friend: false until a session is registered in Redis on a live connector
// (what im-connector does at login), false again when that connector is gone.
TEST_F(RestSocial, FriendListShowsWhoIsOnline) {
    auto a = user("oa");
    auto b = user("ob");
    auto c = user("oc");
    make_friends(a, b);
    make_friends(a, c);
    const auto online_of = [&](const TestUser& u) {
        std::map<std::uint64_t, bool> out;
        auto r = http_->get("/v1/friends", u.token);
        EXPECT_EQ(r.status, 200) << r.body;
        const auto list = r.json()["friends"];
        for (const auto& f : list) {
            EXPECT_TRUE(f["online"].is_boolean()) << f.dump();
            out[f["id"].get<std::uint64_t>()] = f.value("online", true);
        }
        return out;
    };
    EXPECT_EQ(online_of(a), (std::map<std::uint64_t, bool>{{b.id, false}, {c.id, false}}));

    redis::RedisConfig rc;
    rc.port = TestEnv::get().redis_port;
    redis::RedisConnection conn(rc);
    user_status::UserStatus us(conn, prefix_);
    const std::string connector = "conn-" + unique_suffix();
    us.connector_heartbeat({connector, 1, "127.0.0.1:9000", 1, 0}, std::chrono::seconds(30));
    us.online(b.id, {"phone", connector, 1, 1, 1});
    EXPECT_EQ(online_of(a), (std::map<std::uint64_t, bool>{{b.id, true}, {c.id, false}}));
    EXPECT_EQ(online_of(b), (std::map<std::uint64_t, bool>{{a.id, false}}));

    // A session of a previous life of the connector (another epoch) does not count.
    us.online(c.id, {"phone", connector, 0, 1, 1});
    EXPECT_EQ(online_of(a), (std::map<std::uint64_t, bool>{{b.id, true}, {c.id, false}}));

    us.connector_gone(connector);
    EXPECT_EQ(online_of(a), (std::map<std::uint64_t, bool>{{b.id, false}, {c.id, false}}));
}

TEST_F(RestSocial, PresenceOfSelfAndFriendsOnly) {
    auto a = user("pa");
    auto b = user("pb");
    auto stranger = user("ps");
    make_friends(a, b);
    const auto presence = [&](const TestUser& who, const std::string& id) {
        return http_->get("/v1/users/" + id + "/presence", who.token);
    };

    auto self = presence(a, std::to_string(a.id));
    ASSERT_EQ(self.status, 200) << self.body;
    EXPECT_EQ(self.json(), (nlohmann::json{{"user_id", a.id}, {"online", false}}));
    auto me = presence(a, "me");
    ASSERT_EQ(me.status, 200) << me.body;
    EXPECT_EQ(me.json()["user_id"], a.id);
    auto friend_ = presence(a, std::to_string(b.id));
    ASSERT_EQ(friend_.status, 200) << friend_.body;
    EXPECT_EQ(friend_.json(), (nlohmann::json{{"user_id", b.id}, {"online", false}}));

    expect_error(presence(a, std::to_string(stranger.id)), 403, "not_friends");
    expect_error(presence(stranger, std::to_string(a.id)), 403, "not_friends");
    expect_error(presence(a, "2000000000"), 404, "user_not_found");
    expect_error(presence(a, "abc"), 404, "not_found");

    redis::RedisConfig rc;
    rc.port = TestEnv::get().redis_port;
    redis::RedisConnection conn(rc);
    user_status::UserStatus us(conn, prefix_);
    const std::string connector = "conn-" + unique_suffix();
    us.connector_heartbeat({connector, 7, "127.0.0.1:9000", 1, 0}, std::chrono::seconds(30));
    us.online(b.id, {"laptop", connector, 7, 1, 1});
    EXPECT_EQ(presence(a, std::to_string(b.id)).json()["online"], true);
    EXPECT_EQ(presence(b, "me").json()["online"], true);
    EXPECT_TRUE(us.offline(b.id, "laptop", 1));
    EXPECT_EQ(presence(a, std::to_string(b.id)).json()["online"], false);

    // Unfriended: no longer visible.
    ASSERT_EQ(http_->del("/v1/friends/" + std::to_string(b.id), a.token).status, 204);
    expect_error(presence(a, std::to_string(b.id)), 403, "not_friends");
}

// Redis down: the friend list still answers, everyone offline (presence is only a hint there);
// the presence endpoint, which is about presence alone, answers 503.
TEST_F(RestSocial, RedisDownFriendsShowOfflinePresenceIsUnavailable) {
    TestDatabase db;
    RestServer rest(db, "im:t" + unique_suffix() + ":",
                    {{"redis.port=" + std::to_string(pick_free_port())}, "rest-social-noredis"});
    auto http = rest.client();
    auto a = register_and_login(*http, fresh("na"));
    auto b = register_and_login(*http, fresh("nb"));
    auto req = http->post("/v1/friends/requests", {{"to_user_id", b.id}}, a.token);
    ASSERT_EQ(req.status, 201) << req.body;
    ASSERT_EQ(http->post("/v1/friends/requests/" + std::to_string(req.json()["id"].get<std::uint64_t>()) + "/accept",
                         nlohmann::json::object(), b.token)
                  .status,
              200);
    auto list = http->get("/v1/friends", a.token);
    ASSERT_EQ(list.status, 200) << list.body;
    ASSERT_EQ(list.json()["friends"].size(), 1u);
    EXPECT_EQ(list.json()["friends"][0]["id"], b.id);
    EXPECT_EQ(list.json()["friends"][0]["online"], false);
    expect_error(http->get("/v1/users/" + std::to_string(b.id) + "/presence", a.token), 503, "unavailable");
}

// A and B send each other requests at the same moment, then both accept the other's request at
// the same moment. Whatever the interleaving: one friendship (two rows), no 5xx.
TEST_F(RestSocial, ConcurrentCrossingRequestsAndAccepts) {
    constexpr int kRounds = 12;
    int both_accepted = 0;
    for (int round = 0; round < kRounds; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        auto a = user("qa");
        auto b = user("qb");
        auto ca = rest_->client();
        auto cb = rest_->client();
        HttpResult sa, sb;
        {
            std::latch go(2);
            std::thread ta([&] {
                go.arrive_and_wait();
                sa = ca->post("/v1/friends/requests", {{"to_user_id", b.id}, {"message", "from a"}}, a.token);
            });
            std::thread tb([&] {
                go.arrive_and_wait();
                sb = cb->post("/v1/friends/requests", {{"to_user_id", a.id}, {"message", "from b"}}, b.token);
            });
            ta.join();
            tb.join();
        }
        ASSERT_EQ(sa.status, 201) << sa.body;
        ASSERT_EQ(sb.status, 201) << sb.body;
        const auto ab = sa.json()["id"].get<std::uint64_t>();
        const auto ba = sb.json()["id"].get<std::uint64_t>();

        HttpResult xa, xb;  // A accepts B's request; B accepts A's
        {
            std::latch go(2);
            std::thread ta([&] {
                go.arrive_and_wait();
                xa = ca->post("/v1/friends/requests/" + std::to_string(ba) + "/accept", nlohmann::json::object(), a.token);
            });
            std::thread tb([&] {
                go.arrive_and_wait();
                xb = cb->post("/v1/friends/requests/" + std::to_string(ab) + "/accept", nlohmann::json::object(), b.token);
            });
            ta.join();
            tb.join();
        }
        for (const auto* x : {&xa, &xb}) {
            EXPECT_LT(x->status, 500) << x->body;
            EXPECT_TRUE(x->status == 200 || x->status == 409) << x->status << " " << x->body;
            if (x->status == 409) {
                EXPECT_EQ(x->json()["error"]["code"], "not_pending") << x->body;
            }
        }
        EXPECT_TRUE(xa.status == 200 || xb.status == 200) << "one of the accepts wins: " << xa.body << " / " << xb.body;
        if (xa.status == 200 && xb.status == 200) ++both_accepted;
        EXPECT_EQ(friendship_rows(a.id, b.id), 2);
        EXPECT_EQ(friends_of(a), std::vector<std::uint64_t>{b.id});
        EXPECT_EQ(friends_of(b), std::vector<std::uint64_t>{a.id});
        EXPECT_EQ(request_status(ab), "accepted");
        EXPECT_EQ(request_status(ba), "accepted");
        if (HasFailure()) break;
    }
    // With row locks the second accept sees the request already settled.
    EXPECT_EQ(both_accepted, 0);
}

}  // namespace
}  // namespace im::test

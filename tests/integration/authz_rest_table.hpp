#pragma once
// The authorization sweep's table of REST endpoints: one row per (method, pattern) that im-rest
// registers (im::rest::registered_routes(); the sweep fails while a registered route has no row
// here, or a row names a route that is not registered). A new endpoint gets a row: its rightful
// request, and a check or an n/a reason for other_user, non_friend and blocked. The token columns
// (no, malformed, expired, revoked token) are generated from the rightful request.

#include <nlohmann/json.hpp>

#include <set>

#include "authz_sweep_world.hpp"

namespace im::test::authz {

// One HTTP request of the sweep; `token` makes it succeed with status `ok`.
struct Req {
    std::string method, target;
    TestUser owner;     // whose resources: the expired and revoked tokens are the owner's
    std::string token;  // the rightful token (usually owner.token)
    int ok = 200;
    std::optional<nlohmann::json> json;  // a JSON body
    std::string raw;                     // or a raw body (uploads)

    HttpResult call(World& w, const std::optional<std::string>& authorization) const {
        std::map<std::string, std::string> h;
        if (authorization) h["Authorization"] = *authorization;
        std::string body = raw;
        if (json) {
            body = json->dump();
            h["Content-Type"] = "application/json";
        } else if (!raw.empty()) {
            h["Content-Type"] = "text/plain";
        }
        return w.http.request(method, target, body, h);
    }
    HttpResult as(World& w, const std::string& bearer) const { return call(w, "Bearer " + bearer); }
};

inline Req req(std::string method, std::string target, const TestUser& owner, int ok = 200,
               std::optional<nlohmann::json> json = std::nullopt) {
    return Req{std::move(method), std::move(target), owner, owner.token, ok, std::move(json), {}};
}

struct RestEntry {
    std::string method, pattern;
    bool needs_auth = true;
    std::function<Req(World&)> rightful;  // prepares fresh state; the request that succeeds
    std::map<Col, Cell> cells;  // other_user, non_friend, blocked (public routes: all columns)
    bool pushes = false;        // reaches a transfer: refusals also wait kQuiet for deliveries
    std::function<void(World&, const Req&, const HttpResult&)>
        after_control;  // the control's effect
};

inline RestEntry rest_row(
    std::string method, std::string pattern, bool needs_auth, std::function<Req(World&)> rightful,
    std::map<Col, Cell> cells, bool pushes = false,
    std::function<void(World&, const Req&, const HttpResult&)> after_control = {}) {
    RestEntry e;
    e.method = std::move(method);
    e.pattern = std::move(pattern);
    e.needs_auth = needs_auth;
    e.rightful = std::move(rightful);
    e.cells = std::move(cells);
    e.pushes = pushes;
    e.after_control = std::move(after_control);
    return e;
}

inline std::string error_code(const HttpResult& r) {
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j.contains("error") || !j["error"].is_object()) return "";
    return j["error"].value("code", "");
}

// A refused request: its status and error code, nothing of alice's or carol's in the answer.
inline void expect_refused(const HttpResult& r, int status, const std::string& code,
                           const std::string& what) {
    EXPECT_EQ(r.status, status) << what << ": " << r.body;
    EXPECT_EQ(error_code(r), code) << what << ": " << r.body;
    expect_no_secret(r.body, what);
}

inline std::string path_of(const std::string& prefix, std::uint64_t id,
                           const std::string& suffix = "") {
    return prefix + std::to_string(id) + suffix;
}

// A case with no side effect allowed: the probe brackets `act`.
inline void refused_case(World& w, const std::function<void()>& act,
                         std::chrono::milliseconds window = 0ms) {
    auto p = w.begin();
    act();
    w.end(p, window);
}

inline std::map<Col, Cell> public_cells(const std::string& why, std::map<Col, Cell> more = {}) {
    for (Col c : kRestCols)
        more.try_emplace(c, na(why));
    return more;
}

// accept/decline/cancel of a request that a block closed: 409 not_pending, nothing changes.
inline void closed_by_block(World& w, const std::string& action) {
    auto z = w.fresh("blocker");
    const bool as_sender = action == "cancel";
    const auto id = as_sender ? w.request(w.bob, z) : w.request(z, w.bob);
    World::expect_status(w.http.post("/v1/blocks", {{"user_id", w.bob.id}}, z.token), 201, "block");
    refused_case(w, [&] {
        auto r = w.http.post(path_of("/v1/friends/requests/", id, "/" + action),
                             nlohmann::json::object(), w.bob.token);
        expect_refused(r, 409, "not_pending", "bob " + action + "s a request closed by a block");
    });
}

// accept/decline/cancel by a stranger (404) and by the wrong party (403).
inline void wrong_party(World& w, const std::string& action) {
    auto x = w.fresh("party");
    const bool as_sender = action == "cancel";
    const auto id = as_sender ? w.request(w.alice, x) : w.request(x, w.alice);
    refused_case(w, [&] {
        const auto target = path_of("/v1/friends/requests/", id, "/" + action);
        expect_refused(w.http.post(target, nlohmann::json::object(), w.bob.token), 404,
                       "request_not_found", "bob " + action + "s alice's request");
        expect_refused(w.http.post(target, nlohmann::json::object(), x.token), 403,
                       as_sender ? "not_sender" : "not_addressee",
                       "the other party " + action + "s it");
    });
}


// ---------------------------------------------------------------- groups
// A group made through the API by fresh users (no watcher hears its events): the owner, an admin
// and a plain member, both friends of the owner. Its name carries the SECRET marker.
struct AuthzGroup {
    std::uint64_t id = 0;
    TestUser owner, admin, member;
};

inline HttpResult json_call(World& w, const std::string& method, const std::string& target,
                            const nlohmann::json& body, const std::string& token) {
    return w.http.request(method, target, body.dump(),
                          {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}});
}

inline std::string group_path(std::uint64_t id, const std::string& suffix = "") {
    return path_of("/v1/groups/", id, suffix);
}

inline std::string member_path(const AuthzGroup& g, const TestUser& u, const std::string& suffix = "") {
    return group_path(g.id, "/members/" + std::to_string(u.id) + suffix);
}

inline AuthzGroup make_group(World& w) {
    AuthzGroup g;
    g.owner = w.fresh("gown");
    g.admin = w.fresh("gadm");
    g.member = w.fresh("gmem");
    w.cl.befriend(g.owner, g.admin);
    w.cl.befriend(g.owner, g.member);
    auto r = w.http.post("/v1/groups",
                         {{"name", "SECRET group"}, {"members", {g.admin.id, g.member.id}}},
                         g.owner.token);
    World::expect_status(r, 201, "create a group");
    g.id = r.json()["group_id"].get<std::uint64_t>();
    World::expect_status(json_call(w, "PUT", member_path(g, g.admin, "/role"),
                                   {{"role", "admin"}}, g.owner.token),
                         200, "make an admin");
    return g;
}

// bob, in no group, acts on g: 404 group_not_found, like for a group that does not exist.
inline void stranger_refused(World& w, const AuthzGroup& g, const std::string& method,
                             const std::string& target, const nlohmann::json& body) {
    refused_case(w, [&] {
        expect_refused(json_call(w, method, target, body, w.bob.token), 404, "group_not_found",
                       "bob: " + method + " " + target);
    });
    (void)g;
}

// A member whose role does not allow it: 403 group_forbidden, nothing changes.
inline void role_refused(World& w, const TestUser& who, const std::string& method,
                         const std::string& target, const nlohmann::json& body,
                         const std::string& what) {
    refused_case(w, [&] {
        expect_refused(json_call(w, method, target, body, who.token), 403, "group_forbidden", what);
    });
}

inline const char* kMembershipDecides =
    "group membership and roles decide, not friendship (other_user: a non-member and a member "
    "without the role)";

inline std::vector<RestEntry> rest_table() {
    std::vector<RestEntry> t;
    const std::string pub = "public: answers no user's data and changes no state";

    // ---------------------------------------------------------------- health
    t.push_back(rest_row(
        "GET", "/healthz", false, [](World& w) { return req("GET", "/healthz", w.alice); },
        public_cells(pub)));
    t.push_back(rest_row(
        "GET", "/readyz", false, [](World& w) { return req("GET", "/readyz", w.alice); },
        public_cells(pub)));

    // ---------------------------------------------------------------- accounts and sessions
    t.push_back(rest_row(
        "POST", "/v1/users", false,
        [](World& w) {
            const auto name = "reg" + unique_suffix().substr(0, 8);
            return req(
                "POST", "/v1/users", w.alice, 201,
                nlohmann::json{
                    {"username", name}, {"password", "registered-pw"}, {"display_name", name}});
        },
        public_cells("public: registration needs no token",
                     {{Col::other_user, check([](World& w) {
                           refused_case(w, [&] {
                               auto r = w.http.post("/v1/users", {{"username", w.alice.username},
                                                                  {"password", "taken-over-pw"}});
                               expect_refused(r, 409, "username_taken",
                                              "registering alice's username");
                           });
                       })}})));
    t.push_back(rest_row(
        "POST", "/v1/sessions", false,
        [](World& w) {
            return req("POST", "/v1/sessions", w.alice, 201,
                       nlohmann::json{{"username", w.alice.username},
                                      {"password", w.alice.password},
                                      {"device_id", "SECRET-alice-ctl"}});
        },
        public_cells("public: the login itself (credentials, not a token)",
                     {{Col::other_user, check([](World& w) {
                           refused_case(w, [&] {
                               auto r =
                                   w.http.post("/v1/sessions", {{"username", w.alice.username},
                                                                {"password", w.bob.password},
                                                                {"device_id", "bob-as-alice"}});
                               expect_refused(r, 401, "invalid_credentials",
                                              "alice's name, bob's password");
                           });
                       })}})));
    t.push_back(rest_row(
        "DELETE", "/v1/sessions/current", true,
        [](World& w) {
            auto r = req("DELETE", "/v1/sessions/current", w.alice, 204);
            r.token = w.cl.login_token(w.alice, "SECRET-alice-bye");
            return r;
        },
        {{Col::other_user,
          na("the token is the session it ends: another user's token ends its own")},
         {Col::non_friend, na("no other user involved")},
         {Col::blocked, na("no other user involved")}},
        false,
        [](World& w, const Req& r, const HttpResult&) {
            EXPECT_EQ(w.http.get("/v1/users/me", r.token).status, 401)
                << "the ended session still works";
        }));
    t.push_back(rest_row(
        "GET", "/v1/sessions", true, [](World& w) { return req("GET", "/v1/sessions", w.alice); },
        {{Col::other_user, check([](World& w) {
              refused_case(w, [&] {
                  auto r = w.http.get("/v1/sessions", w.bob.token);
                  ASSERT_EQ(r.status, 200) << r.body;
                  expect_no_secret(r.body, "bob's session list");
                  auto& st = w.cl.db().db().prepare("SELECT user_id FROM sessions WHERE id = ?");
                  const auto body = r.json();
                  for (const auto& s : body["sessions"]) {
                      st.setUInt64(1, s["id"].get<std::uint64_t>());
                      std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
                      ASSERT_TRUE(rs->next());
                      EXPECT_EQ(rs->getUInt64(1), w.bob.id) << "bob was shown session " << s.dump();
                  }
              });
          })},
         {Col::non_friend, na("lists the caller's own sessions only (other_user)")},
         {Col::blocked, na("lists the caller's own sessions only (other_user)")}}));
    t.push_back(rest_row(
        "DELETE", "/v1/sessions/{id}", true,
        [](World& w) {
            const auto lost = w.cl.login_token(w.alice, "SECRET-alice-lost");
            return req("DELETE", path_of("/v1/sessions/", w.session_id_of(lost)), w.alice, 204);
        },
        {{Col::other_user, check([](World& w) {
              const auto token = w.cl.login_token(w.alice, "SECRET-alice-tablet");
              const auto id = w.session_id_of(token);
              refused_case(w, [&] {
                  expect_refused(w.http.del(path_of("/v1/sessions/", id), w.bob.token), 404,
                                 "session_not_found", "bob revokes alice's session");
              });
              EXPECT_EQ(w.http.get("/v1/users/me", token).status, 200)
                  << "alice's session was revoked";
          })},
         {Col::non_friend, na("a session belongs to one user (other_user)")},
         {Col::blocked, na("a session belongs to one user (other_user)")}}));
    t.push_back(rest_row(
        "GET", "/v1/users/me", true, [](World& w) { return req("GET", "/v1/users/me", w.alice); },
        {{Col::other_user, check([](World& w) {
              refused_case(w, [&] {
                  auto r = w.http.get("/v1/users/me", w.bob.token);
                  ASSERT_EQ(r.status, 200);
                  EXPECT_EQ(r.json()["id"], w.bob.id) << "the token names the user";
              });
          })},
         {Col::non_friend, na("the caller's own profile")},
         {Col::blocked, na("the caller's own profile")}}));
    auto public_profile_only = [](World& w, const HttpResult& r, const std::string& what) {
        ASSERT_EQ(r.status, 200) << what << ": " << r.body;
        std::set<std::string> keys;
        const auto body = r.json();
        for (const auto& [k, v] : body.items())
            keys.insert(k);
        EXPECT_EQ(keys, (std::set<std::string>{"id", "username", "display_name"}))
            << what << ": " << r.body;
        EXPECT_EQ(r.json()["id"], w.alice.id);
    };
    t.push_back(rest_row(
        "GET", "/v1/users/{id}", true,
        [](World& w) { return req("GET", path_of("/v1/users/", w.carol.id), w.alice); },
        {{Col::other_user, check([public_profile_only](World& w) {
              refused_case(w, [&] {
                  public_profile_only(w, w.http.get(path_of("/v1/users/", w.alice.id), w.bob.token),
                                      "bob looks alice up");
              });
          })},
         {Col::non_friend,
          na("profiles are public to logged-in users: other_user checks only public fields")},
         {Col::blocked,
          na("profiles are public to logged-in users: other_user checks only public fields")}}));
    t.push_back(rest_row(
        "GET", "/v1/users", true,
        [](World& w) { return req("GET", "/v1/users?username=" + w.carol.username, w.alice); },
        {{Col::other_user, check([public_profile_only](World& w) {
              refused_case(w, [&] {
                  public_profile_only(
                      w, w.http.get("/v1/users?username=" + w.alice.username, w.bob.token),
                      "bob looks alice up by name");
              });
          })},
         {Col::non_friend,
          na("profiles are public to logged-in users: other_user checks only public fields")},
         {Col::blocked,
          na("profiles are public to logged-in users: other_user checks only public fields")}}));
    t.push_back(rest_row(
        "POST", "/v1/users/me/password", true,
        [](World& w) {
            auto p = w.fresh("pw");
            return req("POST", "/v1/users/me/password", p, 200,
                       nlohmann::json{{"old", p.password}, {"new", p.password + "-new"}});
        },
        {{Col::other_user, check([](World& w) {
              auto p = w.fresh("pw");
              refused_case(w, [&] {
                  auto r =
                      w.http.post("/v1/users/me/password",
                                  {{"old", p.password}, {"new", "bob-chose-this"}}, w.bob.token);
                  expect_refused(r, 403, "invalid_credentials",
                                 "bob changes a password with another's");
              });
          })},
         {Col::non_friend, na("the caller's own password (other_user)")},
         {Col::blocked, na("the caller's own password (other_user)")}}));

    // ---------------------------------------------------------------- friends and blocks
    t.push_back(rest_row(
        "POST", "/v1/friends/requests", true,
        [](World& w) {
            auto x = w.fresh("x");
            return req("POST", "/v1/friends/requests", w.alice, 201,
                       nlohmann::json{{"to_user_id", x.id}});
        },
        {{Col::other_user, na("the sender is always the token's user")},
         {Col::non_friend, na("a request is how non-friends become friends")},
         {Col::blocked, check([](World& w) {
              refused_case(w, [&] {
                  auto r =
                      w.http.post("/v1/friends/requests",
                                  {{"to_user_id", w.ken.id}, {"message", "ATTACK"}}, w.bob.token);
                  expect_refused(r, 403, "blocked", "bob asks ken, who blocked him");
              });
          })}}));
    t.push_back(rest_row(
        "GET", "/v1/friends/requests", true,
        [](World& w) { return req("GET", "/v1/friends/requests?direction=out", w.alice); },
        {{Col::other_user, check([](World& w) {
              refused_case(w, [&] {
                  for (const char* dir : {"in", "out"}) {
                      auto r = w.http.get(std::string("/v1/friends/requests?direction=") + dir,
                                          w.bob.token);
                      ASSERT_EQ(r.status, 200) << r.body;
                      expect_no_secret(r.body, "bob's requests");
                      const auto body = r.json();
                      for (const auto& q : body["requests"]) {
                          EXPECT_TRUE(q["from_user_id"] == w.bob.id || q["to_user_id"] == w.bob.id)
                              << q.dump();
                      }
                  }
              });
          })},
         {Col::non_friend, na("lists the caller's own requests only (other_user)")},
         {Col::blocked,
          na("a block closes the pending requests both ways (accept's blocked case)")}},
        false,
        [](World&, const Req&, const HttpResult& r) {
            EXPECT_TRUE(contains(r.body, "SECRET request"))
                << "the control lists alice's request: " << r.body;
        }));
    for (const std::string action : {"accept", "decline", "cancel"}) {
        t.push_back(rest_row(
            "POST", "/v1/friends/requests/{id}/" + action, true,
            [action](World& w) {
                auto x = w.fresh("x");
                const auto id = action == "cancel" ? w.request(w.alice, x) : w.request(x, w.alice);
                return req("POST", path_of("/v1/friends/requests/", id, "/" + action), w.alice, 200,
                           nlohmann::json::object());
            },
            {{Col::other_user, check([action](World& w) { wrong_party(w, action); })},
             {Col::non_friend,
              na(action == "accept" ? "accepting is how a non-friend becomes a friend"
                                    : "answering or withdrawing a request involves no friendship")},
             {Col::blocked, check([action](World& w) { closed_by_block(w, action); })}}));
    }
    t.push_back(rest_row(
        "GET", "/v1/friends", true, [](World& w) { return req("GET", "/v1/friends", w.alice); },
        {{Col::other_user, check([](World& w) {
              refused_case(w, [&] {
                  auto r = w.http.get("/v1/friends", w.bob.token);
                  ASSERT_EQ(r.status, 200) << r.body;
                  ASSERT_EQ(r.json()["friends"].size(), 1u) << r.body;
                  EXPECT_EQ(r.json()["friends"][0]["id"], w.dave.id) << r.body;
              });
          })},
         {Col::non_friend, na("lists the caller's own friends only (other_user)")},
         {Col::blocked, na("a block removes the friendship (presence's blocked case)")}}));
    t.push_back(rest_row(
        "GET", "/v1/users/{id}/presence", true,
        [](World& w) {
            return req("GET", path_of("/v1/users/", w.carol.id, "/presence"), w.alice);
        },
        {{Col::other_user, check([](World& w) {
              refused_case(w, [&] {
                  expect_refused(
                      w.http.get(path_of("/v1/users/", w.alice.id, "/presence"), w.bob.token), 403,
                      "not_friends", "bob asks for alice's presence");
              });
          })},
         {Col::non_friend, check([](World& w) {
              auto x = w.fresh("x");
              auto y = w.fresh("y");
              w.cl.befriend(x, y);
              World::expect_status(w.http.del(path_of("/v1/friends/", y.id), x.token), 204,
                                   "unfriend");
              refused_case(w, [&] {
                  expect_refused(w.http.get(path_of("/v1/users/", y.id, "/presence"), x.token), 403,
                                 "not_friends", "an ex-friend asks for presence");
              });
          })},
         {Col::blocked, check([](World& w) {
              refused_case(w, [&] {
                  expect_refused(
                      w.http.get(path_of("/v1/users/", w.ken.id, "/presence"), w.bob.token), 403,
                      "not_friends", "bob asks for ken's presence");
                  expect_refused(
                      w.http.get(path_of("/v1/users/", w.bob.id, "/presence"), w.ken.token), 403,
                      "not_friends", "ken asks for bob's presence");
              });
          })}}));
    t.push_back(rest_row(
        "DELETE", "/v1/friends/{user_id}", true,
        [](World& w) {
            auto x = w.fresh("x");
            w.cl.befriend(w.alice, x);
            return req("DELETE", path_of("/v1/friends/", x.id), w.alice, 204);
        },
        {{Col::other_user, check([](World& w) {
              refused_case(w, [&] {
                  expect_refused(w.http.del(path_of("/v1/friends/", w.carol.id), w.bob.token), 404,
                                 "not_friends", "bob ends alice's friendship with carol");
              });
          })},
         {Col::non_friend, na("other_user: removing a friendship one is not part of")},
         {Col::blocked, na("a block removes the friendship already")}}));
    t.push_back(rest_row(
        "POST", "/v1/blocks", true,
        [](World& w) {
            auto x = w.fresh("x");
            return req("POST", "/v1/blocks", w.alice, 201, nlohmann::json{{"user_id", x.id}});
        },
        {{Col::other_user, na("the blocker is always the token's user")},
         {Col::non_friend, na("anyone may block anyone")},
         {Col::blocked, na("a blocked user may block back: no one else's data")}}));
    t.push_back(rest_row(
        "DELETE", "/v1/blocks/{user_id}", true,
        [](World& w) {
            auto x = w.fresh("x");
            World::expect_status(w.http.post("/v1/blocks", {{"user_id", x.id}}, w.alice.token), 201,
                                 "block");
            return req("DELETE", path_of("/v1/blocks/", x.id), w.alice, 204);
        },
        {{Col::other_user, check([](World& w) {
              refused_case(w, [&] {
                  expect_refused(w.http.del(path_of("/v1/blocks/", w.bob.id), w.carol.token), 404,
                                 "not_blocked", "carol lifts ken's block of bob");
              });
          })},
         {Col::non_friend, na("other_user: lifting a block one did not set")},
         {Col::blocked, check([](World& w) {
              refused_case(w, [&] {
                  expect_refused(w.http.del(path_of("/v1/blocks/", w.ken.id), w.bob.token), 404,
                                 "not_blocked", "bob lifts ken's block of himself");
              });
          })}}));
    t.push_back(rest_row(
        "GET", "/v1/blocks", true, [](World& w) { return req("GET", "/v1/blocks", w.alice); },
        {{Col::other_user, check([](World& w) {
              refused_case(w, [&] {
                  auto r = w.http.get("/v1/blocks", w.carol.token);
                  ASSERT_EQ(r.status, 200) << r.body;
                  EXPECT_TRUE(r.json()["blocks"].empty())
                      << "carol sees others' blocks: " << r.body;
              });
          })},
         {Col::non_friend, na("lists the caller's own blocks only (other_user)")},
         {Col::blocked, check([](World& w) {
              refused_case(w, [&] {
                  auto r = w.http.get("/v1/blocks", w.bob.token);
                  ASSERT_EQ(r.status, 200) << r.body;
                  EXPECT_TRUE(r.json()["blocks"].empty()) << "bob sees who blocked him: " << r.body;
              });
          })}}));

    // ---------------------------------------------------------------- conversations
    t.push_back(rest_row(
        "GET", "/v1/conversations", true,
        [](World& w) { return req("GET", "/v1/conversations", w.alice); },
        {{Col::other_user, check([](World& w) {
              refused_case(w, [&] {
                  auto r = w.http.get("/v1/conversations", w.bob.token);
                  ASSERT_EQ(r.status, 200) << r.body;
                  expect_no_secret(r.body, "bob's conversations");
                  ASSERT_FALSE(r.json()["conversations"].empty())
                      << "bob has one with dave: " << r.body;
                  const auto body = r.json();
                  for (const auto& c : body["conversations"]) {
                      EXPECT_TRUE(is_participant(c["id"].get<std::uint64_t>(), w.bob.id))
                          << c.dump();
                  }
              });
          })},
         {Col::non_friend, na("lists the caller's own conversations only (other_user)")},
         {Col::blocked, na("lists the caller's own conversations only (other_user)")}},
        false,
        [](World& w, const Req&, const HttpResult& r) {
            EXPECT_TRUE(contains(r.body, std::to_string(w.conv_ac))) << r.body;
        }));
    t.push_back(rest_row(
        "GET", "/v1/conversations/{id}/messages", true,
        [](World& w) {
            return req("GET", path_of("/v1/conversations/", w.conv_ac, "/messages"), w.alice);
        },
        {{Col::other_user, check([](World& w) {
              const auto swapped =
                  (conversation_high(w.conv_ac) << 32) | conversation_low(w.conv_ac);
              refused_case(w, [&] {
                  for (const std::string q : {"", "?after_seq=0", "?before_seq=1000"}) {
                      expect_refused(
                          w.http.get(path_of("/v1/conversations/", w.conv_ac, "/messages" + q),
                                     w.bob.token),
                          404, "conversation_not_found", "bob reads alice<->carol " + q);
                  }
                  expect_refused(
                      w.http.get(path_of("/v1/conversations/", swapped, "/messages"), w.bob.token),
                      404, "conversation_not_found", "bob reads it by the swapped id");
              });
          })},
         {Col::non_friend,
          na("a conversation is readable by its two participants only (other_user)")},
         {Col::blocked,
          na("a participant reads their own history; a block stops new messages (frame send)")}},
        false,
        [](World&, const Req&, const HttpResult& r) {
            EXPECT_TRUE(contains(r.body, "SECRET")) << "the control reads the history: " << r.body;
        }));
    auto read_no_effect = [](World& w, std::uint64_t conv, const std::string& what) {
        refused_case(
            w,
            [&] {
                auto r = w.http.post(path_of("/v1/conversations/", conv, "/read"),
                                     {{"up_to_seq", 5}}, w.bob.token);
                EXPECT_TRUE(r.status == 204 || r.status == 404) << what << ": " << r.body;
                expect_no_secret(r.body, what);
            },
            kQuiet);
    };
    t.push_back(rest_row(
        "POST", "/v1/conversations/{id}/read", true,
        [](World& w) {
            // Something unread for alice, so the control moves her watermark.
            World::expect_sent(w.send_text(*w.carol_main, w.alice.id, "CONTROL SECRET unread"),
                               "carol");
            if (!w.watcher("alice").client->wait_body(Envelope::kDeliver, 5s)) {
                ADD_FAILURE() << "alice's watcher missed carol's message";
            }
            w.watcher("carol").client->wait_body(Envelope::kDeliver, 5s);  // carol's other device
            w.settle();
            return req("POST", path_of("/v1/conversations/", w.conv_ac, "/read"), w.alice, 204,
                       nlohmann::json{{"up_to_seq", w.last_seq(w.conv_ac)}});
        },
        {{Col::other_user, check([](World& w) {
              refused_case(
                  w,
                  [&] {
                      auto r = w.http.post(path_of("/v1/conversations/", w.conv_ac, "/read"),
                                           {{"up_to_seq", 1000}}, w.bob.token);
                      expect_refused(r, 404, "conversation_not_found",
                                     "bob marks alice<->carol read");
                  },
                  kQuiet);
          })},
         {Col::non_friend, check([read_no_effect](World& w) {
              read_no_effect(w, conversation_id(w.bob.id, w.alice.id),
                             "bob marks his empty chat with alice read");
          })},
         {Col::blocked, check([read_no_effect](World& w) {
              read_no_effect(w, conversation_id(w.bob.id, w.ken.id),
                             "bob marks his empty chat with ken read");
              // With history: neither one of a blocked pair hears the other's receipts.
              auto b = blocked_pair(w);
              for (const bool reader_is_x : {true, false}) {
                  const auto& token = reader_is_x ? b.x.token : b.y.token;
                  read_stays_with_reader(
                      w, b, reader_is_x,
                      [&](std::uint64_t up_to) {
                          auto r = w.http.post(path_of("/v1/conversations/", b.conv, "/read"),
                                               {{"up_to_seq", up_to}}, token);
                          EXPECT_EQ(r.status, 204) << r.body;
                      },
                      reader_is_x ? "the blocked user's POST .../read"
                                  : "the blocker's POST .../read");
              }
          })}},
        true,
        [](World& w, const Req&, const HttpResult&) {
            auto e = w.watcher("carol").client->wait_for(
                [&](const Envelope& f) {
                    return f.has_receipt_event() && f.receipt_event().user_id() == w.alice.id;
                },
                5s);
            EXPECT_TRUE(e.has_value())
                << "carol's watcher did not hear alice's read receipt (control)";
            w.settle();
        }));

    // ---------------------------------------------------------------- files
    t.push_back(rest_row(
        "GET", "/v1/files/{id}", true,
        [](World& w) { return req("GET", path_of("/v1/files/", w.private_file), w.alice); },
        {{Col::other_user, check([](World& w) {
              refused_case(w, [&] {
                  expect_refused(w.http.get(path_of("/v1/files/", w.private_file), w.bob.token),
                                 404, "file_not_found", "bob downloads alice's file");
              });
          })},
         {Col::non_friend, check([](World& w) {
              refused_case(w, [&] {
                  expect_refused(w.http.get(path_of("/v1/files/", w.sent_file), w.bob.token), 404,
                                 "file_not_found", "bob downloads the file alice sent carol");
                  auto r = w.http.get(path_of("/v1/files/", w.sent_file), w.carol.token);
                  EXPECT_EQ(r.status, 200)
                      << "carol, who received it, cannot download it: " << r.body;
              });
          })},
         {Col::blocked, na("a file is readable by its owner and the participants it was sent to; "
                           "blocks do not rewrite history")}},
        false,
        [](World&, const Req&, const HttpResult& r) {
            EXPECT_EQ(r.body, "SECRET content alice kept");
        }));
    t.push_back(rest_row("POST", "/v1/files", true,
                         [](World& w) {
                             auto r = req("POST", "/v1/files?name=control.txt", w.alice, 201);
                             r.raw = "CONTROL upload";
                             return r;
                         },
                         {{Col::other_user, na("the owner is always the token's user")},
                          {Col::non_friend, na("an upload involves no other user")},
                          {Col::blocked, na("an upload involves no other user")}}));

    // ---------------------------------------------------------------- groups
    t.push_back(rest_row(
        "POST", "/v1/groups", true,
        [](World& w) {
            auto x = w.fresh("gx");
            auto y = w.fresh("gy");
            w.cl.befriend(x, y);
            return req("POST", "/v1/groups", x, 201,
                       nlohmann::json{{"name", "CONTROL group"}, {"members", {y.id}}});
        },
        {{Col::other_user, na("the owner is always the token's user; members are checked as the "
                              "caller's friends (non_friend, blocked)")},
         {Col::non_friend, check([](World& w) {
              refused_case(w, [&] {
                  auto r = w.http.post("/v1/groups",
                                       {{"name", "ATTACK"}, {"members", {w.alice.id}}}, w.bob.token);
                  expect_refused(r, 403, "not_friends", "bob puts alice in his group");
              });
          })},
         {Col::blocked, check([](World& w) {
              refused_case(w, [&] {
                  auto r = w.http.post("/v1/groups", {{"name", "ATTACK"}, {"members", {w.ken.id}}},
                                       w.bob.token);
                  expect_refused(r, 403, "blocked", "bob puts ken, who blocked him, in his group");
              });
          })}}));
    t.push_back(rest_row(
        "GET", "/v1/groups", true, [](World& w) { return req("GET", "/v1/groups", w.alice); },
        {{Col::other_user, check([](World& w) {
              make_group(w);
              refused_case(w, [&] {
                  auto r = w.http.get("/v1/groups", w.bob.token);
                  ASSERT_EQ(r.status, 200) << r.body;
                  expect_no_secret(r.body, "bob's groups");
                  EXPECT_TRUE(r.json()["groups"].empty()) << r.body;
              });
          })},
         {Col::non_friend, na("lists the caller's own groups only (other_user)")},
         {Col::blocked, na("lists the caller's own groups only (other_user)")}}));
    t.push_back(rest_row(
        "GET", "/v1/groups/{id}", true,
        [](World& w) {
            auto g = make_group(w);
            return req("GET", group_path(g.id), g.member);
        },
        {{Col::other_user, check([](World& w) {
              auto g = make_group(w);
              stranger_refused(w, g, "GET", group_path(g.id), nlohmann::json::object());
          })},
         {Col::non_friend, na(kMembershipDecides)},
         {Col::blocked, na(kMembershipDecides)}}));
    t.push_back(rest_row(
        "PATCH", "/v1/groups/{id}", true,
        [](World& w) {
            auto g = make_group(w);
            auto r = req("PATCH", group_path(g.id), g.admin, 200,
                         nlohmann::json{{"name", "CONTROL renamed"}});
            return r;
        },
        {{Col::other_user, check([](World& w) {
              auto g = make_group(w);
              stranger_refused(w, g, "PATCH", group_path(g.id), {{"name", "ATTACK"}});
              role_refused(w, g.member, "PATCH", group_path(g.id), {{"name", "ATTACK"}},
                           "a member renames");
          })},
         {Col::non_friend, na(kMembershipDecides)},
         {Col::blocked, na(kMembershipDecides)}}));
    t.push_back(rest_row(
        "DELETE", "/v1/groups/{id}", true,
        [](World& w) {
            auto g = make_group(w);
            return req("DELETE", group_path(g.id), g.owner);
        },
        {{Col::other_user, check([](World& w) {
              auto g = make_group(w);
              stranger_refused(w, g, "DELETE", group_path(g.id), nlohmann::json::object());
              role_refused(w, g.admin, "DELETE", group_path(g.id), nlohmann::json::object(),
                           "an admin deletes");
          })},
         {Col::non_friend, na(kMembershipDecides)},
         {Col::blocked, na(kMembershipDecides)}}));
    t.push_back(rest_row(
        "POST", "/v1/groups/{id}/members", true,
        [](World& w) {
            auto g = make_group(w);
            auto x = w.fresh("gnew");
            w.cl.befriend(g.owner, x);
            return req("POST", group_path(g.id, "/members"), g.owner, 200,
                       nlohmann::json{{"user_ids", {x.id}}});
        },
        {{Col::other_user, check([](World& w) {
              auto g = make_group(w);
              stranger_refused(w, g, "POST", group_path(g.id, "/members"),
                               {{"user_ids", {w.bob.id}}});
              role_refused(w, g.member, "POST", group_path(g.id, "/members"),
                           {{"user_ids", {w.bob.id}}}, "a member adds");
          })},
         {Col::non_friend, check([](World& w) {
              auto g = make_group(w);
              refused_case(w, [&] {
                  expect_refused(json_call(w, "POST", group_path(g.id, "/members"),
                                           {{"user_ids", {w.alice.id}}}, g.owner.token),
                                 403, "not_friends", "the owner adds a stranger");
              });
          })},
         {Col::blocked, check([](World& w) {
              auto g = make_group(w);
              auto k = w.fresh("gblk");
              w.cl.befriend(g.owner, k);
              World::expect_status(w.http.post("/v1/blocks", {{"user_id", g.owner.id}}, k.token),
                                   201, "k blocks the owner");
              refused_case(w, [&] {
                  expect_refused(json_call(w, "POST", group_path(g.id, "/members"),
                                           {{"user_ids", {k.id}}}, g.owner.token),
                                 403, "blocked", "the owner adds someone who blocked him");
              });
          })}}));
    t.push_back(rest_row(
        "DELETE", "/v1/groups/{id}/members/{user_id}", true,
        [](World& w) {
            auto g = make_group(w);
            return req("DELETE", member_path(g, g.member), g.admin);
        },
        {{Col::other_user, check([](World& w) {
              auto g = make_group(w);
              stranger_refused(w, g, "DELETE", member_path(g, g.member), nlohmann::json::object());
              role_refused(w, g.member, "DELETE", member_path(g, g.admin), nlohmann::json::object(),
                           "a member removes the admin");
              role_refused(w, g.admin, "DELETE", member_path(g, g.owner), nlohmann::json::object(),
                           "the admin removes the owner");
          })},
         {Col::non_friend, na(kMembershipDecides)},
         {Col::blocked, na(kMembershipDecides)}}));
    t.push_back(rest_row(
        "PUT", "/v1/groups/{id}/members/{user_id}/role", true,
        [](World& w) {
            auto g = make_group(w);
            return req("PUT", member_path(g, g.member, "/role"), g.owner, 200,
                       nlohmann::json{{"role", "admin"}});
        },
        {{Col::other_user, check([](World& w) {
              auto g = make_group(w);
              stranger_refused(w, g, "PUT", member_path(g, g.member, "/role"), {{"role", "admin"}});
              role_refused(w, g.admin, "PUT", member_path(g, g.member, "/role"),
                           {{"role", "admin"}}, "the admin promotes");
          })},
         {Col::non_friend, na(kMembershipDecides)},
         {Col::blocked, na(kMembershipDecides)}}));
    t.push_back(rest_row(
        "POST", "/v1/groups/{id}/owner", true,
        [](World& w) {
            auto g = make_group(w);
            return req("POST", group_path(g.id, "/owner"), g.owner, 200,
                       nlohmann::json{{"user_id", g.admin.id}});
        },
        {{Col::other_user, check([](World& w) {
              auto g = make_group(w);
              stranger_refused(w, g, "POST", group_path(g.id, "/owner"), {{"user_id", w.bob.id}});
              role_refused(w, g.admin, "POST", group_path(g.id, "/owner"),
                           {{"user_id", g.admin.id}}, "the admin takes ownership");
          })},
         {Col::non_friend, na(kMembershipDecides)},
         {Col::blocked, na(kMembershipDecides)}}));
    t.push_back(rest_row(
        "GET", "/v1/groups/{id}/read-by", true,
        [](World& w) {
            auto g = make_group(w);
            return req("GET", group_path(g.id, "/read-by?seq=1"), g.member);
        },
        {{Col::other_user, check([](World& w) {
              auto g = make_group(w);
              stranger_refused(w, g, "GET", group_path(g.id, "/read-by?seq=1"),
                               nlohmann::json::object());
          })},
         {Col::non_friend, na(kMembershipDecides)},
         {Col::blocked, na(kMembershipDecides)}}));
    return t;
}

}  // namespace im::test::authz

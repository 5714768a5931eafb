// Groups in im-rest (issue 15) against the real binaries and MariaDB/Redis:
// - input rules and refusals that im-rest answers itself (bad names, non-friends, blocks, the
//   member limit, unknown groups, roles, and a non-member refused on every group endpoint), each
//   checked for leaving chat_groups and group_members as they were;
// - the reads (GET /v1/groups, GET /v1/groups/{id}, read-by, history visibility by joined_seq and
//   left_seq, groups in the conversation list, file downloads by members) over group state seeded
//   in MySQL exactly as the owner transfer writes it;
// - end to end through the owner transfer (GroupChange): create, add, remove, leave, rename, role,
//   owner transfer, delete, and read-by after a receipt.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"
#include "im/proto/client.pb.h"
#include "im/server/mysql.hpp"
#include "im/wire/ids.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr int kMaxMembers = 5;  // groups.max_members of this cluster

class GroupsRest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        ClusterOptions o;
        o.name = "groups-rest";
        o.connectors = 1;
        o.rest_sets = {"groups.max_members=" + std::to_string(kMaxMembers)};
        cluster_ = new Cluster(o);
    }
    static void TearDownTestSuite() {
        delete cluster_;
        cluster_ = nullptr;
    }

    Cluster& cl() { return *cluster_; }
    HttpClient& http() { return cl().http(); }
    mysql::MysqlConnection& db() { return cl().db().db(); }

    TestUser user(const std::string& name) { return cl().user(name); }

    HttpResult call(const std::string& method, const std::string& target, const TestUser& who,
                    const std::optional<json>& body = std::nullopt) {
        std::map<std::string, std::string> h{{"Authorization", "Bearer " + who.token}};
        std::string raw;
        if (body) {
            raw = body->dump();
            h["Content-Type"] = "application/json";
        }
        return http().request(method, target, raw, h);
    }
    static std::string g(std::uint64_t id, const std::string& suffix = "") {
        return "/v1/groups/" + std::to_string(id) + suffix;
    }

    std::uint64_t count(const std::string& sql) {
        std::unique_ptr<sql::ResultSet> rs(db().prepare(sql).executeQuery());
        rs->next();
        return rs->getUInt64(1);
    }
    // Row counts and a checksum of the group tables: a refusal leaves them as they were.
    std::string group_tables() {
        std::unique_ptr<sql::ResultSet> rs(
            db().prepare("SELECT CONCAT((SELECT COUNT(*) FROM chat_groups), '/', "
                         "(SELECT COALESCE(SUM(CRC32(CONCAT_WS(':', id, name, owner_id, last_seq, "
                         "member_count, deleted_seq))), 0) FROM chat_groups), '/', "
                         "(SELECT COUNT(*) FROM group_members), '/', "
                         "(SELECT COALESCE(SUM(CRC32(CONCAT_WS(':', group_id, user_id, role, "
                         "joined_seq, "
                         "left_seq, delivered_seq, read_seq))), 0) FROM group_members))")
                .executeQuery());
        rs->next();
        return rs->getString(1).asStdString();
    }

    static void expect_error(const HttpResult& r, int status, const std::string& code,
                             const std::string& what) {
        EXPECT_EQ(r.status, status) << what << ": " << r.body;
        const auto j = r.json();
        const std::string got =
            j.is_object() && j.contains("error") ? j["error"].value("code", "") : "";
        EXPECT_EQ(got, code) << what << ": " << r.body;
    }

    // ---------------------------------------------------------------- seeded group state
    // A group as the owner transfer leaves it: the chat_groups row, member rows and messages
    // 1..last_seq (seq 1 the GROUP_CREATED event, the others texts by `senders[seq]`).
    struct SeedMember {
        std::uint64_t user = 0;
        int role = client::MEMBER;
        std::uint64_t joined = 1, left = 0, delivered = 0, read = 0;
    };
    std::uint64_t seed_group(const std::string& name, std::uint64_t owner,
                             const std::vector<SeedMember>& members,
                             const std::vector<std::uint64_t>& senders,
                             std::uint64_t explicit_id = 0) {
        const auto last = static_cast<std::uint64_t>(senders.size());
        std::uint32_t current = 0;
        for (const auto& m : members)
            current += m.left == 0 ? 1 : 0;
        auto& ins = db().prepare(
            explicit_id != 0
                ? "INSERT INTO chat_groups (id, name, owner_id, last_seq, member_count, "
                  "created_ms, "
                  "updated_ms) VALUES (?, ?, ?, ?, ?, 1, 1)"
                : "INSERT INTO chat_groups (name, owner_id, last_seq, member_count, created_ms, "
                  "updated_ms) VALUES (?, ?, ?, ?, 1, 1)");
        unsigned i = 1;
        if (explicit_id != 0) ins.setUInt64(i++, explicit_id);
        ins.setString(i++, name);
        ins.setUInt64(i++, owner);
        ins.setUInt64(i++, last);
        ins.setUInt(i++, current);
        ins.executeUpdate();
        std::uint64_t id = explicit_id;
        if (id == 0) {
            std::unique_ptr<sql::ResultSet> rs(
                db().prepare("SELECT LAST_INSERT_ID()").executeQuery());
            rs->next();
            id = rs->getUInt64(1);
        }
        for (const auto& m : members) {
            auto& st = db().prepare(
                "INSERT INTO group_members (group_id, user_id, role, joined_seq, left_seq, "
                "delivered_seq, read_seq, "
                "updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 1)");
            st.setUInt64(1, id);
            st.setUInt64(2, m.user);
            st.setUInt(3, static_cast<unsigned>(m.role));
            st.setUInt64(4, m.joined);
            st.setUInt64(5, m.left);
            st.setUInt64(6, m.delivered);
            st.setUInt64(7, m.read);
            st.executeUpdate();
        }
        for (std::uint64_t seq = 1; seq <= last; ++seq) {
            std::string body;
            unsigned type = client::TEXT;
            if (seq == 1) {
                client::GroupEvent e;
                e.set_kind(client::GROUP_CREATED);
                e.set_actor_user_id(owner);
                e.set_name(name);
                body = e.SerializeAsString();
                type = client::GROUP_EVENT;
            } else {
                body = "group text " + std::to_string(seq);
            }
            seed_message(id, seq, senders[seq - 1], type, body);
        }
        return id;
    }
    void seed_message(std::uint64_t conv, std::uint64_t seq, std::uint64_t sender, unsigned type,
                      const std::string& body) {
        static std::uint64_t msg_id =
            std::uint64_t{9'000'000'000} +
            static_cast<std::uint64_t>(::getpid()) * std::uint64_t{100'000};
        auto& st = db().prepare(
            "INSERT INTO messages (conversation_id, seq, msg_id, sender_id, sender_device, "
            "client_msg_id, type, body, "
            "created_ms) VALUES (?, ?, ?, ?, 'seed', ?, ?, ?, 1)");
        st.setUInt64(1, conv);
        st.setUInt64(2, seq);
        st.setUInt64(3, ++msg_id);
        st.setUInt64(4, sender);
        st.setString(5, random_cmid());
        st.setUInt(6, type);
        st.setString(7, body);
        st.executeUpdate();
    }

    std::vector<std::uint64_t> seqs_of(const HttpResult& r) {
        std::vector<std::uint64_t> out;
        const auto j = r.json();
        if (!j.is_object() || !j.contains("messages")) return out;
        for (const auto& m : j["messages"])
            out.push_back(m["seq"].get<std::uint64_t>());
        return out;
    }

    // ---------------------------------------------------------------- through the transfer
    std::uint64_t create_ok(const TestUser& owner, const std::string& name,
                            const std::vector<std::uint64_t>& members) {
        auto r = call("POST", "/v1/groups", owner, json{{"name", name}, {"members", members}});
        EXPECT_EQ(r.status, 201) << r.body;
        if (r.status != 201) return 0;
        const auto j = r.json();
        EXPECT_EQ(j["group_id"], j["conversation_id"]);
        EXPECT_GE(j["seq"].get<std::uint64_t>(), 1u);
        return j["group_id"].get<std::uint64_t>();
    }
    // The members of a group as GET /v1/groups/{id} shows them: user -> role.
    std::map<std::uint64_t, std::string> roles(std::uint64_t group, const TestUser& asker) {
        auto r = call("GET", g(group), asker);
        EXPECT_EQ(r.status, 200) << r.body;
        std::map<std::uint64_t, std::string> out;
        const auto j = r.json();
        if (!j.is_object() || !j.contains("members")) return out;
        for (const auto& m : j["members"])
            out[m["user_id"].get<std::uint64_t>()] = m["role"].get<std::string>();
        return out;
    }

    static Cluster* cluster_;
};

Cluster* GroupsRest::cluster_ = nullptr;

// ==================================================================== refusals im-rest answers
// itself
TEST_F(GroupsRest, CreateRefusesBadInput) {
    auto a = user("ga");
    auto f = user("gf");
    auto stranger = user("gs");
    cl().befriend(a, f);
    const auto before = group_tables();
    const auto post = [&](const json& body) { return call("POST", "/v1/groups", a, body); };
    expect_error(post({{"name", ""}, {"members", {f.id}}}), 400, "invalid_group_name",
                 "empty name");
    expect_error(post({{"name", "   "}, {"members", {f.id}}}), 400, "invalid_group_name",
                 "blank name");
    expect_error(post({{"name", "bell\x07"}, {"members", {f.id}}}), 400, "invalid_group_name",
                 "control character");
    expect_error(post({{"name", std::string(129, 'n')}, {"members", {f.id}}}), 400,
                 "invalid_group_name", "129 bytes");
    expect_error(post({{"members", {f.id}}}), 400, "missing_field", "no name");
    expect_error(post({{"name", 7}, {"members", {f.id}}}), 400, "invalid_field",
                 "a number as name");
    expect_error(post({{"name", "ok"}, {"members", "x"}}), 400, "invalid_field",
                 "members not a list");
    expect_error(post({{"name", "ok"}, {"members", {0}}}), 400, "invalid_field", "member id 0");
    expect_error(post({{"name", "ok"}, {"members", {"abc"}}}), 400, "invalid_field",
                 "member id not a number");
    expect_error(post({{"name", "ok"}, {"members", {1ull << 31}}}), 400, "invalid_field",
                 "member id >= 2^31");
    expect_error(post({{"name", "ok"}, {"members", {f.id, f.id}}}), 400, "duplicate_member",
                 "a member twice");
    expect_error(post({{"name", "ok"}, {"members", {a.id}}}), 400, "self_member",
                 "the creator as a member");
    std::vector<std::uint64_t> many;
    for (int i = 0; i < kMaxMembers; ++i)
        many.push_back(100000 + static_cast<std::uint64_t>(i));
    expect_error(post({{"name", "ok"}, {"members", many}}), 400, "too_many_members",
                 "max_members + 1 with me");
    expect_error(post({{"name", "ok"}, {"members", {f.id, stranger.id}}}), 403, "not_friends",
                 "a non-friend");
    // A block either way (a block also ends the friendship).
    auto b1 = user("gb");
    auto b2 = user("gc");
    cl().befriend(a, b1);
    cl().befriend(a, b2);
    ASSERT_EQ(http().post("/v1/blocks", {{"user_id", a.id}}, b1.token).status, 201);
    ASSERT_EQ(http().post("/v1/blocks", {{"user_id", b2.id}}, a.token).status, 201);
    expect_error(post({{"name", "ok"}, {"members", {f.id, b1.id}}}), 403, "blocked",
                 "a member who blocked me");
    expect_error(post({{"name", "ok"}, {"members", {b2.id}}}), 403, "blocked",
                 "a member I blocked");
    auto r = call("POST", "/v1/groups", a, std::nullopt);
    EXPECT_EQ(r.status, 415) << r.body;
    EXPECT_EQ(group_tables(), before) << "a refused creation wrote group rows";
}

TEST_F(GroupsRest, UnknownGroupIs404) {
    auto a = user("gu");
    const std::uint64_t unknown = (1ull << 31) - 7;  // a group id nobody has
    const auto before = group_tables();
    expect_error(call("GET", g(unknown), a), 404, "group_not_found", "GET");
    expect_error(call("PATCH", g(unknown), a, json{{"name", "x"}}), 404, "group_not_found",
                 "PATCH");
    expect_error(call("DELETE", g(unknown), a), 404, "group_not_found", "DELETE");
    expect_error(call("POST", g(unknown, "/members"), a, json{{"user_ids", {a.id}}}), 404,
                 "group_not_found", "add");
    expect_error(call("GET", g(unknown, "/read-by?seq=1"), a), 404, "group_not_found", "read-by");
    expect_error(call("GET", g(0), a), 404, "not_found", "id 0");
    expect_error(call("GET", "/v1/groups/abc", a), 404, "not_found", "id not a number");
    expect_error(call("GET", "/v1/conversations/" + std::to_string(unknown) + "/messages", a), 404,
                 "conversation_not_found", "messages of an unknown group");
    EXPECT_EQ(group_tables(), before);
}

TEST_F(GroupsRest, NonMemberGets404Everywhere) {
    auto owner = user("go");
    auto member = user("gm");
    auto outsider = user("gx");
    cl().befriend(outsider, owner);  // a friend of the owner, still not a member
    const auto id =
        seed_group("SECRET non-member group", owner.id,
                   {{owner.id, client::OWNER}, {member.id, client::MEMBER}}, {owner.id, member.id});
    const auto before = group_tables();
    const auto conv = "/v1/conversations/" + std::to_string(id);
    expect_error(call("GET", g(id), outsider), 404, "group_not_found", "GET");
    expect_error(call("PATCH", g(id), outsider, json{{"name", "taken over"}}), 404,
                 "group_not_found", "PATCH");
    expect_error(call("DELETE", g(id), outsider), 404, "group_not_found", "DELETE");
    expect_error(call("POST", g(id, "/members"), outsider, json{{"user_ids", {owner.id}}}), 404,
                 "group_not_found", "add");
    expect_error(call("DELETE", g(id, "/members/" + std::to_string(member.id)), outsider), 404,
                 "group_not_found", "remove");
    expect_error(call("DELETE", g(id, "/members/" + std::to_string(outsider.id)), outsider), 404,
                 "group_not_found", "leave");
    expect_error(call("PUT", g(id, "/members/" + std::to_string(member.id) + "/role"), outsider,
                      json{{"role", "admin"}}),
                 404, "group_not_found", "role");
    expect_error(call("POST", g(id, "/owner"), outsider, json{{"user_id", outsider.id}}), 404,
                 "group_not_found", "owner");
    expect_error(call("GET", g(id, "/read-by?seq=1"), outsider), 404, "group_not_found", "read-by");
    for (const std::string q : {"", "?after_seq=0", "?before_seq=100"}) {
        expect_error(call("GET", conv + "/messages" + q, outsider), 404, "conversation_not_found",
                     "messages " + q);
    }
    expect_error(call("POST", conv + "/read", outsider, json{{"up_to_seq", 1}}), 404,
                 "conversation_not_found", "read");
    auto list = call("GET", "/v1/groups", outsider);
    ASSERT_EQ(list.status, 200) << list.body;
    EXPECT_EQ(list.body.find("SECRET"), std::string::npos) << list.body;
    auto convs = call("GET", "/v1/conversations", outsider);
    ASSERT_EQ(convs.status, 200) << convs.body;
    EXPECT_EQ(convs.body.find("SECRET"), std::string::npos) << convs.body;
    EXPECT_EQ(group_tables(), before);
}

TEST_F(GroupsRest, RolesAreCheckedBeforeTheTransfer) {
    auto owner = user("ro");
    auto admin = user("ra");
    auto admin2 = user("rb");
    auto member = user("rm");
    auto friend_of_member = user("rf");
    cl().befriend(member, friend_of_member);
    const auto id = seed_group("roles", owner.id,
                               {{owner.id, client::OWNER},
                                {admin.id, client::ADMIN},
                                {admin2.id, client::ADMIN},
                                {member.id, client::MEMBER}},
                               {owner.id});
    const auto before = group_tables();
    const auto m = [&](const TestUser& u, const std::string& s = "") {
        return g(id, "/members/" + std::to_string(u.id) + s);
    };
    expect_error(call("PATCH", g(id), member, json{{"name", "mine"}}), 403, "group_forbidden",
                 "member renames");
    expect_error(call("POST", g(id, "/members"), member, json{{"user_ids", {friend_of_member.id}}}),
                 403, "group_forbidden", "member adds");
    expect_error(call("DELETE", m(admin), member), 403, "group_forbidden", "member removes");
    expect_error(call("DELETE", m(admin2), admin), 403, "group_forbidden",
                 "admin removes an admin");
    expect_error(call("DELETE", m(owner), admin), 403, "group_forbidden",
                 "admin removes the owner");
    expect_error(call("PUT", m(member, "/role"), admin, json{{"role", "admin"}}), 403,
                 "group_forbidden", "admin changes a role");
    expect_error(call("POST", g(id, "/owner"), admin, json{{"user_id", admin.id}}), 403,
                 "group_forbidden", "admin takes ownership");
    expect_error(call("DELETE", g(id), admin), 403, "group_forbidden", "admin deletes");
    expect_error(call("DELETE", m(owner), owner), 409, "owner_cannot_leave", "the owner leaves");
    expect_error(call("PUT", m(member, "/role"), owner, json{{"role", "owner"}}), 400,
                 "invalid_role", "role owner");
    expect_error(call("PUT", m(member, "/role"), owner, json{{"role", 2}}), 400, "invalid_field",
                 "role number");
    expect_error(call("PUT", m(owner, "/role"), owner, json{{"role", "member"}}), 400, "self_role",
                 "owner demotes self");
    auto stranger = user("rs");
    expect_error(call("PUT", m(stranger, "/role"), owner, json{{"role", "admin"}}), 404,
                 "member_not_found", "role of a non-member");
    expect_error(call("DELETE", m(stranger), owner), 404, "member_not_found",
                 "remove a non-member");
    expect_error(call("POST", g(id, "/owner"), owner, json{{"user_id", stranger.id}}), 409,
                 "not_member", "ownership to a non-member");
    expect_error(call("POST", g(id, "/owner"), owner, json{{"user_id", owner.id}}), 400,
                 "self_owner", "ownership to self");
    expect_error(call("PATCH", g(id), owner, json{{"name", ""}}), 400, "invalid_group_name",
                 "empty rename");
    expect_error(call("POST", g(id, "/members"), owner, json{{"user_ids", json::array()}}), 400,
                 "invalid_field", "add nobody");
    expect_error(call("POST", g(id, "/members"), owner, json{{"user_ids", {stranger.id}}}), 403,
                 "not_friends", "add a non-friend");
    cl().befriend(owner, member);
    expect_error(call("POST", g(id, "/members"), owner, json{{"user_ids", {member.id}}}), 409,
                 "already_member", "add a member again");
    // The limit: 4 members of 5; two more friends would make 6.
    auto f1 = user("r1");
    auto f2 = user("r2");
    cl().befriend(owner, f1);
    cl().befriend(owner, f2);
    expect_error(call("POST", g(id, "/members"), owner, json{{"user_ids", {f1.id, f2.id}}}), 409,
                 "group_full", "over max_members");
    expect_error(call("GET", g(id, "/read-by"), owner), 400, "missing_parameter",
                 "read-by without seq");
    expect_error(call("GET", g(id, "/read-by?seq=x"), owner), 400, "invalid_parameter",
                 "read-by seq=x");
    EXPECT_EQ(group_tables(), before);
}

// ==================================================================== reads over seeded state
TEST_F(GroupsRest, ListGetAndReadBy) {
    auto owner = user("lo");
    auto admin = user("la");
    auto member = user("lm");
    auto gone = user("lg");
    // seqs: 1 event, 2 owner, 3 admin, 4 member, 5 owner; member joined at 3, gone left at 4.
    const auto id = seed_group("Trip \xF0\x9F\x8C\x8D", owner.id,
                               {{owner.id, client::OWNER, 1, 0, 5, 5},
                                {admin.id, client::ADMIN, 1, 0, 5, 3},
                                {member.id, client::MEMBER, 3, 0, 4, 2},
                                {gone.id, client::MEMBER, 1, 4, 4, 4}},
                               {owner.id, owner.id, admin.id, member.id, owner.id});
    auto list = call("GET", "/v1/groups", admin);
    ASSERT_EQ(list.status, 200) << list.body;
    const auto groups = list.json()["groups"];
    ASSERT_EQ(groups.size(), 1u) << list.body;
    EXPECT_EQ(groups[0]["group_id"], id);
    EXPECT_EQ(groups[0]["name"], "Trip \xF0\x9F\x8C\x8D");
    EXPECT_EQ(groups[0]["role"], "admin");
    EXPECT_EQ(groups[0]["member_count"], 3);
    EXPECT_EQ(groups[0]["last_seq"], 5);
    EXPECT_EQ(groups[0]["joined_seq"], 1);
    EXPECT_TRUE(call("GET", "/v1/groups", gone).json()["groups"].empty())
        << "a past member lists the group";

    auto one = call("GET", g(id), member);
    ASSERT_EQ(one.status, 200) << one.body;
    const auto j = one.json();
    EXPECT_EQ(j["group_id"], id);
    EXPECT_EQ(j["owner_id"], owner.id);
    EXPECT_EQ(j["last_seq"], 5);
    std::map<std::uint64_t, json> members;
    for (const auto& row : j["members"])
        members[row["user_id"].get<std::uint64_t>()] = row;
    ASSERT_EQ(members.size(), 3u) << "current members only: " << one.body;
    EXPECT_EQ(members[owner.id]["role"], "owner");
    EXPECT_EQ(members[owner.id]["username"], owner.username);
    EXPECT_EQ(members[admin.id]["role"], "admin");
    EXPECT_EQ(members[member.id]["role"], "member");
    EXPECT_EQ(members[member.id]["joined_seq"], 3);
    EXPECT_EQ(members[member.id]["delivered_seq"], 4);
    EXPECT_EQ(members[member.id]["read_seq"], 2);
    expect_error(call("GET", g(id), gone), 404, "group_not_found", "a past member GETs the group");

    auto rb = call("GET", g(id, "/read-by?seq=3"), owner);
    ASSERT_EQ(rb.status, 200) << rb.body;
    const auto rj = rb.json();
    EXPECT_EQ(rj["group_id"], id);
    EXPECT_EQ(rj["seq"], 3);
    std::map<std::uint64_t, json> by;
    for (const auto& m : rj["members"])
        by[m["user_id"].get<std::uint64_t>()] = m;
    EXPECT_EQ(by.size(), 2u) << "every current member but me: " << rb.body;
    EXPECT_FALSE(by.count(owner.id));
    EXPECT_FALSE(by.count(gone.id));
    EXPECT_EQ(by[admin.id]["delivered"], true);
    EXPECT_EQ(by[admin.id]["read"], true);
    EXPECT_EQ(by[member.id]["delivered"], true);
    EXPECT_EQ(by[member.id]["read"], false);
    EXPECT_EQ(by[member.id]["read_seq"], 2);
    // A member who joined after the message never received it.
    auto early = call("GET", g(id, "/read-by?seq=2"), owner).json();
    for (const auto& m : early["members"]) {
        if (m["user_id"] == member.id) {
            EXPECT_EQ(m["delivered"], false) << early.dump();
            EXPECT_EQ(m["read"], false) << early.dump();
        }
    }
    expect_error(call("GET", g(id, "/read-by?seq=1"), gone), 404, "group_not_found",
                 "a past member asks");
}

TEST_F(GroupsRest, HistoryVisibleFromJoinedToLeft) {
    auto owner = user("ho");
    auto late = user("hl");
    auto gone = user("hg");
    std::vector<std::uint64_t> senders(8, owner.id);
    const auto id = seed_group(
        "history", owner.id,
        {{owner.id, client::OWNER}, {late.id, client::MEMBER, 4}, {gone.id, client::MEMBER, 1, 6}},
        senders);
    const auto conv = "/v1/conversations/" + std::to_string(id) + "/messages";
    const std::vector<std::uint64_t> all{1, 2, 3, 4, 5, 6, 7, 8};
    EXPECT_EQ(seqs_of(call("GET", conv, owner)), all);
    EXPECT_EQ(seqs_of(call("GET", conv, late)), (std::vector<std::uint64_t>{4, 5, 6, 7, 8}));
    EXPECT_EQ(seqs_of(call("GET", conv + "?after_seq=1&limit=2", late)),
              (std::vector<std::uint64_t>{4, 5}));
    EXPECT_EQ(seqs_of(call("GET", conv + "?before_seq=6", late)),
              (std::vector<std::uint64_t>{4, 5}));
    auto none = call("GET", conv + "?before_seq=4", late);
    EXPECT_EQ(none.status, 200) << none.body;
    EXPECT_TRUE(seqs_of(none).empty()) << none.body;
    EXPECT_EQ(none.json()["has_more"], false) << none.body;
    // A removed member keeps what they had: 1..6, nothing after.
    EXPECT_EQ(seqs_of(call("GET", conv, gone)), (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6}));
    EXPECT_TRUE(seqs_of(call("GET", conv + "?after_seq=6", gone)).empty());
    EXPECT_EQ(seqs_of(call("GET", conv + "?before_seq=100", gone)),
              (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6}));
    // A past member cannot move a read watermark.
    expect_error(call("POST", "/v1/conversations/" + std::to_string(id) + "/read", gone,
                      json{{"up_to_seq", 6}}),
                 404, "conversation_not_found", "a past member marks read");
    // The system message is shown as such.
    auto first = call("GET", conv + "?limit=1", owner).json();
    ASSERT_EQ(first["messages"].size(), 1u);
    EXPECT_EQ(first["messages"][0]["type"], "group_event") << first.dump();
    EXPECT_EQ(first["messages"][0]["event"]["kind"], "group_created") << first.dump();
    EXPECT_EQ(first["messages"][0]["event"]["actor_id"], owner.id) << first.dump();
    EXPECT_EQ(first["messages"][0]["event"]["name"], "history") << first.dump();
}

TEST_F(GroupsRest, ConversationListShowsGroups) {
    auto owner = user("co");
    auto m = user("cm");
    cl().befriend(owner, m);
    // seqs 1 (event by owner) .. 6: m joined at 2, read up to 3; others' messages after 3: 4, 6.
    const auto id = seed_group("list me", owner.id,
                               {{owner.id, client::OWNER}, {m.id, client::MEMBER, 2, 0, 3, 3}},
                               {owner.id, owner.id, owner.id, owner.id, m.id, owner.id});
    // And a one-to-one conversation, so the 1:1 cursor moves.
    auto c = cl().connect(0, owner.token, "dev1");
    auto send = c->make_send(m.id, "one to one", 1);
    c->send(send);
    auto res = c->wait_for(
        [&](const client::Envelope& e) { return e.request_id() == send.request_id(); }, 10s);
    ASSERT_TRUE(res && res->has_send_result() && res->send_result().code() == client::ERROR_NONE);
    auto r = call("GET", "/v1/conversations", m);
    ASSERT_EQ(r.status, 200) << r.body;
    const auto list = r.json()["conversations"];
    bool one_to_one = false;
    for (const auto& c1 : list)
        one_to_one =
            one_to_one || (c1["id"] == conversation_id(owner.id, m.id) && c1["group"] == false);
    EXPECT_TRUE(one_to_one) << r.body;
    const json* found = nullptr;
    for (const auto& row : list) {
        if (row["id"] == id) found = &row;
    }
    ASSERT_NE(found, nullptr) << r.body;
    EXPECT_EQ((*found)["group"], true);
    EXPECT_EQ((*found)["title"], "list me");
    EXPECT_EQ((*found)["member_count"], 2);
    EXPECT_EQ((*found)["joined_seq"], 2);
    EXPECT_EQ((*found)["last_seq"], 6);
    EXPECT_EQ((*found)["my_read_seq"], 3);
    EXPECT_EQ((*found)["unread"], 2) << "the others' messages after my read watermark";
    // The 1:1 rows keep their cursor: a later page (cursor past everything) lists no group again.
    const auto next = r.json()["next_cursor"].get<std::uint64_t>();
    ASSERT_GT(next, 0u);
    auto later = call("GET", "/v1/conversations?cursor=" + std::to_string(next), m);
    ASSERT_EQ(later.status, 200) << later.body;
    const auto later_list = later.json()["conversations"];
    for (const auto& row : later_list)
        EXPECT_NE(row["id"], id) << later.body;
}

TEST_F(GroupsRest, GroupFilesDownloadForMembersOnly) {
    auto owner = user("fo");
    auto member = user("fm");
    auto gone = user("fg");
    auto outsider = user("fx");
    auto up = http().request(
        "POST", "/v1/files?name=group.txt", "group file content",
        {{"Authorization", "Bearer " + owner.token}, {"Content-Type", "text/plain"}});
    ASSERT_EQ(up.status, 201) << up.body;
    const auto file = up.json()["id"].get<std::uint64_t>();
    const auto id = seed_group(
        "files", owner.id,
        {{owner.id, client::OWNER}, {member.id, client::MEMBER}, {gone.id, client::MEMBER, 1, 2}},
        {owner.id, owner.id});
    auto& ref = db().prepare(
        "INSERT INTO file_refs (file_id, conversation_id, created_ms) VALUES (?, ?, 1)");
    ref.setUInt64(1, file);
    ref.setUInt64(2, id);
    ref.executeUpdate();
    const auto target = "/v1/files/" + std::to_string(file);
    EXPECT_EQ(http().get(target, member.token).body, "group file content");
    EXPECT_EQ(http().get(target, gone.token).status, 200) << "a past member keeps what they had";
    expect_error(http().get(target, outsider.token), 404, "file_not_found", "an outsider");
}

// A one-to-one conversation id's low 32 bits are a user id; a group id is below 2^32 too. A file
// sent in the group whose id equals a user's id is not that user's to download.
TEST_F(GroupsRest, GroupIdEqualToAUserIdGrantsNothing) {
    auto owner = user("eo");
    auto victim_id_holder = user("ev");
    auto up = http().request(
        "POST", "/v1/files?name=g.txt", "SECRET group file",
        {{"Authorization", "Bearer " + owner.token}, {"Content-Type", "text/plain"}});
    ASSERT_EQ(up.status, 201) << up.body;
    const auto file = up.json()["id"].get<std::uint64_t>();
    ASSERT_EQ(
        count("SELECT COUNT(*) FROM chat_groups WHERE id = " + std::to_string(victim_id_holder.id)),
        0u);
    const auto id = seed_group("same id", owner.id, {{owner.id, client::OWNER}}, {owner.id},
                               victim_id_holder.id);
    auto& ref = db().prepare(
        "INSERT INTO file_refs (file_id, conversation_id, created_ms) VALUES (?, ?, 1)");
    ref.setUInt64(1, file);
    ref.setUInt64(2, id);
    ref.executeUpdate();
    expect_error(http().get("/v1/files/" + std::to_string(file), victim_id_holder.token), 404,
                 "file_not_found", "the user whose id is the group's id");
    expect_error(
        call("GET", "/v1/conversations/" + std::to_string(id) + "/messages", victim_id_holder), 404,
        "conversation_not_found", "the user whose id is the group's id reads it");
}

// ==================================================================== end to end (owner transfer)
TEST_F(GroupsRest, CreateManageAndDelete) {
    auto owner = user("eo");
    auto a = user("ea");
    auto b = user("eb");
    auto c = user("ec");
    for (const auto* u : {&a, &b, &c})
        cl().befriend(owner, *u);
    const auto id = create_ok(owner, "team", {a.id, b.id});
    ASSERT_NE(id, 0u);
    EXPECT_EQ(roles(id, a), (std::map<std::uint64_t, std::string>{
                                {owner.id, "owner"}, {a.id, "member"}, {b.id, "member"}}));
    std::uint64_t last = 0;
    const auto ok = [&](const HttpResult& r, const std::string& what) {
        EXPECT_EQ(r.status, 200) << what << ": " << r.body;
        if (r.status != 200) return;
        const auto seq = r.json()["seq"].get<std::uint64_t>();
        EXPECT_GT(seq, last) << what;
        EXPECT_EQ(r.json()["group_id"], id);
        last = seq;
    };
    ok(call("POST", g(id, "/members"), owner, json{{"user_ids", {c.id}}}), "add c");
    ok(call("PUT", g(id, "/members/" + std::to_string(a.id) + "/role"), owner,
            json{{"role", "admin"}}),
       "a admin");
    ok(call("PATCH", g(id), a, json{{"name", "team 2"}}), "the admin renames");
    ok(call("DELETE", g(id, "/members/" + std::to_string(b.id)), a), "the admin removes b");
    ok(call("DELETE", g(id, "/members/" + std::to_string(c.id)), c), "c leaves");
    EXPECT_EQ(roles(id, owner),
              (std::map<std::uint64_t, std::string>{{owner.id, "owner"}, {a.id, "admin"}}));
    expect_error(call("GET", g(id), b), 404, "group_not_found", "the removed member");
    ok(call("POST", g(id, "/owner"), owner, json{{"user_id", a.id}}), "ownership to a");
    EXPECT_EQ(roles(id, a),
              (std::map<std::uint64_t, std::string>{{owner.id, "admin"}, {a.id, "owner"}}));
    auto list = call("GET", "/v1/groups", owner).json();
    ASSERT_EQ(list["groups"].size(), 1u);
    EXPECT_EQ(list["groups"][0]["name"], "team 2");
    EXPECT_EQ(list["groups"][0]["last_seq"], last);
    // Every change is a system message in the group's history.
    auto hist = call("GET", "/v1/conversations/" + std::to_string(id) + "/messages", a);
    ASSERT_EQ(hist.status, 200) << hist.body;
    std::vector<std::string> kinds;
    const auto messages = hist.json()["messages"];
    for (const auto& m : messages)
        kinds.push_back(m.contains("event") ? m["event"].value("kind", "?") : "?");
    EXPECT_EQ(kinds, (std::vector<std::string>{"group_created", "members_added", "role_changed",
                                               "group_renamed", "member_removed", "member_left",
                                               "owner_changed"}));
    ok(call("DELETE", g(id), a), "the new owner deletes");
    expect_error(call("GET", g(id), a), 404, "group_not_found", "a deleted group");
    EXPECT_TRUE(call("GET", "/v1/groups", owner).json()["groups"].empty());
}

TEST_F(GroupsRest, ReadByAfterAReceipt) {
    auto owner = user("bo");
    auto reader = user("br");
    cl().befriend(owner, reader);
    const auto id = create_ok(owner, "readers", {reader.id});
    ASSERT_NE(id, 0u);
    auto sender = cl().connect(0, owner.token, "dev1");
    auto send = sender->make_send(0, "hello group", 1);
    send.mutable_send()->set_group_id(id);
    sender->send(send);
    auto res = sender->wait_for(
        [&](const client::Envelope& e) { return e.request_id() == send.request_id(); }, 10s);
    ASSERT_TRUE(res && res->has_send_result() && res->send_result().code() == client::ERROR_NONE)
        << (res ? res->ShortDebugString() : "no answer");
    const auto seq = res->send_result().seq();
    auto before = call("GET", g(id, "/read-by?seq=" + std::to_string(seq)), owner).json();
    ASSERT_EQ(before["members"].size(), 1u) << before.dump();
    EXPECT_EQ(before["members"][0]["read"], false);
    auto rd = call("POST", "/v1/conversations/" + std::to_string(id) + "/read", reader,
                   json{{"up_to_seq", seq}});
    EXPECT_EQ(rd.status, 204) << rd.body;
    bool read = false;
    for (int i = 0; i < 50 && !read; ++i) {  // the owner commits the watermark in its next batch
        auto r = call("GET", g(id, "/read-by?seq=" + std::to_string(seq)), owner).json();
        read = r["members"].size() == 1 && r["members"][0]["read"] == true;
        if (!read) std::this_thread::sleep_for(100ms);
    }
    EXPECT_TRUE(read) << "the reader's receipt never showed in read-by";
}

}  // namespace
}  // namespace im::test

// Groups (issue 15): create, list, get, rename, members (add, remove, leave), roles, ownership,
// delete, and "read by". im-rest reads chat_groups and group_members; every change is handed to
// the group's owner transfer (the only writer of both tables), which commits it as a GROUP_EVENT
// message in the group's own sequence and answers the seq. The checks here (input, friendships,
// blocks, roles, the member limit) give clear errors early; the owner checks roles and
// membership again in the batch that commits the change, so a race is refused there.

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>

#include "groups.hpp"
#include "im/server/clock.hpp"
#include "im/server/mysql.hpp"
#include "im/server/sql_batch.hpp"
#include "im/wire/ids.hpp"
#include "rest_service.hpp"
#include "validation.hpp"

namespace im::rest {
namespace {

using Db = mysql::MysqlConnection;

// Members of one group shown or scanned at most (groups.max_members is at most this).
constexpr int kMaxGroupRows = 10000;
// Groups listed at most.
constexpr int kMaxGroupsListed = 1000;

struct Membership {
    GroupRow group;
    MemberRow me;
};

// The group in the path, of which the caller is a current member. 404 otherwise, the same for a
// group that does not exist, was deleted, or the caller left: a stranger learns nothing.
Membership my_group(RequestContext& ctx) {
    const auto id = ctx.path_id("id");
    auto& db = ctx.be.db;
    const auto not_found = [] { return ApiError(404, "group_not_found", "no such group"); };
    if (!valid_group_id(id)) throw not_found();
    auto g = find_group(db, id);
    if (!g || g->deleted_seq != 0) throw not_found();
    auto m = find_member(db, id, ctx.me());
    if (!m || !m->current()) throw not_found();
    return {std::move(*g), *m};
}

void require_role(const Membership& m, client::GroupRole at_least, const char* what) {
    if (m.me.role < at_least) {
        throw ApiError(403, "group_forbidden",
                       std::string("only the group's ") +
                           (at_least == client::OWNER ? "owner" : "owner or admins") + " may " +
                           what);
    }
}

std::string group_name_field(const nlohmann::json& body) {
    auto name = string_field(body, "name");
    if (!valid_group_name(name)) {
        throw ApiError(400, "invalid_group_name",
                       "a group name is 1-128 bytes of UTF-8 without control characters");
    }
    return name;
}

// A JSON list of user ids (numbers or digit strings), without duplicates.
std::vector<std::uint64_t> user_ids_field(const nlohmann::json& body, const char* name,
                                          bool allow_empty) {
    const auto& v = require_field(body, name);
    if (!v.is_array() || (!allow_empty && v.empty())) {
        throw ApiError(400, "invalid_field",
                       std::string("field '") + name + "' must be a" +
                           (allow_empty ? "" : " non-empty") + " list of user ids");
    }
    std::vector<std::uint64_t> ids;
    std::set<std::uint64_t> seen;
    for (const auto& e : v) {
        std::optional<std::uint64_t> id;
        if (e.is_number_unsigned())
            id = e.get<std::uint64_t>();
        else if (e.is_string())
            id = parse_id(e.get<std::string>());
        if (!id || !valid_user_id(*id)) {
            throw ApiError(400, "invalid_field",
                           std::string("field '") + name + "' must hold valid user ids");
        }
        if (!seen.insert(*id).second) {
            throw ApiError(400, "duplicate_member",
                           "user " + std::to_string(*id) + " is listed twice");
        }
        ids.push_back(*id);
    }
    return ids;
}

// Runs `each(chunk_begin, n, padded)` over `users` in chunks of at most 512, each padded to a
// sql_batch lookup size (the last id repeated): a few prepared statements, one round trip per chunk
// instead of one per user (a group may list up to groups.max_members users).
template <typename F>
void in_chunks(const std::vector<std::uint64_t>& users, F&& each) {
    for (std::size_t off = 0; off < users.size();) {
        const std::size_t n = std::min<std::size_t>(users.size() - off, 512);
        each(off, n, sql_batch::lookup_size(n));
        off += n;
    }
}

// Who may be put in a group by `me`: friends, with no block either way (a block also ends the
// friendship; it is named as such so the caller knows why). The first offending user in the
// list's order is named.
void require_invitable(Db& db, std::uint64_t me, const std::vector<std::uint64_t>& users) {
    std::set<std::uint64_t> friends, blocked;
    in_chunks(users, [&](std::size_t off, std::size_t n, std::size_t padded) {
        const auto at = [&](std::size_t i) { return users[off + std::min(i, n - 1)]; };
        auto& fr = db.prepare("SELECT friend_id FROM friendships WHERE user_id = ? AND friend_id IN (" +
                              sql_batch::placeholders(padded) + ")");
        fr.setUInt64(1, me);
        for (std::size_t i = 0; i < padded; ++i) fr.setUInt64(static_cast<unsigned>(i + 2), at(i));
        std::unique_ptr<sql::ResultSet> frs(fr.executeQuery());
        while (frs->next()) friends.insert(frs->getUInt64(1));
        auto& bl = db.prepare("SELECT user_id, blocked_id FROM blocks WHERE (user_id = ? AND blocked_id IN (" +
                              sql_batch::placeholders(padded) + ")) OR (blocked_id = ? AND user_id IN (" + sql_batch::placeholders(padded) + "))");
        bl.setUInt64(1, me);
        for (std::size_t i = 0; i < padded; ++i) bl.setUInt64(static_cast<unsigned>(i + 2), at(i));
        bl.setUInt64(static_cast<unsigned>(padded + 2), me);
        for (std::size_t i = 0; i < padded; ++i) bl.setUInt64(static_cast<unsigned>(padded + 3 + i), at(i));
        std::unique_ptr<sql::ResultSet> brs(bl.executeQuery());
        while (brs->next()) blocked.insert(brs->getUInt64(1) == me ? brs->getUInt64(2) : brs->getUInt64(1));
    });
    for (const auto u : users) {
        if (blocked.count(u) != 0) {
            throw ApiError(403, "blocked",
                           "a block exists between you and user " + std::to_string(u));
        }
        if (friends.count(u) == 0) {
            throw ApiError(403, "not_friends", "user " + std::to_string(u) + " is not your friend");
        }
    }
}

client::GroupChange change_of(std::uint64_t group, client::GroupEventKind kind) {
    client::GroupChange c;
    c.set_group_id(group);
    c.set_kind(kind);
    return c;
}

HttpResponse changed(std::uint64_t group, std::uint64_t seq) {
    return HttpResponse::json(200, {{"group_id", group}, {"seq", seq}});
}

// POST /v1/groups {name, members}
HttpResponse create_group(RequestContext& ctx) {
    const auto body = ctx.json_body();
    const auto name = group_name_field(body);
    const auto members = user_ids_field(body, "members", true);
    bool history_visible = false;  // new members see the history from seq 1 (fixed at creation)
    if (body.contains("history_visible")) {
        if (!body["history_visible"].is_boolean())
            throw ApiError(400, "invalid_history_visible", "'history_visible' must be true or false");
        history_visible = body["history_visible"].get<bool>();
    }
    const auto me = ctx.me();
    const auto max = ctx.svc.config().group_max_members;
    for (const auto u : members) {
        if (u == me)
            throw ApiError(400, "self_member", "you are the group's owner: do not list yourself");
    }
    if (members.size() + 1 > max) {
        throw ApiError(400, "too_many_members",
                       "a group has at most " + std::to_string(max) + " members, you included");
    }
    auto& db = ctx.be.db;
    require_invitable(db, me, members);
    const auto now = wall_ms();
    auto& ins = db.prepare(
        "INSERT INTO chat_groups (name, owner_id, created_ms, updated_ms, history_visible) VALUES (?, ?, ?, ?, ?)");
    ins.setString(1, name);
    ins.setUInt64(2, me);
    ins.setInt64(3, now);
    ins.setInt64(4, now);
    ins.setUInt(5, history_visible ? 1 : 0);
    ins.executeUpdate();
    std::unique_ptr<sql::ResultSet> id_rs(db.prepare("SELECT LAST_INSERT_ID()").executeQuery());
    id_rs->next();
    const auto id = id_rs->getUInt64(1);
    if (!valid_group_id(id)) {
        // Group ids share the 31-bit space below one-to-one ids: none is left.
        spdlog::error("group ids exhausted (chat_groups id {})", id);
        throw ApiError(503, "groups_exhausted", "no group id is left");
    }
    auto change = change_of(id, client::GROUP_CREATED);
    for (const auto u : members)
        change.add_user_ids(u);
    change.set_name(name);
    change.set_max_members(max);
    // Until this commits the row has no members: nobody sees it, and a failed creation leaves it
    // so.
    const auto seq = change_group(ctx, change);
    spdlog::info("group {} created by {} with {} members", id, me, members.size());
    return HttpResponse::json(201, {{"group_id", id}, {"conversation_id", id}, {"seq", seq}});
}

// GET /v1/groups
HttpResponse list_groups(RequestContext& ctx) {
    auto& st = ctx.be.db.prepare(
        "SELECT g.id, g.name, m.role, g.member_count, g.last_seq, m.joined_seq FROM group_members "
        "m "
        "JOIN chat_groups g ON g.id = m.group_id WHERE m.user_id = ? AND m.left_seq = 0 AND "
        "g.deleted_seq = 0 "
        "ORDER BY g.id LIMIT " +
        std::to_string(kMaxGroupsListed));
    st.setUInt64(1, ctx.me());
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    nlohmann::json out = nlohmann::json::array();
    while (rs->next()) {
        out.push_back({{"group_id", rs->getUInt64(1)},
                       {"name", rs->getString(2).asStdString()},
                       {"role", role_name(static_cast<client::GroupRole>(rs->getUInt(3)))},
                       {"member_count", rs->getUInt(4)},
                       {"last_seq", rs->getUInt64(5)},
                       {"joined_seq", rs->getUInt64(6)}});
    }
    return HttpResponse::json(200, {{"groups", out}});
}

// GET /v1/groups/{id}
HttpResponse get_group(RequestContext& ctx) {
    const auto m = my_group(ctx);
    auto& st = ctx.be.db.prepare(
        "SELECT m.user_id, u.username, u.display_name, m.role, m.joined_seq, m.delivered_seq, "
        "m.read_seq "
        "FROM group_members m LEFT JOIN users u ON u.id = m.user_id WHERE m.group_id = ? AND "
        "m.left_seq = 0 "
        "ORDER BY m.user_id LIMIT " +
        std::to_string(kMaxGroupRows));
    st.setUInt64(1, m.group.id);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    nlohmann::json members = nlohmann::json::array();
    while (rs->next()) {
        members.push_back({{"user_id", rs->getUInt64(1)},
                           {"username", rs->getString(2).asStdString()},
                           {"display_name", rs->getString(3).asStdString()},
                           {"role", role_name(static_cast<client::GroupRole>(rs->getUInt(4)))},
                           {"joined_seq", rs->getUInt64(5)},
                           {"delivered_seq", rs->getUInt64(6)},
                           {"read_seq", rs->getUInt64(7)}});
    }
    return HttpResponse::json(200, {{"group_id", m.group.id},
                                    {"name", m.group.name},
                                    {"owner_id", m.group.owner_id},
                                    {"last_seq", m.group.last_seq},
                                    {"member_count", m.group.member_count},
                                    {"history_visible", m.group.history_visible},
                                    {"members", members}});
}

// PATCH /v1/groups/{id} {name}
HttpResponse rename_group(RequestContext& ctx) {
    const auto m = my_group(ctx);
    require_role(m, client::ADMIN, "rename it");
    const auto body = ctx.json_body();
    auto change = change_of(m.group.id, client::GROUP_RENAMED);
    change.set_name(group_name_field(body));
    return changed(m.group.id, change_group(ctx, change));
}

// POST /v1/groups/{id}/members {user_ids}
HttpResponse add_members(RequestContext& ctx) {
    const auto m = my_group(ctx);
    require_role(m, client::ADMIN, "add members");
    const auto body = ctx.json_body();
    const auto users = user_ids_field(body, "user_ids", false);
    auto& db = ctx.be.db;
    std::set<std::uint64_t> current{ctx.me()};  // the caller is a current member (my_group)
    in_chunks(users, [&](std::size_t off, std::size_t n, std::size_t padded) {
        auto& st = db.prepare("SELECT user_id FROM group_members WHERE group_id = ? AND left_seq = 0 AND user_id IN (" +
                              sql_batch::placeholders(padded) + ")");
        st.setUInt64(1, m.group.id);
        for (std::size_t i = 0; i < padded; ++i)
            st.setUInt64(static_cast<unsigned>(i + 2), users[off + std::min(i, n - 1)]);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        while (rs->next()) current.insert(rs->getUInt64(1));
    });
    for (const auto u : users) {
        if (current.count(u) != 0) {
            throw ApiError(409, "already_member",
                           "user " + std::to_string(u) + " is a member already");
        }
    }
    const auto max = ctx.svc.config().group_max_members;
    if (m.group.member_count + users.size() > max) {
        throw ApiError(409, "group_full",
                       "a group has at most " + std::to_string(max) + " members");
    }
    require_invitable(db, ctx.me(), users);
    auto change = change_of(m.group.id, client::MEMBERS_ADDED);
    for (const auto u : users)
        change.add_user_ids(u);
    change.set_max_members(max);
    return changed(m.group.id, change_group(ctx, change));
}

// The member in the path ({user_id}), a current member of the caller's group (404 otherwise).
std::pair<std::uint64_t, MemberRow> target_member(RequestContext& ctx, const Membership& m) {
    const auto user = ctx.path_id("user_id");
    const auto row = user == ctx.me() ? std::optional<MemberRow>(m.me)
                                      : find_member(ctx.be.db, m.group.id, user);
    if (!row || !row->current())
        throw ApiError(404, "member_not_found", "no such member of this group");
    return {user, *row};
}

// DELETE /v1/groups/{id}/members/{user_id}: leave (oneself) or remove someone.
HttpResponse remove_member(RequestContext& ctx) {
    const auto m = my_group(ctx);
    const auto user = ctx.path_id("user_id");
    if (user == ctx.me()) {
        if (m.me.role == client::OWNER) {
            throw ApiError(409, "owner_cannot_leave",
                           "the owner cannot leave: transfer ownership or delete the group");
        }
        return changed(m.group.id, change_group(ctx, change_of(m.group.id, client::MEMBER_LEFT)));
    }
    require_role(m, client::ADMIN, "remove members");
    const auto [target, row] = target_member(ctx, m);
    if (m.me.role == client::ADMIN && row.role != client::MEMBER) {
        throw ApiError(403, "group_forbidden",
                       "admins may remove members only, not admins or the owner");
    }
    auto change = change_of(m.group.id, client::MEMBER_REMOVED);
    change.add_user_ids(target);
    return changed(m.group.id, change_group(ctx, change));
}

// PUT /v1/groups/{id}/members/{user_id}/role {role: "admin" | "member"}
HttpResponse set_role(RequestContext& ctx) {
    const auto m = my_group(ctx);
    require_role(m, client::OWNER, "change roles");
    const auto body = ctx.json_body();
    const auto role = parse_role(string_field(body, "role"));
    if (!role) throw ApiError(400, "invalid_role", "role is \"admin\" or \"member\"");
    if (ctx.path_id("user_id") == ctx.me()) {
        throw ApiError(400, "self_role", "the owner's role changes only by transferring ownership");
    }
    const auto [target, row] = target_member(ctx, m);
    auto change = change_of(m.group.id, client::ROLE_CHANGED);
    change.add_user_ids(target);
    change.set_role(*role);
    return changed(m.group.id, change_group(ctx, change));
}

// POST /v1/groups/{id}/owner {user_id}
HttpResponse transfer_ownership(RequestContext& ctx) {
    const auto m = my_group(ctx);
    require_role(m, client::OWNER, "transfer ownership");
    const auto body = ctx.json_body();
    const auto user = id_field(body, "user_id");
    if (user == ctx.me()) throw ApiError(400, "self_owner", "you own this group already");
    const auto row = find_member(ctx.be.db, m.group.id, user);
    if (!row || !row->current())
        throw ApiError(409, "not_member", "the new owner must be a member of the group");
    auto change = change_of(m.group.id, client::OWNER_CHANGED);
    change.add_user_ids(user);
    return changed(m.group.id, change_group(ctx, change));
}

// DELETE /v1/groups/{id}
HttpResponse delete_group(RequestContext& ctx) {
    const auto m = my_group(ctx);
    require_role(m, client::OWNER, "delete it");
    return changed(m.group.id, change_group(ctx, change_of(m.group.id, client::GROUP_DELETED)));
}

// GET /v1/groups/{id}/read-by?seq=N
HttpResponse read_by(RequestContext& ctx) {
    const auto m = my_group(ctx);
    const auto param = ctx.req.query_param("seq");
    if (!param) throw ApiError(400, "missing_parameter", "'seq' is required");
    const auto seq = parse_id(*param);
    if (!seq || *seq == 0)
        throw ApiError(400, "invalid_parameter", "'seq' must be a positive integer");
    auto& st = ctx.be.db.prepare(
        "SELECT user_id, joined_seq, delivered_seq, read_seq FROM group_members WHERE group_id = ? "
        "AND left_seq = 0 "
        "AND user_id <> ? ORDER BY user_id LIMIT " +
        std::to_string(kMaxGroupRows));
    st.setUInt64(1, m.group.id);
    st.setUInt64(2, ctx.me());
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    nlohmann::json members = nlohmann::json::array();
    while (rs->next()) {
        // A member who joined after the message never got it, whatever their watermarks say.
        const bool had_it = rs->getUInt64(2) <= *seq;
        const auto delivered = rs->getUInt64(3), read = rs->getUInt64(4);
        members.push_back({{"user_id", rs->getUInt64(1)},
                           {"delivered_seq", delivered},
                           {"read_seq", read},
                           {"delivered", had_it && delivered >= *seq},
                           {"read", had_it && read >= *seq}});
    }
    return HttpResponse::json(200, {{"group_id", m.group.id}, {"seq", *seq}, {"members", members}});
}

}  // namespace

void add_group_routes(Router<RouteSpec>& r) {
    r.add("POST", "/v1/groups", {create_group, true});
    r.add("GET", "/v1/groups", {list_groups, true});
    r.add("GET", "/v1/groups/{id}", {get_group, true});
    r.add("PATCH", "/v1/groups/{id}", {rename_group, true});
    r.add("DELETE", "/v1/groups/{id}", {delete_group, true});
    r.add("POST", "/v1/groups/{id}/members", {add_members, true});
    r.add("DELETE", "/v1/groups/{id}/members/{user_id}", {remove_member, true});
    r.add("PUT", "/v1/groups/{id}/members/{user_id}/role", {set_role, true});
    r.add("POST", "/v1/groups/{id}/owner", {transfer_ownership, true});
    r.add("GET", "/v1/groups/{id}/read-by", {read_by, true});
}

}  // namespace im::rest

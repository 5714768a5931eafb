// Friends and blocks. The friend request state machine:
//   pending --accept (addressee)--> accepted   (creates the friendship once; a crossing pending
//                                               request the other way is accepted with it)
//   pending --decline (addressee)--> declined
//   pending --cancel (sender)------> canceled
// At most one pending request per direction (a unique key in MySQL). Blocking removes the
// friendship and closes pending requests both ways; a blocked user cannot send requests to the
// blocker. Every multi-row change is one transaction with row locks.

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "accounts.hpp"
#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"
#include "rest_service.hpp"
#include "validation.hpp"

namespace im::rest {
namespace {

using Db = mysql::MysqlConnection;

bool exists(Db& db, const std::string& sql, std::uint64_t a, std::uint64_t b) {
    auto& st = db.prepare(sql);
    st.setUInt64(1, a);
    st.setUInt64(2, b);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    return rs->next();
}

bool are_friends(Db& db, std::uint64_t a, std::uint64_t b) {
    return exists(db, "SELECT 1 FROM friendships WHERE user_id = ? AND friend_id = ?", a, b);
}

bool has_blocked(Db& db, std::uint64_t blocker, std::uint64_t blocked) {
    return exists(db, "SELECT 1 FROM blocks WHERE user_id = ? AND blocked_id = ?", blocker, blocked);
}

void update2(Db& db, const std::string& sql, std::uint64_t a, std::uint64_t b) {
    auto& st = db.prepare(sql);
    st.setUInt64(1, a);
    st.setUInt64(2, b);
    st.executeUpdate();
}

struct FriendRequest {
    std::uint64_t id = 0, from = 0, to = 0;
    std::string message, status;
    std::int64_t created_ms = 0;
};

constexpr const char* kRequestColumns = "SELECT id, from_user, to_user, message, status, created_at FROM friend_requests ";

FriendRequest read_request(sql::ResultSet& rs) {
    return FriendRequest{rs.getUInt64(1), rs.getUInt64(2), rs.getUInt64(3), rs.getString(4).asStdString(),
                         rs.getString(5).asStdString(), mysql::datetime_to_ms(rs.getString(6).asStdString())};
}

nlohmann::json request_json(Db& db, const FriendRequest& r) {
    nlohmann::json j = {{"id", r.id},         {"from_user_id", r.from}, {"to_user_id", r.to},
                        {"message", r.message}, {"status", r.status},   {"created_at", iso8601(r.created_ms)}};
    if (auto u = accounts::by_id(db, r.from)) j["from"] = user_json(*u);
    if (auto u = accounts::by_id(db, r.to)) j["to"] = user_json(*u);
    return j;
}

// Rows of (id, username, display_name, since) as [{id, username, display_name, since}].
nlohmann::json users_since(sql::PreparedStatement& st) {
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    nlohmann::json out = nlohmann::json::array();
    while (rs->next()) {
        User u;
        u.id = rs->getUInt64(1);
        u.username = rs->getString(2).asStdString();
        u.display_name = rs->getString(3).asStdString();
        auto j = user_json(u);
        j["since"] = iso8601(mysql::datetime_to_ms(rs->getString(4).asStdString()));
        out.push_back(std::move(j));
    }
    return out;
}

// Deletes both rows of a friendship; true when there was one.
bool delete_friendship(Db& db, std::uint64_t a, std::uint64_t b) {
    auto& st = db.prepare("DELETE FROM friendships WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)");
    st.setUInt64(1, a);
    st.setUInt64(2, b);
    st.setUInt64(3, b);
    st.setUInt64(4, a);
    return st.executeUpdate() > 0;
}

// Tells the transfers that the policy between a and b changed (they cache it briefly). A lost
// message only delays the change by the cache TTL.
void announce_social_change(RequestContext& ctx, std::uint64_t a, std::uint64_t b) {
    try {
        ctx.be.status.publish_social_change(a, b);
    } catch (const std::exception& e) {
        spdlog::warn("social change {} <-> {} not announced: {}", a, b, e.what());
    }
}

User must_find_user(Db& db, std::uint64_t id) {
    auto u = accounts::by_id(db, id);
    if (!u) throw ApiError(404, "user_not_found", "no such user");
    return *u;
}

// POST /v1/friends/requests {to_user_id, message}
HttpResponse send_request(RequestContext& ctx) {
    const auto body = ctx.json_body();
    const auto to = id_field(body, "to_user_id");
    const auto message = optional_string_field(body, "message").value_or("");
    if (!valid_text(message, 512)) throw ApiError(400, "invalid_message", "the message is at most 512 bytes of text");
    const auto me = ctx.me();
    if (to == me) throw ApiError(400, "self_request", "you cannot send a friend request to yourself");
    auto& db = ctx.be.db;
    must_find_user(db, to);
    if (has_blocked(db, to, me)) throw ApiError(403, "blocked", "this user does not accept requests from you");
    if (has_blocked(db, me, to)) throw ApiError(409, "you_blocked", "unblock this user first");
    if (are_friends(db, me, to)) throw ApiError(409, "already_friends", "you are already friends");
    auto& st = db.prepare("INSERT INTO friend_requests (from_user, to_user, message) VALUES (?, ?, ?)");
    st.setUInt64(1, me);
    st.setUInt64(2, to);
    st.setString(3, message);
    try {
        st.executeUpdate();
    } catch (const sql::SQLException& e) {
        if (mysql::is_duplicate_key(e)) throw ApiError(409, "request_pending", "a request to this user is already pending");
        throw;
    }
    std::unique_ptr<sql::ResultSet> id_rs(db.prepare("SELECT LAST_INSERT_ID()").executeQuery());
    id_rs->next();
    auto& get = db.prepare(std::string(kRequestColumns) + "WHERE id = ?");
    get.setUInt64(1, id_rs->getUInt64(1));
    std::unique_ptr<sql::ResultSet> rs(get.executeQuery());
    rs->next();
    const auto req = read_request(*rs);
    spdlog::info("friend request {}: {} -> {}", req.id, me, to);
    return HttpResponse::json(201, request_json(db, req));
}

// GET /v1/friends/requests?direction=in|out (pending ones)
HttpResponse list_requests(RequestContext& ctx) {
    const auto dir = ctx.req.query_param("direction").value_or("in");
    if (dir != "in" && dir != "out") throw ApiError(400, "invalid_parameter", "direction is 'in' or 'out'");
    auto& st = ctx.be.db.prepare(std::string(kRequestColumns) +
                                 (dir == "in" ? "WHERE to_user = ? AND status = 'pending' ORDER BY id LIMIT 1000"
                                              : "WHERE from_user = ? AND status = 'pending' ORDER BY id LIMIT 1000"));
    st.setUInt64(1, ctx.me());
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    std::vector<FriendRequest> reqs;
    while (rs->next()) reqs.push_back(read_request(*rs));
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : reqs) out.push_back(request_json(ctx.be.db, r));
    return HttpResponse::json(200, {{"requests", out}});
}

// Locks the request row; checks who may act on it and that it is still pending.
FriendRequest lock_request(Db& db, std::uint64_t id, std::uint64_t me, bool as_addressee) {
    auto& st = db.prepare(std::string(kRequestColumns) + "WHERE id = ? FOR UPDATE");
    st.setUInt64(1, id);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    if (!rs->next()) throw ApiError(404, "request_not_found", "no such friend request");
    auto r = read_request(*rs);
    if (r.from != me && r.to != me) throw ApiError(404, "request_not_found", "no such friend request");
    if (as_addressee && r.to != me) throw ApiError(403, "not_addressee", "only the addressee can answer a request");
    if (!as_addressee && r.from != me) throw ApiError(403, "not_sender", "only the sender can cancel a request");
    if (r.status != "pending") throw ApiError(409, "not_pending", "this request is already " + r.status);
    return r;
}

void set_status(Db& db, std::uint64_t id, const char* status) {
    auto& st = db.prepare("UPDATE friend_requests SET status = ?, updated_at = CURRENT_TIMESTAMP(3) WHERE id = ?");
    st.setString(1, status);
    st.setUInt64(2, id);
    st.executeUpdate();
}

// POST /v1/friends/requests/{id}/accept
HttpResponse accept_request(RequestContext& ctx) {
    const auto id = ctx.path_id("id");
    const auto me = ctx.me();
    auto& db = ctx.be.db;
    FriendRequest r;
    db.transaction([&] {
        r = lock_request(db, id, me, true);
        if (has_blocked(db, me, r.from) || has_blocked(db, r.from, me)) {
            throw ApiError(403, "blocked", "a block exists between you and this user");
        }
        set_status(db, id, "accepted");
        // A crossing request (the other direction) is settled by the same friendship.
        update2(db,
                "UPDATE friend_requests SET status = 'accepted', updated_at = CURRENT_TIMESTAMP(3) "
                "WHERE from_user = ? AND to_user = ? AND status = 'pending'",
                me, r.from);
        update2(db, "INSERT IGNORE INTO friendships (user_id, friend_id) VALUES (?, ?)", me, r.from);
        update2(db, "INSERT IGNORE INTO friendships (user_id, friend_id) VALUES (?, ?)", r.from, me);
    });
    r.status = "accepted";
    spdlog::info("friend request {} accepted: {} <-> {}", id, r.from, me);
    announce_social_change(ctx, r.from, me);
    return HttpResponse::json(200, request_json(db, r));
}

HttpResponse close_request(RequestContext& ctx, bool as_addressee, const char* status) {
    const auto id = ctx.path_id("id");
    auto& db = ctx.be.db;
    FriendRequest r;
    db.transaction([&] {
        r = lock_request(db, id, ctx.me(), as_addressee);
        set_status(db, id, status);
    });
    r.status = status;
    return HttpResponse::json(200, request_json(db, r));
}

// POST /v1/friends/requests/{id}/decline
HttpResponse decline_request(RequestContext& ctx) { return close_request(ctx, true, "declined"); }
// POST /v1/friends/requests/{id}/cancel
HttpResponse cancel_request(RequestContext& ctx) { return close_request(ctx, false, "canceled"); }

// GET /v1/friends: with each friend's presence, asked from Redis in one round trip.
HttpResponse list_friends(RequestContext& ctx) {
    auto& st = ctx.be.db.prepare(
        "SELECT u.id, u.username, u.display_name, f.created_at FROM friendships f JOIN users u ON u.id = f.friend_id "
        "WHERE f.user_id = ? ORDER BY u.username LIMIT 5000");
    st.setUInt64(1, ctx.me());
    auto friends = users_since(st);
    std::vector<std::uint64_t> ids;
    ids.reserve(friends.size());
    for (const auto& f : friends) ids.push_back(f["id"].get<std::uint64_t>());
    std::vector<bool> online(ids.size(), false);
    try {
        online = ctx.be.status.presence_many(ids);
    } catch (const redis::RedisError& e) {
        // The list itself is MySQL's; presence is only a hint: everyone shows offline meanwhile.
        spdlog::warn("GET /v1/friends: presence unavailable, reporting offline: {}", e.what());
    }
    for (std::size_t i = 0; i < friends.size(); ++i) friends[i]["online"] = static_cast<bool>(online[i]);
    return HttpResponse::json(200, {{"friends", friends}});
}

// GET /v1/users/{id}/presence: for yourself or a friend ("me" works as the id too). Unlike the
// friend list, a Redis failure answers 503: presence lives only there.
HttpResponse user_presence(RequestContext& ctx) {
    const auto it = ctx.params.find("id");
    const auto me = ctx.me();
    const auto user = (it != ctx.params.end() && it->second == "me") ? me : ctx.path_id("id");
    if (user != me) {
        auto& db = ctx.be.db;
        if (!valid_user_id(user) || !accounts::by_id(db, user)) throw ApiError(404, "user_not_found", "no such user");
        if (!are_friends(db, me, user)) throw ApiError(403, "not_friends", "presence is shown to friends only");
    }
    return HttpResponse::json(200, {{"user_id", user}, {"online", ctx.be.status.presence(user)}});
}

// DELETE /v1/friends/{user_id}
HttpResponse remove_friend(RequestContext& ctx) {
    const auto other = ctx.path_id("user_id");
    const auto me = ctx.me();
    auto& db = ctx.be.db;
    if (!delete_friendship(db, me, other)) throw ApiError(404, "not_friends", "this user is not your friend");
    spdlog::info("friendship {} <-> {} removed", me, other);
    announce_social_change(ctx, me, other);
    return HttpResponse::no_content();
}

// POST /v1/blocks {user_id}
HttpResponse block_user(RequestContext& ctx) {
    const auto body = ctx.json_body();
    const auto other = id_field(body, "user_id");
    const auto me = ctx.me();
    if (other == me) throw ApiError(400, "self_block", "you cannot block yourself");
    auto& db = ctx.be.db;
    must_find_user(db, other);
    db.transaction([&] {
        update2(db, "INSERT IGNORE INTO blocks (user_id, blocked_id) VALUES (?, ?)", me, other);
        delete_friendship(db, me, other);
        auto& close = db.prepare(
            "UPDATE friend_requests SET status = 'canceled', updated_at = CURRENT_TIMESTAMP(3) WHERE status = 'pending' "
            "AND ((from_user = ? AND to_user = ?) OR (from_user = ? AND to_user = ?))");
        close.setUInt64(1, me);
        close.setUInt64(2, other);
        close.setUInt64(3, other);
        close.setUInt64(4, me);
        close.executeUpdate();
    });
    spdlog::info("user {} blocked {}", me, other);
    announce_social_change(ctx, me, other);
    return HttpResponse::json(201, {{"user_id", other}});
}

// DELETE /v1/blocks/{user_id}
HttpResponse unblock_user(RequestContext& ctx) {
    const auto other = ctx.path_id("user_id");
    auto& st = ctx.be.db.prepare("DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?");
    st.setUInt64(1, ctx.me());
    st.setUInt64(2, other);
    if (st.executeUpdate() == 0) throw ApiError(404, "not_blocked", "this user is not blocked");
    announce_social_change(ctx, ctx.me(), other);
    return HttpResponse::no_content();
}

// GET /v1/blocks
HttpResponse list_blocks(RequestContext& ctx) {
    auto& st = ctx.be.db.prepare(
        "SELECT u.id, u.username, u.display_name, b.created_at FROM blocks b JOIN users u ON u.id = b.blocked_id "
        "WHERE b.user_id = ? ORDER BY b.created_at LIMIT 5000");
    st.setUInt64(1, ctx.me());
    return HttpResponse::json(200, {{"blocks", users_since(st)}});
}

}  // namespace

void add_social_routes(Router<RouteSpec>& r) {
    r.add("POST", "/v1/friends/requests", {send_request, true});
    r.add("GET", "/v1/friends/requests", {list_requests, true});
    r.add("POST", "/v1/friends/requests/{id}/accept", {accept_request, true});
    r.add("POST", "/v1/friends/requests/{id}/decline", {decline_request, true});
    r.add("POST", "/v1/friends/requests/{id}/cancel", {cancel_request, true});
    r.add("GET", "/v1/friends", {list_friends, true});
    r.add("GET", "/v1/users/{id}/presence", {user_presence, true});
    r.add("DELETE", "/v1/friends/{user_id}", {remove_friend, true});
    r.add("POST", "/v1/blocks", {block_user, true});
    r.add("DELETE", "/v1/blocks/{user_id}", {unblock_user, true});
    r.add("GET", "/v1/blocks", {list_blocks, true});
}

}  // namespace im::rest

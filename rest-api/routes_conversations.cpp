// Conversations and history for apps and tools: the list with unread counts, message pages after
// or before a seq, and the read watermark. Reads come straight from MySQL (committed rows only, so
// nothing that could still be rolled back is ever shown); the read watermark is written by the
// conversation's owner transfer, reached through the TransferGateway. A group's conversation id is
// its group id: its member rows (current or past) decide who may read which seqs (groups.hpp).

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

#include "im/proto/client.pb.h"
#include "im/server/mysql.hpp"
#include "im/server/token_format.hpp"
#include "groups.hpp"
#include "im/wire/ids.hpp"
#include "rest_service.hpp"
#include "transfer_gateway.hpp"
#include "validation.hpp"

namespace im::rest {
namespace {

std::uint64_t query_u64(RequestContext& ctx, const char* name, std::uint64_t fallback) {
    const auto v = ctx.req.query_param(name);
    if (!v) return fallback;
    const auto n = parse_id(*v);
    if (!n) throw ApiError(400, "invalid_parameter", std::string("'") + name + "' must be a non-negative integer");
    return *n;
}

// The conversation in the path, which the caller must take part in (404 otherwise: a stranger
// learns nothing, not even that it exists), and the seqs of it the caller may see: all of a
// one-to-one conversation; of a group, those of the caller's membership (current or past).
struct MyConversation {
    std::uint64_t id = 0;
    Visible visible;
    bool group = false;
    bool current = true;  // a group's current member (a past one only reads)
};

MyConversation my_conversation(RequestContext& ctx) {
    const auto conv = ctx.path_id("id");
    if (is_participant(conv, ctx.me())) return {conv, {}, false, true};
    if (valid_group_id(conv)) {
        if (auto m = find_member(ctx.be.db, conv, ctx.me())) return {conv, visible_range(*m), true, m->current()};
    }
    throw ApiError(404, "conversation_not_found", "no such conversation");
}

// The caller's current groups as conversation rows (groups.hpp). unread: the others' messages
// after my read watermark, within what I can see, counted over the last kUnreadCap seqs at most.
constexpr int kUnreadCap = 1000;

nlohmann::json group_conversations(RequestContext& ctx) {
    auto& st = ctx.be.db.prepare(
        "SELECT g.id, g.name, g.member_count, g.last_seq, m.joined_seq, m.delivered_seq, m.read_seq, g.updated_ms, "
        "(SELECT COUNT(*) FROM messages x WHERE x.conversation_id = g.id AND x.sender_id <> m.user_id AND "
        "x.seq > GREATEST(m.read_seq, CAST(m.joined_seq AS SIGNED) - 1, CAST(g.last_seq AS SIGNED) - " +
        std::to_string(kUnreadCap) +
        ")) FROM group_members m JOIN chat_groups g ON g.id = m.group_id "
        "WHERE m.user_id = ? AND m.left_seq = 0 AND g.deleted_seq = 0 ORDER BY g.id LIMIT 1000");
    st.setUInt64(1, ctx.me());
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    nlohmann::json out = nlohmann::json::array();
    while (rs->next()) {
        out.push_back({{"id", rs->getUInt64(1)},
                       {"group", true},
                       {"title", rs->getString(2).asStdString()},
                       {"member_count", rs->getUInt(3)},
                       {"last_seq", rs->getUInt64(4)},
                       {"joined_seq", rs->getUInt64(5)},
                       {"unread", rs->getUInt64(9)},
                       {"my_delivered_seq", rs->getUInt64(6)},
                       {"my_read_seq", rs->getUInt64(7)},
                       {"updated_at", iso8601(rs->getInt64(8))}});
    }
    return out;
}

// GET /v1/conversations?cursor=&limit=
HttpResponse list_conversations(RequestContext& ctx) {
    const auto cursor = query_u64(ctx, "cursor", 0);
    const auto limit = std::clamp<std::uint64_t>(query_u64(ctx, "limit", 100), 1, 500);
    auto& st = ctx.be.db.prepare(
        "SELECT uc.conversation_id, uc.peer_id, uc.last_seq, uc.my_delivered_seq, uc.my_read_seq, "
        "uc.peer_delivered_seq, uc.peer_read_seq, uc.version, uc.updated_ms, u.username, u.display_name, uc.unread "
        "FROM user_conversations uc LEFT JOIN users u ON u.id = uc.peer_id "
        "WHERE uc.user_id = ? AND uc.version > ? ORDER BY uc.version LIMIT ?");
    st.setUInt64(1, ctx.me());
    st.setUInt64(2, cursor);
    st.setUInt64(3, limit + 1);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    nlohmann::json list = nlohmann::json::array();
    std::uint64_t next = cursor;
    bool more = false;
    while (rs->next()) {
        if (list.size() == limit) {
            more = true;
            break;
        }
        const auto last = rs->getUInt64(3);
        const auto my_read = rs->getUInt64(5);
        list.push_back({{"id", rs->getUInt64(1)},
                        {"group", false},
                        {"peer", {{"id", rs->getUInt64(2)},
                                  {"username", rs->getString(10).asStdString()},
                                  {"display_name", rs->getString(11).asStdString()}}},
                        {"last_seq", last},
                        {"unread", rs->getUInt64(12)},  // the peer's messages after my_read_seq
                        {"my_delivered_seq", rs->getUInt64(4)},
                        {"my_read_seq", my_read},
                        {"peer_delivered_seq", rs->getUInt64(6)},
                        {"peer_read_seq", rs->getUInt64(7)},
                        {"updated_at", iso8601(rs->getInt64(9))}});
        next = rs->getUInt64(8);
    }
    // Groups come after the one-to-one rows of the first page (cursor 0), all of them, and do not
    // move the cursor: the one-to-one paging stays as it was.
    if (cursor == 0) {
        for (auto& g : group_conversations(ctx)) list.push_back(std::move(g));
    }
    return HttpResponse::json(200, {{"conversations", list}, {"next_cursor", next}, {"has_more", more}});
}

// GET /v1/conversations/{id}/messages?after_seq=&limit=  |  ?before_seq=&limit=
HttpResponse list_messages(RequestContext& ctx) {
    const auto conv = my_conversation(ctx);
    const auto limit = std::clamp<std::uint64_t>(query_u64(ctx, "limit", 50), 1, 200);
    const bool backward = ctx.req.query_param("before_seq").has_value();
    if (backward && ctx.req.query_param("after_seq")) {
        throw ApiError(400, "invalid_parameter", "use either after_seq or before_seq");
    }
    const auto pivot = backward ? query_u64(ctx, "before_seq", 0) : query_u64(ctx, "after_seq", 0);
    // Bounded by what the caller may see (a group member: joined_seq .. left_seq).
    auto& st = ctx.be.db.prepare(
        backward ? "SELECT seq, msg_id, sender_id, sender_device, client_msg_id, type, body, created_ms FROM messages "
                   "WHERE conversation_id = ? AND seq < ? AND seq >= ? AND seq <= ? ORDER BY seq DESC LIMIT ?"
                 : "SELECT seq, msg_id, sender_id, sender_device, client_msg_id, type, body, created_ms FROM messages "
                   "WHERE conversation_id = ? AND seq > ? AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ?");
    st.setUInt64(1, conv.id);
    st.setUInt64(2, pivot);
    st.setUInt64(3, conv.visible.first);
    st.setUInt64(4, conv.visible.last);
    st.setUInt64(5, limit + 1);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    std::vector<nlohmann::json> rows;
    bool more = false;
    while (rs->next()) {
        if (rows.size() == limit) {
            more = true;
            break;
        }
        nlohmann::json m = {{"seq", rs->getUInt64(1)},
                            {"msg_id", std::to_string(rs->getUInt64(2))},  // 64-bit: a string for JavaScript
                            {"sender_id", rs->getUInt64(3)},
                            {"sender_device", rs->getString(4).asStdString()},
                            {"client_msg_id", tokens::to_hex(rs->getString(5).asStdString())},
                            {"created_at", iso8601(rs->getInt64(8))}};
        const auto body = rs->getString(7).asStdString();
        const auto type = rs->getUInt(6);
        if (type == client::GROUP_EVENT) {
            client::GroupEvent e;
            e.ParseFromString(body);
            m["type"] = "group_event";
            m["event"] = {{"kind", event_kind_name(e.kind())},
                          {"actor_id", e.actor_user_id()},
                          {"user_ids", std::vector<std::uint64_t>(e.user_ids().begin(), e.user_ids().end())},
                          {"name", e.name()},
                          {"role", role_name(e.role())}};
        } else if (type == client::FILE) {
            client::FileRef f;
            f.ParseFromString(body);
            m["type"] = "file";
            m["file"] = {{"id", f.file_id()}, {"name", f.name()}, {"size", f.size()}, {"sha256", f.sha256()}, {"mime", f.mime()}};
        } else {
            m["type"] = "text";
            m["text"] = body;
        }
        rows.push_back(std::move(m));
    }
    if (backward) std::reverse(rows.begin(), rows.end());
    return HttpResponse::json(200, {{"conversation_id", conv.id}, {"messages", rows}, {"has_more", more}});
}

// POST /v1/conversations/{id}/read {up_to_seq}
HttpResponse mark_read(RequestContext& ctx) {
    const auto mine = my_conversation(ctx);
    // A past member of a group keeps its history but has no watermark to move.
    if (!mine.current) throw ApiError(404, "conversation_not_found", "no such conversation");
    const auto conv = mine.id;
    const auto body = ctx.json_body();
    const auto& v = require_field(body, "up_to_seq");
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0) {
        throw ApiError(400, "invalid_field", "'up_to_seq' must be a positive integer");
    }
    client::Envelope receipt;
    receipt.mutable_receipt()->set_conversation_id(conv);
    receipt.mutable_receipt()->set_kind(client::READ);
    receipt.mutable_receipt()->set_up_to_seq(v.get<std::uint64_t>());
    std::vector<TransferAddress> transfers;
    for (const auto& t : ctx.be.status.live_transfers()) transfers.push_back({t.id, t.address});
    std::string detail;
    if (!ctx.svc.gateway().forward(transfers, ctx.me(), conv, receipt, detail)) {
        spdlog::warn("read watermark for conversation {} not forwarded: {}", conv, detail);
        ApiError e(503, "unavailable", "the conversation's owner is unreachable, retry shortly");
        e.retry_after_s = 1;
        throw e;
    }
    return HttpResponse::no_content();
}

}  // namespace

void add_conversation_routes(Router<RouteSpec>& r) {
    r.add("GET", "/v1/conversations", {list_conversations, true});
    r.add("GET", "/v1/conversations/{id}/messages", {list_messages, true});
    r.add("POST", "/v1/conversations/{id}/read", {mark_read, true});
}

}  // namespace im::rest

// Conversations and history for apps and tools: the list with unread counts, message pages after
// or before a seq, and the read watermark. Reads come straight from MySQL (committed rows only, so
// nothing that could still be rolled back is ever shown); the read watermark is written by the
// conversation's owner transfer, reached through the TransferGateway.

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

#include "im/proto/client.pb.h"
#include "im/server/mysql.hpp"
#include "im/server/token_format.hpp"
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
// learns nothing, not even that it exists).
std::uint64_t my_conversation(RequestContext& ctx) {
    const auto conv = ctx.path_id("id");
    if (!is_participant(conv, ctx.me())) throw ApiError(404, "conversation_not_found", "no such conversation");
    return conv;
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
    auto& st = ctx.be.db.prepare(
        backward ? "SELECT seq, msg_id, sender_id, sender_device, client_msg_id, type, body, created_ms FROM messages "
                   "WHERE conversation_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
                 : "SELECT seq, msg_id, sender_id, sender_device, client_msg_id, type, body, created_ms FROM messages "
                   "WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?");
    st.setUInt64(1, conv);
    st.setUInt64(2, pivot);
    st.setUInt64(3, limit + 1);
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
        if (rs->getUInt(6) == client::FILE) {
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
    return HttpResponse::json(200, {{"conversation_id", conv}, {"messages", rows}, {"has_more", more}});
}

// POST /v1/conversations/{id}/read {up_to_seq}
HttpResponse mark_read(RequestContext& ctx) {
    const auto conv = my_conversation(ctx);
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

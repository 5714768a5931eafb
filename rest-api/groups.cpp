#include "groups.hpp"

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <random>

#include "im/server/mysql.hpp"
#include "rest_service.hpp"
#include "transfer_gateway.hpp"

namespace im::rest {

std::optional<GroupRow> find_group(mysql::MysqlConnection& db, std::uint64_t group) {
    auto& st = db.prepare(
        "SELECT id, name, owner_id, last_seq, member_count, deleted_seq, history_visible FROM chat_groups "
        "WHERE id = ?");
    st.setUInt64(1, group);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    if (!rs->next()) return std::nullopt;
    return GroupRow{rs->getUInt64(1), rs->getString(2).asStdString(),
                    rs->getUInt64(3), rs->getUInt64(4),
                    rs->getUInt(5),   rs->getUInt64(6), rs->getUInt(7) != 0};
}

std::optional<MemberRow> find_member(mysql::MysqlConnection& db, std::uint64_t group,
                                     std::uint64_t user) {
    auto& st = db.prepare(
        "SELECT m.role, m.joined_seq, m.left_seq, m.delivered_seq, m.read_seq, g.history_visible FROM group_members m "
        "JOIN chat_groups g ON g.id = m.group_id WHERE m.group_id = ? AND m.user_id = ?");
    st.setUInt64(1, group);
    st.setUInt64(2, user);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    if (!rs->next()) return std::nullopt;
    const auto role = rs->getUInt(1);
    return MemberRow{client::GroupRole_IsValid(static_cast<int>(role))
                         ? static_cast<client::GroupRole>(role)
                         : client::MEMBER,
                     rs->getUInt64(2), rs->getUInt64(3), rs->getUInt64(4), rs->getUInt64(5), rs->getUInt(6) != 0};
}

const char* role_name(client::GroupRole r) {
    switch (r) {
        case client::OWNER:
            return "owner";
        case client::ADMIN:
            return "admin";
        default:
            return "member";
    }
}

std::optional<client::GroupRole> parse_role(std::string_view s) {
    if (s == "admin") return client::ADMIN;
    if (s == "member") return client::MEMBER;
    return std::nullopt;
}

const char* event_kind_name(client::GroupEventKind k) {
    switch (k) {
        case client::GROUP_CREATED:
            return "group_created";
        case client::MEMBERS_ADDED:
            return "members_added";
        case client::MEMBER_REMOVED:
            return "member_removed";
        case client::MEMBER_LEFT:
            return "member_left";
        case client::GROUP_RENAMED:
            return "group_renamed";
        case client::ROLE_CHANGED:
            return "role_changed";
        case client::OWNER_CHANGED:
            return "owner_changed";
        case client::GROUP_DELETED:
            return "group_deleted";
        default:
            return "unknown";
    }
}

ChangeOutcome outcome_of(client::ErrorCode code) {
    switch (code) {
        case client::ERROR_NONE:
            return {};
        case client::FORBIDDEN:
            return {403, "group_forbidden"};
        case client::BLOCKED:
            return {403, "blocked"};
        case client::NOT_FOUND:
            return {404, "group_not_found"};
        case client::BAD_REQUEST:
            // Valid input that the group's state refuses (already a member, not a member, full,
            // the owner leaving, ...): a conflict with the group as it is now.
            return {409, "group_change_refused"};
        default:
            // Retryable codes (OVERLOADED, UNAVAILABLE, TIMEOUT, INTERNAL, RATE_LIMITED), and
            // answers of a transfer that does not know GroupChange yet (UNKNOWN_BODY during a
            // rolling upgrade): nothing was committed, try again shortly.
            return {503, "unavailable", true};
    }
}

std::uint64_t change_group(RequestContext& ctx, const client::GroupChange& change) {
    client::Envelope request;
    std::random_device rd;
    request.set_request_id(((static_cast<std::uint64_t>(rd()) << 32) | rd()) | 1u);  // non-zero
    *request.mutable_group_change() = change;
    std::vector<TransferAddress> transfers;
    for (const auto& t : ctx.be.status.live_transfers())
        transfers.push_back({t.id, t.address});
    std::string detail;
    const auto answer =
        ctx.svc.gateway().call(transfers, ctx.me(), change.group_id(), request, detail);
    const auto unavailable = [](const std::string& message) {
        ApiError e(503, "unavailable", message);
        e.retry_after_s = 1;
        return e;
    };
    if (!answer) {
        spdlog::warn("group {} change {} by {}: no answer from its owner: {}", change.group_id(),
                     event_kind_name(change.kind()), ctx.me(), detail);
        throw unavailable("the group's owner is unreachable, retry shortly");
    }
    client::ErrorCode code = client::INTERNAL;
    std::string message;
    std::uint64_t seq = 0;
    if (answer->has_group_change_result()) {
        code = answer->group_change_result().code();
        message = answer->group_change_result().message();
        seq = answer->group_change_result().seq();
    } else if (answer->has_error()) {
        code = answer->error().code();
        message = answer->error().message();
    }
    const auto out = outcome_of(code);
    if (out.status == 0 && seq != 0) return seq;
    if (out.status == 0 || out.retry) {
        spdlog::warn("group {} change {} by {}: the owner answered {} ({})", change.group_id(),
                     event_kind_name(change.kind()), ctx.me(), client::ErrorCode_Name(code),
                     message);
        throw unavailable("the group's owner cannot take this change now, retry shortly");
    }
    throw ApiError(out.status, out.code,
                   message.empty() ? "the group's owner refused this change" : message);
}

}  // namespace im::rest

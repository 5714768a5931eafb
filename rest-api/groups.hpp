#pragma once
// Groups as im-rest sees them (issue 15): reads of chat_groups and group_members (written only by
// the group's owner transfer), the visibility rule of a member's history, and changes handed to
// the owner transfer as a GroupChange (TransferGateway::call). Blocking: pool threads only.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "im/proto/client.pb.h"

namespace im::mysql {
class MysqlConnection;
}

namespace im::rest {

struct RequestContext;

struct GroupRow {
    std::uint64_t id = 0;
    std::string name;
    std::uint64_t owner_id = 0;
    std::uint64_t last_seq = 0;
    std::uint32_t member_count = 0;
    std::uint64_t deleted_seq = 0;
    bool history_visible = false;
};

// One member row, current (left_seq 0) or past.
struct MemberRow {
    client::GroupRole role = client::MEMBER;
    std::uint64_t joined_seq = 0;
    std::uint64_t left_seq = 0;
    std::uint64_t delivered_seq = 0;
    std::uint64_t read_seq = 0;
    bool history_visible = false;  // the group's setting: members see the history from seq 1
    bool current() const { return left_seq == 0; }
};

// The seqs of a group a member may see: joined_seq (or 1 when the group shows its history to new
// members) .. left_seq (or the end).
struct Visible {
    std::uint64_t first = 0;
    std::uint64_t last = UINT64_MAX;
};
inline Visible visible_range(const MemberRow& m) {
    return {m.history_visible ? 1 : m.joined_seq, m.left_seq == 0 ? UINT64_MAX : m.left_seq};
}

std::optional<GroupRow> find_group(mysql::MysqlConnection& db, std::uint64_t group);
std::optional<MemberRow> find_member(mysql::MysqlConnection& db, std::uint64_t group,
                                     std::uint64_t user);

// "owner", "admin", "member" (the JSON names); parse_role accepts only "admin" and "member",
// the roles ROLE_CHANGED can give.
const char* role_name(client::GroupRole r);
std::optional<client::GroupRole> parse_role(std::string_view s);
// "group_created", "members_added", ... (the JSON names of GroupEventKind).
const char* event_kind_name(client::GroupEventKind k);

// What a GroupChange answer means for the HTTP client: the status and error code, 0 for success.
struct ChangeOutcome {
    int status = 0;
    std::string code;
    bool retry = false;  // 503: with Retry-After
};
ChangeOutcome outcome_of(client::ErrorCode code);

// Hands `change` to the group's owner transfer as the request's user and waits for it to be
// committed; returns the seq of its GROUP_EVENT message. Throws ApiError with the mapped status
// (outcome_of) when the owner refuses it or cannot be reached (503 with Retry-After).
std::uint64_t change_group(RequestContext& ctx, const client::GroupChange& change);

}  // namespace im::rest

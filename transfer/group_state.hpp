#pragma once
// A group as the writer lane of its owner transfer keeps it (issue 15): the current members with
// their roles and watermarks, the senders of the latest messages, and the rules of each change
// (who may do what). apply_group_change is pure: the lane calls it in the batch that commits the
// change's GROUP_EVENT message, so a change and the messages around it have one order. No I/O.

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "im/proto/client.pb.h"

namespace im::transfer {

inline constexpr std::uint32_t kDefaultMaxGroupMembers = 500;
inline constexpr std::size_t kGroupNameMaxBytes = 128;

struct GroupMember {
    client::GroupRole role = client::MEMBER;
    std::uint64_t joined_seq = 0;
    std::uint64_t delivered = 0;
    std::uint64_t read = 0;
};

struct GroupState {
    std::string name;
    std::uint64_t owner = 0;
    std::uint64_t deleted_seq = 0;  // non-zero: deleted
    std::int64_t created_ms = 0;
    std::unordered_map<std::uint64_t, GroupMember> members;  // current members only
    // The current member ids (what a Deliver fans out to), shared with the results of a batch.
    std::shared_ptr<const std::vector<std::uint64_t>> audience = std::make_shared<const std::vector<std::uint64_t>>();

    void rebuild_audience();
    // The latest messages' (seq, sender), at most kRecent: a READ receipt that passes them is
    // told to their senders (bounded fan-in; older messages' senders are not told).
    static constexpr std::size_t kRecent = 512;
    std::deque<std::pair<std::uint64_t, std::uint64_t>> recent;
    void note_message(std::uint64_t seq, std::uint64_t sender);
    // Distinct senders of the remembered messages with after < seq <= up_to, but `except`.
    std::vector<std::uint64_t> senders_between(std::uint64_t after, std::uint64_t up_to, std::uint64_t except) const;
};

struct ChangeOutcome {
    client::ErrorCode code = client::ERROR_NONE;
    std::string message;
    client::GroupEvent event;        // the system message to store (code ERROR_NONE)
    std::vector<std::uint64_t> left; // who stopped being a member at this seq (told of it too)
};

// Validates `change` by `actor` against `g` and, when allowed, applies it at `seq` (the caller
// consumes seq only when code is ERROR_NONE). `last_seq` is the group's last seq before it.
ChangeOutcome apply_group_change(GroupState& g, std::uint64_t actor, const client::GroupChange& change, std::uint64_t seq,
                                 std::uint64_t last_seq);

}  // namespace im::transfer

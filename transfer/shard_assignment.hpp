#pragma once
// Who should own which shard, as a pure function of what the database says (no I/O, unit-tested).
//
// The active, live members share the shards by rendezvous hashing on their transfer id: each
// shard goes to the member with the highest hash(shard, id). A member that joins or leaves moves
// only its own share (about 1/M of the shards), and a transfer restarted under the same id gets
// the same shards back. A transfer hands over the shards that should be another's (cooperative,
// while it is alive) and claims the ones that should be its own when their owner is gone
// (lease expired, or no owner at all). Safety never depends on this plan: every batch is fenced
// by shard_owner in its own transaction, so a wrong or stale plan only costs retries.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace im::transfer {

enum class MemberState : std::uint8_t { joining = 1, active = 2, draining = 3 };

struct Member {
    std::uint64_t incarnation = 0;  // its shard_owner epoch
    std::string transfer_id;
    std::string address;
    MemberState state = MemberState::joining;
    bool live = false;  // lease not expired (database clock)
};

struct ShardRow {
    std::uint64_t epoch = 0;  // owner incarnation; 0: nobody
    std::uint64_t gen = 0;    // bumped by every change of owner
};

struct PlanInput {
    std::uint64_t me = 0;
    std::string my_id;
    bool me_active = false;          // joining members get no shards yet; draining ones give theirs away
    bool may_take_expired = false;   // healthy long enough to judge others' leases (see ownership_manager)
    std::vector<Member> members;
    std::vector<ShardRow> rows;      // index = shard
};

struct Plan {
    struct HandOver {
        std::string to_id;
        std::vector<std::uint32_t> shards;
    };
    std::map<std::uint64_t, HandOver> hand_over;            // target incarnation -> my shards for it
    std::map<std::uint64_t, std::vector<std::uint32_t>> claim;  // current owner epoch -> shards to take
};

// The member that should own `shard` among `candidates` (ids, already deduplicated); -1 if none.
int rendezvous_pick(std::uint32_t shard, const std::vector<const Member*>& candidates);

Plan plan_ownership(const PlanInput& in);

// Shards as inclusive ranges, for HelloAck/OwnershipUpdate and logs: {1,2,3,7} -> {(1,3),(7,7)}.
std::vector<std::pair<std::uint32_t, std::uint32_t>> to_ranges(const std::vector<std::uint32_t>& sorted_shards);

}  // namespace im::transfer

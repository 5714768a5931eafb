// The ownership plan (transfer/shard_assignment): balance, minimal movement, who hands over and
// who takes over, and when a takeover must wait.
#include <gtest/gtest.h>

#include "im/wire/ids.hpp"
#include "shard_assignment.hpp"

namespace im::transfer {
namespace {

Member member(std::uint64_t inc, const std::string& id, MemberState state = MemberState::active, bool live = true) {
    return Member{inc, id, "127.0.0.1:1", state, live};
}

std::vector<ShardRow> owned_by(std::uint64_t epoch) { return std::vector<ShardRow>(kShardCount, ShardRow{epoch, 1}); }

std::size_t count(const std::map<std::uint64_t, std::vector<std::uint32_t>>& m) {
    std::size_t n = 0;
    for (const auto& [k, v] : m) n += v.size();
    return n;
}

TEST(ShardAssignment, ALoneActiveMemberClaimsEveryUnownedShard) {
    PlanInput in{1, "t1", true, false, {member(1, "t1")}, owned_by(0)};
    const auto plan = plan_ownership(in);
    EXPECT_TRUE(plan.hand_over.empty());
    ASSERT_EQ(plan.claim.count(0), 1u);
    EXPECT_EQ(plan.claim.at(0).size(), kShardCount);
}

TEST(ShardAssignment, AJoiningMemberClaimsNothingAndGetsNothing) {
    PlanInput in{2, "t2", false, true, {member(1, "t1"), member(2, "t2", MemberState::joining)}, owned_by(1)};
    EXPECT_TRUE(plan_ownership(in).claim.empty());
    PlanInput owner{1, "t1", true, true, in.members, owned_by(1)};
    EXPECT_TRUE(plan_ownership(owner).hand_over.empty()) << "nothing is handed to a member still joining";
}

TEST(ShardAssignment, TheOwnerHandsABalancedShareToANewActiveMember) {
    PlanInput in{1, "t1", true, true, {member(1, "t1"), member(2, "t2")}, owned_by(1)};
    const auto plan = plan_ownership(in);
    ASSERT_EQ(plan.hand_over.size(), 1u);
    const auto& h = plan.hand_over.at(2);
    EXPECT_EQ(h.to_id, "t2");
    EXPECT_GT(h.shards.size(), kShardCount * 4 / 10);
    EXPECT_LT(h.shards.size(), kShardCount * 6 / 10);
    EXPECT_TRUE(plan.claim.empty());
    // The newcomer does not grab them itself: the live owner hands them over (after its batch).
    PlanInput newcomer{2, "t2", true, true, in.members, owned_by(1)};
    EXPECT_TRUE(plan_ownership(newcomer).claim.empty());
}

TEST(ShardAssignment, AThirdMemberMovesOnlyItsOwnShare) {
    // Rendezvous hashing: adding t3 moves shards only to t3, never between t1 and t2.
    std::vector<Member> two = {member(1, "t1"), member(2, "t2")};
    std::vector<Member> three = {member(1, "t1"), member(2, "t2"), member(3, "t3")};
    std::vector<ShardRow> rows(kShardCount);
    for (std::uint32_t s = 0; s < kShardCount; ++s) {
        std::vector<const Member*> c = {&two[0], &two[1]};
        rows[s] = ShardRow{c[static_cast<std::size_t>(rendezvous_pick(s, c))]->incarnation, 1};
    }
    std::size_t moved = 0;
    for (std::uint64_t me : {1u, 2u}) {
        const auto plan = plan_ownership(PlanInput{me, me == 1 ? "t1" : "t2", true, true, three, rows});
        for (const auto& [to, h] : plan.hand_over) {
            EXPECT_EQ(to, 3u) << "a shard moved between the two old members";
            moved += h.shards.size();
        }
    }
    EXPECT_GT(moved, kShardCount / 4);
    EXPECT_LT(moved, kShardCount * 42 / 100);
}

TEST(ShardAssignment, ADrainingMemberHandsEverythingOver) {
    PlanInput in{1, "t1", false, true, {member(1, "t1", MemberState::draining), member(2, "t2"), member(3, "t3")},
                 owned_by(1)};
    const auto plan = plan_ownership(in);
    std::size_t n = 0;
    for (const auto& [to, h] : plan.hand_over) {
        EXPECT_TRUE(to == 2 || to == 3);
        n += h.shards.size();
    }
    EXPECT_EQ(n, kShardCount);
}

TEST(ShardAssignment, ADeadOwnersShardsWaitUntilTheObserverWasHealthyForALease) {
    // t2's lease expired: after a database outage every lease looks expired for a moment, so the
    // survivor takes over only once it has itself been healthy for a whole lease.
    std::vector<Member> members = {member(1, "t1"), member(2, "t2", MemberState::active, false)};
    auto rows = owned_by(2);
    PlanInput just_back{1, "t1", true, false, members, rows};
    EXPECT_TRUE(plan_ownership(just_back).claim.empty());
    PlanInput healthy{1, "t1", true, true, members, rows};
    const auto plan = plan_ownership(healthy);
    EXPECT_EQ(count(plan.claim), kShardCount);
    EXPECT_EQ(plan.claim.count(2), 1u) << "claims name the epoch they replace (compare-and-set)";
}

TEST(ShardAssignment, AnOwnerWithNoMemberRowIsGoneAtOnce) {
    // Its row was deleted: a clean exit, or a restart under the same id removed the old life.
    PlanInput in{1, "t1", true, false, {member(1, "t1")}, owned_by(99)};
    EXPECT_EQ(count(plan_ownership(in).claim), kShardCount);
}

TEST(ShardAssignment, OneCandidatePerTransferIdTheNewestIncarnation) {
    // A restarted t1 (incarnation 5) while the old life (1) still has a live lease.
    std::vector<Member> members = {member(1, "t1"), member(5, "t1"), member(2, "t2")};
    std::vector<ShardRow> rows = owned_by(1);
    const auto plan = plan_ownership(PlanInput{1, "t1", true, true, members, rows});
    std::size_t to_new = 0;
    for (const auto& [to, h] : plan.hand_over) to_new += to == 5 ? h.shards.size() : 0;
    EXPECT_GT(to_new, kShardCount / 3) << "the old life gives t1's share to the new one";
}

TEST(ShardAssignment, RangesOfShards) {
    EXPECT_EQ(to_ranges({1, 2, 3, 7, 9, 10}),
              (std::vector<std::pair<std::uint32_t, std::uint32_t>>{{1, 3}, {7, 7}, {9, 10}}));
    EXPECT_TRUE(to_ranges({}).empty());
}

}  // namespace
}  // namespace im::transfer

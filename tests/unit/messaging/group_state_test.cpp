// The rules of group changes (transfer/group_state): who may do what, what each change stores
// and who stops being a member. Pure: no I/O.
#include <gtest/gtest.h>

#include "group_state.hpp"

namespace im::transfer {
namespace {

client::GroupChange change(client::GroupEventKind kind, std::vector<std::uint64_t> users = {},
                           client::GroupRole role = client::GROUP_ROLE_UNSPECIFIED, std::uint32_t max = 0) {
    client::GroupChange c;
    c.set_group_id(7);
    c.set_kind(kind);
    for (auto u : users) c.add_user_ids(u);
    c.set_role(role);
    c.set_max_members(max);
    return c;
}

// owner 1 with members 2 (admin) and 3, 4; created at seq 1.
GroupState group() {
    GroupState g;
    g.name = "g";
    g.owner = 1;
    auto o = apply_group_change(g, 1, change(client::GROUP_CREATED, {2, 3, 4}), 1, 0);
    EXPECT_EQ(o.code, client::ERROR_NONE) << o.message;
    g.members[2].role = client::ADMIN;
    return g;
}

TEST(GroupState, CreationMakesTheCreatorOwnerOnlyOnceAndOnlyByTheCreator) {
    GroupState g;
    g.owner = 1;
    EXPECT_EQ(apply_group_change(g, 2, change(client::GROUP_CREATED, {3}), 1, 0).code, client::FORBIDDEN);
    EXPECT_EQ(apply_group_change(g, 1, change(client::GROUP_CREATED, {3, 3}), 1, 0).code, client::BAD_REQUEST);
    EXPECT_EQ(apply_group_change(g, 1, change(client::GROUP_CREATED, {2, 3}, {}, 2), 1, 0).code, client::BAD_REQUEST)
        << "the member limit counts the owner";
    const auto o = apply_group_change(g, 1, change(client::GROUP_CREATED, {2, 3}), 1, 0);
    ASSERT_EQ(o.code, client::ERROR_NONE);
    EXPECT_EQ(g.members.at(1).role, client::OWNER);
    EXPECT_EQ(g.members.at(2).joined_seq, 1u);
    EXPECT_EQ(*g.audience, (std::vector<std::uint64_t>{1, 2, 3}));
    EXPECT_EQ(apply_group_change(g, 1, change(client::GROUP_CREATED, {4}), 2, 1).code, client::BAD_REQUEST)
        << "created once";
}

TEST(GroupState, OnlyOwnerAndAdminsAddAndRemoveAndAdminsRemoveOnlyMembers) {
    auto g = group();
    EXPECT_EQ(apply_group_change(g, 3, change(client::MEMBERS_ADDED, {5}), 2, 1).code, client::FORBIDDEN);
    EXPECT_EQ(apply_group_change(g, 9, change(client::MEMBERS_ADDED, {5}), 2, 1).code, client::FORBIDDEN)
        << "a stranger";
    EXPECT_EQ(apply_group_change(g, 2, change(client::MEMBERS_ADDED, {3}), 2, 1).code, client::BAD_REQUEST)
        << "already a member";
    EXPECT_EQ(apply_group_change(g, 2, change(client::MEMBERS_ADDED, {5, 6}, {}, 5), 2, 1).code, client::BAD_REQUEST)
        << "over the limit";
    auto o = apply_group_change(g, 2, change(client::MEMBERS_ADDED, {5}), 2, 1);
    ASSERT_EQ(o.code, client::ERROR_NONE);
    EXPECT_EQ(g.members.at(5).joined_seq, 2u);
    EXPECT_EQ(apply_group_change(g, 2, change(client::MEMBER_REMOVED, {1}), 3, 2).code, client::FORBIDDEN)
        << "nobody removes the owner";
    g.members[4].role = client::ADMIN;
    EXPECT_EQ(apply_group_change(g, 2, change(client::MEMBER_REMOVED, {4}), 3, 2).code, client::FORBIDDEN)
        << "an admin removes members only";
    o = apply_group_change(g, 2, change(client::MEMBER_REMOVED, {3}), 3, 2);
    ASSERT_EQ(o.code, client::ERROR_NONE);
    EXPECT_EQ(o.left, (std::vector<std::uint64_t>{3}));
    EXPECT_EQ(g.members.count(3), 0u);
    EXPECT_EQ(*g.audience, (std::vector<std::uint64_t>{1, 2, 4, 5}));
    o = apply_group_change(g, 1, change(client::MEMBER_REMOVED, {4}), 4, 3);
    EXPECT_EQ(o.code, client::ERROR_NONE) << "the owner removes admins";
}

TEST(GroupState, LeavingRolesOwnershipRenameAndDelete) {
    auto g = group();
    EXPECT_EQ(apply_group_change(g, 1, change(client::MEMBER_LEFT), 2, 1).code, client::BAD_REQUEST)
        << "the owner cannot leave";
    auto o = apply_group_change(g, 4, change(client::MEMBER_LEFT), 2, 1);
    ASSERT_EQ(o.code, client::ERROR_NONE);
    EXPECT_EQ(o.left, (std::vector<std::uint64_t>{4}));
    EXPECT_EQ(apply_group_change(g, 2, change(client::ROLE_CHANGED, {3}, client::ADMIN), 3, 2).code, client::FORBIDDEN);
    EXPECT_EQ(apply_group_change(g, 1, change(client::ROLE_CHANGED, {3}, client::OWNER), 3, 2).code, client::BAD_REQUEST);
    ASSERT_EQ(apply_group_change(g, 1, change(client::ROLE_CHANGED, {3}, client::ADMIN), 3, 2).code, client::ERROR_NONE);
    EXPECT_EQ(g.members.at(3).role, client::ADMIN);
    client::GroupChange rename = change(client::GROUP_RENAMED);
    EXPECT_EQ(apply_group_change(g, 2, rename, 4, 3).code, client::BAD_REQUEST) << "empty name";
    rename.set_name(std::string(129, 'x'));
    EXPECT_EQ(apply_group_change(g, 2, rename, 4, 3).code, client::BAD_REQUEST) << "too long";
    rename.set_name("new");
    ASSERT_EQ(apply_group_change(g, 2, rename, 4, 3).code, client::ERROR_NONE);
    EXPECT_EQ(g.name, "new");
    EXPECT_EQ(apply_group_change(g, 2, change(client::OWNER_CHANGED, {3}), 5, 4).code, client::FORBIDDEN);
    ASSERT_EQ(apply_group_change(g, 1, change(client::OWNER_CHANGED, {3}), 5, 4).code, client::ERROR_NONE);
    EXPECT_EQ(g.owner, 3u);
    EXPECT_EQ(g.members.at(3).role, client::OWNER);
    EXPECT_EQ(g.members.at(1).role, client::ADMIN);
    EXPECT_EQ(apply_group_change(g, 1, change(client::GROUP_DELETED), 6, 5).code, client::FORBIDDEN);
    o = apply_group_change(g, 3, change(client::GROUP_DELETED), 6, 5);
    ASSERT_EQ(o.code, client::ERROR_NONE);
    EXPECT_EQ(o.left, (std::vector<std::uint64_t>{1, 2, 3}));
    EXPECT_EQ(g.deleted_seq, 6u);
    EXPECT_TRUE(g.members.empty());
    EXPECT_EQ(apply_group_change(g, 3, change(client::MEMBERS_ADDED, {9}), 7, 6).code, client::NOT_FOUND);
}

TEST(GroupState, ReadReceiptsTellOnlyTheSendersOfTheMessagesTheyPass) {
    GroupState g;
    for (std::uint64_t s = 1; s <= GroupState::kRecent + 10; ++s) g.note_message(s, s % 3 + 1);
    EXPECT_EQ(g.recent.size(), GroupState::kRecent) << "bounded";
    // Sender of seq s is s % 3 + 1: 101 -> 3, 102 -> 1, 103 -> 2.
    EXPECT_EQ(g.senders_between(100, 101, 0), (std::vector<std::uint64_t>{3}));
    EXPECT_EQ(g.senders_between(100, 103, 0), (std::vector<std::uint64_t>{1, 2, 3}));
    EXPECT_EQ(g.senders_between(100, 103, 2), (std::vector<std::uint64_t>{1, 3})) << "not the reader";
    EXPECT_TRUE(g.senders_between(5, 8, 0).empty()) << "forgotten: older than the window";
}

}  // namespace
}  // namespace im::transfer

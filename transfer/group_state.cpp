#include "group_state.hpp"

#include <algorithm>
#include <unordered_set>

#include "im/wire/ids.hpp"

namespace im::transfer {

void GroupState::rebuild_audience() {
    std::vector<std::uint64_t> ids;
    ids.reserve(members.size());
    for (const auto& [id, m] : members) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    audience = std::make_shared<const std::vector<std::uint64_t>>(std::move(ids));
}

void GroupState::note_message(std::uint64_t seq, std::uint64_t sender) {
    recent.emplace_back(seq, sender);
    while (recent.size() > kRecent) recent.pop_front();
}

std::vector<std::uint64_t> GroupState::senders_between(std::uint64_t after, std::uint64_t up_to,
                                                       std::uint64_t except) const {
    std::vector<std::uint64_t> out;
    for (const auto& [seq, sender] : recent) {
        if (seq > after && seq <= up_to && sender != except) out.push_back(sender);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

namespace {

ChangeOutcome refuse(client::ErrorCode code, std::string message) {
    ChangeOutcome o;
    o.code = code;
    o.message = std::move(message);
    return o;
}

// user_ids: valid, distinct, not the actor; empty is refused.
bool valid_users(const client::GroupChange& c, std::uint64_t actor) {
    if (c.user_ids().empty()) return false;
    std::unordered_set<std::uint64_t> seen;
    for (auto u : c.user_ids()) {
        if (!valid_user_id(u) || u == actor || !seen.insert(u).second) return false;
    }
    return true;
}

}  // namespace

ChangeOutcome apply_group_change(GroupState& g, std::uint64_t actor, const client::GroupChange& c, std::uint64_t seq,
                                 std::uint64_t last_seq) {
    using client::GroupEventKind;
    if (g.deleted_seq != 0) return refuse(client::NOT_FOUND, "no such group");
    const std::uint32_t limit = c.max_members() != 0 ? c.max_members() : kDefaultMaxGroupMembers;
    ChangeOutcome out;
    out.event.set_kind(c.kind());
    out.event.set_actor_user_id(actor);
    if (c.kind() == client::GROUP_CREATED) {
        if (actor != g.owner) return refuse(client::FORBIDDEN, "only the creator creates the group");
        if (last_seq != 0 || !g.members.empty()) return refuse(client::BAD_REQUEST, "the group exists already");
        if (!c.user_ids().empty() && !valid_users(c, actor)) return refuse(client::BAD_REQUEST, "invalid member list");
        if (static_cast<std::size_t>(c.user_ids_size()) + 1 > limit)
            return refuse(client::BAD_REQUEST, "more than " + std::to_string(limit) + " members");
        g.members[actor] = GroupMember{client::OWNER, seq, 0, 0};
        for (auto u : c.user_ids()) {
            g.members[u] = GroupMember{client::MEMBER, seq, 0, 0};
            out.event.add_user_ids(u);
        }
        out.event.set_name(g.name);
        g.rebuild_audience();
        return out;
    }
    const auto me = g.members.find(actor);
    if (me == g.members.end()) return refuse(client::FORBIDDEN, "not a member of this group");
    const auto my_role = me->second.role;
    const bool admin = my_role == client::ADMIN || my_role == client::OWNER;
    const bool owner = my_role == client::OWNER;
    switch (c.kind()) {
        case client::MEMBERS_ADDED: {
            if (!admin) return refuse(client::FORBIDDEN, "only the owner and admins add members");
            if (!valid_users(c, actor)) return refuse(client::BAD_REQUEST, "invalid user list");
            for (auto u : c.user_ids()) {
                if (g.members.count(u) != 0) return refuse(client::BAD_REQUEST, "user " + std::to_string(u) + " is a member already");
            }
            if (g.members.size() + static_cast<std::size_t>(c.user_ids_size()) > limit)
                return refuse(client::BAD_REQUEST, "the group would have more than " + std::to_string(limit) + " members");
            for (auto u : c.user_ids()) {
                g.members[u] = GroupMember{client::MEMBER, seq, 0, 0};
                out.event.add_user_ids(u);
            }
            break;
        }
        case client::MEMBER_REMOVED: {
            if (!admin) return refuse(client::FORBIDDEN, "only the owner and admins remove members");
            if (!valid_users(c, actor)) return refuse(client::BAD_REQUEST, "invalid user list (to leave, use MEMBER_LEFT)");
            for (auto u : c.user_ids()) {
                const auto m = g.members.find(u);
                if (m == g.members.end()) return refuse(client::BAD_REQUEST, "user " + std::to_string(u) + " is not a member");
                if (m->second.role == client::OWNER) return refuse(client::FORBIDDEN, "the owner cannot be removed");
                if (!owner && m->second.role != client::MEMBER) return refuse(client::FORBIDDEN, "only the owner removes admins");
            }
            for (auto u : c.user_ids()) {
                g.members.erase(u);
                out.left.push_back(u);
                out.event.add_user_ids(u);
            }
            break;
        }
        case client::MEMBER_LEFT:
            if (owner) return refuse(client::BAD_REQUEST, "the owner cannot leave: transfer ownership or delete the group");
            g.members.erase(actor);
            out.left.push_back(actor);
            break;
        case client::GROUP_RENAMED:
            if (!admin) return refuse(client::FORBIDDEN, "only the owner and admins rename the group");
            if (c.name().empty() || c.name().size() > kGroupNameMaxBytes)
                return refuse(client::BAD_REQUEST, "name must be 1.." + std::to_string(kGroupNameMaxBytes) + " bytes");
            g.name = c.name();
            out.event.set_name(c.name());
            break;
        case client::ROLE_CHANGED: {
            if (!owner) return refuse(client::FORBIDDEN, "only the owner changes roles");
            if (c.user_ids_size() != 1 || !valid_users(c, actor)) return refuse(client::BAD_REQUEST, "one other member is required");
            if (c.role() != client::ADMIN && c.role() != client::MEMBER) return refuse(client::BAD_REQUEST, "role must be ADMIN or MEMBER");
            const auto m = g.members.find(c.user_ids(0));
            if (m == g.members.end()) return refuse(client::BAD_REQUEST, "not a member");
            m->second.role = c.role();
            out.event.add_user_ids(c.user_ids(0));
            out.event.set_role(c.role());
            break;
        }
        case client::OWNER_CHANGED: {
            if (!owner) return refuse(client::FORBIDDEN, "only the owner transfers ownership");
            if (c.user_ids_size() != 1 || !valid_users(c, actor)) return refuse(client::BAD_REQUEST, "one other member is required");
            const auto m = g.members.find(c.user_ids(0));
            if (m == g.members.end()) return refuse(client::BAD_REQUEST, "not a member");
            m->second.role = client::OWNER;
            g.members[actor].role = client::ADMIN;
            g.owner = c.user_ids(0);
            out.event.add_user_ids(c.user_ids(0));
            out.event.set_role(client::OWNER);
            break;
        }
        case client::GROUP_DELETED:
            if (!owner) return refuse(client::FORBIDDEN, "only the owner deletes the group");
            for (const auto& [id, m] : g.members) out.left.push_back(id);
            std::sort(out.left.begin(), out.left.end());
            g.members.clear();
            g.deleted_seq = seq;
            break;
        default:
            return refuse(client::BAD_REQUEST, "unknown group change");
    }
    g.rebuild_audience();
    return out;
}

}  // namespace im::transfer

#pragma once
// The group side of im-cli: the REST calls of /group create, /groups, /members (im-rest's
// /v1/groups endpoints) as printable lines, and how a group's system message reads.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <imclient/types.hpp>

#include "rest_api.hpp"

namespace imcli {

struct GroupSummary {
    std::uint64_t id = 0;
    std::string name;
    std::string role;
    std::uint64_t member_count = 0;
    std::uint64_t last_seq = 0;
};

// POST /v1/groups {name, members}: the new group's id.
std::uint64_t create_group(RestApi& rest, const std::string& name,
                           const std::vector<std::uint64_t>& members);
// GET /v1/groups.
std::vector<GroupSummary> list_groups(RestApi& rest);
std::vector<std::string> groups_lines(const std::vector<GroupSummary>& groups);
// GET /v1/groups/{id}: one line per member ("alice (owner)  delivered #9 read #7").
std::vector<std::string> members_lines(RestApi& rest, std::uint64_t group_id);

// "#7" or "7" -> 7; 0 when it is no group id (a name: look it up in list_groups()).
std::uint64_t parse_group_id(const std::string& ref);

// "alice added bob, carol", "bob left", "alice renamed the group to \"x\"".
std::string describe_group_event(const imclient::GroupEvent& e,
                                 const std::function<std::string(std::uint64_t)>& name_of);

}  // namespace imcli

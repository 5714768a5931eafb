#include "groups.hpp"

#include <algorithm>

#include "json_lite.hpp"

namespace imcli {

using imclient::detail::json_quote;

std::uint64_t create_group(RestApi& rest, const std::string& name,
                           const std::vector<std::uint64_t>& members) {
    std::string body = "{\"name\":" + json_quote(name) + ",\"members\":[";
    for (std::size_t i = 0; i < members.size(); ++i)
        body += (i == 0 ? "" : ",") + std::to_string(members[i]);
    body += "]}";
    const auto answer = rest.post("/v1/groups", body);
    const std::uint64_t id = json_u64(answer, "group_id");
    return id != 0 ? id : json_u64(answer, "conversation_id");
}

std::vector<GroupSummary> list_groups(RestApi& rest) {
    std::vector<GroupSummary> out;
    const auto answer = rest.get("/v1/groups");
    if (const JsonValue* list = answer.find("groups")) {
        for (const auto& g : list->items) {
            GroupSummary s;
            s.id = json_u64(g, "group_id");
            s.name = json_str(g, "name");
            s.role = json_str(g, "role");
            s.member_count = json_u64(g, "member_count");
            s.last_seq = json_u64(g, "last_seq");
            if (s.id != 0) out.push_back(std::move(s));
        }
    }
    return out;
}

std::vector<std::string> groups_lines(const std::vector<GroupSummary>& groups) {
    std::vector<std::string> out;
    for (const auto& g : groups) {
        out.push_back("#" + std::to_string(g.id) + " " + g.name + "  " +
                      std::to_string(g.member_count) + " members" +
                      (g.role.empty() ? "" : ", you are " + g.role) + "  last #" +
                      std::to_string(g.last_seq));
    }
    if (out.empty()) out.push_back("no groups yet (create one: /group create NAME USER...)");
    return out;
}

std::vector<std::string> members_lines(RestApi& rest, std::uint64_t group_id) {
    std::vector<std::string> out;
    const auto g = rest.get("/v1/groups/" + std::to_string(group_id));
    out.push_back("#" + std::to_string(group_id) + " " + json_str(g, "name") + " (last #" +
                  std::to_string(json_u64(g, "last_seq")) + ")");
    if (const JsonValue* list = g.find("members")) {
        for (const auto& m : list->items) {
            std::string name = json_str(m, "username");
            if (name.empty()) name = "user#" + std::to_string(json_u64(m, "user_id"));
            const auto role = json_str(m, "role");
            out.push_back(name + (role.empty() ? "" : " (" + role + ")") + "  delivered #" +
                          std::to_string(json_u64(m, "delivered_seq")) + " read #" +
                          std::to_string(json_u64(m, "read_seq")));
        }
    }
    return out;
}

std::uint64_t parse_group_id(const std::string& ref) {
    const std::string digits = !ref.empty() && ref[0] == '#' ? ref.substr(1) : ref;
    if (digits.empty() || digits.size() > 10 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return 0;
    const std::uint64_t id = std::stoull(digits);
    return imclient::is_group_conversation(id) ? id : 0;
}

std::string describe_group_event(const imclient::GroupEvent& e,
                                 const std::function<std::string(std::uint64_t)>& name_of) {
    using K = imclient::GroupEventKind;
    std::string users;
    for (std::size_t i = 0; i < e.user_ids.size() && i < 20; ++i)
        users += (i == 0 ? "" : ", ") + name_of(e.user_ids[i]);
    if (e.user_ids.size() > 20) users += " and " + std::to_string(e.user_ids.size() - 20) + " more";
    const std::string actor = name_of(e.actor_user_id);
    switch (e.kind) {
        case K::created:
            return actor + " created the group \"" + e.name + "\"" +
                   (users.empty() ? "" : " with " + users);
        case K::members_added:
            return actor + " added " + users;
        case K::member_removed:
            return actor + " removed " + users;
        case K::member_left:
            return actor + " left";
        case K::renamed:
            return actor + " renamed the group to \"" + e.name + "\"";
        case K::role_changed:
            return actor + " made " + users + " " + imclient::to_string(e.role);
        case K::owner_changed:
            return actor + " handed the ownership to " + users;
        case K::deleted:
            return actor + " deleted the group";
        default:
            return actor + " changed the group";
    }
}

}  // namespace imcli

#include "session_directory.hpp"

namespace im::transfer {

std::vector<PresenceChange> SessionDirectory::add(std::uint64_t link_id, const internal::SessionRef& s) {
    std::vector<PresenceChange> changes;
    if (!by_link_[link_id].insert(SessionKey{s.user_id(), s.login_epoch()}).second) return changes;
    ++sessions_;
    auto [it, fresh] = by_user_.try_emplace(s.user_id());
    ++it->second.links[link_id];
    if (fresh) changes.push_back({s.user_id(), true});
    return changes;
}

std::vector<PresenceChange> SessionDirectory::remove(std::uint64_t link_id, const internal::SessionRef& s) {
    std::vector<PresenceChange> changes;
    auto link = by_link_.find(link_id);
    if (link == by_link_.end() || link->second.erase(SessionKey{s.user_id(), s.login_epoch()}) == 0) return changes;
    --sessions_;
    auto it = by_user_.find(s.user_id());
    if (it != by_user_.end()) {
        auto l = it->second.links.find(link_id);
        if (l != it->second.links.end() && --l->second == 0) it->second.links.erase(l);
        if (it->second.links.empty()) {
            by_user_.erase(it);
            changes.push_back({s.user_id(), false});
        }
    }
    return changes;
}

std::vector<PresenceChange> SessionDirectory::remove_link(std::uint64_t link_id) {
    std::vector<PresenceChange> changes;
    auto link = by_link_.find(link_id);
    if (link == by_link_.end()) return changes;
    for (const auto& key : link->second) {
        --sessions_;
        auto it = by_user_.find(key.user);
        if (it == by_user_.end()) continue;
        auto l = it->second.links.find(link_id);
        if (l != it->second.links.end() && --l->second == 0) it->second.links.erase(l);
        if (it->second.links.empty()) {
            by_user_.erase(it);
            changes.push_back({key.user, false});
        }
    }
    by_link_.erase(link);
    return changes;
}

std::vector<PresenceChange> SessionDirectory::replace_link(std::uint64_t link_id,
                                                           const std::vector<internal::SessionRef>& sessions) {
    auto gone = remove_link(link_id);
    std::unordered_map<std::uint64_t, bool> net;  // user -> final presence change (offline then online cancels)
    for (const auto& c : gone) net[c.user] = false;
    for (const auto& s : sessions) {
        for (const auto& c : add(link_id, s)) {
            auto it = net.find(c.user);
            if (it != net.end() && !it->second) net.erase(it);  // was online before: no change
            else net[c.user] = true;
        }
    }
    std::vector<PresenceChange> changes;
    for (const auto& [user, online] : net) changes.push_back({user, online});
    return changes;
}

}  // namespace im::transfer

#include "shard_assignment.hpp"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

namespace im::transfer {

namespace {

std::uint64_t mix(std::uint64_t x) {  // splitmix64 finaliser
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

std::uint64_t id_hash(const std::string& id) {  // FNV-1a: stable across processes and builds
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (char c : id) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ull;
    }
    return h;
}

}  // namespace

int rendezvous_pick(std::uint32_t shard, const std::vector<const Member*>& candidates) {
    int best = -1;
    std::uint64_t best_w = 0;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        const std::uint64_t w = mix(id_hash(candidates[i]->transfer_id) ^ mix(shard));
        if (best < 0 || w > best_w || (w == best_w && candidates[i]->transfer_id < candidates[static_cast<std::size_t>(best)]->transfer_id)) {
            best = static_cast<int>(i);
            best_w = w;
        }
    }
    return best;
}

Plan plan_ownership(const PlanInput& in) {
    // Candidates: live active members, one per transfer id (the newest incarnation), and me when
    // I am active.
    std::unordered_map<std::string, const Member*> by_id;
    std::unordered_set<std::uint64_t> live;
    for (const auto& m : in.members) {
        if (!m.live) continue;
        live.insert(m.incarnation);
        if (m.state != MemberState::active) continue;
        if (m.incarnation == in.me && !in.me_active) continue;
        auto& slot = by_id[m.transfer_id];
        if (slot == nullptr || m.incarnation > slot->incarnation) slot = &m;
    }
    std::vector<const Member*> candidates;
    for (const auto& [id, m] : by_id) candidates.push_back(m);
    std::sort(candidates.begin(), candidates.end(),
              [](const Member* a, const Member* b) { return a->transfer_id < b->transfer_id; });

    Plan plan;
    for (std::uint32_t shard = 0; shard < in.rows.size(); ++shard) {
        const auto& row = in.rows[shard];
        const int pick = rendezvous_pick(shard, candidates);
        if (pick < 0) continue;  // nobody to give it to, nobody should take it
        const Member& want = *candidates[static_cast<std::size_t>(pick)];
        if (row.epoch == in.me) {
            if (want.incarnation != in.me) {
                auto& h = plan.hand_over[want.incarnation];
                h.to_id = want.transfer_id;
                h.shards.push_back(shard);
            }
            continue;
        }
        if (want.incarnation != in.me) continue;
        // Mine by the plan but held by someone else: take it only when that owner is gone. A live
        // owner hands it over itself (it finishes its in-flight batch first).
        if (row.epoch != 0 && live.count(row.epoch) != 0) continue;
        // An owner whose lease merely looks expired is judged only after this process was healthy
        // for a whole lease (after a database outage every lease looks expired for a moment).
        const bool known_member = std::any_of(in.members.begin(), in.members.end(),
                                              [&](const Member& m) { return m.incarnation == row.epoch; });
        if (row.epoch != 0 && known_member && !in.may_take_expired) continue;
        plan.claim[row.epoch].push_back(shard);
    }
    return plan;
}

std::vector<std::pair<std::uint32_t, std::uint32_t>> to_ranges(const std::vector<std::uint32_t>& sorted_shards) {
    std::vector<std::pair<std::uint32_t, std::uint32_t>> out;
    for (auto s : sorted_shards) {
        if (!out.empty() && out.back().second + 1 == s)
            out.back().second = s;
        else
            out.emplace_back(s, s);
    }
    return out;
}

}  // namespace im::transfer

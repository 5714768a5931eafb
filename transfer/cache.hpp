#pragma once
// A bounded map with two generations: lookups check both, inserts go to the current one, and when
// it fills up the previous generation is dropped. O(1), no per-entry bookkeeping; an entry that is
// still used gets promoted. Only for caches where losing an entry is safe (it is re-read).

#include <cstddef>
#include <optional>
#include <unordered_map>
#include <utility>

namespace im::transfer {

template <class K, class V, class Hash = std::hash<K>>
class TwoGenCache {
public:
    explicit TwoGenCache(std::size_t capacity) : half_(capacity / 2 > 0 ? capacity / 2 : 1) {}

    V* find(const K& k) {
        if (auto it = current_.find(k); it != current_.end()) return &it->second;
        if (auto it = previous_.find(k); it != previous_.end()) {
            auto node = previous_.extract(it);
            return &put(std::move(node.key()), std::move(node.mapped()));
        }
        return nullptr;
    }
    V& put(K k, V v) {
        if (current_.size() >= half_) {
            previous_ = std::move(current_);
            current_ = {};
        }
        auto [it, inserted] = current_.insert_or_assign(std::move(k), std::move(v));
        previous_.erase(it->first);
        return it->second;
    }
    void erase(const K& k) {
        current_.erase(k);
        previous_.erase(k);
    }
    void clear() {
        current_.clear();
        previous_.clear();
    }
    std::size_t size() const { return current_.size() + previous_.size(); }

private:
    std::size_t half_;
    std::unordered_map<K, V, Hash> current_, previous_;
};

}  // namespace im::transfer

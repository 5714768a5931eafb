#include "policy_cache.hpp"

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <memory>

#include "im/server/mysql.hpp"
#include "im/wire/ids.hpp"
#include "sql_batch.hpp"

namespace im::transfer {

void PolicyCache::resolve(mysql::MysqlConnection& db, const std::vector<std::pair<std::uint64_t, std::uint64_t>>& pairs,
                          std::unordered_map<std::uint64_t, PairPolicy>& out) {
    std::vector<std::uint64_t> missing;  // conversation ids
    const auto now = std::chrono::steady_clock::now();
    {
        std::lock_guard lock(mu_);
        for (const auto& [a, b] : pairs) {
            const auto conv = conversation_id(a, b);
            if (conv == 0 || out.count(conv) != 0) continue;
            if (auto* e = cache_.find(conv); e != nullptr && e->expires > now && ttl_.count() > 0) {
                out[conv] = e->policy;
            } else {
                out[conv] = PairPolicy{};
                missing.push_back(conv);
            }
        }
    }
    for (std::size_t off = 0; off < missing.size();) {
        const std::size_t n = std::min<std::size_t>(missing.size() - off, 512);
        const std::size_t padded = sql_batch::lookup_size(n);
        auto conv_at = [&](std::size_t i) { return missing[off + std::min(i, n - 1)]; };

        auto& fr = db.prepare("SELECT user_id, friend_id FROM friendships WHERE " +
                              sql_batch::or_terms("user_id = ? AND friend_id = ?", padded));
        for (std::size_t i = 0; i < padded; ++i) {
            fr.setUInt64(static_cast<unsigned>(2 * i + 1), conversation_low(conv_at(i)));
            fr.setUInt64(static_cast<unsigned>(2 * i + 2), conversation_high(conv_at(i)));
        }
        std::unique_ptr<sql::ResultSet> rs(fr.executeQuery());
        while (rs->next()) out[conversation_id(rs->getUInt64(1), rs->getUInt64(2))].friends = true;

        auto& bl = db.prepare("SELECT user_id, blocked_id FROM blocks WHERE " +
                              sql_batch::or_terms("user_id = ? AND blocked_id = ?", 2 * padded));
        for (std::size_t i = 0; i < padded; ++i) {
            const auto conv = conv_at(i);
            bl.setUInt64(static_cast<unsigned>(4 * i + 1), conversation_low(conv));
            bl.setUInt64(static_cast<unsigned>(4 * i + 2), conversation_high(conv));
            bl.setUInt64(static_cast<unsigned>(4 * i + 3), conversation_high(conv));
            bl.setUInt64(static_cast<unsigned>(4 * i + 4), conversation_low(conv));
        }
        std::unique_ptr<sql::ResultSet> brs(bl.executeQuery());
        while (brs->next()) out[conversation_id(brs->getUInt64(1), brs->getUInt64(2))].blocked = true;
        off += n;
    }
    if (!missing.empty() && ttl_.count() > 0) {
        std::lock_guard lock(mu_);
        const auto expires = std::chrono::steady_clock::now() + ttl_;
        for (auto conv : missing) cache_.put(conv, Entry{out[conv], expires});
    }
}

PairPolicy PolicyCache::get(mysql::MysqlConnection& db, std::uint64_t a, std::uint64_t b) {
    std::unordered_map<std::uint64_t, PairPolicy> out;
    resolve(db, {{a, b}}, out);
    return out[conversation_id(a, b)];
}

void PolicyCache::invalidate(std::uint64_t a, std::uint64_t b) {
    std::lock_guard lock(mu_);
    cache_.erase(conversation_id(a, b));
}

void PolicyCache::clear() {
    std::lock_guard lock(mu_);
    cache_.clear();
}

}  // namespace im::transfer

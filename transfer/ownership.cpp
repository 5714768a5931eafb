#include "ownership.hpp"

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <random>
#include <stdexcept>

#include "im/server/clock.hpp"
#include "im/server/id_generator.hpp"
#include "im/server/mysql.hpp"
#include "im/server/sql_batch.hpp"

namespace im::transfer {
std::uint64_t new_incarnation_epoch() {
    std::random_device rd;
    return (static_cast<std::uint64_t>(wall_ms()) << 20) | (rd() & 0xfffffu);
}

WorkerLease lease_worker_id(mysql::MysqlConnection& db, const std::string& owner) {
    constexpr std::uint32_t kIds = IdGenerator::kMaxWorker + 1;
    std::random_device rd;
    const std::uint32_t start = rd() % kIds;
    for (std::uint32_t i = 0; i < kIds; ++i) {
        const std::uint32_t id = (start + i) % kIds;
        const auto now = wall_ms();
        // Take it when free or expired; the assignments run left to right, so expires_ms sees the
        // new owner.
        auto& st = db.prepare(
            "INSERT INTO worker_leases (worker_id, owner, expires_ms) VALUES (?, ?, ?) "
            "ON DUPLICATE KEY UPDATE owner = IF(expires_ms < ?, VALUES(owner), owner), "
            "expires_ms = IF(owner = VALUES(owner), VALUES(expires_ms), expires_ms)");
        st.setUInt(1, id);
        st.setString(2, owner);
        st.setInt64(3, now + kLeaseMs);
        st.setInt64(4, now);
        st.executeUpdate();
        auto& chk = db.prepare("SELECT owner, expires_ms FROM worker_leases WHERE worker_id = ?");
        chk.setUInt(1, id);
        std::unique_ptr<sql::ResultSet> rs(chk.executeQuery());
        if (rs->next() && rs->getString(1).asStdString() == owner) {
            return WorkerLease{id, owner, rs->getInt64(2)};
        }
    }
    throw std::runtime_error("no free snowflake worker id: all " + std::to_string(kIds) + " are leased");
}

bool renew_worker_lease(mysql::MysqlConnection& db, WorkerLease& lease) {
    const auto expires = wall_ms() + kLeaseMs;
    auto& st = db.prepare("UPDATE worker_leases SET expires_ms = ? WHERE worker_id = ? AND owner = ?");
    st.setInt64(1, expires);
    st.setUInt(2, lease.worker_id);
    st.setString(3, lease.owner);
    if (st.executeUpdate() == 0) return false;
    lease.expires_ms = expires;
    return true;
}

void release_worker_lease(mysql::MysqlConnection& db, const WorkerLease& lease) {
    auto& st = db.prepare("UPDATE worker_leases SET expires_ms = 0 WHERE worker_id = ? AND owner = ?");
    st.setUInt(1, lease.worker_id);
    st.setString(2, lease.owner);
    st.executeUpdate();
}

void claim_shards(mysql::MysqlConnection& db, const std::string& transfer_id, std::uint64_t epoch, std::uint32_t first,
                  std::uint32_t last) {
    // Rows first (idempotent), in chunks of the fixed statement sizes.
    std::vector<std::uint32_t> shards;
    for (std::uint32_t s = first; s <= last; ++s) shards.push_back(s);
    std::size_t pos = 0;
    for (std::size_t rows : sql_batch::insert_chunks(shards.size())) {
        auto& st = db.prepare(sql_batch::values_statement("INSERT IGNORE INTO shard_owner (shard, transfer_id, epoch) VALUES ",
                                                          3, rows, ""));
        unsigned p = 1;
        for (std::size_t r = 0; r < rows; ++r) {
            st.setUInt(p++, shards[pos + r]);
            st.setString(p++, transfer_id);
            st.setUInt64(p++, epoch);
        }
        st.executeUpdate();
        pos += rows;
    }
    db.transaction([&] {
        auto& st = db.prepare(
            "UPDATE shard_owner SET transfer_id = ?, epoch = ?, gen = gen + 1, updated_at = CURRENT_TIMESTAMP(3) "
            "WHERE shard BETWEEN ? AND ?");
        st.setString(1, transfer_id);
        st.setUInt64(2, epoch);
        st.setUInt(3, first);
        st.setUInt(4, last);
        st.executeUpdate();
    });
    spdlog::info("ownership: shards {}-{} claimed by {} (epoch {})", first, last, transfer_id, epoch);
}

}  // namespace im::transfer

#include "membership.hpp"

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include <algorithm>
#include <memory>

#include "im/server/mysql.hpp"
#include "im/wire/ids.hpp"
#include "im/server/sql_batch.hpp"

namespace im::transfer {

namespace {
constexpr const char* kDbNow = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";
}

std::int64_t db_now_ms(mysql::MysqlConnection& db) {
    auto& st = db.prepare(std::string("SELECT ") + kDbNow);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    return rs->next() ? rs->getInt64(1) : 0;
}

void renew_member(mysql::MysqlConnection& db, const Member& me, std::chrono::milliseconds ttl) {
    db.transaction([&] {
        auto& st = db.prepare(std::string("INSERT INTO transfer_members (incarnation, transfer_id, address, state, "
                                          "lease_until_ms, started_ms) VALUES (?, ?, ?, ?, ") +
                              kDbNow + " + ?, " + kDbNow +
                              ") ON DUPLICATE KEY UPDATE address = VALUES(address), state = VALUES(state), "
                              "lease_until_ms = VALUES(lease_until_ms)");
        st.setUInt64(1, me.incarnation);
        st.setString(2, me.transfer_id);
        st.setString(3, me.address);
        st.setUInt(4, static_cast<unsigned>(me.state));
        st.setInt64(5, ttl.count());
        st.executeUpdate();
    });
}

std::vector<Member> read_members(mysql::MysqlConnection& db) {
    auto& st = db.prepare(std::string("SELECT incarnation, transfer_id, address, state, lease_until_ms > ") + kDbNow +
                          " FROM transfer_members ORDER BY incarnation");
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    std::vector<Member> out;
    while (rs->next()) {
        Member m;
        m.incarnation = rs->getUInt64(1);
        m.transfer_id = rs->getString(2).asStdString();
        m.address = rs->getString(3).asStdString();
        const auto state = rs->getUInt(4);
        m.state = state == 2 ? MemberState::active : state == 3 ? MemberState::draining : MemberState::joining;
        m.live = rs->getInt(5) != 0;
        out.push_back(std::move(m));
    }
    return out;
}

void delete_member(mysql::MysqlConnection& db, std::uint64_t incarnation) {
    db.transaction([&] {
        auto& st = db.prepare("DELETE FROM transfer_members WHERE incarnation = ?");
        st.setUInt64(1, incarnation);
        st.executeUpdate();
    });
}

std::size_t delete_dead_members(mysql::MysqlConnection& db, const std::string& transfer_id, std::uint64_t me,
                                std::chrono::milliseconds stale) {
    std::size_t n = 0;
    db.transaction([&] {
        auto& st = db.prepare(std::string("DELETE FROM transfer_members WHERE incarnation <> ? AND "
                                          "((transfer_id = ? AND incarnation < ?) OR lease_until_ms < ") +
                              kDbNow + " - ?)");
        st.setUInt64(1, me);
        st.setString(2, transfer_id);
        st.setUInt64(3, me);
        st.setInt64(4, stale.count());
        n = static_cast<std::size_t>(st.executeUpdate());
    });
    return n;
}

std::vector<ShardRow> read_shard_rows(mysql::MysqlConnection& db) {
    std::vector<ShardRow> rows(kShardCount);
    std::vector<bool> present(kShardCount, false);
    std::size_t found = 0;
    {
        auto& st = db.prepare("SELECT shard, epoch, gen FROM shard_owner WHERE shard < ?");
        st.setUInt(1, kShardCount);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        while (rs->next()) {
            const auto s = rs->getUInt(1);
            rows[s] = ShardRow{rs->getUInt64(2), rs->getUInt64(3)};
            present[s] = true;
            ++found;
        }
    }
    if (found == kShardCount) return rows;
    std::vector<std::uint32_t> missing;
    for (std::uint32_t s = 0; s < kShardCount; ++s) {
        if (!present[s]) missing.push_back(s);
    }
    db.transaction([&] {
        std::size_t pos = 0;
        for (std::size_t n : sql_batch::insert_chunks(missing.size())) {
            auto& st = db.prepare(sql_batch::values_statement(
                "INSERT IGNORE INTO shard_owner (shard, transfer_id, epoch, gen) VALUES ", 4, n, ""));
            unsigned p = 1;
            for (std::size_t r = 0; r < n; ++r) {
                st.setUInt(p++, missing[pos + r]);
                st.setString(p++, "");
                st.setUInt64(p++, 0);
                st.setUInt64(p++, 0);
            }
            st.executeUpdate();
            pos += n;
        }
    });
    return read_shard_rows(db);
}

std::size_t move_shards(mysql::MysqlConnection& db, const std::vector<std::uint32_t>& shards, std::uint64_t from_epoch,
                        const std::string& to_id, std::uint64_t to_epoch, std::chrono::seconds lock_wait) {
    std::size_t moved = 0;
    db.transaction([&] {
        auto& wait = db.prepare("SET SESSION innodb_lock_wait_timeout = ?");
        wait.setUInt(1, static_cast<unsigned>(std::max<std::int64_t>(1, lock_wait.count())));
        wait.execute();
        for (std::size_t off = 0; off < shards.size();) {
            const std::size_t n = std::min<std::size_t>(shards.size() - off, 512);
            const std::size_t padded = sql_batch::lookup_size(n);
            auto& st = db.prepare(
                "UPDATE shard_owner SET transfer_id = ?, epoch = ?, gen = gen + 1, updated_at = CURRENT_TIMESTAMP(3) "
                "WHERE epoch = ? AND shard IN (" +
                sql_batch::placeholders(padded) + ")");
            st.setString(1, to_id);
            st.setUInt64(2, to_epoch);
            st.setUInt64(3, from_epoch);
            for (std::size_t i = 0; i < padded; ++i)
                st.setUInt(static_cast<unsigned>(i + 4), shards[off + std::min(i, n - 1)]);
            moved += static_cast<std::size_t>(st.executeUpdate());
            off += n;
        }
    });
    return moved;
}

}  // namespace im::transfer

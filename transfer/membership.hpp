#pragma once
// The SQL behind several transfers: membership leases in transfer_members (on the database's
// clock, so replicas on hosts with different clocks agree on expiry) and moves of shard_owner
// rows. Blocking: the ownership thread and tests only.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "shard_assignment.hpp"

namespace im::mysql {
class MysqlConnection;
}

namespace im::transfer {

// Milliseconds since the Unix epoch on the database server's clock.
std::int64_t db_now_ms(mysql::MysqlConnection& db);

// Inserts or renews this incarnation's row (lease = database now + ttl).
void renew_member(mysql::MysqlConnection& db, const Member& me, std::chrono::milliseconds ttl);
std::vector<Member> read_members(mysql::MysqlConnection& db);
void delete_member(mysql::MysqlConnection& db, std::uint64_t incarnation);
// Rows of earlier lives of this transfer id (a restart after a crash: that process is gone, its
// shards can be taken at once) and rows expired for longer than `stale`. Returns rows deleted.
std::size_t delete_dead_members(mysql::MysqlConnection& db, const std::string& transfer_id, std::uint64_t me,
                                std::chrono::milliseconds stale);

// All kShardCount rows of shard_owner (missing rows are created first, owned by nobody).
std::vector<ShardRow> read_shard_rows(mysql::MysqlConnection& db);
// Gives `shards` to (to_id, to_epoch) where they still belong to from_epoch, bumping their gen,
// in one transaction. The UPDATE waits for a batch of the current owner still holding its fence
// (share locks), at most lock_wait; returns the number of rows moved.
std::size_t move_shards(mysql::MysqlConnection& db, const std::vector<std::uint32_t>& shards, std::uint64_t from_epoch,
                        const std::string& to_id, std::uint64_t to_epoch, std::chrono::seconds lock_wait);

}  // namespace im::transfer

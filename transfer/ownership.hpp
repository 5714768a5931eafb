#pragma once
// Start-up claims of a transfer: a snowflake worker id leased from MySQL (never configured, so
// replicas cannot collide), and its shards in shard_owner. Blocking (start-up / heartbeat thread).

#include <cstdint>
#include <string>

namespace im::mysql {
class MysqlConnection;
}

namespace im::transfer {

struct WorkerLease {
    std::uint32_t worker_id = 0;
    std::string owner;  // "<transfer id>/<incarnation epoch>"
    std::int64_t expires_ms = 0;
};

inline constexpr std::int64_t kLeaseMs = 30'000;

// Takes a free or expired worker id (starting at a random one). Throws when all 1024 are taken.
WorkerLease lease_worker_id(mysql::MysqlConnection& db, const std::string& owner);
// Extends the lease; false when it was lost (another process took the expired id).
bool renew_worker_lease(mysql::MysqlConnection& db, WorkerLease& lease);
// Gives the id back at a clean shutdown.
void release_worker_lease(mysql::MysqlConnection& db, const WorkerLease& lease);

// Makes this incarnation the owner of shards [first, last]: creates missing rows and sets their
// transfer_id and epoch. The UPDATE waits for a previous owner's in-flight batch (its share locks),
// so that batch either committed before or fails its fence afterwards.
void claim_shards(mysql::MysqlConnection& db, const std::string& transfer_id, std::uint64_t epoch, std::uint32_t first,
                  std::uint32_t last);

// A unique incarnation id: milliseconds since the epoch << 20 | 20 random bits.
std::uint64_t new_incarnation_epoch();

}  // namespace im::transfer

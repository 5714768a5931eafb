#pragma once
// The ownership thread of im-transfer: everything that keeps this process a member of the
// cluster, on its own thread with its own MySQL and Redis connections (never the I/O thread).
//
// Every ownership.poll_interval it reads transfer_members and shard_owner, plans (see
// shard_assignment.hpp) and acts: hands over shards that should be another member's (the I/O
// thread stops accepting them first; the UPDATE waits for an in-flight batch; batches queued for
// them after that fail their fence and go back to the connectors as Bounce), claims shards whose
// owner is gone, and publishes what this process owns (the writer lanes reset their cached state
// for newly acquired shards before the I/O thread accepts them). Every transfer.heartbeat_interval
// it renews its membership lease, its snowflake worker-id lease and its Redis registration.
//
// A database outage never stops the process: rounds fail and are retried, the process keeps
// serving what it can (reads fail, writes answer UNAVAILABLE), and the worker-id lease is fenced
// (no id may be committed once it could have expired; a lost lease is replaced by a new one).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ownership.hpp"
#include "shard_assignment.hpp"

namespace prometheus {
class Counter;
class Gauge;
}  // namespace prometheus

namespace im {
class IdGenerator;
class Metrics;
}  // namespace im

namespace im::transfer {

struct TransferConfig;
class MessageWriter;

// Per shard: the gen this process owns it at, 0 when it is not ours.
using OwnedShards = std::vector<std::uint64_t>;

class OwnershipManager {
public:
    struct Hooks {
        // Called on the ownership thread; must post to the I/O thread: accept exactly these shards.
        std::function<void(const OwnedShards&)> publish;
        // The connector ids that have an authenticated link to this transfer (thread-safe).
        std::function<std::set<std::string>()> linked_connectors;
    };

    OwnershipManager(const TransferConfig& config, std::uint64_t incarnation, WorkerLease lease, IdGenerator& ids,
                     std::atomic<std::int64_t>& id_lease_valid_until_ms, MessageWriter& writer, Metrics& metrics,
                     Hooks hooks);
    ~OwnershipManager();
    OwnershipManager(const OwnershipManager&) = delete;
    OwnershipManager& operator=(const OwnershipManager&) = delete;

    void start();
    // SIGTERM: hand every shard to the other active members; returns when none is left, when no
    // other member can take them, or at the deadline.
    void drain(std::chrono::steady_clock::time_point deadline);
    // Stops the thread. After the writer stopped: shards still owned go back to nobody (a new
    // transfer takes them at once), the membership row, the worker id and the Redis registration
    // are released.
    void stop();

    bool mysql_ok() const { return mysql_ok_.load(); }
    std::size_t owned() const { return owned_count_.load(); }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::atomic<bool> mysql_ok_{false};
    std::atomic<std::size_t> owned_count_{0};
};

}  // namespace im::transfer

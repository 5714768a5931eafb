#pragma once
// Reads that do not go through the writer: conversation lists, message pages (sync and history),
// token validation for connectors on a Redis miss, friend lists for presence, pair policy for
// typing. A fixed pool of threads, each with its own MySQL and Redis connection; callbacks are
// invoked on the pool thread (callers post back to their I/O thread).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "im/proto/client.pb.h"
#include "im/proto/internal.pb.h"
#include "im/server/thread_pool.hpp"
#include "policy_cache.hpp"

namespace im {
class Metrics;
}

namespace im::transfer {

struct TransferConfig;

class Reader {
public:
    Reader(const TransferConfig& config, PolicyCache& policy, Metrics& metrics);
    ~Reader();

    // Each returns false when the pool queue is full (the caller answers OVERLOADED).
    bool sync_conversations(std::uint64_t user, const client::SyncConversations& req,
                            std::function<void(client::Envelope)> done);
    bool sync_messages(std::uint64_t user, const client::SyncMessages& req, std::function<void(client::Envelope)> done);
    // Who of a group has received and read what (members only; NOT_FOUND otherwise).
    bool read_by(std::uint64_t user, const client::ReadBy& req, std::function<void(client::Envelope)> done);
    // The current members of a group (empty on error or for an unknown group): typing fan-out.
    bool group_members(std::uint64_t group, std::function<void(std::vector<std::uint64_t>)> done);
    bool validate_token(std::string token_hash, std::function<void(internal::TokenResult)> done);
    bool friends_of(std::uint64_t user, std::function<void(std::vector<std::uint64_t>)> done);
    bool pair_policy(std::uint64_t a, std::uint64_t b, std::function<void(PairPolicy)> done);
    // MySQL reachable (for /readyz); runs on the pool.
    bool check(std::function<void(bool)> done);

    void shutdown();

private:
    struct Backend;
    const TransferConfig& config_;
    PolicyCache& policy_;
    std::vector<std::unique_ptr<Backend>> backends_;
    ThreadPool pool_;
    Backend& backend();
};

}  // namespace im::transfer

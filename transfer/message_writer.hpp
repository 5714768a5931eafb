#pragma once
// The group-commit writer: orders and stores the messages and watermarks of the shards this
// transfer owns (DESIGN.md "Conversations: the unit of order and ownership"). It runs
// writer.threads lanes; a conversation always goes to the same lane (shard % lanes), so each
// conversation has exactly one ordered writer while the lanes commit in parallel, each with its
// own thread, MySQL connection, queue and caches. Everything below is per lane.
//
// Each turn takes everything queued (up to writer.max_batch), so a batch accumulates while the
// previous commit is in flight and goes out at once when the writer is idle (no added delay).
// In one batch: stream order checks (OUT_OF_ORDER), dedupe on (sender, client_msg_id), policy
// (friends, blocks), seq assignment from the in-memory per-conversation counter, then ONE
// transaction: shard-epoch fence, multi-row INSERT of messages, conversation and watermark
// upserts (GREATEST), the push outbox for recipients without a live session. Only after COMMIT
// are results handed back (SENT, Deliver, ReceiptEvent). A failed batch answers a retryable error
// and forgets the affected streams and counters (they are re-read), so nothing can overtake; its
// receipts wait for the next batch.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "im/proto/client.pb.h"
#include "im/proto/internal.pb.h"

namespace im {
class IdGenerator;
class Metrics;
class Failpoints;
}  // namespace im
namespace im::mysql {
struct MysqlConfig;
}

namespace im::transfer {

class PolicyCache;
struct TransferConfig;

struct SendJob {
    internal::SessionRef session;
    std::uint64_t link_id = 0;
    std::uint64_t request_id = 0;
    client::Send send;
};

struct ReceiptJob {
    internal::SessionRef session;
    std::uint64_t link_id = 0;
    client::Receipt receipt;
    std::uint64_t request_id = 0;  // the client's, kept when the receipt is bounced to a new owner
};

// im-rest -> the owner: one change of a group (GroupChange), by the session's user.
struct GroupChangeJob {
    internal::SessionRef session;
    std::uint64_t link_id = 0;
    std::uint64_t request_id = 0;
    client::GroupChange change;
};

struct SendOutcome {
    internal::SessionRef session;
    std::uint64_t link_id = 0;
    std::uint64_t request_id = 0;
    client::SendResult result;
    std::uint64_t peer = 0;
    // Serialized client::Envelope{deliver} to push: the message was stored by this batch, or a
    // resend found it in MySQL after its first try failed past COMMIT (a lost reply: never pushed).
    std::shared_ptr<const std::string> deliver;
    // A group message: every current member (peer is 0); the sending session is left out.
    std::shared_ptr<const std::vector<std::uint64_t>> audience;
};

struct GroupChangeOutcome {
    internal::SessionRef session;
    std::uint64_t link_id = 0;
    std::uint64_t request_id = 0;
    client::GroupChangeResult result;
    std::shared_ptr<const std::string> deliver;  // the GROUP_EVENT message, when committed
    std::vector<std::uint64_t> audience;         // the members after it and those who left by it
};

struct ReceiptOutcome {
    internal::SessionRef session;  // who sent the receipt
    std::uint64_t conversation_id = 0;
    std::uint64_t peer = 0;
    client::ReceiptKind kind = client::DELIVERED;
    std::uint64_t up_to_seq = 0;
    bool to_peer = true;  // false between a blocked pair: only the sender's other sessions hear it
    // A group (peer 0): the senders of the messages this watermark passed, who hear it too.
    std::vector<std::uint64_t> notify;
};

struct BatchResult {
    std::vector<SendOutcome> sends;
    std::vector<ReceiptOutcome> receipts;
    std::vector<GroupChangeOutcome> changes;
    // Requests for shards this transfer no longer owns (the fence said so): the I/O thread sends
    // them back to their connector as Bounce, which routes them to the new owner.
    std::vector<SendJob> bounced_sends;
    std::vector<ReceiptJob> bounced_receipts;
};

// Users with at least one live session (maintained by the I/O thread from the session directory,
// read by the writer to decide on the push outbox).
class OnlineUsers {
public:
    void add(std::uint64_t user);
    void remove(std::uint64_t user);
    bool online(std::uint64_t user) const;
    // The users of `users` with no live session, added to `out` (one lock for all of them).
    void offline_among(const std::vector<std::uint64_t>& users, std::unordered_set<std::uint64_t>& out) const;

private:
    mutable std::mutex mu_;
    std::unordered_map<std::uint64_t, std::uint32_t> counts_;
};

struct WriterDeps {
    const TransferConfig& config;
    IdGenerator& ids;
    std::uint64_t owner_epoch;  // this incarnation's shard_owner epoch (fencing)
    PolicyCache& policy;
    OnlineUsers& online;
    Failpoints& failpoints;
    Metrics& metrics;
    std::function<void(BatchResult)> on_result;  // called on the writer thread; must post
    std::function<void()> on_push_pending;       // a batch wrote push_pending rows
    // Wall-clock ms until which the snowflake worker id is surely still ours (the ownership
    // thread renews it): past it no batch commits (its ids could collide with a new holder's).
    const std::atomic<std::int64_t>& id_lease_valid_until_ms;
};

class MessageWriter {
public:
    explicit MessageWriter(WriterDeps deps);
    ~MessageWriter();
    MessageWriter(const MessageWriter&) = delete;
    MessageWriter& operator=(const MessageWriter&) = delete;

    void start();
    // Processes what is queued, then stops the thread.
    void stop();

    // Thread-safe; false when the queue is full (answer OVERLOADED).
    bool submit(SendJob job);
    // Thread-safe. A receipt coalesces with the waiting one of its (conversation, user, kind) and
    // is kept until stored, also across failed batches; false only for a new key when the lane
    // is full (answer the client: it resends its watermarks).
    bool submit(ReceiptJob job);
    // Thread-safe; false when the queue is full.
    bool submit(GroupChangeJob job);
    // The session ended: its send streams can be dropped.
    void forget_session(std::uint64_t user, std::uint64_t login_epoch);
    // These shards were (re)acquired at these gens: the lanes drop what they cached (seq counters,
    // stream positions) before they process anything queued after this call, so the first batch
    // reloads from MySQL what the previous owner committed.
    void reset_shards(const std::vector<std::pair<std::uint32_t, std::uint64_t>>& shard_gens);
    std::size_t queued() const;

private:
    struct Impl;  // one lane
    Impl& lane_of(std::uint64_t conversation);
    std::vector<std::unique_ptr<Impl>> lanes_;
};

}  // namespace im::transfer

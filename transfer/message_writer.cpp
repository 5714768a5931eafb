#include "message_writer.hpp"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <unordered_set>

#include "cache.hpp"
#include "group_state.hpp"
#include "im/server/clock.hpp"
#include "im/server/failpoints.hpp"
#include "im/server/id_generator.hpp"
#include "im/server/metrics.hpp"
#include "im/server/mysql.hpp"
#include "im/wire/ids.hpp"
#include "pending_receipts.hpp"
#include "policy_cache.hpp"
#include "im/server/sql_batch.hpp"
#include "transfer_config.hpp"

namespace im::transfer {

// ---------------------------------------------------------------------------------- OnlineUsers
void OnlineUsers::add(std::uint64_t user) {
    std::lock_guard lock(mu_);
    ++counts_[user];
}

void OnlineUsers::remove(std::uint64_t user) {
    std::lock_guard lock(mu_);
    auto it = counts_.find(user);
    if (it != counts_.end() && --it->second == 0) counts_.erase(it);
}

bool OnlineUsers::online(std::uint64_t user) const {
    std::lock_guard lock(mu_);
    return counts_.count(user) != 0;
}

void OnlineUsers::offline_among(const std::vector<std::uint64_t>& users, std::unordered_set<std::uint64_t>& out) const {
    std::lock_guard lock(mu_);
    for (auto u : users) {
        if (counts_.count(u) == 0) out.insert(u);
    }
}

namespace {

using client::ErrorCode;

struct StreamKey {
    std::uint64_t user, login_epoch, conv;
    bool operator==(const StreamKey&) const = default;
};
struct StreamKeyHash {
    std::size_t operator()(const StreamKey& k) const noexcept {
        std::uint64_t h = k.user * 0x9E3779B97F4A7C15ull ^ k.login_epoch;
        h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ull ^ k.conv;
        return static_cast<std::size_t>(h ^ (h >> 32));
    }
};

// Where a stream stands: the next number it accepts, and the final refusals of recent numbers
// (so a replay of a refused number gets the same answer).
struct StreamState {
    std::uint64_t expected = 1;
    std::vector<std::pair<std::uint64_t, ErrorCode>> refusals;
    void refuse(std::uint64_t n, ErrorCode code) {
        if (refusals.size() >= 8) refusals.erase(refusals.begin());
        refusals.emplace_back(n, code);
    }
};

// (sender, client_msg_id): client_msg_id is exactly 16 bytes (checked before any lookup), so the
// key is a fixed 24 bytes: no allocation per message.
struct DedupeKey {
    std::uint64_t sender = 0;
    std::array<char, 16> cmid{};
    DedupeKey() = default;
    DedupeKey(std::uint64_t s, std::string_view id) : sender(s) {
        std::memcpy(cmid.data(), id.data(), std::min(id.size(), cmid.size()));
    }
    bool operator==(const DedupeKey&) const = default;
};
struct DedupeKeyHash {
    std::size_t operator()(const DedupeKey& k) const noexcept {
        std::uint64_t a = 0, b = 0;
        std::memcpy(&a, k.cmid.data(), 8);
        std::memcpy(&b, k.cmid.data() + 8, 8);
        std::uint64_t h = (a ^ (k.sender * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull ^ b;
        h = (h ^ (h >> 31)) * 0x94D049BB133111EBull;
        return static_cast<std::size_t>(h ^ (h >> 29));
    }
};

struct Stored {
    std::uint64_t msg_id = 0, conv = 0, seq = 0;
    std::int64_t created_ms = 0;
};

// The recently stored messages by (sender, client_msg_id), so a resend is answered with its
// original without asking MySQL. Direct-mapped: one slot per hash, a newer key overwrites an older
// one. Losing an entry is safe (the unique key in MySQL is the backstop: the batch is redone
// asking MySQL), and the table never allocates or frees per message.
class RecentSends {
  public:
    explicit RecentSends(std::size_t slots) : slots_(std::bit_ceil(slots)) {}
    Stored* find(const DedupeKey& k) {
        Slot& s = slots_[index(k)];
        return s.key.sender != 0 && s.key == k ? &s.stored : nullptr;
    }
    void put(const DedupeKey& k, const Stored& v) {
        Slot& s = slots_[index(k)];
        s.key = k;
        s.stored = v;
    }

  private:
    struct Slot {
        DedupeKey key;  // sender 0: empty (user ids are positive)
        Stored stored;
    };
    std::size_t index(const DedupeKey& k) const { return DedupeKeyHash()(k) & (slots_.size() - 1); }
    std::vector<Slot> slots_;
};

bool retryable(ErrorCode c) {
    switch (c) {
        case client::OUT_OF_ORDER:
        case client::UNAVAILABLE:
        case client::TIMEOUT:
        case client::OVERLOADED:
        case client::INTERNAL:
        case client::RATE_LIMITED:
            return true;
        default:
            return false;
    }
}

// One message of a batch, with what the writer decided about it.
struct Item {
    enum class State { pending, answered, duplicate, original_found, bounced };
    std::size_t job = 0;
    std::uint64_t conv = 0, peer = 0;  // peer 0: a group message (conv is the group)
    StreamKey key{};
    State state = State::pending;
    bool replay = false;     // stream_seq below the expected one: only a dedupe can answer it
    std::size_t dup_of = 0;  // index of the first copy in this batch (State::duplicate)
    Stored stored;           // original_found, or assigned for pending
    ErrorCode code = client::ERROR_NONE;
    std::string message;
    // original_found in MySQL: its Deliver, pushed again (it may never have been pushed).
    std::shared_ptr<const std::string> redeliver;
};

// The Deliver frame of a stored message without its body (the caller sets the text, the file or
// the group event): a send, the redelivery of a lost reply, a group event.
client::Envelope deliver_frame(std::uint64_t conv, std::uint64_t seq, std::uint64_t msg_id, std::int64_t created_ms,
                               std::uint64_t sender, const std::string& device, client::MessageType type,
                               const std::string& client_msg_id) {
    client::Envelope env;
    auto* d = env.mutable_deliver();
    d->set_conversation_id(conv);
    d->set_seq(seq);
    d->set_msg_id(msg_id);
    d->set_sender_user_id(sender);
    d->set_sender_device_id(device);
    d->set_type(type);
    d->set_created_ms(created_ms);
    d->set_client_msg_id(client_msg_id);
    return env;
}

// Seconds spent per stage of a batch (im_transfer_writer_stage_seconds_total{stage}): where the
// writer's time goes, for profiling under load (docs/BENCHMARKS.md).
class StageClock {
  public:
    void lap(prometheus::Counter& c) {
        const auto now = std::chrono::steady_clock::now();
        c.Increment(std::chrono::duration<double>(now - t_).count());
        t_ = now;
    }

  private:
    std::chrono::steady_clock::time_point t_ = std::chrono::steady_clock::now();
};

struct PushRow {  // one push_pending upsert: a recipient without a live session
    std::uint64_t user = 0, conv = 0, from = 0;
};

// What a batch writes for groups besides the messages of its sends.
struct GroupWrites {
    struct SysMessage {  // a GROUP_EVENT message
        std::uint64_t conv = 0, seq = 0, msg_id = 0, actor = 0;
        std::string device, client_msg_id, body;
        std::int64_t created_ms = 0;
    };
    struct MemberRow {  // group_members: a current member's full state, or left_seq of one who left
        std::uint64_t group = 0, user = 0;
        unsigned role = 1;
        std::uint64_t joined = 0, left = 0, delivered = 0, read = 0;
    };
    struct GroupRow {  // chat_groups: the group's state after the batch
        std::uint64_t id = 0, owner = 0, last_seq = 0, deleted_seq = 0;
        std::string name;
        std::uint32_t member_count = 0;
        std::int64_t created_ms = 0;
    };
    std::vector<SysMessage> sys;
    std::vector<MemberRow> members;
    std::vector<GroupRow> groups;
    bool empty() const { return sys.empty() && members.empty() && groups.empty(); }
};

struct WatermarkRow {  // one user_conversations upsert
    std::uint64_t user = 0, conv = 0, peer = 0;
    std::uint64_t last_seq = 0, my_delivered = 0, my_read = 0, peer_delivered = 0, peer_read = 0;
    std::uint64_t received = 0;  // the peer's messages stored by this batch (unread grows by them)
};

}  // namespace

struct MessageWriter::Impl {
    Impl(WriterDeps d, std::size_t lane_index)
        : deps(std::move(d)),
          lane(lane_index),
          db(deps.config.mysql),
          streams(1 << 20),
          last_seq(1 << 20),
          recent(1 << 18),
          unpushed(1 << 16),
          batches(deps.metrics.counter("im_transfer_batches_total", "Committed writer batches.")),
          single_calls(deps.metrics.counter("im_transfer_single_call_batches_total",
                                            "Batches of one conversation's two watermark rows (with at "
                                            "most one message) stored by one CALL of im_store_pair "
                                            "(writer.single_call).")),
          batch_failures(deps.metrics.counter("im_transfer_batch_failures_total",
                                              "Writer batches that failed to commit.")),
          stored_total(
              deps.metrics.counter("im_transfer_messages_stored_total", "Messages stored.")),
          dup_total(deps.metrics.counter("im_transfer_messages_deduped_total",
                                         "Resends answered with the original.")),
          refused_total(deps.metrics.counter("im_transfer_messages_refused_total",
                                             "Messages refused (policy, validation).")),
          ooo_total(deps.metrics.counter("im_transfer_out_of_order_total",
                                         "Sends answered with OUT_OF_ORDER.")),
          receipts_total(deps.metrics.counter("im_transfer_receipts_total", "Receipts applied.")),
          fence_failures(deps.metrics.counter("im_transfer_fence_failures_total",
                                              "Batches whose shard_owner fence found a shard owned by "
                                              "another transfer (its requests were bounced).")),
          bounced_total(deps.metrics.counter("im_transfer_bounced_total",
                                             "Requests sent back to the connector because this "
                                             "transfer does not own their shard (any more).",
                                             {{"where", "writer"}})),
          receipts_refused(deps.metrics.counter(
              "im_transfer_receipts_refused_total",
              "Receipts refused because the writer lane was full (answered OVERLOADED).")),
          receipts_retried(
              deps.metrics.counter("im_transfer_receipts_retried_total",
                                   "Receipts of failed batches kept for the next batch.")),
          receipts_dropped(deps.metrics.counter(
              "im_transfer_receipts_dropped_total",
              "Receipts not stored at shutdown because the last batch failed (clients resend "
              "their watermarks after reconnecting).")),
          redelivered_total(deps.metrics.counter(
              "im_transfer_messages_redelivered_total",
              "Resends found in MySQL whose first try failed after its COMMIT (a lost reply): "
              "pushed at the resend.")),
          batch_size(deps.metrics.histogram("im_transfer_batch_messages",
                                            "Messages per committed batch.",
                                            {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})),
          commit_seconds(deps.metrics.histogram(
              "im_transfer_commit_seconds", "Batch transaction time.", Metrics::latency_buckets())),
          queue_gauge(deps.metrics.gauge("im_transfer_writer_queue",
                                         "Sends and receipts waiting for a writer lane.",
                                         {{"lane", std::to_string(lane_index)}})),
          stage_prepare(stage("prepare")),
          stage_fence(stage("fence")),
          stage_messages(stage("insert_messages")),
          stage_versions(stage("sync_versions")),
          stage_watermarks(stage("upsert_user_conversations")),
          stage_push(stage("push_outbox")),
          stage_commit(stage("commit")),
          stage_answer(stage("answer")) {
        db.set_implicit_transactions();  // this lane's connection: reads, and writes in
                                         // transaction()
    }

    prometheus::Counter& stage(const std::string& name) {
        return deps.metrics.counter(
            "im_transfer_writer_stage_seconds_total",
            "Writer time per batch stage: prepare (stream checks, dedupe, policy, seqs), fence, "
            "insert_messages, sync_versions (with the file references), "
            "upsert_user_conversations, push_outbox, commit, answer.",
            {{"stage", name}});
    }

    WriterDeps deps;
    std::size_t lane = 0;
    mysql::MysqlConnection db;

    // Queue (any thread -> writer thread).
    mutable std::mutex mu;
    std::condition_variable cv;
    std::deque<SendJob> send_queue;
    std::deque<GroupChangeJob> change_queue;
    PendingReceipts receipt_queue;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> forget_queue;
    std::vector<std::pair<std::uint32_t, std::uint64_t>> reset_queue;  // (shard, gen)
    bool stopping = false;
    std::thread thread;

    // Writer-thread state.
    TwoGenCache<StreamKey, StreamState, StreamKeyHash> streams;
    TwoGenCache<std::uint64_t, std::uint64_t> last_seq;  // conversation -> last committed seq
    RecentSends recent;
    // The groups of this lane's shards that a batch used (loaded from MySQL on first use, dropped
    // with the other caches on a change of ownership, erased when a batch that touched them fails).
    std::unordered_map<std::uint64_t, GroupState> groups;
    std::mt19937_64 rng{std::random_device{}()};  // client_msg_ids of GROUP_EVENT messages
    // Messages of failed batches: the failure may have come after COMMIT (a lost reply), so they
    // may be stored and never pushed. A resend that finds one in MySQL pushes it. (After a
    // restart nothing is known: the connectors' SyncHint{0} on the lost link covers that case.)
    TwoGenCache<DedupeKey, bool, DedupeKeyHash> unpushed;
    std::unordered_map<std::uint64_t, std::unordered_set<std::uint64_t>>
        streams_by_session;  // login_epoch -> convs
    // The shard_owner gen each shard's cached state belongs to (0: none cached yet). The fence
    // compares it with the row: a shard lost and regained between two ownership polls shows a
    // higher gen, and the cached counters are dropped before anything is written.
    std::vector<std::uint64_t> shard_gen = std::vector<std::uint64_t>(kShardCount, 0);

    prometheus::Counter& batches;
    prometheus::Counter& single_calls;
    prometheus::Counter& batch_failures;
    prometheus::Counter& stored_total;
    prometheus::Counter& dup_total;
    prometheus::Counter& refused_total;
    prometheus::Counter& ooo_total;
    prometheus::Counter& receipts_total;
    prometheus::Counter& fence_failures;
    prometheus::Counter& bounced_total;
    prometheus::Counter& receipts_refused;
    prometheus::Counter& receipts_retried;
    prometheus::Counter& receipts_dropped;
    prometheus::Counter& redelivered_total;
    prometheus::Histogram& batch_size;
    prometheus::Histogram& commit_seconds;
    prometheus::Gauge& queue_gauge;
    prometheus::Counter& stage_prepare;
    prometheus::Counter& stage_fence;
    prometheus::Counter& stage_messages;
    prometheus::Counter& stage_versions;
    prometheus::Counter& stage_watermarks;
    prometheus::Counter& stage_push;
    prometheus::Counter& stage_commit;
    prometheus::Counter& stage_answer;
    StageClock clock;

    void run();
    void process(std::vector<SendJob>& sends, std::vector<ReceiptJob>& receipts, std::vector<GroupChangeJob>& changes);
    void load_groups(std::vector<std::uint64_t> ids);
    GroupState* group(std::uint64_t id) {
        auto it = groups.find(id);
        return it == groups.end() ? nullptr : &it->second;
    }
    void stream_checks(std::vector<SendJob>& sends, std::vector<Item>& items);
    void dedupe(std::vector<SendJob>& sends, std::vector<Item>& items, bool query_all);
    void apply_policy(std::vector<SendJob>& sends, std::vector<Item>& items);
    void check_files(std::vector<SendJob>& sends, std::vector<Item>& items);
    void load_last_seq(const std::vector<std::uint64_t>& convs);
    void sync_versions(const std::vector<WatermarkRow>& rows, std::vector<std::uint64_t>& versions);
    void write(std::vector<SendJob>& sends, std::vector<Item>& items,
               const std::vector<WatermarkRow>& rows, const std::vector<PushRow>& push_rows,
               const GroupWrites& gw, std::uint64_t& fence_shards);
    void fence(const std::vector<std::uint32_t>& shards);
    // Past the snowflake worker id's confirmed lease no batch commits (its ids could collide with
    // a new holder's).
    void check_id_lease() const {
        if (wall_ms() >= deps.id_lease_valid_until_ms.load()) {
            throw std::runtime_error("the snowflake worker-id lease is not confirmed (database unreachable?): "
                                     "no id may be committed");
        }
    }
    void write_pair(std::vector<SendJob>& sends, const Item* msg, const std::vector<WatermarkRow>& rows,
                    const std::vector<PushRow>& push_rows);
    void drop_caches();
};

namespace {
// n rows by multi-row INSERTs of the fixed chunk sizes (sql_batch): head + values + tail, where
// bind(st, p, i) sets row i's columns from placeholder p on.
template <class Bind>
void insert_rows(mysql::MysqlConnection& db, const std::string& head, std::size_t columns, std::size_t n,
                 const std::string& tail, Bind&& bind) {
    std::size_t pos = 0;
    for (std::size_t rows_n : sql_batch::insert_chunks(n)) {
        auto& st = db.prepare(sql_batch::values_statement(head, columns, rows_n, tail));
        unsigned p = 1;
        for (std::size_t r = 0; r < rows_n; ++r) bind(st, p, pos + r);
        st.executeUpdate();
        pos += rows_n;
    }
}

// The fence found shards of the batch owned by another transfer now: their requests go back.
struct FenceLost : std::runtime_error {
    explicit FenceLost(std::vector<std::uint32_t> s)
        : std::runtime_error("shard ownership lost (epoch fence)"), shards(std::move(s)) {}
    std::vector<std::uint32_t> shards;
};
// The fence found shards at a newer gen than the lane's cached state: reload and redo.
struct FenceStale : std::runtime_error {
    explicit FenceStale(std::vector<std::pair<std::uint32_t, std::uint64_t>> g)
        : std::runtime_error("shard regained at a newer gen"), gens(std::move(g)) {}
    std::vector<std::pair<std::uint32_t, std::uint64_t>> gens;
};
}  // namespace

MessageWriter::MessageWriter(WriterDeps deps) {
    const std::size_t n = std::max<std::uint32_t>(1, deps.config.writer_threads);
    for (std::size_t i = 0; i < n; ++i)
        lanes_.push_back(std::make_unique<Impl>(deps, i));
}

MessageWriter::~MessageWriter() {
    stop();
}

MessageWriter::Impl& MessageWriter::lane_of(std::uint64_t conversation) {
    // An invalid conversation (answered BAD_REQUEST by the lane) may go anywhere.
    return *lanes_[conversation == 0 ? 0 : shard_of(conversation) % lanes_.size()];
}

void MessageWriter::start() {
    for (auto& l : lanes_) {
        Impl* lane = l.get();
        lane->thread = std::thread([lane] { lane->run(); });
    }
}

void MessageWriter::stop() {
    for (auto& l : lanes_) {
        {
            std::lock_guard lock(l->mu);
            if (l->stopping && !l->thread.joinable()) continue;
            l->stopping = true;
        }
        l->cv.notify_all();
    }
    for (auto& l : lanes_) {
        if (l->thread.joinable()) l->thread.join();
    }
}

bool MessageWriter::submit(SendJob job) {
    Impl& l = lane_of(send_conversation(job.session.user_id(), job.send.peer_user_id(), job.send.group_id()));
    {
        std::lock_guard lock(l.mu);
        if (l.stopping || l.send_queue.size() + l.receipt_queue.size() >= l.deps.config.max_queue)
            return false;
        l.send_queue.push_back(std::move(job));
    }
    l.cv.notify_one();
    return true;
}

bool MessageWriter::submit(ReceiptJob job) {
    Impl& l = lane_of(
        valid_any_conversation(job.receipt.conversation_id()) ? job.receipt.conversation_id() : 0);
    {
        std::lock_guard lock(l.mu);
        const bool room =
            !l.stopping && l.send_queue.size() + l.receipt_queue.size() < l.deps.config.max_queue;
        if (!l.receipt_queue.add(std::move(job), room)) {
            l.receipts_refused.Increment();
            return false;
        }
    }
    l.cv.notify_one();
    return true;
}

bool MessageWriter::submit(GroupChangeJob job) {
    Impl& l = lane_of(valid_group_id(job.change.group_id()) ? job.change.group_id() : 0);
    {
        std::lock_guard lock(l.mu);
        if (l.stopping || l.send_queue.size() + l.receipt_queue.size() + l.change_queue.size() >= l.deps.config.max_queue)
            return false;
        l.change_queue.push_back(std::move(job));
    }
    l.cv.notify_one();
    return true;
}

void MessageWriter::forget_session(std::uint64_t user, std::uint64_t login_epoch) {
    for (auto& l : lanes_) {
        std::lock_guard lock(l->mu);
        l->forget_queue.emplace_back(user, login_epoch);
    }
}

void MessageWriter::reset_shards(const std::vector<std::pair<std::uint32_t, std::uint64_t>>& shard_gens) {
    for (std::size_t i = 0; i < lanes_.size(); ++i) {
        auto& l = lanes_[i];
        {
            std::lock_guard lock(l->mu);
            for (const auto& sg : shard_gens) {
                if (sg.first % lanes_.size() == i) l->reset_queue.push_back(sg);
            }
        }
        l->cv.notify_one();
    }
}

std::size_t MessageWriter::queued() const {
    std::size_t n = 0;
    for (const auto& l : lanes_) {
        std::lock_guard lock(l->mu);
        n += l->send_queue.size() + l->receipt_queue.size() + l->change_queue.size();
    }
    return n;
}

void MessageWriter::Impl::run() {
    pthread_setname_np(pthread_self(), ("writer-" + std::to_string(lane)).c_str());
    for (;;) {
        std::vector<SendJob> sends;
        std::vector<ReceiptJob> receipts;
        std::vector<GroupChangeJob> changes;
        std::vector<std::pair<std::uint64_t, std::uint64_t>> forgets;
        {
            std::unique_lock lock(mu);
            cv.wait(lock, [this] {
                return stopping || !send_queue.empty() || !receipt_queue.empty() || !change_queue.empty() ||
                       !reset_queue.empty();
            });
            if (!reset_queue.empty()) {
                // Before anything queued after the reset: the ownership thread published the
                // shards to the I/O thread only after queueing it.
                for (const auto& [shard, gen] : reset_queue) shard_gen[shard] = gen;
                reset_queue.clear();
                lock.unlock();
                drop_caches();
                continue;
            }
            if (send_queue.empty() && receipt_queue.empty() && change_queue.empty()) return;  // stopping, drained
            if (send_queue.empty() && change_queue.empty() && deps.config.receipt_delay.count() > 0) {
                // Receipts alone: wait a little for a message to share the commit with. Without
                // it a receipt-only batch (its own fsync) would often run just before the next
                // message of a live chat and make that message wait for it.
                cv.wait_for(lock, deps.config.receipt_delay,
                            [this] { return stopping || !send_queue.empty(); });
            }
            const std::size_t n = std::min<std::size_t>(send_queue.size(), deps.config.max_batch);
            sends.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                sends.push_back(std::move(send_queue.front()));
                send_queue.pop_front();
            }
            receipts = receipt_queue.take(deps.config.max_batch);
            for (std::size_t i = 0; i < deps.config.max_batch && !change_queue.empty(); ++i) {
                changes.push_back(std::move(change_queue.front()));
                change_queue.pop_front();
            }
            forgets.swap(forget_queue);
            queue_gauge.Set(static_cast<double>(send_queue.size() + receipt_queue.size() + change_queue.size()));
        }
        for (const auto& [user, epoch] : forgets) {
            if (auto it = streams_by_session.find(epoch); it != streams_by_session.end()) {
                for (auto conv : it->second)
                    streams.erase(StreamKey{user, epoch, conv});
                streams_by_session.erase(it);
            }
        }
        process(sends, receipts, changes);
    }
}

// Stream order: accept only the next number of each (sender, login_epoch, conversation) stream.
void MessageWriter::Impl::stream_checks(std::vector<SendJob>& sends, std::vector<Item>& items) {
    for (std::size_t i = 0; i < sends.size(); ++i) {
        auto& job = sends[i];
        auto& it = items[i];
        const auto& s = job.send;
        it.job = i;
        const auto sender = job.session.user_id();
        it.peer = s.group_id() != 0 ? 0 : s.peer_user_id();
        it.conv = send_conversation(sender, s.peer_user_id(), s.group_id());
        auto answer = [&](ErrorCode c, std::string msg) {
            it.state = Item::State::answered;
            it.code = c;
            it.message = std::move(msg);
        };
        if (it.conv == 0) {
            answer(client::BAD_REQUEST, s.group_id() != 0 ? "group_id must be a valid group (and peer_user_id 0)"
                                                           : "peer_user_id must be another valid user");
            continue;
        }
        if (s.client_msg_id().size() != 16) {
            answer(client::BAD_REQUEST, "client_msg_id must be 16 bytes");
            continue;
        }
        if (s.stream_seq() == 0) {
            answer(client::BAD_REQUEST, "stream_seq starts at 1");
            continue;
        }
        it.key = StreamKey{sender, job.session.login_epoch(), it.conv};
        StreamState* st = streams.find(it.key);
        if (st == nullptr) {
            st = &streams.put(it.key, StreamState{});
            streams_by_session[it.key.login_epoch].insert(it.conv);
        }
        const std::uint64_t expected = std::max(st->expected, s.stream_acked() + 1);
        st->expected = expected;
        if (s.stream_seq() > expected) {
            ooo_total.Increment();
            answer(client::OUT_OF_ORDER, "expected stream_seq " + std::to_string(expected));
            continue;
        }
        if (s.stream_seq() < expected) {
            // A replay of a number already processed: the same refusal, or the original (dedupe).
            auto ref = std::find_if(st->refusals.begin(), st->refusals.end(),
                                    [&](const auto& r) { return r.first == s.stream_seq(); });
            if (ref != st->refusals.end())
                answer(ref->second, "refused before");
            else
                it.replay = true;
            continue;
        }
        st->expected = expected + 1;  // the number is consumed whatever the outcome below
        const bool text_ok = s.type() == client::TEXT && !s.text().empty() &&
                             s.text().size() <= deps.config.max_text_bytes;
        const bool file_ok =
            s.type() == client::FILE && s.file().file_id() != 0 && s.file().name().size() <= 1024;
        if (!text_ok && !file_ok) {
            answer(client::BAD_REQUEST,
                   s.type() == client::TEXT
                       ? "text must be 1.." + std::to_string(deps.config.max_text_bytes) + " bytes"
                       : "a TEXT or FILE message is required");
            st->refuse(s.stream_seq(), client::BAD_REQUEST);
        }
    }
}

// Dedupe on (sender, client_msg_id): copies inside the batch, the recent cache, then MySQL.
// MySQL is asked for replays only, unless query_all (after a duplicate-key error).
void MessageWriter::Impl::dedupe(std::vector<SendJob>& sends, std::vector<Item>& items,
                                 bool query_all) {
    std::unordered_map<DedupeKey, std::size_t, DedupeKeyHash> first;
    std::vector<std::size_t> ask;
    for (auto& it : items) {
        if (it.state == Item::State::answered || it.state == Item::State::bounced) continue;
        const auto& job = sends[it.job];
        DedupeKey key{job.session.user_id(), job.send.client_msg_id()};
        if (auto f = first.find(key); f != first.end()) {
            it.state = Item::State::duplicate;
            it.dup_of = f->second;
            continue;
        }
        first.emplace(key, it.job);
        if (Stored* s = recent.find(key)) {
            it.state = Item::State::original_found;
            it.stored = *s;
            continue;
        }
        if (it.replay || query_all) ask.push_back(it.job);
    }
    for (std::size_t off = 0; off < ask.size();) {
        const std::size_t n = std::min<std::size_t>(ask.size() - off, 512);
        const std::size_t padded = sql_batch::lookup_size(n);
        auto& st = db.prepare(
            "SELECT sender_id, client_msg_id, msg_id, conversation_id, seq, created_ms, "
            "sender_device, type, body FROM messages WHERE " +
            sql_batch::or_terms("sender_id = ? AND client_msg_id = ?", padded));
        for (std::size_t i = 0; i < padded; ++i) {
            const auto& job = sends[ask[off + std::min(i, n - 1)]];
            st.setUInt64(static_cast<unsigned>(2 * i + 1), job.session.user_id());
            st.setString(static_cast<unsigned>(2 * i + 2), job.send.client_msg_id());
        }
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        while (rs->next()) {
            DedupeKey key{rs->getUInt64(1), rs->getString(2).asStdString()};
            Stored found{rs->getUInt64(3), rs->getUInt64(4), rs->getUInt64(5), rs->getInt64(6)};
            recent.put(key, found);
            if (auto f = first.find(key); f != first.end()) {
                auto& it = items[f->second];
                it.state = Item::State::original_found;
                it.stored = found;
                if (unpushed.find(key) == nullptr) continue;
                // Stored by a batch that failed after its COMMIT (the reply was lost): never
                // pushed, so push it now (clients dedupe on (conversation, seq) anyway).
                unpushed.erase(key);
                const auto type = static_cast<client::MessageType>(rs->getUInt(8));
                auto env = deliver_frame(found.conv, found.seq, found.msg_id, found.created_ms, key.sender,
                                         rs->getString(7).asStdString(), type, rs->getString(2).asStdString());
                auto* d = env.mutable_deliver();
                if (type == client::FILE)
                    d->mutable_file()->ParseFromString(rs->getString(9).asStdString());
                else
                    d->set_text(rs->getString(9).asStdString());
                it.redeliver = std::make_shared<const std::string>(env.SerializeAsString());
            }
        }
        off += n;
    }
    for (auto& it : items) {
        if (it.replay && it.state == Item::State::pending) {
            // Below the stream position, never stored, no refusal remembered: a client bug.
            it.state = Item::State::answered;
            it.code = client::BAD_REQUEST;
            it.message = "stream_seq already used by another message";
        }
    }
}

void MessageWriter::Impl::apply_policy(std::vector<SendJob>& sends, std::vector<Item>& items) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> pairs;
    for (const auto& it : items) {
        if (it.state == Item::State::pending && it.peer != 0)
            pairs.emplace_back(sends[it.job].session.user_id(), it.peer);
    }
    if (pairs.empty()) return;
    std::unordered_map<std::uint64_t, PairPolicy> policies;
    deps.policy.resolve(db, pairs, policies);
    for (auto& it : items) {
        if (it.state != Item::State::pending || it.peer == 0) continue;  // groups: membership, later
        const auto& p = policies[it.conv];
        ErrorCode code = client::ERROR_NONE;
        if (p.blocked)
            code = client::BLOCKED;
        else if (deps.config.require_friendship && !p.friends)
            code = client::FORBIDDEN;
        if (code == client::ERROR_NONE) continue;
        it.state = Item::State::answered;
        it.code = code;
        it.message = code == client::BLOCKED ? "blocked" : "only friends can message each other";
        if (auto* st = streams.find(it.key)) st->refuse(sends[it.job].send.stream_seq(), code);
        refused_total.Increment();
    }
}

// FILE messages: the file must exist and belong to the sender (404 NOT_FOUND otherwise, the same
// answer for both, so ids cannot be probed). The stored FileRef is the files row (name, size,
// sha256, mime), never what the client claimed.
void MessageWriter::Impl::check_files(std::vector<SendJob>& sends, std::vector<Item>& items) {
    std::vector<std::uint64_t> ids;
    for (const auto& it : items) {
        if (it.state == Item::State::pending && sends[it.job].send.type() == client::FILE) {
            ids.push_back(sends[it.job].send.file().file_id());
        }
    }
    if (ids.empty()) return;
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    struct Row {
        std::uint64_t owner = 0;
        client::FileRef ref;
    };
    std::unordered_map<std::uint64_t, Row> found;
    for (std::size_t off = 0; off < ids.size();) {
        const std::size_t n = std::min<std::size_t>(ids.size() - off, 512);
        const std::size_t padded = sql_batch::lookup_size(n);
        auto& st =
            db.prepare("SELECT id, owner_id, name, size, sha256, mime FROM files WHERE id IN (" +
                       sql_batch::placeholders(padded) + ")");
        for (std::size_t i = 0; i < padded; ++i)
            st.setUInt64(static_cast<unsigned>(i + 1), ids[off + std::min(i, n - 1)]);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        while (rs->next()) {
            Row r;
            r.owner = rs->getUInt64(2);
            r.ref.set_file_id(rs->getUInt64(1));
            r.ref.set_name(rs->getString(3).asStdString());
            r.ref.set_size(rs->getUInt64(4));
            r.ref.set_sha256(rs->getString(5).asStdString());
            r.ref.set_mime(rs->getString(6).asStdString());
            found.emplace(r.ref.file_id(), std::move(r));
        }
        off += n;
    }
    for (auto& it : items) {
        if (it.state != Item::State::pending) continue;
        auto& send = sends[it.job].send;
        if (send.type() != client::FILE) continue;
        auto f = found.find(send.file().file_id());
        if (f != found.end() && f->second.owner == sends[it.job].session.user_id()) {
            *send.mutable_file() = f->second.ref;
            continue;
        }
        it.state = Item::State::answered;
        it.code = client::NOT_FOUND;
        it.message = "no such file of yours: upload it first (POST /v1/files)";
        if (auto* st = streams.find(it.key)) st->refuse(send.stream_seq(), client::NOT_FOUND);
        refused_total.Increment();
    }
}

void MessageWriter::Impl::load_last_seq(const std::vector<std::uint64_t>& convs) {
    std::vector<std::uint64_t> missing, missing_groups;
    for (auto c : convs) {
        if (last_seq.find(c) == nullptr) (valid_group_id(c) ? missing_groups : missing).push_back(c);
    }
    std::sort(missing_groups.begin(), missing_groups.end());
    missing_groups.erase(std::unique(missing_groups.begin(), missing_groups.end()), missing_groups.end());
    for (std::size_t off = 0; off < missing_groups.size();) {
        // A group's last seq is in its chat_groups row (every batch that assigns its seqs writes it).
        const std::size_t n = std::min<std::size_t>(missing_groups.size() - off, 512);
        const std::size_t padded = sql_batch::lookup_size(n);
        auto& st = db.prepare("SELECT id, last_seq FROM chat_groups WHERE id IN (" + sql_batch::placeholders(padded) + ")");
        for (std::size_t i = 0; i < padded; ++i)
            st.setUInt64(static_cast<unsigned>(i + 1), missing_groups[off + std::min(i, n - 1)]);
        for (std::size_t i = 0; i < n; ++i)
            last_seq.put(missing_groups[off + i], 0);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        while (rs->next())
            last_seq.put(rs->getUInt64(1), rs->getUInt64(2));
        off += n;
    }
    std::sort(missing.begin(), missing.end());
    missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
    for (std::size_t off = 0; off < missing.size();) {
        const std::size_t n = std::min<std::size_t>(missing.size() - off, 512);
        const std::size_t padded = sql_batch::lookup_size(n);
        // The conversation's last seq is in both participants' watermark rows (every batch that
        // assigns seqs writes both); the lower user's row is read (primary-key lookups).
        auto& st = db.prepare("SELECT conversation_id, last_seq FROM user_conversations WHERE " +
                              sql_batch::or_terms("user_id = ? AND conversation_id = ?", padded));
        for (std::size_t i = 0; i < padded; ++i) {
            const auto conv = missing[off + std::min(i, n - 1)];
            st.setUInt64(static_cast<unsigned>(2 * i + 1), conversation_low(conv));
            st.setUInt64(static_cast<unsigned>(2 * i + 2), conv);
        }
        for (std::size_t i = 0; i < n; ++i)
            last_seq.put(missing[off + i], 0);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        while (rs->next())
            last_seq.put(rs->getUInt64(1), rs->getUInt64(2));
        off += n;
    }
}

// The state of the groups in `ids` not cached yet: the group row and its current members. A group
// that does not exist is not cached (its creation may come next).
void MessageWriter::Impl::load_groups(std::vector<std::uint64_t> ids) {
    std::erase_if(ids, [&](std::uint64_t id) { return groups.count(id) != 0; });
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    if (groups.size() + ids.size() > 50000) groups.clear();  // bounded: reloaded on use
    for (std::size_t off = 0; off < ids.size();) {
        const std::size_t n = std::min<std::size_t>(ids.size() - off, 256);
        const std::size_t padded = sql_batch::lookup_size(n);
        auto& st = db.prepare("SELECT id, name, owner_id, deleted_seq, created_ms FROM chat_groups WHERE id IN (" +
                              sql_batch::placeholders(padded) + ")");
        for (std::size_t i = 0; i < padded; ++i) st.setUInt64(static_cast<unsigned>(i + 1), ids[off + std::min(i, n - 1)]);
        std::unordered_map<std::uint64_t, GroupState> found;
        {
            std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
            while (rs->next()) {
                GroupState g;
                g.name = rs->getString(2).asStdString();
                g.owner = rs->getUInt64(3);
                g.deleted_seq = rs->getUInt64(4);
                g.created_ms = rs->getInt64(5);
                found.emplace(rs->getUInt64(1), std::move(g));
            }
        }
        auto& ms = db.prepare("SELECT group_id, user_id, role, joined_seq, delivered_seq, read_seq FROM group_members "
                              "WHERE left_seq = 0 AND group_id IN (" + sql_batch::placeholders(padded) + ")");
        for (std::size_t i = 0; i < padded; ++i) ms.setUInt64(static_cast<unsigned>(i + 1), ids[off + std::min(i, n - 1)]);
        std::unique_ptr<sql::ResultSet> rs(ms.executeQuery());
        while (rs->next()) {
            auto g = found.find(rs->getUInt64(1));
            if (g == found.end()) continue;
            g->second.members[rs->getUInt64(2)] = GroupMember{static_cast<client::GroupRole>(rs->getUInt(3)),
                                                               rs->getUInt64(4), rs->getUInt64(5), rs->getUInt64(6)};
        }
        for (auto& [id, g] : found) {
            g.rebuild_audience();
            groups.emplace(id, std::move(g));
        }
        off += n;
    }
}

void MessageWriter::Impl::drop_caches() {
    groups.clear();
    last_seq.clear();
    streams.clear();
    streams_by_session.clear();
}

void MessageWriter::Impl::fence(const std::vector<std::uint32_t>& shards) {
    // The shard rows of this batch must still carry our epoch; LOCK IN SHARE MODE makes a takeover
    // (an UPDATE of those rows) wait until this transaction ends, and fences every later batch.
    std::vector<std::uint32_t> lost;
    std::vector<std::pair<std::uint32_t, std::uint64_t>> stale;
    for (std::size_t off = 0; off < shards.size();) {
        const std::size_t n = std::min<std::size_t>(shards.size() - off, 512);
        const std::size_t padded = sql_batch::lookup_size(n);
        auto& st = db.prepare("SELECT shard, gen FROM shard_owner WHERE epoch = ? AND shard IN (" +
                              sql_batch::placeholders(padded) + ") LOCK IN SHARE MODE");
        st.setUInt64(1, deps.owner_epoch);
        for (std::size_t i = 0; i < padded; ++i)
            st.setUInt(static_cast<unsigned>(i + 2), shards[off + std::min(i, n - 1)]);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        std::unordered_map<std::uint32_t, std::uint64_t> held;
        while (rs->next()) held.emplace(rs->getUInt(1), rs->getUInt64(2));
        for (std::size_t i = 0; i < n; ++i) {
            const auto shard = shards[off + i];
            auto h = held.find(shard);
            if (h == held.end())
                lost.push_back(shard);
            else if (h->second != shard_gen[shard])
                stale.emplace_back(shard, h->second);
        }
        off += n;
    }
    if (!lost.empty()) throw FenceLost(std::move(lost));
    if (!stale.empty()) throw FenceStale(std::move(stale));
}

// Sync versions (the cursor of SyncConversations and GET /v1/conversations) come from one counter
// per user, bumped in the batch transaction. The counter rows stay locked until COMMIT, so the
// batches that touch a user commit in the order of that user's versions, whichever lane or
// transfer process writes them: a list sync can never pass a version that commits later. The
// rows are locked in user id order (sorted statements, in order): no deadlock between batches.
// Two statements per batch of up to 512 users, padded to a power of two (a few prepared
// statements, at most twice the rows): the upsert repeats the last user with an increment of 0
// (a no-op), the lookup repeats the last key.
void MessageWriter::Impl::sync_versions(const std::vector<WatermarkRow>& rows,
                                        std::vector<std::uint64_t>& versions) {
    // user -> its rows in this batch, then the next version to hand out
    std::map<std::uint64_t, std::uint64_t> per_user;
    for (const auto& w : rows)
        ++per_user[w.user];
    std::vector<std::pair<std::uint64_t, std::uint64_t>> users(per_user.begin(), per_user.end());
    for (std::size_t off = 0; off < users.size();) {
        const std::size_t n = std::min<std::size_t>(users.size() - off, 512);
        const std::size_t padded = std::bit_ceil(n);
        // One statement: the upsert answers each counter's new value (RETURNING gives the values
        // after ON DUPLICATE KEY UPDATE); a padding row (increment 0) answers the same value again.
        auto& up = db.prepare(sql_batch::values_statement(
            "INSERT INTO user_sync_versions (user_id, version) VALUES ", 2, padded,
            " ON DUPLICATE KEY UPDATE version = version + VALUES(version) RETURNING user_id, version"));
        unsigned p = 1;
        for (std::size_t i = 0; i < padded; ++i) {
            const auto& [user, count] = users[off + std::min(i, n - 1)];
            up.setUInt64(p++, user);
            up.setUInt64(p++, i < n ? count : 0);
        }
        std::unique_ptr<sql::ResultSet> rs(up.executeQuery());
        std::size_t found = 0;
        std::unordered_set<std::uint64_t> seen;
        while (rs->next()) {
            const auto user = rs->getUInt64(1);
            if (!seen.insert(user).second) continue;
            auto& c = per_user[user];
            c = rs->getUInt64(2) - c + 1;  // the first of this batch's versions of the user
            ++found;
        }
        if (found != n) throw std::runtime_error("sync version counters missing after upsert");
        off += n;
    }
    versions.clear();
    versions.reserve(rows.size());
    for (const auto& w : rows)
        versions.push_back(per_user[w.user]++);
}

void MessageWriter::Impl::write(std::vector<SendJob>& sends, std::vector<Item>& items,
                                const std::vector<WatermarkRow>& rows,
                                const std::vector<PushRow>& push_rows, const GroupWrites& gw,
                                std::uint64_t& fence_shards) {
    std::vector<const Item*> fresh;
    std::vector<std::uint32_t> shards;
    std::unordered_map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>>
        conv_rows;  // conv -> (max seq, -)
    for (const auto& it : items) {
        if (it.state != Item::State::pending) continue;
        fresh.push_back(&it);
        auto& c = conv_rows[it.conv];
        c.first = std::max(c.first, it.stored.seq);
    }
    for (const auto& r : rows) {
        shards.push_back(shard_of(r.conv));
        conv_rows.try_emplace(r.conv, 0, 0);
    }
    for (const auto& m : gw.sys) {
        auto& c = conv_rows[m.conv];
        c.first = std::max(c.first, m.seq);
    }
    for (const auto& m : gw.members)
        shards.push_back(shard_of(m.group));
    for (const auto& g : gw.groups)
        shards.push_back(shard_of(g.id));
    for (const auto& [conv, _] : conv_rows)
        shards.push_back(shard_of(conv));
    std::sort(shards.begin(), shards.end());
    shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
    fence_shards = shards.size();
    const auto now = wall_ms();

    clock.lap(stage_prepare);
    check_id_lease();
    fence(shards);
    clock.lap(stage_fence);
    if (deps.failpoints.eval("writer.before_insert"))
        throw std::runtime_error("failpoint writer.before_insert");

    // The messages of the sends, then the groups' system messages (one row layout).
    insert_rows(db,
                "INSERT INTO messages (conversation_id, seq, msg_id, sender_id, sender_device, "
                "client_msg_id, type, "
                "body, created_ms) VALUES ",
                9, fresh.size() + gw.sys.size(), "",
                [&](sql::PreparedStatement& st, unsigned& p, std::size_t i) {
                    if (i >= fresh.size()) {
                        const auto& m = gw.sys[i - fresh.size()];
                        st.setUInt64(p++, m.conv);
                        st.setUInt64(p++, m.seq);
                        st.setUInt64(p++, m.msg_id);
                        st.setUInt64(p++, m.actor);
                        st.setString(p++, m.device);
                        st.setString(p++, m.client_msg_id);
                        st.setUInt(p++, static_cast<unsigned>(client::GROUP_EVENT));
                        st.setString(p++, m.body);
                        st.setInt64(p++, m.created_ms);
                        return;
                    }
                    const Item& it = *fresh[i];
                    const auto& job = sends[it.job];
                    st.setUInt64(p++, it.conv);
                    st.setUInt64(p++, it.stored.seq);
                    st.setUInt64(p++, it.stored.msg_id);
                    st.setUInt64(p++, job.session.user_id());
                    st.setString(p++, job.session.device_id());
                    st.setString(p++, job.send.client_msg_id());
                    st.setUInt(p++, static_cast<unsigned>(job.send.type()));
                    st.setString(p++, job.send.type() == client::FILE
                                          ? job.send.file().SerializeAsString()
                                          : job.send.text());
                    st.setInt64(p++, it.stored.created_ms);
                });
    clock.lap(stage_messages);

    // Groups: the members' rows (a current member's full state from the lane's cache, which
    // is the only writer; or the left_seq of one who left), then each touched group's row.
    insert_rows(db,
                "INSERT INTO group_members (group_id, user_id, role, joined_seq, left_seq, "
                "delivered_seq, read_seq, "
                "updated_ms) VALUES ",
                8, gw.members.size(),
                " ON DUPLICATE KEY UPDATE role = IF(VALUES(left_seq) = 0, VALUES(role), role), "
                "joined_seq = IF(VALUES(left_seq) = 0, VALUES(joined_seq), joined_seq), left_seq = "
                "VALUES(left_seq), "
                "delivered_seq = IF(VALUES(left_seq) = 0, VALUES(delivered_seq), delivered_seq), "
                "read_seq = IF(VALUES(left_seq) = 0, VALUES(read_seq), read_seq), updated_ms = "
                "VALUES(updated_ms)",
                [&](sql::PreparedStatement& st, unsigned& p, std::size_t i) {
                    const auto& m = gw.members[i];
                    st.setUInt64(p++, m.group);
                    st.setUInt64(p++, m.user);
                    st.setUInt(p++, m.role);
                    st.setUInt64(p++, m.left != 0 ? m.left : m.joined);
                    st.setUInt64(p++, m.left);
                    st.setUInt64(p++, m.delivered);
                    st.setUInt64(p++, m.read);
                    st.setInt64(p++, now);
                });
    insert_rows(
        db,
        "INSERT INTO chat_groups (id, name, owner_id, last_seq, member_count, deleted_seq, "
        "created_ms, updated_ms) "
        "VALUES ",
        8, gw.groups.size(),
        " ON DUPLICATE KEY UPDATE name = VALUES(name), owner_id = VALUES(owner_id), "
        "last_seq = GREATEST(last_seq, VALUES(last_seq)), member_count = VALUES(member_count), "
        "deleted_seq = VALUES(deleted_seq), updated_ms = VALUES(updated_ms)",
        [&](sql::PreparedStatement& st, unsigned& p, std::size_t i) {
            const auto& g = gw.groups[i];
            st.setUInt64(p++, g.id);
            st.setString(p++, g.name);
            st.setUInt64(p++, g.owner);
            st.setUInt64(p++, g.last_seq);
            st.setUInt(p++, g.member_count);
            st.setUInt64(p++, g.deleted_seq);
            st.setInt64(p++, g.created_ms);
            st.setInt64(p++, now);
        });

    // Who may download a file: the participants of the conversations it was sent in. Not INSERT
    // IGNORE: a file the sweeper removed meanwhile must fail the batch (foreign key), not vanish.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> refs;  // (file, conv)
    for (const Item* it : fresh) {
        const auto& send = sends[it->job].send;
        if (send.type() == client::FILE) refs.emplace_back(send.file().file_id(), it->conv);
    }
    std::sort(refs.begin(), refs.end());
    refs.erase(std::unique(refs.begin(), refs.end()), refs.end());
    insert_rows(db, "INSERT INTO file_refs (file_id, conversation_id, created_ms) VALUES ", 3,
                refs.size(), " ON DUPLICATE KEY UPDATE file_id = file_id",
                [&](sql::PreparedStatement& st, unsigned& p, std::size_t i) {
                    st.setUInt64(p++, refs[i].first);
                    st.setUInt64(p++, refs[i].second);
                    st.setInt64(p++, now);
                });

    std::vector<std::uint64_t> versions;
    sync_versions(rows, versions);
    clock.lap(stage_versions);
    // unread = the peer's messages after my_read_seq. It grows by the peer's messages of this
    // batch; when a READ receipt sets my_read_seq (assignments run left to right, so the IF sees
    // the new value) it is counted again from the messages after it, this batch's included
    // (inserted above). A send moves no watermark of its sender (READ means read).
    insert_rows(
        db,
        "INSERT INTO user_conversations (user_id, conversation_id, peer_id, last_seq, "
        "my_delivered_seq, "
        "my_read_seq, peer_delivered_seq, peer_read_seq, unread, version, updated_ms) VALUES ",
        11, rows.size(),
        " ON DUPLICATE KEY UPDATE last_seq = GREATEST(last_seq, VALUES(last_seq)), "
        "my_delivered_seq = GREATEST(my_delivered_seq, VALUES(my_delivered_seq)), "
        "my_read_seq = GREATEST(my_read_seq, VALUES(my_read_seq)), "
        "peer_delivered_seq = GREATEST(peer_delivered_seq, VALUES(peer_delivered_seq)), "
        "peer_read_seq = GREATEST(peer_read_seq, VALUES(peer_read_seq)), "
        "unread = IF(VALUES(my_read_seq) > 0 AND my_read_seq = VALUES(my_read_seq), "
        "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = "
        "user_conversations.conversation_id AND m.seq > user_conversations.my_read_seq AND "
        "m.sender_id = user_conversations.peer_id), unread + VALUES(unread)), "
        "version = VALUES(version), updated_ms = VALUES(updated_ms)",
        [&](sql::PreparedStatement& st, unsigned& p, std::size_t i) {
            const auto& w = rows[i];
            st.setUInt64(p++, w.user);
            st.setUInt64(p++, w.conv);
            st.setUInt64(p++, w.peer);
            st.setUInt64(p++, w.last_seq);
            st.setUInt64(p++, w.my_delivered);
            st.setUInt64(p++, w.my_read);
            st.setUInt64(p++, w.peer_delivered);
            st.setUInt64(p++, w.peer_read);
            st.setUInt64(p++, w.received);
            st.setUInt64(p++, versions[i]);  // the user's sync cursor orders rows
            st.setInt64(p++, now);
        });
    clock.lap(stage_watermarks);

    // The outbox: (recipient, conversation) pairs; newest seq and sender of the batch.
    insert_rows(db,
                "INSERT INTO push_pending (user_id, conversation_id, "
                "from_user_id, up_to_seq, updated_ms, first_ms) VALUES ",
                6, push_rows.size(),
                " ON DUPLICATE KEY UPDATE from_user_id = "
                "IF(VALUES(up_to_seq) > up_to_seq, VALUES(from_user_id), "
                "from_user_id), up_to_seq = GREATEST(up_to_seq, "
                "VALUES(up_to_seq)), updated_ms = VALUES(updated_ms), "
                "first_ms = IF(first_ms = 0, VALUES(first_ms), first_ms)",
                [&](sql::PreparedStatement& st, unsigned& p, std::size_t i) {
                    const auto& row = push_rows[i];
                    st.setUInt64(p++, row.user);
                    st.setUInt64(p++, row.conv);
                    st.setUInt64(p++, row.from);
                    st.setUInt64(p++, conv_rows[row.conv].first);
                    st.setInt64(p++, now);
                    st.setInt64(p++, now);
                });
    clock.lap(stage_push);
    if (deps.failpoints.eval("writer.before_commit"))
        throw std::runtime_error("failpoint writer.before_commit");
}

// The batch of one one-to-one conversation's two watermark rows with at most one new message (a
// lone message, a message and the peer's receipt, receipts alone): one prepared CALL of
// im_store_pair (migration 009 does what write() does for it: fence, message, file reference, sync
// versions, both rows, the outbox row, and the COMMIT): one round trip. Same failpoints and fence
// outcomes as write().
void MessageWriter::Impl::write_pair(std::vector<SendJob>& sends, const Item* msg, const std::vector<WatermarkRow>& rows,
                                     const std::vector<PushRow>& push_rows) {
    clock.lap(stage_prepare);
    check_id_lease();
    if (deps.failpoints.eval("writer.before_insert")) throw std::runtime_error("failpoint writer.before_insert");
    // The procedure commits: a failure "before the commit" is one before the CALL (nothing stored).
    if (deps.failpoints.eval("writer.before_commit")) throw std::runtime_error("failpoint writer.before_commit");
    const auto conv = rows[0].conv;
    const auto shard = shard_of(conv);
    auto& st = db.prepare(
        "CALL im_store_pair(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    unsigned p = 1;
    st.setUInt64(p++, deps.owner_epoch);
    st.setUInt(p++, shard);
    st.setUInt64(p++, shard_gen[shard]);
    st.setUInt64(p++, conv);
    st.setInt64(p++, wall_ms());
    if (msg != nullptr) {
        const auto& job = sends[msg->job];
        const bool file = job.send.type() == client::FILE;
        st.setInt(p++, 1);
        st.setUInt64(p++, msg->stored.seq);
        st.setUInt64(p++, msg->stored.msg_id);
        st.setUInt64(p++, job.session.user_id());
        st.setString(p++, job.session.device_id());
        st.setString(p++, job.send.client_msg_id());
        st.setUInt(p++, static_cast<unsigned>(job.send.type()));
        st.setString(p++, file ? job.send.file().SerializeAsString() : job.send.text());
        st.setInt64(p++, msg->stored.created_ms);
        st.setUInt64(p++, file ? job.send.file().file_id() : 0);
    } else {
        st.setInt(p++, 0);
        st.setUInt64(p++, 0);
        st.setUInt64(p++, 0);
        st.setUInt64(p++, 0);
        st.setString(p++, "");
        st.setString(p++, std::string(16, '\0'));
        st.setUInt(p++, 0);
        st.setString(p++, "");
        st.setInt64(p++, 0);
        st.setUInt64(p++, 0);
    }
    for (const auto& w : rows) {
        st.setUInt64(p++, w.user);
        st.setUInt64(p++, w.last_seq);
        st.setUInt64(p++, w.my_delivered);
        st.setUInt64(p++, w.my_read);
        st.setUInt64(p++, w.peer_delivered);
        st.setUInt64(p++, w.peer_read);
        st.setUInt64(p++, w.received);
    }
    st.setUInt64(p++, push_rows.empty() ? 0 : push_rows[0].user);
    st.setUInt64(p++, push_rows.empty() ? 0 : push_rows[0].from);
    std::optional<std::uint64_t> gen;
    {
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        if (rs->next() && !rs->isNull(1)) gen = rs->getUInt64(1);
    }
    while (st.getMoreResults()) {
        std::unique_ptr<sql::ResultSet> more(st.getResultSet());
    }
    clock.lap(stage_messages);
    if (!gen) throw FenceLost({shard});
    if (*gen != shard_gen[shard]) throw FenceStale({{shard, *gen}});  // nothing was written
}

void MessageWriter::Impl::process(std::vector<SendJob>& sends, std::vector<ReceiptJob>& receipts,
                                  std::vector<GroupChangeJob>& changes) {
    std::vector<Item> items(sends.size());
    BatchResult result;
    clock = StageClock{};
    stream_checks(sends, items);

    // Receipts: participants only; one row per (conversation, user, kind) with the highest value.
    struct ReceiptAgg {
        std::size_t job;
        std::uint64_t up_to;
    };
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::array<std::optional<ReceiptAgg>, 2>>
        receipt_by_user_conv;
    std::vector<std::pair<std::uint64_t, std::uint64_t>>
        receipt_keys;  // (conv, user) in arrival order
    for (std::size_t i = 0; i < receipts.size(); ++i) {
        const auto& r = receipts[i].receipt;
        const auto user = receipts[i].session.user_id();
        // A group's receipts: members only, checked against the group's state in the batch.
        if (!(is_participant(r.conversation_id(), user) || valid_group_id(r.conversation_id())) || r.up_to_seq() == 0 ||
            (r.kind() != client::DELIVERED && r.kind() != client::READ)) {
            continue;  // silently ignored: watermarks are hints, a bad one changes nothing
        }
        auto [slot, inserted] = receipt_by_user_conv.try_emplace({r.conversation_id(), user});
        if (inserted) receipt_keys.emplace_back(r.conversation_id(), user);
        auto& agg = slot->second[r.kind() == client::READ ? 1 : 0];
        if (!agg || agg->up_to < r.up_to_seq()) agg = ReceiptAgg{i, r.up_to_seq()};
    }

    bool query_all = false;
    std::vector<bool> receipt_bounced(receipts.size(), false);
    // Group changes: what each attempt decided (recomputed by every attempt from the reloaded state).
    struct ChangeState {
        bool bounced = false;  // its shard is owned elsewhere now: answered retryably
        ChangeOutcome out;
        std::uint64_t seq = 0;
        std::shared_ptr<const std::string> deliver;
        std::vector<std::uint64_t> audience;
    };
    std::vector<ChangeState> change_states(changes.size());
    std::unordered_set<std::uint64_t> batch_groups;  // cached groups an attempt changed
    auto forget_groups = [&] {
        for (auto gid : batch_groups) groups.erase(gid);
        batch_groups.clear();
    };
    // Forget what this attempt assigned; items of shards owned elsewhere now go back.
    auto unassign = [&] {
        for (auto& it : items) {
            if (it.state == Item::State::pending) it.stored = Stored{};
        }
    };
    auto bounce_shards = [&](const std::vector<std::uint32_t>& lost) {
        std::unordered_set<std::uint32_t> gone(lost.begin(), lost.end());
        for (auto& it : items) {
            if ((it.state == Item::State::pending || it.state == Item::State::duplicate) &&
                gone.count(shard_of(it.conv)) != 0) {
                streams.erase(it.key);  // whoever owns it now decides the stream's next number
                it.state = Item::State::bounced;
            }
        }
        for (std::size_t i = 0; i < receipts.size(); ++i) {
            const auto conv = receipts[i].receipt.conversation_id();
            if (valid_any_conversation(conv) && gone.count(shard_of(conv)) != 0) receipt_bounced[i] = true;
        }
        for (std::size_t i = 0; i < changes.size(); ++i) {
            if (gone.count(shard_of(changes[i].change.group_id())) != 0) change_states[i].bounced = true;
        }
        std::erase_if(receipt_keys, [&](const auto& k) { return gone.count(shard_of(k.first)) != 0; });
    };
    bool redone = false;
    for (int attempt = 0; attempt < 4; ++attempt) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::uint64_t> touched;  // conversations whose counters this attempt moved
        try {
            dedupe(sends, items, query_all);
            apply_policy(sends, items);
            check_files(sends, items);
            // A block hides each of the pair from the other, both ways: a receipt between them
            // moves its sender's own watermark only (their other devices need it), never the
            // peer's view of it, and is pushed to no session of the peer.
            std::unordered_map<std::uint64_t, PairPolicy> receipt_policy;
            if (!receipt_keys.empty()) {
                std::vector<std::pair<std::uint64_t, std::uint64_t>> pairs;
                for (const auto& [conv, user] : receipt_keys) {
                    if (!valid_group_id(conv)) pairs.emplace_back(user, conversation_peer(conv, user));
                }
                if (!pairs.empty()) deps.policy.resolve(db, pairs, receipt_policy);
            }

            // Groups: the state of every group this batch names (changes, sends, receipts).
            std::vector<std::uint64_t> gids;
            for (const auto& c : changes) {
                if (valid_group_id(c.change.group_id())) gids.push_back(c.change.group_id());
            }
            for (const auto& it : items) {
                if (it.peer == 0 && it.conv != 0 &&
                    (it.state == Item::State::pending || it.state == Item::State::original_found))
                    gids.push_back(it.conv);
            }
            for (const auto& [conv, user] : receipt_keys) {
                if (valid_group_id(conv)) gids.push_back(conv);
            }
            if (!gids.empty()) load_groups(gids);

            // Seqs: the conversation's next numbers, in arrival order.
            std::vector<std::uint64_t> convs;
            for (const auto& it : items) {
                if (it.state == Item::State::pending) convs.push_back(it.conv);
            }
            for (const auto& c : changes) {
                if (valid_group_id(c.change.group_id())) convs.push_back(c.change.group_id());
            }
            for (const auto& [conv, user] : receipt_keys)
                convs.push_back(conv);
            load_last_seq(convs);
            std::unordered_map<std::uint64_t, std::uint64_t> before;  // to roll back on failure
            const auto now = wall_ms();

            // Group changes first, in arrival order: each is a GROUP_EVENT message at the group's
            // next seq, and the sends of this batch see the membership after them.
            GroupWrites gw;
            std::set<std::pair<std::uint64_t, std::uint64_t>> member_touch;  // (group, user)
            std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint64_t> left_at;
            std::map<std::uint64_t, std::uint64_t> seq_groups;  // group -> the last seq this batch gives it
            for (std::size_t i = 0; i < changes.size(); ++i) {
                auto& cs = change_states[i];
                cs.out = ChangeOutcome{};
                cs.seq = 0;
                cs.deliver.reset();
                cs.audience.clear();
                if (cs.bounced) continue;
                const auto& job = changes[i];
                const auto gid = job.change.group_id();
                const auto actor = job.session.user_id();
                GroupState* g = valid_group_id(gid) ? group(gid) : nullptr;
                if (g == nullptr) {
                    cs.out.code = client::NOT_FOUND;
                    cs.out.message = "no such group";
                    continue;
                }
                auto* ls = last_seq.find(gid);
                if (ls == nullptr) ls = &last_seq.put(gid, 0);
                batch_groups.insert(gid);
                cs.out = apply_group_change(*g, actor, job.change, *ls + 1, *ls);
                if (cs.out.code != client::ERROR_NONE) continue;
                before.try_emplace(gid, *ls);
                cs.seq = ++*ls;
                seq_groups[gid] = cs.seq;
                GroupWrites::SysMessage m;
                m.conv = gid;
                m.seq = cs.seq;
                m.msg_id = deps.ids.next();
                m.actor = actor;
                m.device = job.session.device_id();
                m.client_msg_id.resize(16);
                for (std::size_t b = 0; b < 16; b += 8) {
                    const auto r = rng();
                    std::memcpy(m.client_msg_id.data() + b, &r, 8);
                }
                m.body = cs.out.event.SerializeAsString();
                m.created_ms = now;
                auto env = deliver_frame(gid, m.seq, m.msg_id, now, actor, m.device, client::GROUP_EVENT,
                                         m.client_msg_id);
                *env.mutable_deliver()->mutable_group_event() = cs.out.event;
                cs.deliver = std::make_shared<const std::string>(env.SerializeAsString());
                cs.audience = *g->audience;
                for (auto u : cs.out.left) {
                    cs.audience.push_back(u);
                    left_at[{gid, u}] = cs.seq;
                    member_touch.emplace(gid, u);
                }
                member_touch.emplace(gid, actor);
                for (auto u : cs.out.event.user_ids()) member_touch.emplace(gid, u);
                gw.sys.push_back(std::move(m));
            }
            // Sends to a group: members only (the state after this batch's changes).
            for (auto& it : items) {
                if (it.state != Item::State::pending || it.peer != 0) continue;
                const auto sender = sends[it.job].session.user_id();
                const GroupState* g = group(it.conv);
                ErrorCode code = client::ERROR_NONE;
                if (g == nullptr || g->deleted_seq != 0)
                    code = client::NOT_FOUND;
                else if (g->members.count(sender) == 0)
                    code = client::FORBIDDEN;
                if (code == client::ERROR_NONE) continue;
                it.state = Item::State::answered;
                it.code = code;
                it.message = code == client::NOT_FOUND ? "no such group" : "not a member of this group";
                if (auto* st = streams.find(it.key)) st->refuse(sends[it.job].send.stream_seq(), code);
                refused_total.Increment();
            }
            for (auto& it : items) {
                if (it.state != Item::State::pending) continue;
                auto* ls = last_seq.find(it.conv);
                if (ls == nullptr) ls = &last_seq.put(it.conv, 0);
                before.try_emplace(it.conv, *ls);
                it.stored = Stored{deps.ids.next(), it.conv, ++*ls, now};
            }
            for (const auto& [conv, seq] : before)
                touched.push_back(conv);
            for (const auto& it : items) {
                if (it.state != Item::State::pending || it.peer != 0) continue;
                group(it.conv)->note_message(it.stored.seq, sends[it.job].session.user_id());
                batch_groups.insert(it.conv);
                seq_groups[it.conv] = std::max(seq_groups[it.conv], it.stored.seq);
            }

            // Watermark rows: a send moves the conversation's last seq and the recipient's unread
            // count, never a watermark (READ means read: only a Receipt moves one); a receipt
            // moves the user's and the peer's view.
            std::unordered_map<std::uint64_t, WatermarkRow> rows;  // key conv * 2 + (user is high)
            auto row = [&](std::uint64_t conv, std::uint64_t user) -> WatermarkRow& {
                auto& w = rows[conv * 2 + (conversation_high(conv) == user ? 1 : 0)];
                w.user = user;
                w.conv = conv;
                w.peer = conversation_peer(conv, user);
                return w;
            };
            std::vector<PushRow> push_rows;
            std::unordered_set<std::uint64_t> push_seen;
            std::set<std::pair<std::uint64_t, std::uint64_t>> group_push_seen;
            // Per group of the batch, its members without a live session: asked once (one lock),
            // not once per member and message.
            std::unordered_map<std::uint64_t, std::unordered_set<std::uint64_t>> offline_in_group;
            for (const auto& it : items) {
                if (it.state != Item::State::pending) continue;
                const auto sender = sends[it.job].session.user_id();
                const auto seq = it.stored.seq;
                if (it.peer == 0) {
                    // A group message: no per-member row; the outbox for each member offline.
                    const auto& audience = *group(it.conv)->audience;
                    auto [off, fresh] = offline_in_group.try_emplace(it.conv);
                    if (fresh) deps.online.offline_among(audience, off->second);
                    for (auto m : audience) {
                        if (m != sender && off->second.count(m) != 0 && group_push_seen.emplace(m, it.conv).second)
                            push_rows.push_back(PushRow{m, it.conv, sender});
                    }
                    continue;
                }
                auto& s = row(it.conv, sender);
                s.last_seq = std::max(s.last_seq, seq);
                auto& p = row(it.conv, it.peer);
                p.last_seq = std::max(p.last_seq, seq);
                ++p.received;
                if (!deps.online.online(it.peer) &&
                    push_seen.insert(it.conv * 2 + (it.peer == conversation_high(it.conv)))
                        .second) {
                    push_rows.push_back(PushRow{it.peer, it.conv, sender});
                }
            }
            result.receipts.clear();
            for (const auto& [conv, user] : receipt_keys) {
                const auto& aggs = receipt_by_user_conv[{conv, user}];
                // Never beyond what was committed before this batch: nobody can have seen the
                // messages of this batch yet (and a new row never starts with a watermark).
                const auto b = before.find(conv);
                const std::uint64_t known = b != before.end()
                                                ? b->second
                                                : (last_seq.find(conv) ? *last_seq.find(conv) : 0);
                if (valid_group_id(conv)) {
                    // A member's watermark; told to their other sessions and to the senders of
                    // the messages it passes (coalesced: one event per member and kind per batch).
                    GroupState* g = group(conv);
                    auto m = g != nullptr ? g->members.find(user) : decltype(g->members.end()){};
                    if (g == nullptr || m == g->members.end()) continue;  // not a member: ignored
                    for (int k = 0; k < 2; ++k) {
                        const auto& agg = aggs[static_cast<std::size_t>(k)];
                        if (!agg) continue;
                        const auto up_to = std::min(agg->up_to, known);
                        auto& mem = m->second;
                        const auto prev = k == 0 ? mem.delivered : mem.read;
                        if (up_to <= prev) continue;
                        if (k == 0) {
                            mem.delivered = up_to;
                        } else {
                            mem.read = up_to;
                            mem.delivered = std::max(mem.delivered, up_to);
                        }
                        batch_groups.insert(conv);
                        member_touch.emplace(conv, user);
                        ReceiptOutcome ro{receipts[agg->job].session, conv, 0,
                                          k == 0 ? client::DELIVERED : client::READ, up_to, true, {}};
                        ro.notify = g->senders_between(prev, up_to, user);
                        result.receipts.push_back(std::move(ro));
                    }
                    continue;
                }
                for (int k = 0; k < 2; ++k) {
                    if (!aggs[static_cast<std::size_t>(k)]) continue;
                    const auto up_to = std::min(aggs[static_cast<std::size_t>(k)]->up_to,
                                                known);  // never beyond what exists
                    if (up_to == 0) continue;
                    const bool blocked = receipt_policy[conv].blocked;
                    auto& mine = row(conv, user);
                    if (k == 0) {
                        mine.my_delivered = std::max(mine.my_delivered, up_to);
                    } else {
                        mine.my_read = std::max(mine.my_read, up_to);
                        mine.my_delivered =
                            std::max(mine.my_delivered, up_to);  // read implies delivered
                    }
                    if (!blocked) {
                        auto& theirs = row(conv, conversation_peer(conv, user));
                        if (k == 1) theirs.peer_read = std::max(theirs.peer_read, up_to);
                        theirs.peer_delivered = std::max(theirs.peer_delivered, up_to);
                    }
                    result.receipts.push_back(
                        ReceiptOutcome{receipts[aggs[static_cast<std::size_t>(k)]->job].session,
                                       conv, conversation_peer(conv, user),
                                       k == 0 ? client::DELIVERED : client::READ, up_to,
                                       !blocked, {}});
                }
            }
            std::vector<WatermarkRow> row_list;
            row_list.reserve(rows.size());
            for (auto& [_, w] : rows)
                row_list.push_back(w);
            for (const auto& [gid, user] : member_touch) {
                const GroupState* g = group(gid);
                GroupWrites::MemberRow r;
                r.group = gid;
                r.user = user;
                if (auto m = g->members.find(user); m != g->members.end()) {
                    r.role = static_cast<unsigned>(m->second.role);
                    r.joined = m->second.joined_seq;
                    r.delivered = m->second.delivered;
                    r.read = m->second.read;
                } else if (auto l = left_at.find({gid, user}); l != left_at.end()) {
                    r.left = l->second;
                } else {
                    continue;  // neither a member nor one who left (a refused change named them)
                }
                gw.members.push_back(r);
            }
            for (const auto& [gid, seq] : seq_groups) {
                const GroupState* g = group(gid);
                gw.groups.push_back(GroupWrites::GroupRow{gid, g->owner, seq, g->deleted_seq, g->name,
                                                          static_cast<std::uint32_t>(g->members.size()),
                                                          g->created_ms});
            }

            std::uint64_t fence_shards = 0;
            std::size_t fresh = 0;
            for (const auto& it : items)
                fresh += it.state == Item::State::pending ? 1 : 0;
            if (fresh > 0 || !row_list.empty() || !gw.empty()) {
                if (!receipt_keys.empty() && deps.failpoints.eval("writer.receipt_batch"))
                    throw std::runtime_error("failpoint writer.receipt_batch");
                // The commonest batch (one conversation's two rows, at most one message): one CALL.
                bool pair = deps.config.single_call && gw.empty() && fresh <= 1 && push_rows.size() <= 1 &&
                            row_list.size() == 2 && row_list[0].conv == row_list[1].conv &&
                            valid_conversation_id(row_list[0].conv);
                const Item* one = nullptr;
                for (const auto& it : items) {
                    if (it.state == Item::State::pending) one = &it;
                }
                if (one != nullptr && (one->peer == 0 || one->conv != row_list[0].conv)) pair = false;
                if (pair) {
                    fence_shards = 1;
                    db.transaction([&] { write_pair(sends, one, row_list, push_rows); }, false);
                    single_calls.Increment();
                } else {
                    db.transaction([&] { write(sends, items, row_list, push_rows, gw, fence_shards); });
                }
                // Committed, but the batch fails as if the COMMIT's reply had been lost.
                if (deps.failpoints.eval("writer.after_commit"))
                    throw std::runtime_error("failpoint writer.after_commit");
                clock.lap(stage_commit);
                batches.Increment();
                batch_size.Observe(static_cast<double>(fresh));
                commit_seconds.Observe(
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
                stored_total.Increment(static_cast<double>(fresh));
                receipts_total.Increment(static_cast<double>(result.receipts.size()));
                if (!push_rows.empty() && deps.on_push_pending) deps.on_push_pending();
            }
            break;
        } catch (const FenceLost& e) {
            for (auto conv : touched)
                last_seq.erase(conv);
            forget_groups();
            fence_failures.Increment();
            spdlog::info("writer: {} shard(s) of a batch are owned elsewhere now: their requests go back",
                         e.shards.size());
            bounce_shards(e.shards);
            unassign();
            if (attempt < 3) continue;
        } catch (const FenceStale& e) {
            batch_groups.clear();
            drop_caches();
            for (const auto& [shard, gen] : e.gens) shard_gen[shard] = gen;
            unassign();
            if (attempt < 3) continue;
        } catch (const sql::SQLException& e) {
            for (auto conv : touched)
                last_seq.erase(conv);
            forget_groups();
            if (mysql::is_duplicate_key(e) && !redone) {
                redone = true;
                // A message already stored that looked new (a resend after a restart): redo the
                // batch asking MySQL about every message. Stream numbers stay consumed.
                for (auto& it : items) {
                    if (it.state == Item::State::pending) it.stored = Stored{};
                }
                query_all = true;
                continue;
            }
            if (mysql::is_connection_error(e)) db.reset();
            spdlog::error("writer: batch of {} messages and {} receipts failed: {} ({})",
                          sends.size(), receipts.size(), e.what(), e.getErrorCode());
        } catch (const std::exception& e) {
            for (auto conv : touched)
                last_seq.erase(conv);
            forget_groups();
            spdlog::error("writer: batch of {} messages and {} receipts failed: {}", sends.size(),
                          receipts.size(), e.what());
        }
        // Failure: nothing of this batch is stored (or its COMMIT's reply was lost). Forget the
        // streams of every message that was accepted so a later number cannot overtake it, and
        // answer them retryably; keep the receipts.
        batch_failures.Increment();
        for (auto& it : items) {
            if (it.state == Item::State::pending) {
                unpushed.put(
                    DedupeKey{sends[it.job].session.user_id(), sends[it.job].send.client_msg_id()},
                    true);
            }
            if (it.state == Item::State::pending || it.state == Item::State::duplicate) {
                streams.erase(it.key);
                it.state = Item::State::answered;
                it.code = client::UNAVAILABLE;
                it.message = "storage unavailable, retry";
            }
        }
        result.receipts.clear();
        for (auto& cs : change_states) {  // not committed (or the reply was lost): retryable
            cs.out.code = client::UNAVAILABLE;
            cs.out.message = "storage unavailable, retry";
            cs.deliver.reset();
        }
        // Receipts are kept, never dropped: they go back to the front of the lane's pending
        // receipts (merged with newer ones of the same key) for the next batch; those of shards
        // owned elsewhere now are bounced below. Only at shutdown are they given up, counted:
        // the connector's SyncHint when its link drops makes every client resend its watermarks.
        std::vector<ReceiptJob> keep;
        for (std::size_t i = 0; i < receipts.size(); ++i) {
            if (!receipt_bounced[i]) keep.push_back(std::move(receipts[i]));
        }
        if (!keep.empty()) {
            std::lock_guard lock(mu);
            if (stopping) {
                receipts_dropped.Increment(static_cast<double>(keep.size()));
                spdlog::warn("writer: {} receipts not stored at shutdown", keep.size());
            } else {
                receipts_retried.Increment(static_cast<double>(keep.size()));
                receipt_queue.put_back(std::move(keep));
            }
        }
        std::this_thread::sleep_for(
            std::chrono::milliseconds(50));  // do not spin against a dead database
        break;
    }

    // Answers, in arrival order.
    result.sends.reserve(items.size());
    for (auto& it : items) {
        auto& job = sends[it.job];
        if (it.state == Item::State::bounced) {
            bounced_total.Increment();
            result.bounced_sends.push_back(std::move(job));
            continue;
        }
        SendOutcome out;
        out.session = job.session;
        out.link_id = job.link_id;
        out.request_id = job.request_id;
        out.peer = it.peer;
        if (it.peer == 0 && it.conv != 0) {
            if (const GroupState* g = group(it.conv)) out.audience = g->audience;
        }
        auto& r = out.result;
        r.set_client_msg_id(job.send.client_msg_id());
        const Item* src = it.state == Item::State::duplicate ? &items[it.dup_of] : &it;
        if (src->state == Item::State::answered && src->code != client::ERROR_NONE) {
            r.set_code(src->code);
            r.set_retryable(retryable(src->code));
            r.set_message(src->message);
            if (src->code == client::OUT_OF_ORDER) {
                if (auto* st = streams.find(src->key)) r.set_expected_stream_seq(st->expected);
            }
        } else {
            r.set_code(client::ERROR_NONE);
            r.set_msg_id(src->stored.msg_id);
            r.set_conversation_id(src->stored.conv);
            r.set_seq(src->stored.seq);
            r.set_created_ms(src->stored.created_ms);
            if (it.state == Item::State::pending) {
                const DedupeKey key{job.session.user_id(), job.send.client_msg_id()};
                recent.put(key, it.stored);
                if (unpushed.size() != 0) unpushed.erase(key);  // stored (and pushed) now
                auto env = deliver_frame(it.conv, it.stored.seq, it.stored.msg_id, it.stored.created_ms,
                                         job.session.user_id(), job.session.device_id(), job.send.type(),
                                         job.send.client_msg_id());
                auto* d = env.mutable_deliver();
                if (job.send.type() == client::FILE)
                    *d->mutable_file() = job.send.file();
                else
                    d->set_text(job.send.text());
                out.deliver = std::make_shared<const std::string>(env.SerializeAsString());
            } else {
                dup_total.Increment();
                if (it.state == Item::State::original_found && it.redeliver) {
                    out.deliver = it.redeliver;
                    redelivered_total.Increment();
                }
            }
        }
        result.sends.push_back(std::move(out));
    }
    for (std::size_t i = 0; i < changes.size(); ++i) {
        auto& cs = change_states[i];
        GroupChangeOutcome out;
        out.session = changes[i].session;
        out.link_id = changes[i].link_id;
        out.request_id = changes[i].request_id;
        if (cs.bounced) {
            out.result.set_code(client::UNAVAILABLE);
            out.result.set_message("the group moved to another transfer, retry");
        } else {
            out.result.set_code(cs.out.code);
            out.result.set_message(cs.out.message);
            out.result.set_seq(cs.seq);
            out.deliver = cs.deliver;
            out.audience = std::move(cs.audience);
        }
        result.changes.push_back(std::move(out));
    }
    for (std::size_t i = 0; i < receipts.size(); ++i) {
        if (!receipt_bounced[i]) continue;
        bounced_total.Increment();
        result.bounced_receipts.push_back(std::move(receipts[i]));
    }
    if (!result.sends.empty() || !result.receipts.empty() || !result.bounced_sends.empty() ||
        !result.bounced_receipts.empty() || !result.changes.empty())
        deps.on_result(std::move(result));
    clock.lap(stage_answer);
}

}  // namespace im::transfer

#pragma once
// The push outbox relay (DESIGN.md, delivery contract 7). The message writer upserts one
// push_pending(user_id, conversation_id, from_user_id, up_to_seq, updated_ms) row per recipient
// without a live session, in the transaction that commits the messages. This relay, on its own
// thread with its own MySQL and RabbitMQ connections, publishes those rows as PushEvents with
// publisher confirms and deletes a row only after its confirm, and only if it still holds the
// published up_to_seq (a row updated meanwhile stays and goes out again with the newer seq).
//
// Coalescing: a row is published once it has not changed for coalesce_delay, so a burst of
// messages makes one event. RabbitMQ down: rows wait in the table, the relay backs off (up to
// ~5 s), and the message writer never waits for it (notify() only takes a mutex for a moment).
//
// One relay works at a time per database: each holds a MySQL named lock to work; the others
// stand by and take over within poll_interval when the holder's connection goes away. So M
// transfer replicas publish each row once (apart from the at-least-once cases: a crash between
// the confirm and the delete, a confirm lost with the connection), and consumers dedupe on
// event_id = "<user>:<conversation>:<up_to_seq>".

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "im/server/mq.hpp"
#include "im/server/mysql.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace im {
class Metrics;
}
namespace im::config {
class Binder;
}
namespace im::events {
class PushEvent;
}

namespace im::transfer {

struct PushRelayConfig {
    // Publish a row only once it has not changed for this long: one event per burst.
    std::chrono::milliseconds coalesce_delay{1000};
    // A row is published after this long even if it keeps changing (a conversation that never
    // pauses for coalesce_delay is still pushed).
    std::chrono::milliseconds max_delay{10000};
    std::uint32_t batch = 200;  // rows per publish (one confirm round trip, one delete transaction)
    std::chrono::milliseconds poll_interval{500};  // also how soon a standby relay takes over
};

void bind(config::Binder& b,
          PushRelayConfig& c);  // keys push.coalesce_delay, push.batch, push.poll_interval

// One push_pending row, with the recipient's unread count in that conversation.
struct PendingPush {
    std::uint64_t user_id = 0;
    std::uint64_t conversation_id = 0;
    std::uint64_t from_user_id = 0;
    std::uint64_t up_to_seq = 0;
    std::int64_t updated_ms = 0;
    std::uint64_t unread = 0;  // user_conversations.unread (up_to_seq without a row)
};

// "<user>:<conversation>:<up_to_seq>"
std::string push_event_id(std::uint64_t user_id, std::uint64_t conversation_id,
                          std::uint64_t up_to_seq);
// unread = the recipient's unread count (the peer's messages after its read watermark when the
// row was read), created_ms = updated_ms.
events::PushEvent make_push_event(const PendingPush& row);

class PushRelay {
  public:
    PushRelay(mysql::MysqlConfig db, mq::MqConfig mq, PushRelayConfig cfg, Metrics& metrics);
    ~PushRelay();
    PushRelay(const PushRelay&) = delete;
    PushRelay& operator=(const PushRelay&) = delete;

    void start();
    // Waits for the current round (bounded by the MySQL and RabbitMQ timeouts); rows not yet
    // confirmed stay in the table for the next relay.
    void stop();
    // After a commit that wrote push_pending: look again once those rows are coalesce_delay old.
    // Cheap and non-blocking; callable from any thread.
    void notify();

  private:
    struct Round {
        bool failed = false;           // back off before the next round
        bool more = false;             // a full batch went out: go on at once
        bool standby = false;          // another relay holds the lock
        std::int64_t next_due_ms = 0;  // when the oldest remaining row becomes due (0: none)
    };

    void run();
    Round round();
    bool hold_lock();
    std::vector<PendingPush> select_due(std::int64_t quiet_cutoff_ms, std::int64_t first_cutoff_ms);
    void delete_published(const std::vector<const PendingPush*>& rows);
    void update_depth(Round& r, std::int64_t now_ms);
    // Waits until `until`, an earlier notify() due time, or stop(); false when stopping.
    bool wait(std::chrono::steady_clock::time_point until, bool wake_on_notify);

    mysql::MysqlConfig db_config_;
    PushRelayConfig cfg_;
    std::string lock_name_;
    std::unique_ptr<mysql::MysqlConnection> db_;
    mq::MqPublisher publisher_;
    std::optional<bool> leader_logged_;  // what the log last said (active / standby)
    std::uint32_t failed_rounds_ = 0;    // in a row (only the first one logs a warning)

    prometheus::Counter& published_;
    prometheus::Counter& mq_failures_;
    prometheus::Counter& db_failures_;
    prometheus::Gauge& outbox_rows_;
    prometheus::Gauge& outbox_oldest_seconds_;
    prometheus::Gauge& leader_;
    prometheus::Histogram& publish_seconds_;

    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::chrono::steady_clock::time_point notify_due_ =
        std::chrono::steady_clock::time_point::max();
    std::thread thread_;
};

}  // namespace im::transfer

#pragma once
// The push consumer of im-rest: takes PushEvents (proto/events.proto) from RabbitMQ and POSTs each
// to a configured webhook, which turns them into mobile/web notifications.
//
// Delivery is at least once: a message is acknowledged only after the webhook answered 2xx, so a
// crash or a lost broker connection redelivers it. The webhook dedupes on the event id, sent as
// "event_id" in the body and as the Idempotency-Key header. A failed call (transport error or a
// non-2xx status) is retried in process with exponential backoff while the message stays
// unacknowledged (prefetch 1 per thread: other threads go on); after max_attempts it is rejected
// without requeue and RabbitMQ moves it to the dead-letter queue. A body that is not a PushEvent is
// dead-lettered at once.
//
// Each of `threads` threads owns one consumer connection and blocks on it and on the webhook call
// (http_post_json); nothing runs on the HTTP server's I/O threads.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "im/server/mq.hpp"

namespace prometheus {
class Counter;
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

namespace im::rest {

struct PushWorkerConfig {
    bool enabled = false;
    std::string webhook_url;      // http:// or https://; required when enabled
    std::string webhook_secret;   // non-empty: X-IM-Signature = hex HMAC-SHA256(secret, body)
    std::string webhook_ca_file;  // https: CA bundle (empty: the system's)
    std::uint32_t max_attempts = 5;
    std::chrono::milliseconds retry_backoff{500};  // doubles per attempt, capped at 30 s
    std::chrono::milliseconds timeout{5000};       // per webhook call (connect included)
    std::uint32_t threads = 1;
};

void bind(config::Binder& b, PushWorkerConfig& c);  // keys push.*

// ---- Pure pieces (unit-tested) ----------------------------------------------------------------

// {"event_id","user_id","conversation_id","from_user_id","up_to_seq","unread","created_ms"}, in
// that order; ids are JSON integers (conversation ids can exceed 2^53).
std::string push_event_json(const events::PushEvent& event);
// Lowercase hex of HMAC-SHA256(key, data).
std::string hmac_sha256_hex(std::string_view key, std::string_view data);
// The wait after failed attempt number `attempt` (1-based): retry_backoff * 2^(attempt-1), capped.
std::chrono::milliseconds push_retry_delay(std::chrono::milliseconds retry_backoff,
                                           std::uint32_t attempt);
// The headers of one webhook call for `body`.
std::vector<std::pair<std::string, std::string>> push_webhook_headers(const std::string& event_id,
                                                                      const std::string& body,
                                                                      const std::string& secret);

inline constexpr std::chrono::milliseconds kMaxPushRetryDelay{30000};

class PushWorker {
  public:
    PushWorker(mq::MqConfig mq, PushWorkerConfig config, Metrics& metrics);
    ~PushWorker();
    PushWorker(const PushWorker&) = delete;
    PushWorker& operator=(const PushWorker&) = delete;

    void start();
    // Returns once every thread has finished its current webhook call. Messages not yet
    // acknowledged go back to the queue when the connections close.
    void stop();

  private:
    void run(std::uint32_t index);
    void handle(mq::MqConsumer& consumer, const mq::Delivery& delivery);
    // Sleeps up to `d`; false when stop() was called meanwhile.
    bool pause(std::chrono::milliseconds d);
    bool stopping();

    mq::MqConfig mq_;
    PushWorkerConfig config_;

    prometheus::Counter& delivered_;
    prometheus::Counter& dead_lettered_;
    prometheus::Counter& malformed_;
    prometheus::Counter& attempts_ok_;
    prometheus::Counter& attempts_http_error_;
    prometheus::Counter& attempts_transport_error_;
    prometheus::Counter& consumer_errors_;
    prometheus::Histogram& webhook_seconds_;

    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace im::rest

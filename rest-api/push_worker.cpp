#include "push_worker.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "http_client.hpp"
#include "im/proto/events.pb.h"
#include "im/server/config.hpp"
#include "im/server/metrics.hpp"

namespace im::rest {

namespace {
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long one consume call waits: bounds how late a thread notices stop().
constexpr milliseconds kConsumeWait{250};
constexpr milliseconds kMinReconnectDelay{250};
constexpr milliseconds kMaxReconnectDelay{5000};
}  // namespace

void bind(config::Binder& b, PushWorkerConfig& c) {
    b.bind("push.enabled", c.enabled);
    b.bind("push.webhook_url", c.webhook_url);
    b.bind("push.webhook_secret", c.webhook_secret, /*secret=*/true);
    b.bind("push.webhook_ca_file", c.webhook_ca_file);
    b.bind("push.max_attempts", c.max_attempts, 1, 100);
    b.bind_duration("push.retry_backoff", c.retry_backoff, milliseconds(1), kMaxPushRetryDelay);
    b.bind_duration("push.timeout", c.timeout, milliseconds(100), std::chrono::minutes(2));
    b.bind("push.threads", c.threads, 1, 64);
    // Required only when push.enabled (the caller's rule); a malformed one is a mistake anyway.
    if (!c.webhook_url.empty()) {
        const auto why = http_url_problem(c.webhook_url);
        b.require(!why.has_value(), "push.webhook_url",
                  "not a valid http:// or https:// URL (" + why.value_or("") + ")");
    }
}

std::string push_event_json(const events::PushEvent& event) {
    nlohmann::ordered_json j;
    j["event_id"] = event.event_id();
    j["user_id"] = event.user_id();
    j["conversation_id"] = event.conversation_id();
    j["from_user_id"] = event.from_user_id();
    j["up_to_seq"] = event.up_to_seq();
    j["unread"] = event.unread();
    j["created_ms"] = event.created_ms();
    // An event id with invalid UTF-8 cannot come from the relay; replace rather than throw.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
    if (sodium_init() < 0) throw std::runtime_error("libsodium initialisation failed");
    crypto_auth_hmacsha256_state state;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(key.data()),
                                key.size());
    crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(data.data()),
                                  data.size());
    crypto_auth_hmacsha256_final(&state, mac);
    char hex[crypto_auth_hmacsha256_BYTES * 2 + 1];
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
    return hex;
}

milliseconds push_retry_delay(milliseconds retry_backoff, std::uint32_t attempt) {
    auto delay = retry_backoff;
    for (std::uint32_t i = 1; i < attempt && delay < kMaxPushRetryDelay; ++i)
        delay *= 2;
    return std::min(delay, kMaxPushRetryDelay);
}

std::vector<std::pair<std::string, std::string>> push_webhook_headers(const std::string& event_id,
                                                                      const std::string& body,
                                                                      const std::string& secret) {
    std::vector<std::pair<std::string, std::string>> headers{{"Idempotency-Key", event_id}};
    if (!secret.empty()) headers.emplace_back("X-IM-Signature", hmac_sha256_hex(secret, body));
    return headers;
}

PushWorker::PushWorker(mq::MqConfig mq, PushWorkerConfig config, Metrics& metrics)
    : mq_(std::move(mq)),
      config_(std::move(config)),
      delivered_(metrics.counter("im_push_webhook_events_total", "Push events by final outcome.",
                                 {{"result", "delivered"}})),
      dead_lettered_(metrics.counter("im_push_webhook_events_total",
                                     "Push events by final outcome.",
                                     {{"result", "dead_lettered"}})),
      malformed_(metrics.counter("im_push_webhook_events_total", "Push events by final outcome.",
                                 {{"result", "malformed"}})),
      attempts_ok_(metrics.counter("im_push_webhook_attempts_total", "Webhook calls by result.",
                                   {{"result", "ok"}})),
      attempts_http_error_(metrics.counter("im_push_webhook_attempts_total",
                                           "Webhook calls by result.", {{"result", "http_error"}})),
      attempts_transport_error_(metrics.counter("im_push_webhook_attempts_total",
                                                "Webhook calls by result.",
                                                {{"result", "transport_error"}})),
      consumer_errors_(
          metrics.counter("im_push_consumer_errors_total",
                          "RabbitMQ errors of the push consumer (each one reconnects).")),
      webhook_seconds_(metrics.histogram("im_push_webhook_seconds", "Duration of one webhook call.",
                                         Metrics::latency_buckets())) {
    if (sodium_init() < 0) throw std::runtime_error("libsodium initialisation failed");
}

PushWorker::~PushWorker() {
    stop();
}

void PushWorker::start() {
    std::lock_guard lock(mu_);
    if (!threads_.empty()) return;
    stopping_ = false;
    for (std::uint32_t i = 0; i < config_.threads; ++i)
        threads_.emplace_back([this, i] { run(i); });
    spdlog::info("push worker: {} thread(s) consuming '{}' on {}:{}, webhook {}", config_.threads,
                 mq_.queue, mq_.host, mq_.port,
                 http_url_problem(config_.webhook_url) ? "(invalid)" : "configured");
}

void PushWorker::stop() {
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        threads.swap(threads_);
    }
    cv_.notify_all();
    for (auto& t : threads)
        t.join();
}

bool PushWorker::stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
}

bool PushWorker::pause(milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [this] { return stopping_; });
}

void PushWorker::run(std::uint32_t index) {
    mq::MqConsumer consumer(mq_, mq_.queue, /*prefetch=*/1);
    milliseconds reconnect_delay{0};
    while (!stopping()) {
        try {
            auto delivery = consumer.next(kConsumeWait);
            if (reconnect_delay.count() > 0) {
                spdlog::info("push worker {}: consuming '{}' again", index, mq_.queue);
                reconnect_delay = milliseconds(0);
            }
            if (delivery) handle(consumer, *delivery);
        } catch (const mq::MqError& e) {
            consumer_errors_.Increment();
            // The first failure of a streak is a warning; the retries while the broker stays
            // down are not worth a line each.
            if (reconnect_delay.count() == 0) {
                spdlog::warn("push worker {}: {}", index, e.what());
            } else {
                spdlog::debug("push worker {}: {}", index, e.what());
            }
            reconnect_delay =
                std::clamp(reconnect_delay * 2, kMinReconnectDelay, kMaxReconnectDelay);
            pause(reconnect_delay);
        }
    }
    consumer.disconnect();  // what is unacknowledged goes back to the queue
}

void PushWorker::handle(mq::MqConsumer& consumer, const mq::Delivery& delivery) {
    events::PushEvent event;
    if (!event.ParseFromString(delivery.body) || event.event_id().empty() || event.user_id() == 0) {
        malformed_.Increment();
        spdlog::warn("push worker: message '{}' ({} bytes) is not a PushEvent: dead-lettered",
                     delivery.message_id, delivery.body.size());
        consumer.reject(delivery);
        return;
    }
    const auto body = push_event_json(event);
    const auto headers = push_webhook_headers(event.event_id(), body, config_.webhook_secret);
    for (std::uint32_t attempt = 1;; ++attempt) {
        const auto result = http_post_json(config_.webhook_url, body, config_.timeout,
                                           config_.timeout, config_.webhook_ca_file, headers);
        webhook_seconds_.Observe(std::chrono::duration<double>(result.elapsed).count());
        if (result.success()) {
            attempts_ok_.Increment();
            if (consumer.ack(delivery)) {
                delivered_.Increment();
                spdlog::debug("push worker: event {} delivered (attempt {}, HTTP {})",
                              event.event_id(), attempt, result.status);
            }
            return;
        }
        (result.ok ? attempts_http_error_ : attempts_transport_error_).Increment();
        const auto why =
            result.ok ? "answered HTTP " + std::to_string(result.status) : result.detail;
        if (attempt >= config_.max_attempts) {
            if (consumer.reject(delivery)) dead_lettered_.Increment();
            spdlog::warn("push worker: event {} dead-lettered after {} attempt(s); webhook ({}) {}",
                         event.event_id(), attempt, result.where, why);
            return;
        }
        const auto delay = push_retry_delay(config_.retry_backoff, attempt);
        spdlog::info("push worker: event {} attempt {}/{}: webhook ({}) {}; retrying in {}ms",
                     event.event_id(), attempt, config_.max_attempts, result.where, why,
                     delay.count());
        // Stopping: leave it unacknowledged; the broker redelivers it to the next consumer.
        if (!pause(delay)) return;
    }
}

}  // namespace im::rest

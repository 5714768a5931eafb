#pragma once
// RabbitMQ through rabbitmq-c 0.11, synchronous, for a dedicated blocking thread (the push relay,
// the push worker). One object = one AMQP connection with one channel, never shared between
// threads. It connects lazily on the first call; any error drops the connection and the next call
// connects again (so a broker restart costs one failed call). Every step has a timeout: the TCP
// connect (connect_timeout), the login and every RPC (io_timeout), waiting for confirms
// (io_timeout), and the socket itself (TCP_USER_TIMEOUT and keepalive: unacknowledged writes and a
// silent peer fail within about io_timeout, so no send blocks forever).
//
// Every connection declares the topology first (idempotent; the same arguments every time):
//   exchange `exchange` (direct, durable) --kPushRoutingKey--> queue `queue` (durable,
//   x-dead-letter-exchange = `dead_letter_exchange`)
//   exchange `dead_letter_exchange` (fanout, durable) --> queue `dead_letter_queue` (durable)
// A message rejected without requeue (MqConsumer::reject) ends in the dead-letter queue.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace im::config {
class Binder;
}

namespace im::mq {

struct MqConfig {
    std::string host = "127.0.0.1";
    std::uint16_t port = 5672;
    std::string user = "im";
    std::string password;
    std::string vhost = "/";
    std::string exchange = "im.push";
    std::string queue = "im.push.events";
    std::string dead_letter_exchange = "im.push.dead";
    std::string dead_letter_queue = "im.push.dead";
    std::chrono::milliseconds connect_timeout{3000};
    std::chrono::milliseconds io_timeout{5000};
};

// Keys rabbitmq.* (the IM_RABBITMQ_* variables of scripts/services.sh).
void bind(config::Binder& b, MqConfig& c);

// The binding key of `queue` on `exchange`, and the routing key push events are published with.
inline constexpr std::string_view kPushRoutingKey = "push";

class MqError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct OutgoingMessage {
    std::string body;
    std::string message_id;  // AMQP message-id property (the event id)
};

struct PublishResult {
    std::vector<bool> confirmed;  // per message, in order: true once the broker acked it
    std::string error;            // why some were not confirmed (empty when all were)
    bool all_confirmed() const;
    std::size_t confirmed_count() const;
};

namespace detail {
class Connection;
}

// Publishes with publisher confirms (confirm.select on the channel).
class MqPublisher {
  public:
    explicit MqPublisher(MqConfig config);
    ~MqPublisher();
    MqPublisher(const MqPublisher&) = delete;
    MqPublisher& operator=(const MqPublisher&) = delete;

    // Publishes every message to config.exchange (persistent, application/x-protobuf, mandatory)
    // and waits up to io_timeout for the broker's basic.ack/nack of each. A message is confirmed
    // only by an ack: a nack, a timeout, a lost connection or a basic.return (no queue bound:
    // the connection is then dropped so the next one declares the topology again) leave it
    // unconfirmed, and the caller publishes it again later (consumers dedupe on message_id).
    // Never throws for broker or network trouble: the reason is in PublishResult::error.
    PublishResult publish_confirmed(const std::vector<OutgoingMessage>& messages,
                                    std::string_view routing_key = kPushRoutingKey);

    bool connected() const;
    void disconnect();
    const MqConfig& config() const { return config_; }

  private:
    MqConfig config_;
    std::unique_ptr<detail::Connection> conn_;
    std::uint64_t next_delivery_tag_ = 1;  // publish sequence number of the confirm channel
};

struct Delivery {
    std::uint64_t delivery_tag = 0;
    std::uint64_t connection_generation = 0;  // acks of an older connection are void
    bool redelivered = false;
    std::string message_id;
    std::string body;
};

// Consumes one queue with manual acknowledgements and a prefetch limit.
class MqConsumer {
  public:
    // `queue`: config.queue for the push worker, config.dead_letter_queue to read dead letters.
    MqConsumer(MqConfig config, std::string queue, std::uint16_t prefetch = 1);
    ~MqConsumer();
    MqConsumer(const MqConsumer&) = delete;
    MqConsumer& operator=(const MqConsumer&) = delete;

    // The next message, waiting up to `timeout` (nullopt when none came). Throws MqError when
    // the broker cannot be reached or the connection fails (dropped; the next call reconnects,
    // and the broker redelivers what was unacknowledged).
    std::optional<Delivery> next(std::chrono::milliseconds timeout);
    // Acknowledge / reject without requeue (-> dead-letter exchange). A delivery of an earlier
    // connection is not acknowledged (the broker already requeued it): returns false. Throws
    // MqError when the connection fails.
    bool ack(const Delivery& d);
    bool reject(const Delivery& d);

    bool connected() const;
    void disconnect();

  private:
    void open();

    MqConfig config_;
    std::string queue_;
    std::uint16_t prefetch_;
    std::unique_ptr<detail::Connection> conn_;
    std::uint64_t generation_ = 0;
};

}  // namespace im::mq

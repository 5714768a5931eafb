#include "im/server/mq.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>

#include "im/server/config.hpp"

namespace im::mq {

void bind(config::Binder& b, MqConfig& c) {
    using std::chrono::milliseconds;
    b.bind("rabbitmq.host", c.host);
    b.bind("rabbitmq.port", c.port, 1, 65535);
    b.bind("rabbitmq.user", c.user);
    b.bind("rabbitmq.password", c.password, /*secret=*/true);
    b.bind("rabbitmq.vhost", c.vhost);
    b.bind("rabbitmq.exchange", c.exchange);
    b.bind("rabbitmq.queue", c.queue);
    b.bind("rabbitmq.dead_letter_exchange", c.dead_letter_exchange);
    b.bind("rabbitmq.dead_letter_queue", c.dead_letter_queue);
    b.bind_duration("rabbitmq.connect_timeout", c.connect_timeout, milliseconds(100),
                    std::chrono::minutes(1));
    b.bind_duration("rabbitmq.io_timeout", c.io_timeout, milliseconds(100),
                    std::chrono::minutes(10));
    // The default exchange ("") cannot be declared, and AMQP names are short strings.
    for (const auto& [key, name] :
         {std::pair{"rabbitmq.exchange", &c.exchange}, std::pair{"rabbitmq.queue", &c.queue},
          std::pair{"rabbitmq.dead_letter_exchange", &c.dead_letter_exchange},
          std::pair{"rabbitmq.dead_letter_queue", &c.dead_letter_queue}}) {
        b.require(!name->empty() && name->size() <= 255, key, "must be 1 to 255 characters");
    }
    b.require(c.dead_letter_exchange != c.exchange, "rabbitmq.dead_letter_exchange",
              "must differ from rabbitmq.exchange");
    b.require(c.dead_letter_queue != c.queue, "rabbitmq.dead_letter_queue",
              "must differ from rabbitmq.queue");
}

bool PublishResult::all_confirmed() const {
    return std::all_of(confirmed.begin(), confirmed.end(), [](bool ok) { return ok; });
}

std::size_t PublishResult::confirmed_count() const {
    return static_cast<std::size_t>(std::count(confirmed.begin(), confirmed.end(), true));
}

namespace {

constexpr amqp_channel_t kChannel = 1;
constexpr int kFrameMax = 131072;
constexpr std::string_view kContentType = "application/x-protobuf";

amqp_bytes_t bytes(std::string_view s) {
    amqp_bytes_t b;
    b.len = s.size();
    b.bytes = const_cast<char*>(s.data());  // rabbitmq-c only reads through it
    return b;
}

std::string to_string(amqp_bytes_t b) {
    return b.bytes == nullptr ? std::string()
                              : std::string(static_cast<const char*>(b.bytes), b.len);
}

timeval to_timeval(std::chrono::milliseconds ms) {
    const auto count = std::max<std::chrono::milliseconds::rep>(ms.count(), 0);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(count / 1000);
    tv.tv_usec = static_cast<suseconds_t>((count % 1000) * 1000);
    return tv;
}

std::string status_text(int status) {
    return amqp_error_string2(status);
}

// Why an RPC failed: a library error, or the broker closing the channel or the connection (with
// its reply code and text, e.g. "406 PRECONDITION_FAILED - inequivalent arg ...").
std::string describe(const amqp_rpc_reply_t& r) {
    switch (r.reply_type) {
        case AMQP_RESPONSE_NORMAL:
            return "ok";
        case AMQP_RESPONSE_NONE:
            return "no reply";
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return status_text(r.library_error);
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                const auto* m = static_cast<const amqp_connection_close_t*>(r.reply.decoded);
                return "connection closed by the broker: " + std::to_string(m->reply_code) + " " +
                       to_string(m->reply_text);
            }
            if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                const auto* m = static_cast<const amqp_channel_close_t*>(r.reply.decoded);
                return "channel closed by the broker: " + std::to_string(m->reply_code) + " " +
                       to_string(m->reply_text);
            }
            return "unexpected broker method " + std::to_string(r.reply.id);
    }
    return "unknown reply";
}

void check(const amqp_rpc_reply_t& r, const std::string& what) {
    if (r.reply_type != AMQP_RESPONSE_NORMAL) throw MqError(what + " failed: " + describe(r));
}

// The kernel enforces what rabbitmq-c cannot: its sends wait without a deadline when the socket
// buffer is full. TCP_USER_TIMEOUT fails the connection when written data stays unacknowledged
// for io_timeout; keepalive notices a peer that vanished while we only wait for input.
void tune_socket(int fd, std::chrono::milliseconds io_timeout) {
    if (fd < 0) return;
    const auto user_timeout =
        static_cast<unsigned>(std::max<std::int64_t>(io_timeout.count(), 1000));
    const int secs = static_cast<int>(std::max<std::int64_t>(io_timeout.count() / 1000, 1));
    const int one = 1;
    const int interval = std::max(secs / 3, 1);
    const int probes = 3;
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof secs);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

}  // namespace

namespace detail {

// One logged-in AMQP connection with channel kChannel open and the topology declared.
class Connection {
  public:
    explicit Connection(const MqConfig& c) : state_(amqp_new_connection()) {
        if (state_ == nullptr) throw MqError("rabbitmq: cannot allocate a connection");
        try {
            open(c);
        } catch (...) {
            amqp_destroy_connection(state_);
            throw;
        }
        healthy_ = true;
    }

    ~Connection() {
        if (healthy_) {
            // Polite close (one RPC, bounded by io_timeout; it closes the channel too): the broker
            // requeues unacked deliveries either way, this only spares its log a "client
            // unexpectedly closed TCP connection".
            amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
        }
        amqp_destroy_connection(state_);
    }

    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    amqp_connection_state_t state() const { return state_; }
    // After an error the connection is only destroyed, never spoken to again.
    void mark_broken() { healthy_ = false; }

  private:
    void open(const MqConfig& c) {
        const std::string where = c.host + ":" + std::to_string(c.port);
        amqp_socket_t* socket = amqp_tcp_socket_new(state_);
        if (socket == nullptr) throw MqError("rabbitmq: cannot create a socket");
        const auto connect_tv = to_timeval(c.connect_timeout);
        const int rc = amqp_socket_open_noblock(socket, c.host.c_str(), c.port, &connect_tv);
        if (rc != AMQP_STATUS_OK)
            throw MqError("rabbitmq: connect to " + where + " failed: " + status_text(rc));
        tune_socket(amqp_socket_get_sockfd(socket), c.io_timeout);

        const auto io_tv = to_timeval(c.io_timeout);
        amqp_set_handshake_timeout(state_, &io_tv);
        amqp_set_rpc_timeout(state_, &io_tv);
        // No AMQP heartbeats: the owner thread may not call into the library for a while (a long
        // webhook call); the socket options above detect a dead peer instead.
        check(amqp_login(state_, c.vhost.c_str(), 0, kFrameMax, 0, AMQP_SASL_METHOD_PLAIN,
                         c.user.c_str(), c.password.c_str()),
              "rabbitmq: login to " + where + " as '" + c.user + "' (vhost '" + c.vhost + "')");
        amqp_channel_open(state_, kChannel);
        check(amqp_get_rpc_reply(state_), "rabbitmq: channel.open");
        declare_topology(c);
    }

    void declare_topology(const MqConfig& c) {
        amqp_exchange_declare(state_, kChannel, bytes(c.dead_letter_exchange), bytes("fanout"), 0,
                              1, 0, 0, amqp_empty_table);
        check(amqp_get_rpc_reply(state_),
              "rabbitmq: declare exchange '" + c.dead_letter_exchange + "'");
        amqp_queue_declare(state_, kChannel, bytes(c.dead_letter_queue), 0, 1, 0, 0,
                           amqp_empty_table);
        check(amqp_get_rpc_reply(state_), "rabbitmq: declare queue '" + c.dead_letter_queue + "'");
        amqp_queue_bind(state_, kChannel, bytes(c.dead_letter_queue), bytes(c.dead_letter_exchange),
                        bytes(""), amqp_empty_table);
        check(amqp_get_rpc_reply(state_), "rabbitmq: bind queue '" + c.dead_letter_queue + "'");

        amqp_exchange_declare(state_, kChannel, bytes(c.exchange), bytes("direct"), 0, 1, 0, 0,
                              amqp_empty_table);
        check(amqp_get_rpc_reply(state_), "rabbitmq: declare exchange '" + c.exchange + "'");
        amqp_table_entry_t dlx;
        dlx.key = bytes("x-dead-letter-exchange");
        dlx.value.kind = AMQP_FIELD_KIND_UTF8;
        dlx.value.value.bytes = bytes(c.dead_letter_exchange);
        amqp_table_t args;
        args.num_entries = 1;
        args.entries = &dlx;
        amqp_queue_declare(state_, kChannel, bytes(c.queue), 0, 1, 0, 0, args);
        check(amqp_get_rpc_reply(state_), "rabbitmq: declare queue '" + c.queue + "'");
        amqp_queue_bind(state_, kChannel, bytes(c.queue), bytes(c.exchange), bytes(kPushRoutingKey),
                        amqp_empty_table);
        check(amqp_get_rpc_reply(state_), "rabbitmq: bind queue '" + c.queue + "'");
    }

    amqp_connection_state_t state_;
    bool healthy_ = false;
};

}  // namespace detail

// ---- Publisher -------------------------------------------------------------------------------

MqPublisher::MqPublisher(MqConfig config) : config_(std::move(config)) {}
MqPublisher::~MqPublisher() = default;

bool MqPublisher::connected() const {
    return conn_ != nullptr;
}

void MqPublisher::disconnect() {
    conn_.reset();
}

PublishResult MqPublisher::publish_confirmed(const std::vector<OutgoingMessage>& messages,
                                             std::string_view routing_key) {
    using Clock = std::chrono::steady_clock;
    PublishResult result;
    result.confirmed.assign(messages.size(), false);
    if (messages.empty()) return result;

    auto break_connection = [&] {
        if (conn_) conn_->mark_broken();
        conn_.reset();
    };
    // The connection failed mid-batch: nothing of it counts as confirmed.
    auto drop = [&](std::string why) {
        break_connection();
        result.error = std::move(why);
        std::fill(result.confirmed.begin(), result.confirmed.end(), false);
    };

    if (!conn_) {
        try {
            auto conn = std::make_unique<detail::Connection>(config_);
            amqp_confirm_select(conn->state(), kChannel);
            check(amqp_get_rpc_reply(conn->state()), "rabbitmq: confirm.select");
            conn_ = std::move(conn);
            next_delivery_tag_ = 1;
        } catch (const MqError& e) {
            result.error = e.what();
            return result;
        }
    }
    const auto state = conn_->state();

    amqp_basic_properties_t props{};
    props._flags =
        AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.content_type = bytes(kContentType);
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    const std::uint64_t first = next_delivery_tag_;
    for (const auto& m : messages) {
        props.message_id = bytes(m.message_id);
        const int rc =
            amqp_basic_publish(state, kChannel, bytes(config_.exchange), bytes(routing_key),
                               /*mandatory=*/1, /*immediate=*/0, &props, bytes(m.body));
        if (rc != AMQP_STATUS_OK) {
            drop("rabbitmq: publish failed: " + status_text(rc));
            return result;
        }
        ++next_delivery_tag_;
    }
    const std::uint64_t last = next_delivery_tag_ - 1;

    // Confirms: basic.ack / basic.nack by delivery tag (possibly "multiple": every tag up to it).
    // An unroutable mandatory message comes back as basic.return + its header (whose message-id
    // names it) before its ack.
    std::vector<bool> resolved(messages.size(), false);
    std::vector<bool> returned(messages.size(), false);
    std::size_t pending = messages.size();
    std::string return_reason;
    bool awaiting_return_header = false;
    auto resolve = [&](std::uint64_t tag, bool multiple, bool acked) {
        const std::uint64_t from = multiple ? first : std::max(tag, first);
        for (std::uint64_t t = from; t <= std::min(tag, last); ++t) {
            const auto i = static_cast<std::size_t>(t - first);
            if (resolved[i]) continue;
            resolved[i] = true;
            --pending;
            result.confirmed[i] = acked && !returned[i];
        }
    };

    const auto deadline = Clock::now() + config_.io_timeout;
    while (pending > 0) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            drop("rabbitmq: no confirm within " + std::to_string(config_.io_timeout.count()) +
                 "ms for " + std::to_string(pending) + " message(s)");
            return result;
        }
        const auto tv = to_timeval(left);
        amqp_frame_t frame;
        const int rc = amqp_simple_wait_frame_noblock(state, &frame, &tv);
        if (rc == AMQP_STATUS_TIMEOUT) continue;  // the deadline check above decides
        if (rc != AMQP_STATUS_OK) {
            drop("rabbitmq: waiting for confirms failed: " + status_text(rc));
            return result;
        }
        if (frame.frame_type == AMQP_FRAME_HEADER) {
            if (awaiting_return_header) {
                awaiting_return_header = false;
                const auto* p =
                    static_cast<const amqp_basic_properties_t*>(frame.payload.properties.decoded);
                if (p != nullptr && (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) {
                    const auto id = to_string(p->message_id);
                    for (std::size_t i = 0; i < messages.size(); ++i) {
                        if (!resolved[i] && messages[i].message_id == id) returned[i] = true;
                    }
                }
            }
            continue;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD) continue;  // the body of a returned message
        const auto id = frame.payload.method.id;
        const void* decoded = frame.payload.method.decoded;
        if (id == AMQP_BASIC_ACK_METHOD) {
            const auto* ack = static_cast<const amqp_basic_ack_t*>(decoded);
            resolve(ack->delivery_tag, ack->multiple != 0, true);
        } else if (id == AMQP_BASIC_NACK_METHOD) {
            const auto* nack = static_cast<const amqp_basic_nack_t*>(decoded);
            resolve(nack->delivery_tag, nack->multiple != 0, false);
            if (result.error.empty())
                result.error = "rabbitmq: the broker refused (nack) a message";
        } else if (id == AMQP_BASIC_RETURN_METHOD) {
            const auto* ret = static_cast<const amqp_basic_return_t*>(decoded);
            awaiting_return_header = true;
            return_reason = std::to_string(ret->reply_code) + " " + to_string(ret->reply_text);
        } else if (id == AMQP_CHANNEL_CLOSE_METHOD || id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_rpc_reply_t r{};
            r.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
            r.reply = frame.payload.method;
            drop("rabbitmq: publish to exchange '" + config_.exchange + "' failed: " + describe(r));
            return result;
        }
    }
    amqp_maybe_release_buffers(state);
    if (!return_reason.empty()) {
        // Nothing was bound to take them: the topology was changed under us. Reconnecting
        // declares it again.
        break_connection();
        result.error = "rabbitmq: message(s) returned as unroutable by exchange '" +
                       config_.exchange + "' (" + return_reason + ")";
    }
    return result;
}

// ---- Consumer --------------------------------------------------------------------------------

MqConsumer::MqConsumer(MqConfig config, std::string queue, std::uint16_t prefetch)
    : config_(std::move(config)),
      queue_(std::move(queue)),
      prefetch_(std::max<std::uint16_t>(prefetch, 1)) {}

MqConsumer::~MqConsumer() = default;

bool MqConsumer::connected() const {
    return conn_ != nullptr;
}

void MqConsumer::disconnect() {
    conn_.reset();
}

void MqConsumer::open() {
    auto conn = std::make_unique<detail::Connection>(config_);
    const auto state = conn->state();
    amqp_basic_qos(state, kChannel, 0, prefetch_, 0);
    check(amqp_get_rpc_reply(state), "rabbitmq: basic.qos");
    amqp_basic_consume(state, kChannel, bytes(queue_), amqp_empty_bytes, 0, /*no_ack=*/0, 0,
                       amqp_empty_table);
    check(amqp_get_rpc_reply(state), "rabbitmq: consume queue '" + queue_ + "'");
    conn_ = std::move(conn);
    ++generation_;
}

std::optional<Delivery> MqConsumer::next(std::chrono::milliseconds timeout) {
    if (!conn_) open();
    const auto state = conn_->state();
    auto fail = [&](const std::string& why) {
        conn_->mark_broken();
        conn_.reset();
        throw MqError(why);
    };
    amqp_maybe_release_buffers(state);
    const auto tv = to_timeval(timeout);
    amqp_envelope_t envelope{};
    const auto reply = amqp_consume_message(state, &envelope, &tv, 0);
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
        Delivery d;
        d.delivery_tag = envelope.delivery_tag;
        d.connection_generation = generation_;
        d.redelivered = envelope.redelivered != 0;
        d.body = to_string(envelope.message.body);
        if ((envelope.message.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) {
            d.message_id = to_string(envelope.message.properties.message_id);
        }
        amqp_destroy_envelope(&envelope);
        return d;
    }
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        reply.library_error == AMQP_STATUS_TIMEOUT) {
        return std::nullopt;
    }
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // Something other than a delivery: read it. A closed channel or connection, or a
        // cancelled consumer (queue deleted), means reconnecting (which declares it again).
        amqp_frame_t frame;
        const auto io_tv = to_timeval(config_.io_timeout);
        const int rc = amqp_simple_wait_frame_noblock(state, &frame, &io_tv);
        if (rc != AMQP_STATUS_OK)
            fail("rabbitmq: reading from queue '" + queue_ + "' failed: " + status_text(rc));
        if (frame.frame_type == AMQP_FRAME_METHOD) {
            const auto id = frame.payload.method.id;
            if (id == AMQP_CHANNEL_CLOSE_METHOD || id == AMQP_CONNECTION_CLOSE_METHOD) {
                amqp_rpc_reply_t r{};
                r.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
                r.reply = frame.payload.method;
                fail("rabbitmq: consuming queue '" + queue_ + "': " + describe(r));
            }
            if (id == AMQP_BASIC_CANCEL_METHOD)
                fail("rabbitmq: the broker cancelled the consumer of '" + queue_ + "'");
        }
        return std::nullopt;
    }
    fail("rabbitmq: consuming queue '" + queue_ + "' failed: " + describe(reply));
    return std::nullopt;  // not reached
}

bool MqConsumer::ack(const Delivery& d) {
    if (!conn_ || d.connection_generation != generation_) return false;
    const int rc = amqp_basic_ack(conn_->state(), kChannel, d.delivery_tag, 0);
    if (rc != AMQP_STATUS_OK) {
        conn_->mark_broken();
        conn_.reset();
        throw MqError("rabbitmq: basic.ack failed: " + status_text(rc));
    }
    return true;
}

bool MqConsumer::reject(const Delivery& d) {
    if (!conn_ || d.connection_generation != generation_) return false;
    const int rc =
        amqp_basic_nack(conn_->state(), kChannel, d.delivery_tag, /*multiple=*/0, /*requeue=*/0);
    if (rc != AMQP_STATUS_OK) {
        conn_->mark_broken();
        conn_.reset();
        throw MqError("rabbitmq: basic.nack failed: " + status_text(rc));
    }
    return true;
}

}  // namespace im::mq

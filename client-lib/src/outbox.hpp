#pragma once
// The send side of the delivery contract, as pure logic (no I/O): every unacknowledged message,
// per conversation stream, in the order the app handed them over.
//
// A stream is (login epoch, conversation): per peer, or per group for a group's messages. Its
// messages carry stream_seq 1, 2, 3... in order and every Send carries stream_acked, the highest
// stream number that got a final answer. SENT and final errors remove a message (the server
// consumed its number either way); a retryable answer to the current attempt of a message makes the
// whole stream go again from its first unacknowledged message, in order, with the same
// client_msg_ids and stream numbers: at once for OUT_OF_ORDER, after a backoff otherwise. A new
// login epoch renumbers every stream from 1.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "imclient/types.hpp"

namespace imclient::detail {

using Clock = std::chrono::steady_clock;

struct OutMessage {
    std::string client_msg_id;  // 16 raw bytes
    std::uint64_t owner = 0;    // the user who queued it; 0: before any login (the next one's)
    std::uint64_t peer = 0;     // a one-to-one message's recipient (0 for a group message)
    std::uint64_t group = 0;    // a group message's group (Send.group_id)
    MessageType type = MessageType::text;
    std::string text;
    FileRef file;
    std::uint64_t stream_seq = 0;  // 0: not numbered in the current epoch yet
    std::uint64_t request_id = 0;  // the attempt in flight; 0: none
    Clock::time_point deadline{};

    // The stream the message belongs to: its peer, or its group with the top bit set (peers and
    // groups share the range 1 .. 2^31-1).
    std::uint64_t stream_key() const noexcept { return group != 0 ? kGroupStream | group : peer; }
    static constexpr std::uint64_t kGroupStream = 1ULL << 63;
};

class Outbox {
  public:
    struct Config {
        std::size_t max_in_flight = 256;  // per stream
        std::chrono::milliseconds request_timeout{10000};
        std::chrono::milliseconds retry_min{100};
        std::chrono::milliseconds retry_max{5000};
    };
    // Puts one Send on the wire and returns its request id, or 0 to refuse the message for good
    // (it is removed and handed back by pump()).
    using Transmit = std::function<std::uint64_t(const OutMessage&, std::uint64_t stream_acked)>;

    explicit Outbox(Config config) : config_(config) {}

    void add(OutMessage m);
    // A new login epoch: streams restart at 1; every message is sent again by pump().
    void restart_streams();
    // `user` logged in: messages without an owner become his; those of another user are removed
    // and returned (they must not go as `user`).
    std::vector<OutMessage> adopt(std::uint64_t user);
    // Sends what may go now (not waiting for a backoff, within the in-flight window), in order,
    // at most `budget` Sends in all (the session-wide bound). When the budget cannot cover every
    // stream, it is shared round-robin (starting at another stream each time), so one long backlog
    // does not starve the other conversations. Returns the messages transmit() refused.
    std::vector<OutMessage> pump(Clock::time_point now, const Transmit& transmit,
                                 std::size_t budget = static_cast<std::size_t>(-1));

    // A final answer (SENT or a final error): removes and returns the message; nullopt for an
    // answer to a message no longer queued (a late duplicate).
    std::optional<OutMessage> finish(std::string_view client_msg_id);
    // A retryable answer to attempt request_id of the message. Stale answers (an older attempt)
    // are ignored; returns whether the stream was reset. expected_stream_seq (OUT_OF_ORDER): the
    // number the server wants next; the unacknowledged run is renumbered from it when it differs.
    // rate_limited (RATE_LIMITED, with its retry_after_ms): the stream waits at least that long,
    // then starts again with one message in flight, doubling with every SENT (a slow start: the
    // resend does not hit the limit with the whole window again).
    bool retry(std::string_view client_msg_id, std::uint64_t request_id, bool out_of_order,
               std::uint64_t expected_stream_seq, Clock::time_point now,
               std::optional<std::chrono::milliseconds> rate_limited = std::nullopt);
    // Attempts past their deadline count as UNAVAILABLE.
    void expire(Clock::time_point now);

    bool contains(std::string_view client_msg_id) const;
    std::optional<std::string> message_of_request(std::uint64_t request_id) const;
    std::size_t size() const noexcept { return index_.size(); }
    std::uint64_t stream_acked(std::uint64_t stream_key) const;

  private:
    struct Stream {
        std::deque<OutMessage> queue;
        std::uint64_t next = 1;   // the next stream number to hand out
        std::uint64_t acked = 0;  // the highest number with a final answer
        Clock::time_point retry_at{};
        unsigned failures = 0;  // consecutive retryable answers
        std::size_t window = 0;  // in-flight cap after a RATE_LIMITED (0: max_in_flight)
    };

    std::chrono::milliseconds backoff(unsigned failures) const;

    Config config_;
    std::size_t rotation_ = 0;                              // where a short budget starts sharing
    std::map<std::uint64_t, Stream> streams_;               // by stream_key()
    std::unordered_map<std::string, std::uint64_t> index_;  // client_msg_id -> stream_key()
};

}  // namespace imclient::detail

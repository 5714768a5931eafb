#pragma once
// im-bench's abusive client (the `isolation` command, docs/BENCHMARKS.md): one session sending
// Sends to its friend as fast as it can, `window` of them always in flight, ignoring RATE_LIMITED
// and its retry hint (a refused send is replaced by a new one at once). It follows OUT_OF_ORDER's
// expected stream number only, so what passes the limits is stored like any message. Its friend
// is logged in and reads everything. Both run on a worker of their own.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "session.hpp"

namespace imbench {

class Flooder final : public SessionHandler {
  public:
    // pings: Ping frames instead of Sends (a flood of frames that carry no message).
    Flooder(Worker& worker, std::uint64_t window, std::size_t size, bool pings = false);

    // Logs in the sender (user `from`, to `to_user_id`) and its friend; on_login reports.
    void start(const tcp::endpoint& sender_ep, const tcp::endpoint& friend_ep, const std::string& sender_token,
               const std::string& friend_token, std::uint64_t to_user_id);
    void begin();  // starts the flood (any thread)
    void stop();   // stops sending new frames (any thread)
    void close();  // closes both sessions (any thread; waits)

    std::atomic<std::uint64_t> logged_in{0}, login_failed{0};
    std::atomic<std::uint64_t> sent{0}, acked{0}, rate_limited{0}, other_errors{0}, delivered{0};
    std::atomic<bool> kicked{false};
    std::string first_error();

    void on_login(Session& s, bool ok, const std::string& error) override;
    void on_envelope(Session& s, const pb::Envelope& e) override;
    void on_closed(Session& s, const std::string& why) override;

  private:
    void fill();

    Worker& worker_;
    Session sender_, friend_;
    std::uint64_t window_;
    bool pings_;
    std::string payload_;
    std::uint64_t to_user_ = 0;
    std::uint64_t next_stream_ = 1, inflight_ = 0, counter_ = 0;
    std::uint32_t nonce_;
    std::atomic<bool> sending_{false}, closing_{false};
    std::mutex mu_;
    std::string first_error_;
};

}  // namespace imbench

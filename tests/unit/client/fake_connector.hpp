#pragma once
// A scriptable im-connector inside the test process: an Asio TCP server on 127.0.0.1:0 speaking
// the real framing and client.proto. By default it answers Login (LoginResult with a new epoch),
// Ping (Pong), SyncConversations (an empty list) and SyncMessages (an empty page); a script sees
// every client frame first and may answer it itself. Every frame is recorded; tests wait on them.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "im/proto/client.pb.h"

namespace im::test {

using Envelope = im::client::Envelope;
using Clock = std::chrono::steady_clock;

struct ReceivedFrame {
    int conn = 0;  // 1, 2, ... in accept order
    Envelope frame;
    Clock::time_point at;
};

class FakeConnector {
  public:
    // Called on the server thread for every client frame; returns true when it handled the frame
    // (no default answer then).
    using Script = std::function<bool(FakeConnector&, int conn, const Envelope&)>;

    FakeConnector();
    ~FakeConnector();
    FakeConnector(const FakeConnector&) = delete;
    FakeConnector& operator=(const FakeConnector&) = delete;

    std::string address() const;
    void set_script(Script script);

    // Behaviour of the defaults.
    std::atomic<std::uint64_t> user_id{1};
    std::atomic<std::uint32_t> heartbeat_s{30};
    std::atomic<bool> answer_pings{true};
    std::atomic<bool> refuse_login{false};  // Error{UNAUTHENTICATED}
    std::atomic<bool> answer_login{true};

    // Server -> client, to connection `conn` (0: the latest). Any thread.
    void send(const Envelope& frame, int conn = 0);
    void send_batch(const std::vector<Envelope>& frames, int conn = 0);  // one write
    void drop(int conn = 0);                                             // close it
    void stop_listening();

    int connections() const;
    std::uint64_t last_epoch() const;
    std::vector<Clock::time_point> connect_times() const;
    std::vector<ReceivedFrame> frames() const;
    std::vector<ReceivedFrame> frames(Envelope::BodyCase kind) const;
    std::size_t count(Envelope::BodyCase kind) const;
    // Waits until pred() (checked after every received frame and every 10 ms) or the timeout.
    bool wait_for(const std::function<bool()>& pred,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) const;
    bool wait_count(Envelope::BodyCase kind, std::size_t n,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) const;

    // Helpers to build server frames.
    static Envelope login_result(std::uint64_t user, std::uint64_t epoch,
                                 std::uint32_t heartbeat_s);
    static Envelope deliver(std::uint64_t conv, std::uint64_t seq, std::uint64_t sender,
                            const std::string& text, const std::string& device = "phone");
    static Envelope send_ok(const Envelope& send, std::uint64_t conv, std::uint64_t seq);
    static Envelope send_error(const Envelope& send, im::client::ErrorCode code,
                               std::uint64_t expected_stream_seq = 0);

    // The default answers, usable from a script.
    void answer_default(int conn, const Envelope& frame);

  private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace im::test

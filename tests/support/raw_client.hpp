#pragma once
// A frame-level test client: connects to an im-connector, sends client.proto frames exactly as
// given (also malformed or forged ones) and records every frame it receives, so integration tests
// can assert on the raw frames, not only on what the client library shows.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "im/proto/client.pb.h"

namespace im::test {

class RawClient {
public:
    // Connects (plain TCP); throws on failure. With ca_file, TLS verified against it.
    RawClient(std::uint16_t port, std::string ca_file = {});
    ~RawClient();

    void send(const client::Envelope& env);
    void send_bytes(const std::string& raw);  // anything, e.g. a bad length prefix

    // Waits for the first unconsumed frame matching `pred`, removes and returns it.
    std::optional<client::Envelope> wait_for(const std::function<bool(const client::Envelope&)>& pred,
                                             std::chrono::milliseconds timeout = std::chrono::seconds(10));
    std::optional<client::Envelope> wait_body(client::Envelope::BodyCase body,
                                              std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // Every frame received so far (consumed or not), in order.
    std::vector<client::Envelope> all_frames() const;
    // Unconsumed frames matching, without waiting.
    std::vector<client::Envelope> take_all(client::Envelope::BodyCase body);
    bool closed() const;
    bool wait_closed(std::chrono::milliseconds timeout);

    // Login helper: sends Login and waits for LoginResult (or Error); returns the answer frame.
    client::Envelope login(const std::string& token, const std::string& device, std::uint64_t request_id = 1);
    std::uint64_t user_id = 0;
    std::uint64_t login_epoch = 0;

    // Send helper: builds a Send with a random client_msg_id (returned through cmid when given).
    client::Envelope make_send(std::uint64_t peer, const std::string& text, std::uint64_t stream_seq,
                               std::uint64_t stream_acked = 0, std::string* cmid = nullptr);
    std::uint64_t next_request_id() { return ++request_id_; }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::uint64_t request_id_ = 100;
};

std::string random_cmid();

}  // namespace im::test

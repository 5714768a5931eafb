#pragma once
// A client on a plain blocking socket that reads only when the test asks: for clients that stop
// reading (slow consumers), with a small receive buffer when asked. RawClient reads all the time
// on a thread of its own; this one lets the kernel buffers fill.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "im/proto/client.pb.h"
#include "im/wire/frame_codec.hpp"

namespace im::test {

class SocketClient {
public:
    // Connects to 127.0.0.1:port; rcvbuf > 0 sets SO_RCVBUF first. Throws on failure.
    explicit SocketClient(std::uint16_t port, int rcvbuf = 0);
    ~SocketClient();
    SocketClient(const SocketClient&) = delete;
    SocketClient& operator=(const SocketClient&) = delete;

    bool write_all(const std::string& bytes);
    bool send(const client::Envelope& env) { return write_all(wire::encode_frame(env)); }
    // Sends Login{token, device, protocol 1} and returns the answer (LoginResult or Error).
    std::optional<client::Envelope> login(const std::string& token, const std::string& device,
                                          std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // The next frame for which `pred` holds, reading as needed; nullopt after `timeout` or when
    // the socket closes. Every frame taken on the way, the match included, is appended to `seen`
    // when given; frames decoded after the match wait for the next call.
    std::optional<client::Envelope> read_until(const std::function<bool(const client::Envelope&)>& pred,
                                               std::chrono::milliseconds timeout,
                                               std::vector<client::Envelope>* seen = nullptr);
    std::optional<client::Envelope> read_frame(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        return read_until([](const client::Envelope&) { return true; }, timeout);
    }

    struct Drained {
        std::size_t bytes = 0;
        bool eof = false, reset = false, timed_out = false;
        std::vector<client::Envelope> frames;
    };
    // Reads everything until EOF or reset (or `timeout`), decoding the frames (those already
    // decoded and not taken come first).
    Drained drain(std::chrono::milliseconds timeout);

private:
    // One recv (at most 200 ms): false on EOF or an error other than a timeout.
    bool receive(std::size_t* bytes = nullptr, bool* eof = nullptr);

    int fd_ = -1;
    wire::FrameDecoder decoder_{64u << 20};
    std::deque<client::Envelope> pending_;  // decoded, not taken yet
};

}  // namespace im::test

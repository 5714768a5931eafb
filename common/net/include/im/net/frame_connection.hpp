#pragma once
// One framed, full-duplex connection (client session or connector<->transfer link), in the shape
// of the asio chat example but batched: every frame whole in a read is handed out straight from
// the read buffer, and everything queued while a write is in flight goes out in one async_write.
//
// Plain TCP connections keep no read buffer while idle: they wait for readability and then read
// into a per-thread buffer (STYLE.md "Performance habits"); only a partial frame is copied into
// the connection. TLS connections read through the SSL stream into the same per-thread buffer.
// The write queue is bounded in bytes: a peer that does not read is disconnected ("slow consumer").
// All calls happen on the connection's executor (single-threaded io_context or strand).

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "im/wire/frame_codec.hpp"

namespace google::protobuf {
class MessageLite;
}

namespace im::net {

enum class CloseReason : std::uint8_t {
    none,
    peer_closed,    // EOF or reset from the peer
    io_error,       // read/write error
    frame_error,    // zero length / oversize / unparsable (see FrameError)
    slow_consumer,  // write queue over its bound
    local,          // closed by this side (kick, shutdown, timeout)
};

const char* to_string(CloseReason r) noexcept;

struct ConnectionOptions {
    std::uint32_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
    std::size_t max_write_queue_bytes = 4 << 20;
};

class FrameConnection : public std::enable_shared_from_this<FrameConnection> {
public:
    using tcp = boost::asio::ip::tcp;
    using TlsStream = boost::asio::ssl::stream<tcp::socket>;

    virtual ~FrameConnection();
    FrameConnection(const FrameConnection&) = delete;
    FrameConnection& operator=(const FrameConnection&) = delete;

    // Queues one frame; false when the connection is closing or the write queue overflowed (the
    // connection is then closed with slow_consumer).
    bool send(const google::protobuf::MessageLite& msg);
    // Queues a pre-serialized message body (the header is added here).
    bool send_body(std::string_view body);
    // Closes after everything queued has been written (bounded by linger).
    void close_after_flush(std::chrono::milliseconds linger = std::chrono::seconds(2));
    // Closes now; queued data is dropped. on_closed() runs once.
    void close(CloseReason reason = CloseReason::local);
    // Reads nothing more until steady time `until_ms` (abuse limits): the frames of the read in
    // progress are still handed out, the peer's next ones wait in the kernel buffers, so a peer
    // over its rate costs no CPU until then (TCP backpressure). Writes go on.
    void pause_reading_until(std::int64_t until_ms);
    // Ends a pause early (what it waited for happened).
    void resume_reading();

    bool is_open() const noexcept { return state_ == State::open; }
    std::size_t queued_bytes() const noexcept { return out_.size() + writing_.size(); }
    std::int64_t last_read_ms() const noexcept { return last_read_ms_; }
    const std::string& peer() const noexcept { return peer_; }
    boost::asio::any_io_executor executor() const;
    std::uint64_t frames_in() const noexcept { return frames_in_; }
    std::uint64_t frames_out() const noexcept { return frames_out_; }

protected:
    FrameConnection(tcp::socket socket, ConnectionOptions options);
    FrameConnection(std::unique_ptr<TlsStream> tls, ConnectionOptions options);

    // Starts reading (after a TLS handshake when TLS). Call once the object is owned by a shared_ptr.
    void start();
    // A whole frame body. The view is valid during the call only.
    virtual void on_frame(std::string_view body) = 0;
    // The connection is closed (once, posted: never re-entered from inside on_frame). `error` is
    // set for frame errors (a subclass that wants to answer a bad frame overrides on_frame_error).
    virtual void on_closed(CloseReason reason, wire::FrameError error) = 0;
    // Called after a batch of frames read at once was handled (a good moment to flush coalesced work).
    virtual void on_read_batch_done() {}
    // Everything queued has been written to the socket (called after the write that emptied the
    // queue; it may queue more).
    virtual void on_write_queue_empty() {}
    // A framing error (the stream cannot be resynchronised). Default: close with frame_error. A
    // subclass may queue an error frame and close_after_flush() instead.
    virtual void on_frame_error(wire::FrameError error) { finish_close(CloseReason::frame_error, error); }

    void set_max_frame_bytes(std::uint32_t n) { decoder_ = wire::FrameDecoder(n); }
    void finish_close(CloseReason reason, wire::FrameError error);

private:
    enum class State : std::uint8_t { open, draining, closed };
    void wait_readable();
    void read_tls();
    void read_next();  // wait_readable() or read_tls(), unless reading is paused
    bool read_paused() const;
    void handle_bytes(const char* data, std::size_t n);
    void flush();
    void on_written(const boost::system::error_code& ec);

    std::unique_ptr<tcp::socket> plain_;
    std::unique_ptr<TlsStream> tls_;
    ConnectionOptions options_;
    wire::FrameDecoder decoder_;
    std::string out_;      // frames queued while a write is in flight
    std::string writing_;  // the frames of the write in flight
    bool write_in_flight_ = false;
    State state_ = State::open;
    std::int64_t last_read_ms_ = 0;
    std::uint64_t frames_in_ = 0, frames_out_ = 0;
    std::string peer_;
    std::unique_ptr<boost::asio::steady_timer> linger_timer_;
    std::int64_t read_paused_until_ = 0;
    std::unique_ptr<boost::asio::steady_timer> resume_timer_;  // only once a pause happened
};

std::int64_t steady_ms();

}  // namespace im::net

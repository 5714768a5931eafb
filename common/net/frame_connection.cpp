#include "im/net/frame_connection.hpp"

#include <google/protobuf/message_lite.h>

#include <algorithm>
#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

namespace im::net {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr std::size_t kReadBufferBytes = 64 * 1024;
constexpr int kMaxReadsPerWakeup = 8;  // fairness between connections of one thread
constexpr std::size_t kKeepWriteCapacity = 16 * 1024;  // larger write buffers are released when idle

char* thread_read_buffer() {
    thread_local std::unique_ptr<char[]> buf(new char[kReadBufferBytes]);
    return buf.get();
}
}  // namespace

std::int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

const char* to_string(CloseReason r) noexcept {
    switch (r) {
        case CloseReason::none: return "none";
        case CloseReason::peer_closed: return "peer closed";
        case CloseReason::io_error: return "I/O error";
        case CloseReason::frame_error: return "frame error";
        case CloseReason::slow_consumer: return "slow consumer";
        case CloseReason::local: return "closed locally";
    }
    return "unknown";
}

FrameConnection::FrameConnection(tcp::socket socket, ConnectionOptions options)
    : plain_(std::make_unique<tcp::socket>(std::move(socket))),
      options_(options),
      decoder_(options.max_frame_bytes),
      last_read_ms_(steady_ms()) {
    error_code ec;
    const auto ep = plain_->remote_endpoint(ec);
    if (!ec) peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    plain_->set_option(tcp::no_delay(true), ec);
    plain_->non_blocking(true, ec);
}

FrameConnection::FrameConnection(std::unique_ptr<TlsStream> tls, ConnectionOptions options)
    : tls_(std::move(tls)), options_(options), decoder_(options.max_frame_bytes), last_read_ms_(steady_ms()) {
    error_code ec;
    const auto ep = tls_->lowest_layer().remote_endpoint(ec);
    if (!ec) peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    tls_->lowest_layer().set_option(tcp::no_delay(true), ec);
}

FrameConnection::~FrameConnection() = default;

asio::any_io_executor FrameConnection::executor() const {
    return plain_ ? plain_->get_executor() : tls_->get_executor();
}

void FrameConnection::start() {
    if (plain_) wait_readable();
    else read_tls();
}

void FrameConnection::pause_reading_until(std::int64_t until_ms) {
    read_paused_until_ = std::max(read_paused_until_, until_ms);
}

void FrameConnection::resume_reading() {
    if (read_paused_until_ == 0) return;
    read_paused_until_ = 0;
    // A resume timer still waiting is cancelled and reading starts now; one whose handler is
    // already queued (cancel() finds nothing to cancel) starts reading itself.
    if (resume_timer_ && resume_timer_->cancel() > 0 && state_ != State::closed) start();
}

bool FrameConnection::read_paused() const { return read_paused_until_ > steady_ms(); }

void FrameConnection::read_next() {
    if (state_ == State::closed) return;
    if (!read_paused()) {
        start();
        return;
    }
    if (!resume_timer_) resume_timer_ = std::make_unique<asio::steady_timer>(executor());
    resume_timer_->expires_after(std::chrono::milliseconds(read_paused_until_ - steady_ms()));
    resume_timer_->async_wait([self = shared_from_this()](const error_code& ec) {
        if (!ec) self->read_next();
    });
}

void FrameConnection::wait_readable() {
    plain_->async_wait(tcp::socket::wait_read, [self = shared_from_this()](const error_code& ec) {
        if (self->state_ == State::closed) return;
        if (ec) {
            self->close(ec == asio::error::operation_aborted ? CloseReason::local : CloseReason::io_error);
            return;
        }
        char* buf = thread_read_buffer();
        for (int i = 0; i < kMaxReadsPerWakeup && self->state_ != State::closed && !self->read_paused(); ++i) {
            error_code rec;
            const std::size_t n = self->plain_->read_some(asio::buffer(buf, kReadBufferBytes), rec);
            if (rec == asio::error::would_block || rec == asio::error::try_again) break;
            if (rec) {
                self->close(rec == asio::error::eof || rec == asio::error::connection_reset ? CloseReason::peer_closed
                                                                                              : CloseReason::io_error);
                return;
            }
            self->handle_bytes(buf, n);
            if (n < kReadBufferBytes) break;  // drained the socket
        }
        if (self->state_ != State::closed) {
            self->on_read_batch_done();
            self->flush();
            self->read_next();
        }
    });
}

void FrameConnection::read_tls() {
    // An asynchronous read may complete after other connections of this thread ran, so TLS
    // connections need a buffer of their own (allocated only while a read is pending).
    auto buf = std::make_shared<std::array<char, 16 * 1024>>();
    tls_->async_read_some(asio::buffer(*buf), [self = shared_from_this(), buf](const error_code& ec, std::size_t n) {
        if (self->state_ == State::closed) return;
        if (ec) {
            self->close(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ? CloseReason::peer_closed
                                                                                             : CloseReason::io_error);
            return;
        }
        self->handle_bytes(buf->data(), n);
        if (self->state_ != State::closed) {
            self->on_read_batch_done();
            self->flush();
            self->read_next();
        }
    });
}

void FrameConnection::handle_bytes(const char* data, std::size_t n) {
    last_read_ms_ = steady_ms();
    const auto err = decoder_.feed(data, n, [this](std::string_view body) {
        ++frames_in_;
        on_frame(body);
        return state_ == State::open;
    });
    if (err != wire::FrameError::none && state_ == State::open) on_frame_error(err);
}

bool FrameConnection::send(const google::protobuf::MessageLite& msg) {
    if (state_ != State::open) return false;
    wire::append_frame(out_, msg);
    ++frames_out_;
    if (queued_bytes() > options_.max_write_queue_bytes) {
        close(CloseReason::slow_consumer);
        return false;
    }
    if (!write_in_flight_) {
        // Coalesce: everything queued by the current handler goes out in one write.
        asio::post(executor(), [self = shared_from_this()] { self->flush(); });
    }
    return true;
}

bool FrameConnection::send_body(std::string_view body) {
    if (state_ != State::open) return false;
    wire::append_raw_frame(out_, body);
    ++frames_out_;
    if (queued_bytes() > options_.max_write_queue_bytes) {
        close(CloseReason::slow_consumer);
        return false;
    }
    if (!write_in_flight_) asio::post(executor(), [self = shared_from_this()] { self->flush(); });
    return true;
}

void FrameConnection::flush() {
    if (write_in_flight_ || out_.empty() || state_ == State::closed) return;
    writing_.swap(out_);
    write_in_flight_ = true;
    auto done = [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_written(ec); };
    if (plain_) asio::async_write(*plain_, asio::buffer(writing_), std::move(done));
    else asio::async_write(*tls_, asio::buffer(writing_), std::move(done));
}

void FrameConnection::on_written(const error_code& ec) {
    write_in_flight_ = false;
    if (writing_.capacity() > kKeepWriteCapacity) std::string().swap(writing_);
    else writing_.clear();
    if (state_ == State::closed) return;
    if (ec) {
        close(CloseReason::io_error);
        return;
    }
    if (!out_.empty()) {
        flush();
    } else {
        if (out_.capacity() > kKeepWriteCapacity) std::string().swap(out_);
        if (state_ == State::draining) close(CloseReason::local);
        else on_write_queue_empty();
    }
}

void FrameConnection::close_after_flush(std::chrono::milliseconds linger) {
    if (state_ != State::open) return;
    state_ = State::draining;
    if (!write_in_flight_ && out_.empty()) {
        close(CloseReason::local);
        return;
    }
    flush();
    linger_timer_ = std::make_unique<asio::steady_timer>(executor(), linger);
    linger_timer_->async_wait([self = shared_from_this()](const error_code& ec) {
        if (!ec) self->close(CloseReason::local);
    });
}

void FrameConnection::close(CloseReason reason) { finish_close(reason, wire::FrameError::none); }

void FrameConnection::finish_close(CloseReason reason, wire::FrameError error) {
    if (state_ == State::closed) return;
    state_ = State::closed;
    error_code ec;
    if (linger_timer_) linger_timer_->cancel();
    if (resume_timer_) resume_timer_->cancel();
    if (plain_) {
        plain_->shutdown(tcp::socket::shutdown_both, ec);
        plain_->close(ec);
    } else {
        tls_->lowest_layer().shutdown(tcp::socket::shutdown_both, ec);
        tls_->lowest_layer().close(ec);
    }
    std::string().swap(out_);
    asio::post(executor(), [self = shared_from_this(), reason, error] { self->on_closed(reason, error); });
}

}  // namespace im::net

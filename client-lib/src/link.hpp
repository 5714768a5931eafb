#pragma once
// One connection to an im-connector: TCP (or TLS), the frame codec, a gathered write queue.
// Everything runs on the client's io_context thread. The Link reports to its handler what it
// detects itself (open, frames, a closed connection); a close() by the owner is silent.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>

#include "im/proto/client.pb.h"
#include "im/wire/frame_codec.hpp"

namespace imclient::detail {

class Link;

class LinkHandler {
  public:
    virtual void on_link_open(Link& link) = 0;
    // Returns false to stop handling the rest of this read (the link was closed).
    virtual bool on_link_frame(Link& link, const im::client::Envelope& frame) = 0;
    // After every frame of one read was handled: the place to flush coalesced work.
    virtual void on_link_batch_end(Link& link) = 0;
    virtual void on_link_closed(Link& link, const std::string& reason) = 0;

  protected:
    ~LinkHandler() = default;
};

class Link : public std::enable_shared_from_this<Link> {
  public:
    struct Config {
        std::string host;
        std::string port;
        boost::asio::ssl::context* tls = nullptr;  // non-null: TLS
        std::string tls_server_name;               // empty: host
        std::chrono::milliseconds connect_timeout{5000};
        std::uint32_t max_receive_frame_bytes = im::wire::kDefaultMaxFrameBytes;
        std::size_t max_write_queue_bytes = 16 * 1024 * 1024;
    };

    Link(boost::asio::io_context& io, Config config, LinkHandler& handler);

    void start();
    // Queues one frame; false when the link is closed or its write queue overflowed (the link is
    // then closed and reported).
    bool send(const im::client::Envelope& frame);
    void close();  // silent: no on_link_closed

    bool is_open() const noexcept { return open_ && !closed_; }
    bool was_opened() const noexcept { return open_; }
    std::string address() const { return config_.host + ":" + config_.port; }

  private:
    boost::asio::awaitable<void> run();
    void fail(const std::string& reason);
    void start_write();
    boost::asio::ip::tcp::socket& lowest();

    boost::asio::io_context& io_;
    Config config_;
    LinkHandler& handler_;
    boost::asio::ip::tcp::socket socket_;
    std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> tls_;
    boost::asio::steady_timer connect_timer_;
    im::wire::FrameDecoder decoder_;
    im::client::Envelope frame_;  // reused for every received frame
    std::string pending_;         // frames queued while a write is in flight
    std::string writing_;         // the frames of the write in flight
    bool writing_now_ = false;
    bool open_ = false;
    bool closed_ = false;
    bool timed_out_ = false;
};

}  // namespace imclient::detail

#pragma once
// im-bench's chat sessions: many TCP connections per I/O thread, speaking the client protocol
// directly (proto/client.proto) so the generator stays cheap. A session reads only when its socket
// is readable, into its worker's shared buffer (an idle session holds no read buffer), decodes
// every whole frame of a read, and gathers everything it sends during one handler pass into one
// write. Everything of a session runs on its worker's thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "im/proto/client.pb.h"
#include "im/wire/frame_codec.hpp"

namespace imbench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
namespace pb = im::client;

class Session;

// The mode's callbacks, on the session's worker thread.
class SessionHandler {
  public:
    virtual ~SessionHandler() = default;
    virtual void on_login(Session& s, bool ok, const std::string& error) = 0;
    virtual void on_envelope(Session& s, const pb::Envelope& e) = 0;
    virtual void on_batch_end(Session&) {}  // after every frame of one read was handled
    virtual void on_closed(Session& s, const std::string& why) = 0;
};

// One I/O thread: an io_context, a read buffer shared by its sessions, a reusable Envelope.
class Worker {
  public:
    explicit Worker(std::size_t read_buffer_bytes = 256 * 1024);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    asio::io_context& io() { return io_; }
    void start();  // runs the io_context on a new thread
    void stop();   // stops and joins
    std::vector<char>& read_buffer() { return read_buf_; }
    pb::Envelope& scratch() { return scratch_; }

  private:
    asio::io_context io_{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard_;
    std::vector<char> read_buf_;
    pb::Envelope scratch_;
    std::thread thread_;
};

// A worker pool; sessions are placed on workers by the caller (pairs share one).
class Workers {
  public:
    explicit Workers(int n);
    ~Workers();
    Worker& at(std::size_t i) { return *workers_[i % workers_.size()]; }
    std::size_t size() const { return workers_.size(); }
    void start();
    void stop();
    // Runs fn on every worker's thread and waits for all of them.
    void run_on_all(const std::function<void(std::size_t)>& fn);

  private:
    std::vector<std::unique_ptr<Worker>> workers_;
};

struct Endpoint {
    std::string host;
    std::uint16_t port = 0;
};
bool parse_endpoint(const std::string& s, Endpoint& out);

class Session {
  public:
    Session(Worker& w, SessionHandler& h, std::size_t index);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Connects (from `source` when set), sends Login, and reports on_login. Worker thread only.
    void start(const tcp::endpoint& ep, const std::optional<asio::ip::address>& source,
               const std::string& token, const std::string& device);
    // Queues a frame; every frame queued in one handler pass goes out in one write.
    void send(const pb::Envelope& e);
    void close(const std::string& why = "closed by im-bench");

    Worker& worker() { return worker_; }
    std::size_t index() const { return index_; }
    bool logged_in() const { return logged_in_; }
    bool closed() const { return closed_; }
    std::uint64_t user_id() const { return user_id_; }
    std::uint32_t heartbeat_s() const { return heartbeat_s_; }

  private:
    void wait_readable();
    void on_readable();
    void handle_frame(std::string_view body);
    void flush();
    void arm_heartbeat();

    Worker& worker_;
    SessionHandler& handler_;
    std::size_t index_;
    tcp::socket socket_;
    asio::steady_timer heartbeat_;
    im::wire::FrameDecoder decoder_{4u << 20};
    std::string out_;      // being written
    std::string pending_;  // queued for the next write
    bool writing_ = false;
    bool flush_posted_ = false;
    bool logged_in_ = false;
    bool closed_ = false;
    std::uint64_t user_id_ = 0;
    std::uint32_t heartbeat_s_ = 30;
};

}  // namespace imbench

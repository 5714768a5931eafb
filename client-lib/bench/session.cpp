#include "session.hpp"

#include <charconv>
#include <future>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

namespace imbench {

Worker::Worker(std::size_t read_buffer_bytes)
    : guard_(asio::make_work_guard(io_)), read_buf_(read_buffer_bytes) {}

Worker::~Worker() {
    stop();
}

void Worker::start() {
    thread_ = std::thread([this] { io_.run(); });
}

void Worker::stop() {
    guard_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
}

Workers::Workers(int n) {
    for (int i = 0; i < (n < 1 ? 1 : n); ++i)
        workers_.push_back(std::make_unique<Worker>());
}

Workers::~Workers() {
    stop();
}

void Workers::start() {
    for (auto& w : workers_)
        w->start();
}

void Workers::stop() {
    for (auto& w : workers_)
        w->stop();
}

void Workers::run_on_all(const std::function<void(std::size_t)>& fn) {
    std::vector<std::future<void>> done;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        auto p = std::make_shared<std::promise<void>>();
        done.push_back(p->get_future());
        asio::post(workers_[i]->io(), [p, i, &fn] {
            fn(i);
            p->set_value();
        });
    }
    for (auto& f : done)
        f.get();
}

bool parse_endpoint(const std::string& s, Endpoint& out) {
    const auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) return false;
    unsigned port = 0;
    const char* b = s.data() + colon + 1;
    const char* e = s.data() + s.size();
    const auto [end, ec] = std::from_chars(b, e, port);
    if (ec != std::errc() || end != e || port == 0 || port > 65535) return false;
    out.host = s.substr(0, colon);
    out.port = static_cast<std::uint16_t>(port);
    return true;
}

Session::Session(Worker& w, SessionHandler& h, std::size_t index)
    : worker_(w), handler_(h), index_(index), socket_(w.io()), heartbeat_(w.io()) {}

Session::~Session() = default;

void Session::start(const tcp::endpoint& ep, const std::optional<asio::ip::address>& source,
                    const std::string& token, const std::string& device) {
    boost::system::error_code ec;
    socket_.open(ep.protocol(), ec);
    if (!ec && source) socket_.bind(tcp::endpoint(*source, 0), ec);
    if (ec) {  // reported from the event loop: a caller starting many sessions must not recurse
        closed_ = true;
        asio::post(worker_.io(), [this, why = "socket: " + ec.message()] {
            handler_.on_login(*this, false, why);
        });
        return;
    }
    pb::Envelope login;
    login.set_request_id(1);
    auto* l = login.mutable_login();
    l->set_token(token);
    l->set_device_id(device);
    l->set_client_version("im-bench/0.1");
    l->set_protocol_version(1);
    send(login);  // goes out once connected (flush waits for the connection)
    writing_ = true;
    socket_.async_connect(ep, [this](const boost::system::error_code& e) {
        writing_ = false;
        if (closed_) return;
        if (e) {
            closed_ = true;
            handler_.on_login(*this, false, "connect: " + e.message());
            return;
        }
        socket_.set_option(tcp::no_delay(true));
        socket_.non_blocking(true);
        flush();
        wait_readable();
    });
}

void Session::send(const pb::Envelope& e) {
    if (closed_) return;
    im::wire::append_frame(pending_, e);
    if (!writing_ && !flush_posted_) {
        flush_posted_ = true;
        asio::post(worker_.io(), [this] {
            flush_posted_ = false;
            flush();
        });
    }
}

void Session::flush() {
    if (writing_ || closed_ || pending_.empty()) return;
    out_.swap(pending_);
    pending_.clear();
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_),
                      [this](const boost::system::error_code& e, std::size_t) {
                          writing_ = false;
                          out_.clear();
                          if (closed_) return;
                          if (e) {
                              close("write: " + e.message());
                              return;
                          }
                          flush();
                      });
}

void Session::wait_readable() {
    socket_.async_wait(tcp::socket::wait_read, [this](const boost::system::error_code& e) {
        if (closed_) return;
        if (e) {
            close("wait: " + e.message());
            return;
        }
        on_readable();
    });
}

void Session::on_readable() {
    auto& buf = worker_.read_buffer();
    for (;;) {
        boost::system::error_code ec;
        const std::size_t n = socket_.read_some(asio::buffer(buf), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) break;
        if (ec) {
            close(ec == asio::error::eof ? "closed by the server" : "read: " + ec.message());
            return;
        }
        const auto err = decoder_.feed(buf.data(), n, [this](std::string_view body) {
            handle_frame(body);
            return !closed_;
        });
        if (closed_) return;
        if (err != im::wire::FrameError::none) {
            close(std::string("bad frame: ") + im::wire::to_string(err));
            return;
        }
        if (n < buf.size()) break;  // drained
    }
    handler_.on_batch_end(*this);
    if (!closed_) wait_readable();
}

void Session::handle_frame(std::string_view body) {
    auto& env = worker_.scratch();
    env.Clear();
    if (im::wire::parse_body(body, env) != im::wire::FrameError::none) {
        close("unparsable frame");
        return;
    }
    if (!logged_in_) {
        if (env.has_login_result()) {
            logged_in_ = true;
            user_id_ = env.login_result().user_id();
            heartbeat_s_ = std::max<std::uint32_t>(1, env.login_result().heartbeat_interval_s());
            arm_heartbeat();
            handler_.on_login(*this, true, {});
        } else {
            const std::string why =
                env.has_error() ? env.error().message() : "unexpected frame before LoginResult";
            closed_ = true;
            boost::system::error_code ignored;
            socket_.close(ignored);
            handler_.on_login(*this, false, why);
        }
        return;
    }
    handler_.on_envelope(*this, env);
}

void Session::arm_heartbeat() {
    heartbeat_.expires_after(std::chrono::seconds(heartbeat_s_));
    heartbeat_.async_wait([this](const boost::system::error_code& e) {
        if (e || closed_) return;
        pb::Envelope ping;
        ping.set_request_id(2);
        ping.mutable_ping()->set_client_time_ms(0);
        send(ping);
        arm_heartbeat();
    });
}

void Session::close(const std::string& why) {
    if (closed_) return;
    closed_ = true;
    heartbeat_.cancel();
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    if (logged_in_) {
        handler_.on_closed(*this, why);
    } else {
        handler_.on_login(*this, false, why);
    }
}

}  // namespace imbench

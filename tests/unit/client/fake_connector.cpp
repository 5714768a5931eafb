#include "fake_connector.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "im/wire/frame_codec.hpp"

namespace im::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct Conn {
    explicit Conn(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
    im::wire::FrameDecoder decoder{16 * 1024 * 1024};
    std::string buffer = std::string(64 * 1024, '\0');
    int index = 0;
};

struct FakeConnector::Impl {
    asio::io_context io;
    tcp::acceptor acceptor{io};
    std::thread thread;
    mutable std::mutex mu;
    mutable std::condition_variable cv;
    std::vector<ReceivedFrame> received;
    std::vector<Clock::time_point> connected_at;
    std::map<int, std::shared_ptr<Conn>> conns;
    int latest = 0;
    std::uint64_t epoch = 0;
    Script script;
    FakeConnector* owner = nullptr;

    void accept() {
        auto conn = std::make_shared<Conn>(io);
        acceptor.async_accept(conn->socket, [this, conn](boost::system::error_code ec) {
            if (ec) return;
            conn->socket.set_option(tcp::no_delay(true));
            {
                std::lock_guard lock(mu);
                conn->index = ++latest;
                conns[conn->index] = conn;
                connected_at.push_back(Clock::now());
            }
            read(conn);
            accept();
        });
    }

    void read(const std::shared_ptr<Conn>& conn) {
        conn->socket.async_read_some(
            asio::buffer(conn->buffer), [this, conn](boost::system::error_code ec, std::size_t n) {
                if (ec) return;
                conn->decoder.feed(conn->buffer.data(), n, [&](std::string_view body) {
                    Envelope env;
                    if (im::wire::parse_body(body, env) != im::wire::FrameError::none) return false;
                    Script s;
                    {
                        std::lock_guard lock(mu);
                        received.push_back({conn->index, env, Clock::now()});
                        s = script;
                    }
                    cv.notify_all();
                    if (!s || !s(*owner, conn->index, env)) owner->answer_default(conn->index, env);
                    return conn->socket.is_open();
                });
                if (conn->socket.is_open()) read(conn);
            });
    }

    std::shared_ptr<Conn> find(int index) {
        std::lock_guard lock(mu);
        const auto it = conns.find(index == 0 ? latest : index);
        return it == conns.end() ? nullptr : it->second;
    }

    void write(int index, const std::string& bytes) {
        auto conn = find(index);
        if (!conn || !conn->socket.is_open()) return;
        boost::system::error_code ec;
        asio::write(conn->socket, asio::buffer(bytes), ec);  // loopback, small: fine to block here
    }
};

FakeConnector::FakeConnector() : impl_(std::make_shared<Impl>()) {
    impl_->owner = this;
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen();
    impl_->accept();
    impl_->thread = std::thread([impl = impl_] { impl->io.run(); });
}

FakeConnector::~FakeConnector() {
    asio::post(impl_->io, [impl = impl_] {
        boost::system::error_code ec;
        impl->acceptor.close(ec);
        for (auto& [i, c] : impl->conns)
            c->socket.close(ec);
        impl->io.stop();
    });
    impl_->thread.join();
    // Handlers still queued when run() stopped (a read aborted by the close, a posted send) hold
    // shared_ptrs to the Impl that owns the io_context: run them now, or that cycle leaks (found
    // by LeakSanitizer in CI).
    impl_->io.restart();
    impl_->io.poll();
}

std::string FakeConnector::address() const {
    return "127.0.0.1:" + std::to_string(impl_->acceptor.local_endpoint().port());
}

void FakeConnector::set_script(Script script) {
    std::lock_guard lock(impl_->mu);
    impl_->script = std::move(script);
}

void FakeConnector::send(const Envelope& frame, int conn) {
    send_batch({frame}, conn);
}

void FakeConnector::send_batch(const std::vector<Envelope>& frames, int conn) {
    std::string bytes;
    for (const auto& f : frames)
        im::wire::append_frame(bytes, f);
    asio::post(impl_->io,
               [impl = impl_, bytes = std::move(bytes), conn] { impl->write(conn, bytes); });
}

void FakeConnector::drop(int conn) {
    asio::post(impl_->io, [impl = impl_, conn] {
        if (auto c = impl->find(conn)) {
            boost::system::error_code ec;
            c->socket.shutdown(tcp::socket::shutdown_both, ec);
            c->socket.close(ec);
        }
    });
}

void FakeConnector::stop_listening() {
    asio::post(impl_->io, [impl = impl_] {
        boost::system::error_code ec;
        impl->acceptor.close(ec);
    });
}

int FakeConnector::connections() const {
    std::lock_guard lock(impl_->mu);
    return impl_->latest;
}

std::uint64_t FakeConnector::last_epoch() const {
    std::lock_guard lock(impl_->mu);
    return impl_->epoch;
}

std::vector<Clock::time_point> FakeConnector::connect_times() const {
    std::lock_guard lock(impl_->mu);
    return impl_->connected_at;
}

std::vector<ReceivedFrame> FakeConnector::frames() const {
    std::lock_guard lock(impl_->mu);
    return impl_->received;
}

std::vector<ReceivedFrame> FakeConnector::frames(Envelope::BodyCase kind) const {
    std::vector<ReceivedFrame> out;
    std::lock_guard lock(impl_->mu);
    for (const auto& f : impl_->received) {
        if (f.frame.body_case() == kind) out.push_back(f);
    }
    return out;
}

std::size_t FakeConnector::count(Envelope::BodyCase kind) const {
    return frames(kind).size();
}

bool FakeConnector::wait_for(const std::function<bool()>& pred,
                             std::chrono::milliseconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    while (!pred()) {
        if (Clock::now() >= deadline) return false;
        std::unique_lock lock(impl_->mu);
        impl_->cv.wait_for(lock, std::chrono::milliseconds(10));
    }
    return true;
}

bool FakeConnector::wait_count(Envelope::BodyCase kind, std::size_t n,
                               std::chrono::milliseconds timeout) const {
    return wait_for([&] { return count(kind) >= n; }, timeout);
}

void FakeConnector::answer_default(int conn, const Envelope& frame) {
    Envelope out;
    out.set_request_id(frame.request_id());
    switch (frame.body_case()) {
        case Envelope::kLogin: {
            if (!answer_login) return;
            if (refuse_login) {
                out.mutable_error()->set_code(im::client::UNAUTHENTICATED);
                out.mutable_error()->set_message("bad token");
                break;
            }
            std::uint64_t epoch = 0;
            {
                std::lock_guard lock(impl_->mu);
                epoch = ++impl_->epoch;
            }
            out = login_result(user_id, epoch, heartbeat_s);
            out.set_request_id(frame.request_id());
            break;
        }
        case Envelope::kPing:
            if (!answer_pings) return;
            out.mutable_pong()->set_client_time_ms(frame.ping().client_time_ms());
            break;
        case Envelope::kSyncConversations:
            out.mutable_conversation_list();
            break;
        case Envelope::kSyncMessages:
            out.mutable_message_page()->set_conversation_id(
                frame.sync_messages().conversation_id());
            break;
        default:
            return;
    }
    send(out, conn);
}

Envelope FakeConnector::login_result(std::uint64_t user, std::uint64_t epoch,
                                     std::uint32_t heartbeat) {
    Envelope env;
    auto* r = env.mutable_login_result();
    r->set_user_id(user);
    r->set_login_epoch(epoch);
    r->set_heartbeat_interval_s(heartbeat);
    r->set_max_frame_bytes(64 * 1024);
    r->set_connector_id("fake");
    return env;
}

Envelope FakeConnector::deliver(std::uint64_t conv, std::uint64_t seq, std::uint64_t sender,
                                const std::string& text, const std::string& device) {
    Envelope env;
    auto* d = env.mutable_deliver();
    d->set_conversation_id(conv);
    d->set_seq(seq);
    d->set_msg_id(1000 + seq);
    d->set_sender_user_id(sender);
    d->set_sender_device_id(device);
    d->set_type(im::client::TEXT);
    d->set_text(text);
    d->set_created_ms(1700000000000);
    d->set_client_msg_id(std::string(16, static_cast<char>('a' + seq % 26)));
    return env;
}

Envelope FakeConnector::send_ok(const Envelope& send, std::uint64_t conv, std::uint64_t seq) {
    Envelope env;
    env.set_request_id(send.request_id());
    auto* r = env.mutable_send_result();
    r->set_code(im::client::ERROR_NONE);
    r->set_client_msg_id(send.send().client_msg_id());
    r->set_msg_id(5000 + seq);
    r->set_conversation_id(conv);
    r->set_seq(seq);
    r->set_created_ms(1700000000000);
    return env;
}

Envelope FakeConnector::send_error(const Envelope& send, im::client::ErrorCode code,
                                   std::uint64_t expected_stream_seq) {
    Envelope env;
    env.set_request_id(send.request_id());
    auto* r = env.mutable_send_result();
    r->set_code(code);
    r->set_client_msg_id(send.send().client_msg_id());
    r->set_retryable(code == im::client::OUT_OF_ORDER || code == im::client::UNAVAILABLE);
    r->set_expected_stream_seq(expected_stream_seq);
    return env;
}

}  // namespace im::test

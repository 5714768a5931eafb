#include "socket_client.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

namespace im::test {

using Clock = std::chrono::steady_clock;

SocketClient::SocketClient(std::uint16_t port, int rcvbuf) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket");
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd_);
        throw std::runtime_error("connect to " + std::to_string(port) + " failed");
    }
    timeval tv{0, 200 * 1000};  // every recv comes back at least this often, to check deadlines
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    timeval send_tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &send_tv, sizeof send_tv);
}

SocketClient::~SocketClient() { ::close(fd_); }

bool SocketClient::write_all(const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
        const auto n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += static_cast<std::size_t>(n);
    }
    return true;
}

std::optional<client::Envelope> SocketClient::login(const std::string& token, const std::string& device,
                                                    std::chrono::milliseconds timeout) {
    client::Envelope login;
    login.set_request_id(1);
    login.mutable_login()->set_token(token);
    login.mutable_login()->set_device_id(device);
    login.mutable_login()->set_protocol_version(1);
    if (!send(login)) return std::nullopt;
    return read_until([](const client::Envelope& e) { return e.has_login_result() || e.has_error(); }, timeout);
}

bool SocketClient::receive(std::size_t* bytes, bool* eof) {
    char buf[65536];
    const auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n == 0) {
        if (eof != nullptr) *eof = true;
        return false;
    }
    if (n < 0) return errno == EAGAIN || errno == EINTR;  // EWOULDBLOCK == EAGAIN here
    if (bytes != nullptr) *bytes += static_cast<std::size_t>(n);
    decoder_.feed(buf, static_cast<std::size_t>(n), [&](std::string_view body) {
        client::Envelope env;
        if (wire::parse_body(body, env) == wire::FrameError::none) pending_.push_back(std::move(env));
        return true;
    });
    return true;
}

std::optional<client::Envelope> SocketClient::read_until(const std::function<bool(const client::Envelope&)>& pred,
                                                         std::chrono::milliseconds timeout,
                                                         std::vector<client::Envelope>* seen) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        while (!pending_.empty()) {
            auto env = std::move(pending_.front());
            pending_.pop_front();
            const bool match = pred(env);
            if (seen != nullptr) seen->push_back(env);
            if (match) return env;
        }
        if (Clock::now() >= deadline || !receive()) return std::nullopt;
    }
}

SocketClient::Drained SocketClient::drain(std::chrono::milliseconds timeout) {
    Drained out;
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        while (!pending_.empty()) {
            out.frames.push_back(std::move(pending_.front()));
            pending_.pop_front();
        }
        if (out.eof || out.reset) return out;
        if (Clock::now() >= deadline) {
            out.timed_out = true;
            return out;
        }
        if (!receive(&out.bytes, &out.eof) && !out.eof) out.reset = true;
    }
}

}  // namespace im::test

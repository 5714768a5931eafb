#pragma once
// A blocking test link to an im-transfer, speaking internal.proto frames exactly as given (also
// forged ones), with a 3 s receive timeout.

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <optional>
#include <string>

#include "im/proto/internal.pb.h"
#include "im/wire/frame_codec.hpp"

namespace im::test {

// A blocking link to a transfer, speaking internal.proto frames.
class RawLink {
public:
    explicit RawLink(std::uint16_t port) : socket_(io_) {
        socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
        timeval tv{3, 0};
        ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    void send(const internal::LinkEnvelope& env) { boost::asio::write(socket_, boost::asio::buffer(wire::encode_frame(env))); }
    // The next frame, or nullopt when the transfer closed the link (or said nothing for 3 s).
    std::optional<internal::LinkEnvelope> receive() {
        try {
            char header[wire::kHeaderBytes];
            boost::asio::read(socket_, boost::asio::buffer(header));
            std::string body(wire::read_header(header), '\0');
            boost::asio::read(socket_, boost::asio::buffer(body));
            internal::LinkEnvelope env;
            if (!env.ParseFromString(body)) return std::nullopt;
            return env;
        } catch (const std::exception&) {
            return std::nullopt;
        }
    }

private:
    boost::asio::io_context io_;
    boost::asio::ip::tcp::socket socket_;
};

}  // namespace im::test

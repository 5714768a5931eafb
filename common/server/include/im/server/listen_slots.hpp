#pragma once
// The two listeners of one replica (its service port and its admin port), for several replicas of
// a process on one host network (e.g. containers with host networking, where every replica sees
// the same ports). Slot i of `slots` is the pair (port + i, admin_port + i); a replica takes the
// first slot whose two ports are both free, so `--scale connector=3` needs no per-replica setting
// and a balancer can list the slots' fixed ports. Port 0 (with one slot) lets the kernel pick.
// The caller then advertises the port it really got (see settle_listen_ports of each process).

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <string>

namespace im {

struct SlotListeners {
    boost::asio::ip::tcp::acceptor service;  // bound and listening
    boost::asio::ip::tcp::acceptor admin;    // bound and listening
    std::uint32_t slot = 0;
};

// Throws std::runtime_error naming the ports when no slot is free, and at once on any other bind
// error (a bad address, a privileged port). A port taken between two tries is just the next slot.
SlotListeners bind_listen_slot(boost::asio::io_context& io, const std::string& host,
                               std::uint16_t port, const std::string& admin_host,
                               std::uint16_t admin_port, std::uint32_t slots);

// Once a replica knows the port it really listens on: `id` defaults to "<kind>-<hostname>-<port>",
// `advertised` to "host:port", and an advertised "HOST:0" gets the real port.
void settle_identity(const std::string& kind, const std::string& host, std::uint16_t port, std::string& id,
                     std::string& advertised);

// A listening acceptor on host:port, or an error (EADDRINUSE when the port is taken).
boost::asio::ip::tcp::acceptor listen_on(boost::asio::io_context& io, const std::string& host,
                                         std::uint16_t port, boost::system::error_code& ec);
// The same, throwing boost::system::system_error naming host:port on any error.
boost::asio::ip::tcp::acceptor listen_on(boost::asio::io_context& io, const std::string& host,
                                         std::uint16_t port);

}  // namespace im

#include "im/server/listen_slots.hpp"

#include <unistd.h>

#include <boost/system/system_error.hpp>

#include <stdexcept>

namespace im {

namespace asio = boost::asio;
using asio::ip::tcp;

tcp::acceptor listen_on(asio::io_context& io, const std::string& host, std::uint16_t port,
                        boost::system::error_code& ec) {
    tcp::acceptor acceptor(io);
    const auto address = asio::ip::make_address(host, ec);
    if (ec) return acceptor;
    const tcp::endpoint ep(address, port);
    acceptor.open(ep.protocol(), ec);
    // SO_REUSEADDR: a restarted replica can take its slot back while old connections linger in
    // TIME_WAIT; two live listeners on one port are still refused (EADDRINUSE) on Linux.
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    return acceptor;
}

tcp::acceptor listen_on(asio::io_context& io, const std::string& host, std::uint16_t port) {
    boost::system::error_code ec;
    auto acceptor = listen_on(io, host, port, ec);
    if (ec) throw boost::system::system_error(ec, "listen on " + host + ":" + std::to_string(port));
    return acceptor;
}

SlotListeners bind_listen_slot(asio::io_context& io, const std::string& host, std::uint16_t port,
                               const std::string& admin_host, std::uint16_t admin_port,
                               std::uint32_t slots) {
    if (slots == 0) throw std::runtime_error("port slots must be at least 1");
    if (slots > 1 && (port == 0 || admin_port == 0))
        throw std::runtime_error("port slots above 1 need fixed (non-zero) ports");
    if (std::uint32_t{port} + slots - 1 > 65535 || std::uint32_t{admin_port} + slots - 1 > 65535)
        throw std::runtime_error("port slots run past port 65535");
    auto where = [](const std::string& h, std::uint32_t p) { return h + ":" + std::to_string(p); };
    for (std::uint32_t i = 0; i < slots; ++i) {
        const auto p = static_cast<std::uint16_t>(port == 0 ? 0 : port + i);
        const auto a = static_cast<std::uint16_t>(admin_port == 0 ? 0 : admin_port + i);
        boost::system::error_code ec;
        auto service = listen_on(io, host, p, ec);
        if (ec == asio::error::address_in_use) continue;
        if (ec)
            throw std::runtime_error("cannot listen on " + where(host, p) + ": " + ec.message());
        auto admin = listen_on(io, admin_host, a, ec);
        if (ec == asio::error::address_in_use)
            continue;  // `service` closes as it goes out of scope
        if (ec)
            throw std::runtime_error("cannot listen on " + where(admin_host, a) + ": " +
                                     ec.message());
        return SlotListeners{std::move(service), std::move(admin), i};
    }
    throw std::runtime_error(slots == 1 ? "port " + where(host, port) + " or admin port " +
                                              where(admin_host, admin_port) + " is in use"
                                        : "every port slot is in use: " + where(host, port) + ".." +
                                              std::to_string(port + slots - 1) + " / admin " +
                                              where(admin_host, admin_port) + ".." +
                                              std::to_string(admin_port + slots - 1));
}

void settle_identity(const std::string& kind, const std::string& host, std::uint16_t port, std::string& id,
                     std::string& advertised) {
    if (id.empty()) {
        char name[256] = {0};
        gethostname(name, sizeof name - 1);
        id = kind + "-" + std::string(name) + "-" + std::to_string(port);
    }
    if (advertised.empty()) {
        advertised = host + ":" + std::to_string(port);
    } else if (const auto colon = advertised.rfind(':');
               colon != std::string::npos && advertised.substr(colon + 1) == "0") {
        advertised = advertised.substr(0, colon + 1) + std::to_string(port);
    }
}

}  // namespace im

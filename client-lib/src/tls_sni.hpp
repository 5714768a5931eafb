#pragma once
// SNI for a TLS client connection. SSL_set_tlsext_host_name is a macro with a C cast, hence the
// SSL_ctrl call it stands for. SNI carries host names only (RFC 6066): never an IP literal.

#include <openssl/ssl.h>

#include <string>

#include <boost/asio/ip/address.hpp>

namespace imclient::detail {

inline void set_sni(SSL* ssl, const std::string& host) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(host, ec);
    if (!ec) return;  // an address, not a name
    SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(host.c_str()));
}

}  // namespace imclient::detail

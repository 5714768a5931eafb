#pragma once
// TLS client helpers shared by the REST calls and the file transfers: the client context, and SNI.
// SSL_set_tlsext_host_name is a macro with a C cast, hence the SSL_ctrl call it stands for. SNI
// carries host names only (RFC 6066): never an IP literal.

#include <openssl/ssl.h>

#include <string>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>

namespace imclient::detail {

// A TLS 1.2+ client context trusting ca_file, or the system's CAs when it is empty; ec is set when
// the CA file cannot be loaded.
inline boost::asio::ssl::context tls_client_context(const std::string& ca_file,
                                                    boost::system::error_code& ec) {
    namespace ssl = boost::asio::ssl;
    ssl::context ctx(ssl::context::tls_client);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (ca_file.empty()) {
        ctx.set_default_verify_paths(ec);
    } else {
        ctx.load_verify_file(ca_file, ec);
    }
    return ctx;
}

inline void set_sni(SSL* ssl, const std::string& host) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(host, ec);
    if (!ec) return;  // an address, not a name
    SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(host.c_str()));
}

}  // namespace imclient::detail

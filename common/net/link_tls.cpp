#include "im/net/link_tls.hpp"

#include <stdexcept>

namespace im::net {

namespace ssl = boost::asio::ssl;

std::shared_ptr<ssl::context> make_link_tls_context(const LinkTlsFiles& files, bool server) {
    auto ctx = std::make_shared<ssl::context>(server ? ssl::context::tls_server : ssl::context::tls_client);
    auto step = [&](const char* what, const std::string& file, auto&& f) {
        boost::system::error_code ec;
        f(ec);
        if (ec) throw std::runtime_error(std::string(what) + " '" + file + "': " + ec.message());
    };
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::no_compression);
    step("cluster.tls.ca_file", files.ca_file, [&](auto& ec) { ctx->load_verify_file(files.ca_file, ec); });
    step("cluster.tls.cert_file", files.cert_file, [&](auto& ec) { ctx->use_certificate_chain_file(files.cert_file, ec); });
    step("cluster.tls.key_file", files.key_file,
         [&](auto& ec) { ctx->use_private_key_file(files.key_file, ssl::context::pem, ec); });
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
        throw std::runtime_error("cluster.tls.key_file '" + files.key_file + "' does not match cluster.tls.cert_file");
    }
    // Both ends prove membership: a link without a certificate of the cluster CA fails the handshake.
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    return ctx;
}

}  // namespace im::net

#pragma once
// TLS contexts for the internal links (mutual TLS with a cluster CA, see link_auth.hpp's
// TlsConfig): TLS 1.2 or newer, this process's certificate presented, the peer's certificate
// required and verified against the cluster CA only (never the system store). A connector, the
// gateway of im-rest (clients) and a transfer (server) build theirs from the same three files.

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

namespace im::net {

struct LinkTlsFiles {
    std::string ca_file, cert_file, key_file;
};

// Throws std::runtime_error naming the file and OpenSSL's reason.
std::shared_ptr<boost::asio::ssl::context> make_link_tls_context(const LinkTlsFiles& files, bool server);

}  // namespace im::net

#pragma once
// Authentication of internal links (connector -> transfer, im-rest gateway -> transfer) with a
// shared cluster secret. The secret never crosses the wire: the Hello carries a fresh nonce, the
// sender's time and HMAC-SHA256(secret, "im-link-hello/1" | connector id | epoch | time | nonce);
// the transfer checks the MAC, that the time is within max_skew of its own clock and that the
// nonce was not seen in that window (a recorded Hello cannot be replayed), then answers HelloAck
// with HMAC(secret, "im-link-ack/1" | transfer id | epoch | nonce), which the connector checks:
// both ends prove they know the secret before any other frame is accepted.
// This authenticates the peer, not every frame: the links are meant for a private network (or
// loopback); confidentiality and integrity against an on-path attacker need TLS on the links.

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>

namespace im::config {
class Binder;
}

namespace im::link_auth {

// Mutual TLS on the internal links (cluster.tls.*): every im-* process presents a certificate
// signed by the cluster CA and accepts only peers whose certificate that CA signed; TLS 1.2+.
// The files are read at start-up and again on SIGHUP (links already open keep going).
struct TlsConfig {
    bool enabled = false;
    std::string ca_file;    // PEM: the cluster CA (the only trust anchor for links)
    std::string cert_file;  // PEM chain of this process
    std::string key_file;   // PEM key of this process
};

struct Config {
    std::string secret;       // cluster.secret (at least 16 bytes)
    std::string secret_file;  // cluster.secret_file: read at start-up, trailing newline dropped
    TlsConfig tls;
};

// Binds cluster.secret, cluster.secret_file and cluster.tls.*.
void bind(config::Binder& b, Config& c);
// Reads secret_file when set (it wins over secret) and checks the length. Throws
// std::runtime_error with a clear message when no usable secret is configured.
void resolve(Config& c);
// resolve() as a rule of the binder (before Binder::finish()): a missing or short secret is
// reported with every other configuration problem.
void check(config::Binder& b, Config& c);

inline constexpr std::size_t kMinSecretBytes = 16;
inline constexpr std::size_t kNonceBytes = 16;

struct HelloProof {
    std::string nonce;  // kNonceBytes random bytes
    std::int64_t time_ms = 0;
    std::string mac;    // 32 bytes
};

// HMAC(secret, "im-link-hello/1" | connector id | epoch | time | nonce): the Hello's auth_mac.
std::string hello_mac(std::string_view secret, std::string_view connector_id, std::uint64_t connector_epoch,
                      std::int64_t time_ms, std::string_view nonce);
HelloProof prove_hello(std::string_view secret, std::string_view connector_id, std::uint64_t connector_epoch,
                       std::int64_t now_ms);
std::string ack_mac(std::string_view secret, std::string_view transfer_id, std::uint64_t transfer_epoch,
                    std::string_view hello_nonce);
bool verify_ack(std::string_view secret, std::string_view transfer_id, std::uint64_t transfer_epoch,
                std::string_view hello_nonce, std::string_view mac);

// The transfer's side: MAC, clock window and replay checks. Not thread-safe (one I/O thread).
class HelloVerifier {
public:
    enum class Result { ok, bad_mac, stale, replayed };

    HelloVerifier(std::string secret, std::chrono::milliseconds max_skew = std::chrono::seconds(60))
        : secret_(std::move(secret)), max_skew_ms_(max_skew.count()) {}

    Result verify(std::string_view connector_id, std::uint64_t connector_epoch, std::int64_t time_ms,
                  std::string_view nonce, std::string_view mac, std::int64_t now_ms);
    const std::string& secret() const { return secret_; }

private:
    std::string secret_;
    std::int64_t max_skew_ms_;
    // Nonces accepted within the last 2 * max_skew (older Hellos fail the clock check anyway).
    std::deque<std::pair<std::int64_t, std::string>> recent_;
    std::unordered_set<std::string> seen_;
};

const char* to_string(HelloVerifier::Result r);

}  // namespace im::link_auth

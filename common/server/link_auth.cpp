#include "im/server/link_auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "im/server/config.hpp"

namespace im::link_auth {

namespace {

std::string hmac(std::string_view secret, const std::string& message) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len) == nullptr) {
        throw std::runtime_error("HMAC-SHA256 failed");
    }
    return std::string(reinterpret_cast<const char*>(out), len);
}

// Length-prefixed fields: no two different field lists give the same message.
void field(std::string& m, std::string_view v) {
    m += std::to_string(v.size());
    m += ':';
    m.append(v.data(), v.size());
    m += '|';
}

std::string hello_message(std::string_view connector_id, std::uint64_t epoch, std::int64_t time_ms,
                          std::string_view nonce) {
    std::string m = "im-link-hello/1|";
    field(m, connector_id);
    field(m, std::to_string(epoch));
    field(m, std::to_string(time_ms));
    field(m, nonce);
    return m;
}

bool equal_mac(std::string_view a, std::string_view b) {
    return a.size() == b.size() && !a.empty() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

void bind(config::Binder& b, Config& c) {
    b.bind("cluster.secret", c.secret, true);
    b.bind("cluster.secret_file", c.secret_file);
    b.bind("cluster.tls.enabled", c.tls.enabled);
    b.bind("cluster.tls.ca_file", c.tls.ca_file);
    b.bind("cluster.tls.cert_file", c.tls.cert_file);
    b.bind("cluster.tls.key_file", c.tls.key_file);
}

void resolve(Config& c) {
    if (!c.secret_file.empty()) {
        struct stat st {};
        if (::stat(c.secret_file.c_str(), &st) == 0 && (st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
            throw std::runtime_error("'" + c.secret_file + "' is readable or writable by every user: chmod o-rw it");
        }
        std::ifstream in(c.secret_file, std::ios::binary);
        if (!in) throw std::runtime_error("cannot read '" + c.secret_file + "'");
        std::ostringstream ss;
        ss << in.rdbuf();
        c.secret = ss.str();
        while (!c.secret.empty() && (c.secret.back() == '\n' || c.secret.back() == '\r')) c.secret.pop_back();
    }
    if (c.secret.size() < kMinSecretBytes) {
        throw std::runtime_error(
            "a shared secret of at least " + std::to_string(kMinSecretBytes) +
            " bytes is required (cluster.secret or cluster.secret_file), the same on every im-transfer, "
            "im-connector and im-rest (e.g. IM_CLUSTER_SECRET=$(openssl rand -hex 32))");
    }
}

void check(config::Binder& b, Config& c) {
    std::string problem;
    try {
        resolve(c);
    } catch (const std::exception& e) {
        problem = e.what();
    }
    b.require(problem.empty(), c.secret_file.empty() ? "cluster.secret" : "cluster.secret_file", problem);
    for (const auto& [key, value] : {std::pair<const char*, const std::string*>{"cluster.tls.ca_file", &c.tls.ca_file},
                                     {"cluster.tls.cert_file", &c.tls.cert_file},
                                     {"cluster.tls.key_file", &c.tls.key_file}}) {
        b.require(!c.tls.enabled || !value->empty(), key, "required when cluster.tls.enabled is true");
    }
}

std::string hello_mac(std::string_view secret, std::string_view connector_id, std::uint64_t connector_epoch,
                      std::int64_t time_ms, std::string_view nonce) {
    return hmac(secret, hello_message(connector_id, connector_epoch, time_ms, nonce));
}

HelloProof prove_hello(std::string_view secret, std::string_view connector_id, std::uint64_t connector_epoch,
                       std::int64_t now_ms) {
    HelloProof p;
    p.nonce.resize(kNonceBytes);
    if (RAND_bytes(reinterpret_cast<unsigned char*>(p.nonce.data()), static_cast<int>(kNonceBytes)) != 1) {
        throw std::runtime_error("RAND_bytes failed");
    }
    p.time_ms = now_ms;
    p.mac = hello_mac(secret, connector_id, connector_epoch, now_ms, p.nonce);
    return p;
}

std::string ack_mac(std::string_view secret, std::string_view transfer_id, std::uint64_t transfer_epoch,
                    std::string_view hello_nonce) {
    std::string m = "im-link-ack/1|";
    field(m, transfer_id);
    field(m, std::to_string(transfer_epoch));
    field(m, hello_nonce);
    return hmac(secret, m);
}

bool verify_ack(std::string_view secret, std::string_view transfer_id, std::uint64_t transfer_epoch,
                std::string_view hello_nonce, std::string_view mac) {
    return equal_mac(mac, ack_mac(secret, transfer_id, transfer_epoch, hello_nonce));
}

HelloVerifier::Result HelloVerifier::verify(std::string_view connector_id, std::uint64_t connector_epoch,
                                            std::int64_t time_ms, std::string_view nonce, std::string_view mac,
                                            std::int64_t now_ms) {
    if (nonce.size() != kNonceBytes ||
        !equal_mac(mac, hello_mac(secret_, connector_id, connector_epoch, time_ms, nonce))) {
        return Result::bad_mac;
    }
    if (time_ms < now_ms - max_skew_ms_ || time_ms > now_ms + max_skew_ms_) return Result::stale;
    while (!recent_.empty() && recent_.front().first < now_ms - 2 * max_skew_ms_) {
        seen_.erase(recent_.front().second);
        recent_.pop_front();
    }
    std::string key(nonce);
    if (!seen_.insert(key).second) return Result::replayed;
    recent_.emplace_back(now_ms, std::move(key));
    return Result::ok;
}

const char* to_string(HelloVerifier::Result r) {
    switch (r) {
        case HelloVerifier::Result::ok:
            return "ok";
        case HelloVerifier::Result::bad_mac:
            return "bad or missing proof";
        case HelloVerifier::Result::stale:
            return "clock outside the allowed window";
        case HelloVerifier::Result::replayed:
            return "replayed nonce";
    }
    return "?";
}

}  // namespace im::link_auth

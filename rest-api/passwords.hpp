#pragma once
// Local passwords: argon2id (libsodium crypto_pwhash_str), verified in constant time. The cost is
// configurable; settings below libsodium's "interactive" level are for tests and benchmarks only
// and are logged as a warning at start-up. Hashing is CPU- and memory-heavy: pool threads only.

#include <cstdint>
#include <string>

namespace im::config {
class Binder;
}

namespace im::rest {

struct PasswordHashConfig {
    std::uint64_t ops_limit = 2;             // crypto_pwhash_OPSLIMIT_INTERACTIVE
    std::uint64_t mem_limit = 64ull << 20;   // crypto_pwhash_MEMLIMIT_INTERACTIVE (64 MiB)
};

void bind(config::Binder& b, PasswordHashConfig& c);  // keys auth.hash_ops_limit, auth.hash_mem_limit

class PasswordHasher {
public:
    explicit PasswordHasher(PasswordHashConfig config);

    std::string hash(const std::string& password) const;  // throws on out-of-memory
    bool verify(const std::string& stored_hash, const std::string& password) const;
    // Same cost as verify() for a user that does not exist, so timing does not reveal accounts.
    void verify_dummy(const std::string& password) const;
    // True when the stored hash uses other parameters than the configured ones.
    bool needs_rehash(const std::string& stored_hash) const;
    bool below_recommended() const;

private:
    PasswordHashConfig config_;
    std::string dummy_hash_;
};

}  // namespace im::rest

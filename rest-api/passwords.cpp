#include "passwords.hpp"

#include <sodium.h>

#include <stdexcept>

#include "im/server/config.hpp"

namespace im::rest {

void bind(config::Binder& b, PasswordHashConfig& c) {
    std::int64_t ops = static_cast<std::int64_t>(c.ops_limit);
    b.bind("auth.hash_ops_limit", ops, crypto_pwhash_argon2id_OPSLIMIT_MIN, 100);
    c.ops_limit = static_cast<std::uint64_t>(ops);
    b.bind_size("auth.hash_mem_limit", c.mem_limit, crypto_pwhash_argon2id_MEMLIMIT_MIN, 4ull << 30);
}

PasswordHasher::PasswordHasher(PasswordHashConfig config) : config_(config) {
    if (sodium_init() < 0) throw std::runtime_error("libsodium initialisation failed");
    dummy_hash_ = hash("not a real password: timing equaliser");
}

std::string PasswordHasher::hash(const std::string& password) const {
    char out[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str_alg(out, password.data(), password.size(), config_.ops_limit,
                              static_cast<std::size_t>(config_.mem_limit), crypto_pwhash_ALG_ARGON2ID13) != 0) {
        throw std::runtime_error("password hashing failed (out of memory?)");
    }
    return out;
}

bool PasswordHasher::verify(const std::string& stored_hash, const std::string& password) const {
    if (stored_hash.empty() || stored_hash.size() >= crypto_pwhash_STRBYTES) return false;
    return crypto_pwhash_str_verify(stored_hash.c_str(), password.data(), password.size()) == 0;
}

void PasswordHasher::verify_dummy(const std::string& password) const { (void)verify(dummy_hash_, password); }

bool PasswordHasher::needs_rehash(const std::string& stored_hash) const {
    return crypto_pwhash_str_needs_rehash(stored_hash.c_str(), config_.ops_limit,
                                          static_cast<std::size_t>(config_.mem_limit)) != 0;
}

bool PasswordHasher::below_recommended() const {
    return config_.ops_limit < crypto_pwhash_OPSLIMIT_INTERACTIVE || config_.mem_limit < crypto_pwhash_MEMLIMIT_INTERACTIVE;
}

}  // namespace im::rest

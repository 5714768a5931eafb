#include "im/server/token_format.hpp"

#include "im/server/clock.hpp"

#include <sodium.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <stdexcept>

namespace im::tokens {

namespace {
constexpr std::size_t kTokenBytes = 32;

void ensure_sodium() {
    static const int ok = sodium_init();
    if (ok < 0) throw std::runtime_error("libsodium initialisation failed");
}

template <class T>
std::optional<T> to_number(std::string_view s) {
    T v{};
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}
}  // namespace

std::int64_t now_ms() { return wall_ms(); }

std::string new_token() {
    ensure_sodium();
    unsigned char raw[kTokenBytes];
    randombytes_buf(raw, sizeof raw);
    char out[sodium_base64_ENCODED_LEN(kTokenBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64(out, sizeof out, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    return out;
}

std::string hash_token(std::string_view token) {
    ensure_sodium();
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, reinterpret_cast<const unsigned char*>(token.data()), token.size());
    return std::string(reinterpret_cast<const char*>(h), sizeof h);
}

std::string to_hex(std::string_view bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        out += digits[c >> 4];
        out += digits[c & 0xf];
    }
    return out;
}

std::optional<std::string> bearer_token(std::string_view h) {
    constexpr std::string_view scheme = "Bearer ";
    if (h.size() < scheme.size()) return std::nullopt;
    for (std::size_t i = 0; i < scheme.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(h[i])) != std::tolower(static_cast<unsigned char>(scheme[i]))) {
            return std::nullopt;
        }
    }
    auto token = h.substr(scheme.size());
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    if (!token_shape_ok(token)) return std::nullopt;
    return std::string(token);
}

std::string encode_cached_session(const SessionInfo& s) {
    return "v|" + std::to_string(s.user_id) + "|" + std::to_string(s.session_id) + "|" +
           std::to_string(s.expires_ms) + "|" + s.device_id;
}

std::optional<SessionInfo> decode_cached_session(std::string_view v, bool* revoked) {
    if (revoked != nullptr) *revoked = (v == "r");
    if (v.size() < 2 || v.substr(0, 2) != "v|") return std::nullopt;
    v.remove_prefix(2);
    std::string_view parts[3];
    for (auto& part : parts) {
        const auto bar = v.find('|');
        if (bar == std::string_view::npos) return std::nullopt;
        part = v.substr(0, bar);
        v.remove_prefix(bar + 1);
    }
    auto user = to_number<std::uint64_t>(parts[0]);
    auto session = to_number<std::uint64_t>(parts[1]);
    auto expires = to_number<std::int64_t>(parts[2]);
    if (!user || !session || !expires) return std::nullopt;
    return SessionInfo{*session, *user, std::string(v), *expires};
}

bool token_shape_ok(std::string_view token) {
    if (token.size() != kTokenChars) return false;
    for (char c : token) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
    }
    return true;
}

std::string cache_key(std::string_view key_prefix, std::string_view token_hash) {
    return std::string(key_prefix) + "tok:" + to_hex(token_hash);
}

}  // namespace im::tokens

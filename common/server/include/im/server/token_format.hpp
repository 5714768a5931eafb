#pragma once
// Token formats shared by every process that handles tokens, including the connector, which reads
// the Redis token cache but never opens MySQL: generation, hashing, the Bearer header, and the
// cache value codec. Depends on libsodium only. (TokenStore in tokens.hpp adds MySQL.)

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace im::tokens {

struct SessionInfo {
    std::uint64_t session_id = 0;
    std::uint64_t user_id = 0;
    std::string device_id;
    std::int64_t expires_ms = 0;
};

inline constexpr std::size_t kTokenChars = 43;  // base64url without padding of 32 bytes

std::string new_token();                           // 43 chars, base64url, no padding
std::string hash_token(std::string_view token);    // 32 raw bytes
std::string to_hex(std::string_view bytes);
std::int64_t now_ms();

// Parses "Bearer <token>"; nullopt when absent or malformed (wrong length or alphabet).
std::optional<std::string> bearer_token(std::string_view authorization_header);
// True when `token` has the shape of a token (43 base64url characters).
bool token_shape_ok(std::string_view token);
// The Redis key of a token hash: <prefix>tok:<hex>.
std::string cache_key(std::string_view key_prefix, std::string_view token_hash);

// Cache value codec, shared with processes that only read the cache (the connector).
std::string encode_cached_session(const SessionInfo& s);
// nullopt for a tombstone or garbage; `revoked` is set for a tombstone.
std::optional<SessionInfo> decode_cached_session(std::string_view value, bool* revoked = nullptr);

}  // namespace im::tokens

#pragma once
// Random identifiers from OpenSSL's CSPRNG (thread-safe, seeded by the OS).

#include <string>
#include <string_view>

namespace imclient::detail {

// 16 random bytes: a client_msg_id. Throws std::runtime_error if the CSPRNG fails.
std::string random_client_msg_id();
std::string random_device_id();  // "imclient-" + 16 hex chars

std::string to_hex(std::string_view bytes);

}  // namespace imclient::detail

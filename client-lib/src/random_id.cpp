#include "random_id.hpp"

#include <openssl/rand.h>

#include <stdexcept>

namespace imclient::detail {
namespace {

std::string random_bytes(int n) {
    std::string out(static_cast<std::size_t>(n), '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), n) != 1) {
        throw std::runtime_error("imclient: the random generator failed");
    }
    return out;
}

}  // namespace

std::string random_client_msg_id() {
    return random_bytes(16);
}

std::string random_device_id() {
    return "imclient-" + to_hex(random_bytes(8));
}

std::string to_hex(std::string_view bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const char c : bytes) {
        const auto u = static_cast<unsigned char>(c);
        out.push_back(kDigits[u >> 4]);
        out.push_back(kDigits[u & 0x0f]);
    }
    return out;
}

}  // namespace imclient::detail

// The file endpoints' header helpers (rest-api/file_names.cpp) on untrusted values: the Range
// header of a download, the ?name= of an upload and its Content-Type, and the
// Content-Disposition built from a stored name.
//
// Input: [8 bytes: the file size][the header value...]. Properties:
// - parse_range: a partial range lies inside the file (first + length <= size, length >= 1, no
//   overflow in the Content-Range "first-last/size"), a whole answer covers the file, and
//   "bytes=A-B" / "bytes=A-" / "bytes=-N" with plain numbers give exactly RFC 9110's range;
// - sanitize_file_name: valid UTF-8 without controls (C0, DEL, C1) or path separators, not "", "."
//   or "..", at most 255 bytes, and stable (sanitizing it again changes nothing);
// - normalize_mime: application/octet-stream or a lowercase type/subtype of token characters, and
//   stable;
// - content_disposition: printable ASCII only (no header injection), filename*= decodes back to
//   the name.
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "file_names.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace im::rest;

std::optional<std::uint64_t> plain_number(std::string_view s) {
    std::uint64_t v = 0;
    if (s.empty() || s.size() > 19) return std::nullopt;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

void check_range(std::string_view header, std::uint64_t size) {
    const auto r = parse_range(header, size);
    switch (r.kind) {
        case ByteRange::Kind::whole:
            FUZZ_CHECK(r.first == 0 && r.length == size);
            break;
        case ByteRange::Kind::unsatisfiable:
            break;
        case ByteRange::Kind::partial: {
            FUZZ_CHECK(r.length >= 1 && r.first < size && r.length <= size - r.first);
            const std::string content_range = "bytes " + std::to_string(r.first) + "-" +
                                              std::to_string(r.first + r.length - 1) + "/" +
                                              std::to_string(size);
            FUZZ_CHECK(content_range.size() < 70);
            break;
        }
    }
    // The exact forms, without whitespace.
    if (header.substr(0, 6) != "bytes=") return;
    const auto spec = header.substr(6);
    const auto dash = spec.find('-');
    if (dash == std::string_view::npos ||
        spec.find_first_not_of("0123456789-") != std::string_view::npos ||
        spec.find('-', dash + 1) != std::string_view::npos) {
        return;
    }
    const auto a = spec.substr(0, dash);
    const auto b = spec.substr(dash + 1);
    if (a.empty()) {
        const auto n = plain_number(b);
        if (!n) return;
        if (*n == 0 || size == 0) {
            FUZZ_CHECK(r.kind == ByteRange::Kind::unsatisfiable);
        } else {
            FUZZ_CHECK(r.kind == ByteRange::Kind::partial && r.length == std::min(*n, size) &&
                       r.first == size - r.length);
        }
        return;
    }
    const auto first = plain_number(a);
    if (!first) return;
    std::optional<std::uint64_t> last;
    if (!b.empty()) {
        last = plain_number(b);
        if (!last || *last < *first) return;  // invalid: ignored (whole) per RFC 9110
    }
    if (*first >= size) {
        FUZZ_CHECK(r.kind == ByteRange::Kind::unsatisfiable);
        return;
    }
    const std::uint64_t end = last ? std::min(*last, size - 1) : size - 1;
    FUZZ_CHECK(r.kind == ByteRange::Kind::partial && r.first == *first &&
               r.length == end - *first + 1);
}

bool utf8_without_controls(std::string_view s) {
    return utf8_all_of(s, [](std::uint32_t cp) { return cp >= 0x20 && cp != 0x7F && (cp < 0x80 || cp >= 0xA0); });
}

void check_name(std::string_view raw) {
    const auto name = sanitize_file_name(raw);
    if (!name) return;
    FUZZ_CHECK(!name->empty() && name->size() <= 255 && *name != "." && *name != "..");
    FUZZ_CHECK(name->find_first_of("/\\") == std::string::npos);
    FUZZ_CHECK(utf8_without_controls(*name));
    FUZZ_CHECK(sanitize_file_name(*name) == name);

    const auto cd = content_disposition(*name);
    FUZZ_CHECK(std::all_of(cd.begin(), cd.end(), [](char c) { return c >= 0x20 && c < 0x7F; }));
    const auto star = cd.rfind("filename*=UTF-8''");  // the name may contain the same text
    FUZZ_CHECK(star != std::string::npos);
    const auto quoted = std::string_view(cd).substr(0, star);
    FUZZ_CHECK(std::count(quoted.begin(), quoted.end(), '"') == 2);  // nothing escapes the quotes
    std::string decoded;
    const std::string_view enc =
        std::string_view(cd).substr(star + std::strlen("filename*=UTF-8''"));
    for (std::size_t i = 0; i < enc.size(); ++i) {
        if (enc[i] == '%') {
            FUZZ_CHECK(i + 2 < enc.size());
            decoded.push_back(
                static_cast<char>(std::stoi(std::string(enc.substr(i + 1, 2)), nullptr, 16)));
            i += 2;
        } else {
            decoded.push_back(enc[i]);
        }
    }
    FUZZ_CHECK(decoded == *name);
}

void check_mime(std::string_view content_type) {
    const auto m = normalize_mime(content_type);
    FUZZ_CHECK(normalize_mime(m) == m);
    if (m == "application/octet-stream") return;
    const auto slash = m.find('/');
    FUZZ_CHECK(slash != std::string::npos && slash > 0 && slash + 1 < m.size());
    FUZZ_CHECK(m.find('/', slash + 1) == std::string::npos);
    for (char c : m) {
        FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   std::strchr("!#$&-^_.+/", c) != nullptr);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 8) return 0;
    std::uint64_t file_size = 0;
    std::memcpy(&file_size, data, sizeof file_size);
    // Mostly sizes a file store has (< 2^40); sometimes anything up to 2^64 - 1.
    if ((file_size >> 63) == 0) file_size %= (1ull << 40);
    const std::string_view value(reinterpret_cast<const char*>(data + 8), size - 8);
    check_range(value, file_size);
    check_name(value);
    check_mime(value);
    return 0;
}

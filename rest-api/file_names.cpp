#include "file_names.hpp"

#include <charconv>

namespace im::rest {
namespace {

// Length of the UTF-8 sequence at s[i] (0 when invalid: overlong, surrogate, > U+10FFFF).
std::size_t utf8_seq(std::string_view s, std::size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) return 1;
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0)
        n = 2, cp = c & 0x1Fu;
    else if ((c & 0xF0) == 0xE0)
        n = 3, cp = c & 0x0Fu;
    else if ((c & 0xF8) == 0xF0)
        n = 4, cp = c & 0x07u;
    else
        return 0;
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        const auto cc = static_cast<unsigned char>(s[i + k]);
        if ((cc & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (cc & 0x3Fu);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

bool mime_name(std::string_view s) {
    if (s.empty() || s.size() > 127) return false;
    for (char ch : s) {
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '!' ||
                        ch == '#' || ch == '$' || ch == '&' || ch == '-' || ch == '^' ||
                        ch == '_' || ch == '.' || ch == '+';
        if (!ok) return false;
    }
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace

std::optional<std::string> sanitize_file_name(std::string_view raw) {
    for (std::size_t i = 0; i < raw.size();) {
        const auto n = utf8_seq(raw, i);
        if (n == 0) return std::nullopt;
        i += n;
    }
    const auto slash = raw.find_last_of("/\\");
    if (slash != std::string_view::npos) raw.remove_prefix(slash + 1);
    std::string out;
    out.reserve(raw.size());
    for (char ch : raw) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7F) continue;
        out.push_back(ch);
    }
    // A C1 control (U+0080..U+009F, encoded C2 80..C2 9F) is dropped too.
    std::string clean;
    clean.reserve(out.size());
    for (std::size_t i = 0; i < out.size();) {
        const auto n = utf8_seq(out, i);
        const bool c1 = n == 2 && static_cast<unsigned char>(out[i]) == 0xC2 &&
                        static_cast<unsigned char>(out[i + 1]) < 0xA0;
        if (!c1) clean.append(out, i, n);
        i += n;
    }
    if (clean.empty() || clean == "." || clean == "..") clean = "file";
    if (clean.size() > 255) return std::nullopt;
    return clean;
}

std::string normalize_mime(std::string_view content_type) {
    std::string v(trim(content_type.substr(0, content_type.find(';'))));
    for (auto& ch : v)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const auto slash = v.find('/');
    if (slash == std::string::npos || !mime_name(std::string_view(v).substr(0, slash)) ||
        !mime_name(std::string_view(v).substr(slash + 1))) {
        return "application/octet-stream";
    }
    return v;
}

std::string content_disposition(std::string_view name) {
    std::string ascii;
    for (char ch : name) {
        const auto c = static_cast<unsigned char>(ch);
        ascii.push_back(c < 0x20 || c >= 0x7F || ch == '"' || ch == '\\' || ch == '%' ? '_' : ch);
    }
    std::string encoded;
    static const char* hex = "0123456789ABCDEF";
    for (char ch : name) {
        const auto c = static_cast<unsigned char>(ch);
        const bool attr_char = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                               (c >= '0' && c <= '9') || ch == '!' || ch == '#' || ch == '$' ||
                               ch == '&' || ch == '+' || ch == '-' || ch == '.' || ch == '^' ||
                               ch == '_' || ch == '`' || ch == '|' || ch == '~';
        if (attr_char) {
            encoded.push_back(ch);
        } else {
            encoded.push_back('%');
            encoded.push_back(hex[c >> 4]);
            encoded.push_back(hex[c & 0xF]);
        }
    }
    return "attachment; filename=\"" + ascii + "\"; filename*=UTF-8''" + encoded;
}

ByteRange parse_range(std::string_view header, std::uint64_t size) {
    ByteRange whole;
    whole.length = size;
    header = trim(header);
    if (header.substr(0, 6) != "bytes=") return whole;
    const auto spec = trim(header.substr(6));
    if (spec.find(',') != std::string_view::npos) return whole;
    const auto dash = spec.find('-');
    if (dash == std::string_view::npos) return whole;
    const auto a = trim(spec.substr(0, dash));
    const auto b = trim(spec.substr(dash + 1));
    ByteRange r;
    r.kind = ByteRange::Kind::partial;
    if (a.empty()) {  // suffix: the last n bytes
        const auto n = parse_u64(b);
        if (!n) return whole;
        if (*n == 0 || size == 0) return ByteRange{ByteRange::Kind::unsatisfiable, 0, 0};
        r.length = std::min(*n, size);
        r.first = size - r.length;
        return r;
    }
    const auto first = parse_u64(a);
    if (!first) return whole;
    std::uint64_t last = size == 0 ? 0 : size - 1;
    if (!b.empty()) {
        const auto l = parse_u64(b);
        if (!l || *l < *first) return whole;
        last = std::min(*l, last);
    }
    if (*first >= size) return ByteRange{ByteRange::Kind::unsatisfiable, 0, 0};
    r.first = *first;
    r.length = last - *first + 1;
    return r;
}

std::string to_hex(const unsigned char* data, std::size_t n) {
    static const char* hex = "0123456789abcdef";
    std::string out(n * 2, '0');
    for (std::size_t i = 0; i < n; ++i) {
        out[2 * i] = hex[data[i] >> 4];
        out[2 * i + 1] = hex[data[i] & 0xF];
    }
    return out;
}

}  // namespace im::rest

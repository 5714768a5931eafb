#include "http_types.hpp"

#include <unistd.h>

namespace im::rest {

FileBody::~FileBody() {
    if (fd >= 0) ::close(fd);
}

HttpResponse HttpResponse::json(int status, const nlohmann::json& j) {
    HttpResponse r;
    r.status = status;
    // Invalid UTF-8 cannot reach here (input JSON is validated), but never throw on output.
    r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return r;
}

HttpResponse HttpResponse::no_content() {
    HttpResponse r;
    r.status = 204;
    r.content_type.clear();
    return r;
}

HttpResponse HttpResponse::error(int status, const std::string& code, const std::string& message) {
    return json(status, {{"error", {{"code", code}, {"message", message}}}});
}

namespace {
int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
}  // namespace

std::optional<std::string> url_decode(std::string_view in, bool plus_is_space) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) return std::nullopt;
            const int hi = hex_value(in[i + 1]);
            const int lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return out;
}

std::optional<std::map<std::string, std::string>> parse_query(std::string_view query) {
    std::map<std::string, std::string> out;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto part = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (part.empty()) continue;
        const auto eq = part.find('=');
        auto key = url_decode(part.substr(0, eq), true);
        auto value = eq == std::string_view::npos ? std::optional<std::string>("")
                                                  : url_decode(part.substr(eq + 1), true);
        if (!key || !value) return std::nullopt;
        out[*key] = *value;
    }
    return out;
}

}  // namespace im::rest

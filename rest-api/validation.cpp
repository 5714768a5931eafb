#include "validation.hpp"

#include <charconv>
#include <ctime>

#include "http_types.hpp"
#include "im/server/mysql.hpp"

namespace im::rest {

std::optional<std::string> normalize_username(std::string_view input) {
    if (input.size() < 3 || input.size() > 32) return std::nullopt;
    std::string out;
    out.reserve(input.size());
    for (char c : input) {
        const auto u = static_cast<unsigned char>(c);
        const char l = static_cast<char>(std::tolower(u));
        const bool ok = (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '.' || l == '_' || l == '-';
        if (!ok || u >= 0x80) return std::nullopt;
        out += l;
    }
    if (!std::isalnum(static_cast<unsigned char>(out.front()))) return std::nullopt;
    return out;
}

bool valid_text(std::string_view s, std::size_t max_bytes) {
    if (s.size() > max_bytes) return false;
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f) return false;
    }
    return true;  // UTF-8 validity is guaranteed by the JSON parser
}

bool valid_display_name(std::string_view s) {
    if (s.empty() || s.size() > 128) return false;
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) return false;
    }
    return s.find_first_not_of(' ') != std::string_view::npos;
}

bool valid_group_name(std::string_view s) { return valid_display_name(s); }

bool valid_password(std::string_view s) { return s.size() >= 8 && s.size() <= 1024; }

bool valid_device_id(std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s) {
        const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

bool valid_user_id(std::uint64_t id) { return id > 0 && id < (1ull << 31); }

std::optional<std::uint64_t> parse_id(std::string_view s) {
    std::uint64_t v = 0;
    if (s.empty() || s.size() > 20) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

std::string iso8601(std::int64_t ms) {
    std::string s = mysql::ms_to_datetime(ms);  // "2026-11-28 01:02:03.456"
    s[10] = 'T';
    return s + "Z";
}

nlohmann::json json_object_body(const HttpRequest& req) {
    const auto* ct = req.header("content-type");
    std::string type = ct ? ct->substr(0, ct->find(';')) : "";
    for (auto& ch : type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    while (!type.empty() && type.back() == ' ') type.pop_back();
    if (type != "application/json") {
        throw ApiError(415, "unsupported_media_type", "the body must be application/json");
    }
    auto j = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw ApiError(400, "malformed_json", "the body is not valid JSON");
    if (!j.is_object()) throw ApiError(400, "malformed_json", "the body must be a JSON object");
    return j;
}

const nlohmann::json& require_field(const nlohmann::json& body, const char* name) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) {
        throw ApiError(400, "missing_field", std::string("field '") + name + "' is required");
    }
    return *it;
}

std::string string_field(const nlohmann::json& body, const char* name) {
    const auto& v = require_field(body, name);
    if (!v.is_string()) throw ApiError(400, "invalid_field", std::string("field '") + name + "' must be a string");
    return v.get<std::string>();
}

std::optional<std::string> optional_string_field(const nlohmann::json& body, const char* name) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) throw ApiError(400, "invalid_field", std::string("field '") + name + "' must be a string");
    return it->get<std::string>();
}

std::uint64_t id_field(const nlohmann::json& body, const char* name) {
    const auto& v = require_field(body, name);
    std::optional<std::uint64_t> id;
    if (v.is_number_unsigned()) id = v.get<std::uint64_t>();
    else if (v.is_string()) id = parse_id(v.get<std::string>());
    if (!id || !valid_user_id(*id)) {
        throw ApiError(400, "invalid_field", std::string("field '") + name + "' must be a valid id");
    }
    return *id;
}

}  // namespace im::rest

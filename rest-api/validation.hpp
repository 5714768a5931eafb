#pragma once
// Input rules of the REST API (documented in docs/REST.md). Pure functions: unit-tested alone.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace im::rest {

// Usernames: 3-32 characters of [a-z0-9._-], starting with a letter or digit. Input is
// lowercased first ("Alice" is "alice"). nullopt when invalid.
std::optional<std::string> normalize_username(std::string_view input);
// Display names: 1-128 bytes of UTF-8 without control characters. Anything else is kept verbatim
// (quotes, SQL or HTML metacharacters are data, not code).
bool valid_display_name(std::string_view s);
// Group names: the rule of display names (1-128 bytes of UTF-8, no control characters, not only
// spaces).
bool valid_group_name(std::string_view s);
// Passwords: 8-1024 bytes (the upper bound keeps hashing cheap to refuse).
bool valid_password(std::string_view s);
// Device ids: 1-64 characters of [A-Za-z0-9._:-].
bool valid_device_id(std::string_view s);
// Free text (friend request messages): at most max_bytes of UTF-8, no control characters but \n and \t.
bool valid_text(std::string_view s, std::size_t max_bytes);
// User ids are positive and below 2^31 (see docs/PROTOCOL.md, conversation ids).
bool valid_user_id(std::uint64_t id);
std::optional<std::uint64_t> parse_id(std::string_view s);

// ISO-8601 UTC with milliseconds: "2026-11-28T01:02:03.456Z".
std::string iso8601(std::int64_t ms);

struct HttpRequest;

// A request body that must be a JSON object: 415 (ApiError) without an application/json content
// type, 400 when it is not valid JSON or not an object.
nlohmann::json json_object_body(const HttpRequest& req);

// JSON field access that answers 400 with the field's name on a wrong or missing value.
const nlohmann::json& require_field(const nlohmann::json& body, const char* name);
std::string string_field(const nlohmann::json& body, const char* name);
std::optional<std::string> optional_string_field(const nlohmann::json& body, const char* name);
std::uint64_t id_field(const nlohmann::json& body, const char* name);

}  // namespace im::rest

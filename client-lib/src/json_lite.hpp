#pragma once
// A minimal JSON reader/writer for the few im-rest answers the client reads (the client library
// links no JSON library). Numbers keep their text so 64-bit ids stay exact.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace imclient::detail {

struct JsonValue {
    enum class Type : std::uint8_t { null, boolean, number, string, array, object };
    Type type = Type::null;
    bool boolean = false;
    std::string text;  // string value, or the number as written
    std::vector<JsonValue> items;
    std::vector<std::pair<std::string, JsonValue>> members;

    const JsonValue* find(std::string_view key) const;  // objects; nullptr when absent
    std::optional<std::uint64_t> as_u64() const;        // a non-negative integer number
    const std::string* as_string() const;
};

// nullopt on malformed input or nesting deeper than max_depth.
std::optional<JsonValue> parse_json(std::string_view text, int max_depth = 32);

// "..." with the JSON escapes.
std::string json_quote(std::string_view s);

}  // namespace imclient::detail

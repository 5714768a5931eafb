#pragma once
// Pure helpers of the file endpoints (docs/REST.md, "Files"): untrusted names, media types and
// Range headers in, safe values out. No I/O: unit-tested alone.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace im::rest {

// The display name of an uploaded file: the last path component (after '/' or '\'), without
// control characters; "." / ".." / empty become "file". nullopt when it is not valid UTF-8 or
// longer than 255 bytes. The name never reaches the file system (blobs are named by sha256).
std::optional<std::string> sanitize_file_name(std::string_view raw);

// The media type of a Content-Type header: "type/subtype" in lowercase without parameters, when
// both are RFC 6838 names; anything else is application/octet-stream.
std::string normalize_mime(std::string_view content_type);

// Content-Disposition: attachment with an ASCII fallback filename (quotes, backslashes, controls
// and non-ASCII replaced by '_') and the exact UTF-8 name as filename* (RFC 6266 / RFC 8187).
std::string content_disposition(std::string_view name);

// A single byte range of a Range header against a resource of `size` bytes.
struct ByteRange {
    enum class Kind { whole, partial, unsatisfiable } kind = Kind::whole;
    std::uint64_t first = 0;
    std::uint64_t length = 0;
};
// "bytes=a-b", "bytes=a-", "bytes=-n". Anything else (several ranges, another unit, garbage) is
// ignored, which RFC 9110 allows: the whole resource is sent.
ByteRange parse_range(std::string_view header, std::uint64_t size);

// Lowercase hex.
std::string to_hex(const unsigned char* data, std::size_t n);

}  // namespace im::rest

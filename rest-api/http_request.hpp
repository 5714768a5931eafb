#pragma once
// The request head Beast parsed, as the HttpRequest handlers see: the path and query decoded,
// header names in lowercase. Pure (no I/O): unit-tested and fuzzed alone (tests/fuzz).

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <string>

#include "http_types.hpp"

namespace im::rest {

// `bad_target` is set when the target is not an absolute path with valid %-escapes (answered 400).
HttpRequest to_request(const boost::beast::http::request_header<>& in, const std::string& peer,
                       bool& bad_target);
// The same with the buffered body moved in.
HttpRequest to_request(boost::beast::http::request<boost::beast::http::string_body>&& in,
                       const std::string& peer, bool& bad_target);

}  // namespace im::rest

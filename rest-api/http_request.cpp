#include "http_request.hpp"

#include <cctype>

namespace im::rest {

namespace http = boost::beast::http;

HttpRequest to_request(const http::request_header<>& in, const std::string& peer,
                       bool& bad_target) {
    HttpRequest r;
    r.method = std::string(in.method_string());
    const std::string_view target(in.target().data(), in.target().size());
    const auto q = target.find('?');
    auto path = url_decode(target.substr(0, q), false);
    bad_target = !path.has_value() || path->empty() || path->front() != '/';
    if (path) r.path = std::move(*path);
    if (q != std::string_view::npos) {
        auto query = parse_query(target.substr(q + 1));
        if (query)
            r.query = std::move(*query);
        else
            bad_target = true;
    }
    for (const auto& f : in) {
        std::string name(f.name_string());
        for (auto& ch : name)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        r.headers[name] = std::string(f.value());
    }
    r.client_addr = peer;
    return r;
}

HttpRequest to_request(http::request<http::string_body>&& in, const std::string& peer,
                       bool& bad_target) {
    HttpRequest r = to_request(static_cast<const http::request_header<>&>(in), peer, bad_target);
    r.body = std::move(in.body());
    return r;
}

}  // namespace im::rest

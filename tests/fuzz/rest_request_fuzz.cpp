// Raw HTTP bytes as im-rest reads them (rest-api/http_server.cpp) and routes them
// (rest_service.cpp), through every input step that needs no store: Beast's request parser with
// the server's header and body limits (keep-alive: several requests in one stream), the upload
// route's checks, to_request (path and query decoding), the real route table, the bearer token,
// path ids, query parameters, the JSON body (json_object_body) and the field rules of the handlers
// (validation.hpp).
//
// Properties: nothing throws but ApiError, and only with a 4xx status (a 500 from bad input would
// be a bug); a route is matched with its own method and its parameters are single non-empty path
// segments; a 405's Allow lists each method once and never the request's; accepted values obey
// the documented rules (usernames normalised and stable, ids valid, texts free of controls).
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <string_view>

#include "file_names.hpp"
#include "files.hpp"
#include "fuzz_check.hpp"
#include "http_request.hpp"
#include "http_server.hpp"
#include "im/server/token_format.hpp"
#include "rest_service.hpp"
#include "router.hpp"
#include "validation.hpp"

namespace {

using namespace im;
using namespace im::rest;
namespace http = boost::beast::http;
using Parser = http::request_parser<http::string_body>;

const Router<RouteSpec>& routes() {
    static const Router<RouteSpec> r = [] {
        Router<RouteSpec> table;
        add_account_routes(table);
        add_social_routes(table);
        add_conversation_routes(table);
        add_file_routes(table);
        return table;
    }();
    return r;
}

void check_error_response(const HttpResponse& r) {
    FUZZ_CHECK(r.status >= 400 && r.status < 500);
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    FUZZ_CHECK(j.is_object() && j.contains("error"));
}

void check_api_error(const ApiError& e) {
    FUZZ_CHECK(e.status() == 400 || e.status() == 404 || e.status() == 415);
    check_error_response(HttpResponse::error(e.status(), e.code(), e.what()));
}

bool no_controls(std::string_view s, bool newline_and_tab_ok) {
    return std::none_of(s.begin(), s.end(), [&](char c) {
        const auto u = static_cast<unsigned char>(c);
        if (newline_and_tab_ok && (c == '\n' || c == '\t')) return false;
        return u < 0x20 || u == 0x7f;
    });
}

// Every rule a handler applies to a string it got from the body or the query.
void check_string_rules(const std::string& s) {
    if (const auto u = normalize_username(s)) {
        FUZZ_CHECK(u->size() >= 3 && u->size() <= 32);
        FUZZ_CHECK(std::isalnum(static_cast<unsigned char>(u->front())));
        for (char c : *u) {
            FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                       c == '-');
        }
        FUZZ_CHECK(normalize_username(*u) == u);
    }
    if (valid_display_name(s)) FUZZ_CHECK(!s.empty() && s.size() <= 128 && no_controls(s, false));
    if (valid_text(s, 512)) FUZZ_CHECK(s.size() <= 512 && no_controls(s, true));
    if (valid_device_id(s)) FUZZ_CHECK(!s.empty() && s.size() <= 64 && no_controls(s, false));
    if (valid_password(s)) FUZZ_CHECK(s.size() >= 8 && s.size() <= 1024);
    if (const auto id = parse_id(s)) {
        FUZZ_CHECK(!s.empty() && s.size() <= 20);
        FUZZ_CHECK(std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }));
        FUZZ_CHECK(std::to_string(*id) ==
                   s.substr(std::min(s.find_first_not_of('0'), s.size() - 1)));
    }
}

// The fields the handlers read from JSON bodies, with each accessor they use.
void check_body_fields(const nlohmann::json& body) {
    for (const char* name : {"username", "password", "display_name", "device_id", "old", "new",
                             "message", "to_user_id", "user_id", "up_to_seq"}) {
        try {
            check_string_rules(string_field(body, name));
        } catch (const ApiError& e) {
            check_api_error(e);
        }
        try {
            if (const auto s = optional_string_field(body, name)) check_string_rules(*s);
        } catch (const ApiError& e) {
            check_api_error(e);
        }
        try {
            FUZZ_CHECK(valid_user_id(id_field(body, name)));
        } catch (const ApiError& e) {
            check_api_error(e);
        }
    }
}

std::set<std::string> split_allow(const std::string& allow) {
    std::set<std::string> methods;
    std::size_t at = 0;
    while (at <= allow.size()) {
        const auto comma = allow.find(", ", at);
        const auto m =
            allow.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        FUZZ_CHECK(!m.empty());
        FUZZ_CHECK(methods.insert(m).second);  // each method once
        if (comma == std::string::npos) break;
        at = comma + 2;
    }
    return methods;
}

std::size_t segments(const std::string& path) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] != '/' && (i == 0 || path[i - 1] == '/')) ++n;
    }
    return n;
}

// RestService::handle and the input steps of RestService::run and the handlers.
void handle(const HttpRequest& req) {
    if (req.path == "/healthz" && req.method == "GET") return;
    const auto match = routes().match(req.method, req.path);
    if (match.target == nullptr) {
        if (match.method_mismatch) {
            FUZZ_CHECK(!split_allow(match.allow).count(req.method));
            check_error_response(
                HttpResponse::error(405, "method_not_allowed", "method not allowed for this path"));
        }
        return;
    }
    FUZZ_CHECK(!match.method_mismatch);
    FUZZ_CHECK(segments(match.pattern) == segments(req.path));
    for (const auto& [name, value] : match.params) {
        FUZZ_CHECK(!name.empty() && !value.empty() && value.find('/') == std::string::npos);
        FUZZ_CHECK(match.pattern.find("{" + name + "}") != std::string::npos);
        check_string_rules(value);  // path_id is parse_id
    }
    if (match.target->needs_auth) {
        if (const auto* h = req.header("authorization")) {
            if (const auto token = tokens::bearer_token(*h)) {
                FUZZ_CHECK(tokens::token_shape_ok(*token));
                FUZZ_CHECK(tokens::hash_token(*token).size() == 32);
            }
        }
    }
    for (const auto& [name, value] : req.query)
        check_string_rules(value);
    if (const auto name = req.query_param("name")) {
        if (const auto clean = sanitize_file_name(*name))
            FUZZ_CHECK(!clean->empty() && clean->size() <= 255);
    }
    if (req.method == "POST") {
        try {
            const auto body = json_object_body(req);
            FUZZ_CHECK(body.is_object());
            check_body_fields(body);
        } catch (const ApiError& e) {
            check_api_error(e);
        }
    }
}

// Feeds bytes to the parser until the header (or the whole message) is done, more bytes are
// needed (the server would wait for them) or it fails.
void feed(Parser& p, std::string_view& in, boost::system::error_code& ec, bool header_only) {
    while (!in.empty() && !(header_only ? p.is_header_done() : p.is_done())) {
        const auto n = p.put(boost::asio::buffer(in.data(), in.size()), ec);
        in.remove_prefix(n);
        if (ec == http::error::need_more) {
            ec = {};
            if (n == 0) return;
            continue;
        }
        if (ec || n == 0) return;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const HttpServerConfig cfg;
    const FilesConfig files;
    std::string_view in(reinterpret_cast<const char*>(data), size);
    for (int request = 0; request < 4 && !in.empty(); ++request) {
        Parser parser;
        parser.header_limit(cfg.max_header_bytes);
        parser.body_limit(std::max(cfg.max_body_bytes, files.max_bytes));
        boost::system::error_code ec;
        feed(parser, in, ec, true);
        if (ec || !parser.is_header_done()) return 0;  // 400/413, or waiting for the rest

        const auto& head = parser.get();
        const std::string_view target(head.target().data(), head.target().size());
        const auto path = url_decode(target.substr(0, target.find('?')), false);
        if (path && head.method_string() == "POST" &&
            (*path == "/v1/files" || *path == "/v1/files/")) {
            // The upload route: the head alone is checked, the body streams into the store.
            bool bad = false;
            const auto req =
                to_request(static_cast<const http::request_header<>&>(head), "127.0.0.1", bad);
            if (bad) return 0;
            if (const auto name = req.query_param("name")) {
                if (const auto clean = sanitize_file_name(*name)) FUZZ_CHECK(clean->size() <= 255);
            }
            if (const auto* ct = req.header("content-type"))
                FUZZ_CHECK(!normalize_mime(*ct).empty());
            return 0;
        }
        parser.body_limit(cfg.max_body_bytes);
        if (parser.content_length() && *parser.content_length() > cfg.max_body_bytes)
            return 0;  // 413
        feed(parser, in, ec, false);
        if (ec || !parser.is_done()) return 0;

        auto msg = parser.release();
        const bool keep_alive = msg.keep_alive();
        bool bad = false;
        const auto req = to_request(std::move(msg), "127.0.0.1", bad);
        if (!bad) {
            FUZZ_CHECK(!req.path.empty() && req.path.front() == '/');
            handle(req);
        }
        if (!keep_alive) break;
    }
    return 0;
}

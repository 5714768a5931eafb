#pragma once
// POST /v1/sessions to im-rest (HTTP or HTTPS) on the client's io_context.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "imclient/types.hpp"

namespace imclient::detail {

struct RestUrl {
    bool tls = false;
    std::string host;         // without brackets
    std::string port;         // numeric
    std::string host_header;  // host[:port] as written
    std::string base_path;    // "" or "/prefix" (no trailing slash)
};

std::optional<RestUrl> parse_rest_url(std::string_view url);

struct RestLoginRequest {
    std::string rest_url;
    std::string username;
    std::string password;
    std::string device_id;
    std::string client_version;
    std::string tls_ca_file;
    std::chrono::milliseconds connect_timeout{5000};
    std::chrono::milliseconds request_timeout{10000};
};

struct RestLoginResult {
    ErrorCode code =
        ErrorCode::none;  // none, unauthenticated, rest_error, unreachable, invalid_argument
    int status = 0;
    std::string message;
    std::string token;
    std::uint64_t user_id = 0;
    std::vector<std::string> connectors;
};

// Parses the 201 body of POST /v1/sessions (or an error body) into `out`.
void parse_login_answer(int status, std::string_view body, RestLoginResult& out);

// Runs the request; done() is called once on the io_context's thread.
void rest_login(boost::asio::io_context& io, RestLoginRequest request,
                std::function<void(RestLoginResult)> done);

}  // namespace imclient::detail

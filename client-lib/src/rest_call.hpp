#pragma once
// One HTTP(S) request to im-rest on an io_context: the transport that rest_login and im-cli's
// REST calls share. Bounded (answer body size, connect and request timeouts); never blocks.

#include <chrono>
#include <functional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "imclient/types.hpp"

namespace imclient::detail {

struct RestCall {
    std::string rest_url;  // http://host:port[/prefix] or https://...
    std::string method = "GET";
    std::string target;        // "/v1/friends?x=y" (appended to the url's base path)
    std::string bearer_token;  // empty: no Authorization header
    std::string json_body;     // empty: no body (and no Content-Type)
    std::string user_agent = "imclient/0.1";
    std::string tls_ca_file;
    std::chrono::milliseconds connect_timeout{5000};
    std::chrono::milliseconds request_timeout{10000};
    std::size_t max_answer_bytes = 1024 * 1024;
};

struct RestAnswer {
    ErrorCode code = ErrorCode::none;  // none (any HTTP status), unreachable, invalid_argument
    std::string message;               // what failed when code != none
    int status = 0;
    std::string body;
};

// Runs the request; done() is called once, on the io_context's thread.
void rest_call(boost::asio::io_context& io, RestCall call, std::function<void(RestAnswer)> done);

}  // namespace imclient::detail

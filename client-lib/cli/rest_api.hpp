#pragma once
// im-cli's REST calls to im-rest: synchronous on the calling thread (which runs a private
// io_context for the call; never one of imclient's threads), over imclient's rest_call transport.

#include <cstdint>
#include <stdexcept>
#include <string>

#include "json_lite.hpp"

namespace imcli {

using imclient::detail::JsonValue;

// im-rest answered with an error status, or could not be reached.
struct RestError : std::runtime_error {
    RestError(int status_, std::string code_, const std::string& what)
        : std::runtime_error(what), status(status_), code(std::move(code_)) {}
    int status;        // 0: not reached
    std::string code;  // the JSON error code ("username_taken"), or empty
};

class RestApi {
  public:
    RestApi(std::string rest_url, std::string token);

    // A 2xx answer's JSON body (null for 204); throws RestError otherwise, NotLoggedIn for a
    // 401 to a call made with a token (the saved session is no longer valid).
    JsonValue get(const std::string& target);
    JsonValue post(const std::string& target, const std::string& json_body);
    JsonValue del(const std::string& target);

    // GET /v1/users?username=NAME -> id; RestError 404 user_not_found ("no user named ...").
    std::uint64_t user_id_of(const std::string& username);
    // GET /v1/users/{id} -> username ("user#ID" when it cannot be asked).
    std::string username_of(std::uint64_t id);

  private:
    JsonValue call(const std::string& method, const std::string& target, const std::string& body);
    std::string url_;
    std::string token_;
};

// Helpers over JsonValue for the answers im-cli reads.
std::uint64_t json_u64(const JsonValue& v, const char* key);
std::string json_str(const JsonValue& v, const char* key);
bool json_bool(const JsonValue& v, const char* key);

}  // namespace imcli

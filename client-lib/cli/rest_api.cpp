#include "rest_api.hpp"

#include <boost/asio/io_context.hpp>

#include "rest_call.hpp"
#include "session_file.hpp"

namespace imcli {

using imclient::ErrorCode;
namespace detail = imclient::detail;

RestApi::RestApi(std::string rest_url, std::string token)
    : url_(std::move(rest_url)), token_(std::move(token)) {}

JsonValue RestApi::call(const std::string& method, const std::string& target,
                        const std::string& body) {
    detail::RestCall c;
    c.rest_url = url_;
    c.method = method;
    c.target = target;
    c.bearer_token = token_;
    c.json_body = body;
    c.user_agent = "im-cli/0.1";
    detail::RestAnswer answer;
    boost::asio::io_context io;
    detail::rest_call(io, std::move(c), [&answer](detail::RestAnswer a) { answer = std::move(a); });
    io.run();
    if (answer.code != ErrorCode::none) {
        throw RestError(0, "", answer.message + " (is the cluster up? im-rest at " + url_ + ")");
    }
    auto json = detail::parse_json(answer.body);
    if (answer.status >= 200 && answer.status < 300) {
        if (answer.status == 204 || answer.body.empty()) return JsonValue{};
        if (!json) throw RestError(answer.status, "", "im-rest: malformed JSON answer");
        return std::move(*json);
    }
    if (answer.status == 401 && !token_.empty()) {
        throw NotLoggedIn(
            "the saved session was refused by im-rest (expired or revoked): run "
            "im-cli login --user NAME --password ...");
    }
    std::string code;
    std::string message;
    if (const JsonValue* err = json ? json->find("error") : nullptr) {
        code = json_str(*err, "code");
        message = json_str(*err, "message");
    }
    throw RestError(answer.status, code,
                    "HTTP " + std::to_string(answer.status) + (code.empty() ? "" : " " + code) +
                        (message.empty() ? "" : ": " + message));
}

JsonValue RestApi::get(const std::string& target) {
    return call("GET", target, "");
}
JsonValue RestApi::post(const std::string& target, const std::string& json_body) {
    return call("POST", target, json_body.empty() ? "{}" : json_body);
}
JsonValue RestApi::del(const std::string& target) {
    return call("DELETE", target, "");
}

std::uint64_t RestApi::user_id_of(const std::string& username) {
    try {
        // Usernames are a-z 0-9 . _ - (checked before): nothing to percent-encode.
        const auto id = json_u64(get("/v1/users?username=" + username), "id");
        if (id == 0) throw RestError(200, "", "im-rest: malformed user answer");
        return id;
    } catch (const RestError& e) {
        if (e.status == 404) throw RestError(404, e.code, "no user named " + username);
        throw;
    }
}

std::string RestApi::username_of(std::uint64_t id) {
    try {
        auto name = json_str(get("/v1/users/" + std::to_string(id)), "username");
        if (!name.empty()) return name;
    } catch (const RestError&) {
    }
    return "user#" + std::to_string(id);
}

std::uint64_t json_u64(const JsonValue& v, const char* key) {
    const JsonValue* f = v.find(key);
    if (!f) return 0;
    if (const auto n = f->as_u64()) return *n;
    if (const auto* s = f->as_string()) return std::strtoull(s->c_str(), nullptr, 10);
    return 0;
}

std::string json_str(const JsonValue& v, const char* key) {
    const JsonValue* f = v.find(key);
    if (!f) return {};
    if (const auto* s = f->as_string()) return *s;
    if (f->type == JsonValue::Type::number) return f->text;
    return {};
}

bool json_bool(const JsonValue& v, const char* key) {
    const JsonValue* f = v.find(key);
    return f && f->type == JsonValue::Type::boolean && f->boolean;
}

}  // namespace imcli

#include "rest_login.hpp"

#include <charconv>
#include <utility>

#include "json_lite.hpp"
#include "rest_call.hpp"

namespace imclient::detail {

namespace asio = boost::asio;

namespace {

bool valid_port(std::string_view p) {
    unsigned v = 0;
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    return ec == std::errc() && end == p.data() + p.size() && v > 0 && v < 65536;
}

}  // namespace

std::optional<RestUrl> parse_rest_url(std::string_view url) {
    RestUrl out;
    if (url.substr(0, 7) == "http://") {
        url.remove_prefix(7);
    } else if (url.substr(0, 8) == "https://") {
        out.tls = true;
        url.remove_prefix(8);
    } else {
        return std::nullopt;
    }
    const auto slash = url.find('/');
    std::string_view authority = url.substr(0, slash);
    std::string_view path =
        slash == std::string_view::npos ? std::string_view{} : url.substr(slash);
    while (!path.empty() && path.back() == '/')
        path.remove_suffix(1);
    if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
    out.host_header = std::string(authority);
    std::string_view port;
    if (authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        out.host = std::string(authority.substr(1, close - 1));
        const auto rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return std::nullopt;
            port = rest.substr(1);
        }
    } else {
        const auto colon = authority.rfind(':');
        out.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    }
    if (out.host.empty()) return std::nullopt;
    if (port.empty()) {
        out.port = out.tls ? "443" : "80";
    } else {
        if (!valid_port(port)) return std::nullopt;
        out.port = std::string(port);
    }
    out.base_path = std::string(path);
    return out;
}

void parse_login_answer(int status, std::string_view body, RestLoginResult& out) {
    out.status = status;
    const auto json = parse_json(body);
    if (status == 200 || status == 201) {
        const JsonValue* token = json ? json->find("token") : nullptr;
        const JsonValue* user = json ? json->find("user") : nullptr;
        const JsonValue* id = user ? user->find("id") : nullptr;
        if (!token || !token->as_string() || !id || !id->as_u64()) {
            out.code = ErrorCode::rest_error;
            out.message = "im-rest: malformed login answer";
            return;
        }
        out.code = ErrorCode::none;
        out.token = *token->as_string();
        out.user_id = *id->as_u64();
        if (const JsonValue* list = json->find("connectors");
            list && list->type == JsonValue::Type::array) {
            for (const auto& c : list->items) {
                if (const auto* s = c.as_string()) out.connectors.push_back(*s);
            }
        }
        return;
    }
    out.code = status == 401 ? ErrorCode::unauthenticated : ErrorCode::rest_error;
    out.message = "im-rest: HTTP " + std::to_string(status);
    const JsonValue* err = json ? json->find("error") : nullptr;
    if (err) {
        const JsonValue* code = err->find("code");
        const JsonValue* message = err->find("message");
        if (code && code->as_string()) out.message += " " + *code->as_string();
        if (message && message->as_string()) out.message += ": " + *message->as_string();
    }
}

void rest_login(asio::io_context& io, RestLoginRequest request,
                std::function<void(RestLoginResult)> done) {
    RestCall call;
    call.rest_url = std::move(request.rest_url);
    call.method = "POST";
    call.target = "/v1/sessions";
    call.user_agent = request.client_version;
    call.tls_ca_file = std::move(request.tls_ca_file);
    call.connect_timeout = request.connect_timeout;
    call.request_timeout = request.request_timeout;
    call.max_answer_bytes = 64 * 1024;
    call.json_body = "{\"username\":" + json_quote(request.username) +
                     ",\"password\":" + json_quote(request.password) +
                     ",\"device_id\":" + json_quote(request.device_id) + "}";
    rest_call(io, std::move(call), [done = std::move(done)](RestAnswer answer) {
        RestLoginResult result;
        if (answer.code != ErrorCode::none) {
            result.code = answer.code;
            result.message = std::move(answer.message);
        } else {
            parse_login_answer(answer.status, answer.body, result);
        }
        done(std::move(result));
    });
}

}  // namespace imclient::detail

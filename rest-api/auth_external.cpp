// The "external" login back-end: POST the credentials as JSON to a configured HTTP(S) service
// and map its answer (the C++ form of yuanrw/IM's UserSpi). authenticate() runs on a blocking
// pool thread; the HTTP call itself (timeouts, TLS) is http_post_json (http_client.hpp).

#include "auth.hpp"

#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "http_client.hpp"
#include "im/server/config.hpp"

namespace im::rest {
namespace {

// ---- The service's answer ------------------------------------------------------------------

// 200's body: {"user_id": "..." | 123, "username": "...", "display_name"?: "..." | null}.
// Returns why it is not acceptable, or nothing when `identity` was filled in.
std::optional<std::string> parse_identity(const std::string& body, ExternalIdentity& identity) {
    const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return "answer is not valid JSON";
    if (!doc.is_object()) return "answer is not a JSON object";

    const auto user_id = doc.find("user_id");
    if (user_id == doc.end()) return "answer has no user_id";
    if (user_id->is_string()) {
        identity.external_ref = user_id->get<std::string>();
    } else if (user_id->is_number_unsigned()) {
        identity.external_ref = std::to_string(user_id->get<std::uint64_t>());
    } else if (user_id->is_number_integer()) {
        identity.external_ref = std::to_string(user_id->get<std::int64_t>());
    } else {
        return "user_id is neither a string nor an integer";
    }
    if (identity.external_ref.empty()) return "user_id is empty";

    const auto username = doc.find("username");
    if (username == doc.end()) return "answer has no username";
    if (!username->is_string()) return "username is not a string";
    identity.username = username->get<std::string>();
    if (identity.username.empty()) return "username is empty";

    const auto display_name = doc.find("display_name");
    if (display_name != doc.end() && !display_name->is_null()) {
        if (!display_name->is_string()) return "display_name is not a string";
        identity.display_name = display_name->get<std::string>();
    }
    return std::nullopt;
}

AuthResult make_result(AuthOutcome outcome, std::string detail) {
    AuthResult r;
    r.outcome = outcome;
    r.detail = std::move(detail);
    return r;
}

}  // namespace

void bind(config::Binder& b, ExternalAuthConfig& c) {
    using std::chrono::milliseconds;
    b.bind("auth.external.url", c.url);
    b.bind("auth.external.ca_file", c.ca_file);
    b.bind_duration("auth.external.connect_timeout", c.connect_timeout, milliseconds(100),
                    std::chrono::minutes(1));
    b.bind_duration("auth.external.timeout", c.timeout, milliseconds(100), std::chrono::minutes(2));
    // Whether a url is required depends on auth.mode (the caller's rule); a url that is set but
    // malformed is a mistake in any mode, so it fails at start-up rather than at every login.
    if (!c.url.empty()) {
        const auto why = http_url_problem(c.url);
        b.require(!why.has_value(), "auth.external.url",
                  "not a valid http:// or https:// URL (" + why.value_or("") + ")");
    }
}

AuthResult ExternalAuthenticator::authenticate(const std::string& username,
                                               const std::string& password) const {
    if (username.empty() || password.empty()) {
        return make_result(AuthOutcome::rejected, "empty username or password");
    }
    if (const auto why = http_url_problem(config_.url))
        return make_result(AuthOutcome::unavailable, "auth.external.url is not usable: " + *why);

    std::string json;
    try {
        nlohmann::json request = nlohmann::json::object();
        request["username"] = username;
        request["password"] = password;
        json = request.dump();
    } catch (const nlohmann::json::exception&) {
        // Not replaced with U+FFFD: two different passwords must never become the same one.
        return make_result(AuthOutcome::rejected, "username or password is not valid UTF-8");
    }

    auto answer = http_post_json(config_.url, json, config_.connect_timeout, config_.timeout,
                                 config_.ca_file);
    const auto elapsed_ms = answer.elapsed.count();
    const auto& where = answer.where;

    if (!answer.ok) {
        spdlog::debug("external auth: {} after {}ms", answer.detail, elapsed_ms);
        return make_result(AuthOutcome::unavailable, std::move(answer.detail));
    }

    spdlog::debug("external auth: {} answered HTTP {} in {}ms", where, answer.status, elapsed_ms);
    if (answer.status == 401 || answer.status == 403) {
        return make_result(AuthOutcome::rejected, "service (" + where + ") answered HTTP " +
                                                      std::to_string(answer.status));
    }
    if (answer.status != 200) {
        return make_result(AuthOutcome::unavailable, "service (" + where + ") answered HTTP " +
                                                         std::to_string(answer.status));
    }
    AuthResult result;
    if (auto problem = parse_identity(answer.body, result.identity)) {
        spdlog::debug("external auth: unusable answer from {}: {}", where, *problem);
        return make_result(AuthOutcome::unavailable,
                           "service (" + where + ") answered 200 but " + *problem);
    }
    result.outcome = AuthOutcome::ok;
    result.detail = "accepted by " + where;
    return result;
}

}  // namespace im::rest

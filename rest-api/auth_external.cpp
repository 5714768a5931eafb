// The "external" login back-end: POST the credentials as JSON to a configured HTTP(S) service
// and map its answer (the C++ form of yuanrw/IM's UserSpi); optionally, account re-checks without
// the password at a second URL. Both run on blocking threads; the HTTP call itself (timeouts,
// TLS) is http_post_json (http_client.hpp).

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
    b.bind("auth.external.check_url", c.check_url);
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
    if (!c.check_url.empty()) {
        const auto why = http_url_problem(c.check_url);
        b.require(!why.has_value(), "auth.external.check_url",
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

AccountCheck ExternalAuthenticator::check_account(const std::string& user_id,
                                                  const std::string& username) const {
    if (config_.check_url.empty()) {
        return {AccountStatus::not_checkable, "auth.external.check_url is not set"};
    }
    if (const auto why = http_url_problem(config_.check_url)) {
        return {AccountStatus::unavailable, "auth.external.check_url is not usable: " + *why};
    }
    std::string json;
    try {
        nlohmann::json request = nlohmann::json::object();
        request["user_id"] = user_id;
        request["username"] = username;
        json = request.dump();
    } catch (const nlohmann::json::exception&) {
        return {AccountStatus::unavailable, "the stored user id is not valid UTF-8"};
    }
    auto answer = http_post_json(config_.check_url, json, config_.connect_timeout, config_.timeout,
                                 config_.ca_file);
    if (!answer.ok) return {AccountStatus::unavailable, std::move(answer.detail)};
    const auto said =
        "service (" + answer.where + ") answered HTTP " + std::to_string(answer.status);
    spdlog::debug("external auth: account check of '{}': {} in {}ms", username, said,
                  answer.elapsed.count());
    if (answer.status == 404 || answer.status == 410) return {AccountStatus::gone, said};
    if (answer.status != 200) return {AccountStatus::unavailable, said};
    const auto doc = nlohmann::json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
    const auto active = doc.is_object() ? doc.find("active") : doc.end();
    if (!doc.is_object() || active == doc.end() || !active->is_boolean()) {
        return {AccountStatus::unavailable, said + " without a boolean \"active\""};
    }
    return active->get<bool>()
               ? AccountCheck{AccountStatus::active, said}
               : AccountCheck{AccountStatus::gone, said + " with \"active\": false"};
}

}  // namespace im::rest

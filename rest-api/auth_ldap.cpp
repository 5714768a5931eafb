// LDAP login: search-then-bind or bind by DN template, with OpenLDAP's synchronous API. Runs on a
// blocking pool thread; every call opens its own connection and closes it on every path.
//
// Outcomes: the directory answering "no" (bad password, no such entry, ambiguous match) is
// `rejected`; anything that stops us from asking it (down, timeout, TLS, the service account or
// the configuration failing, an answer we cannot use) is `unavailable`.
// The password is never logged and never copied into `detail`.

#include <ldap.h>
#include <spdlog/spdlog.h>
#include <sys/time.h>

#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#include "auth.hpp"
#include "im/server/config.hpp"

namespace im::rest {

namespace {

constexpr const char* kPlaceholder = "{username}";
constexpr std::size_t kMaxUsernameBytes = 256;

bool starts_with(const std::string& s, const char* prefix) {
    return s.rfind(prefix, 0) == 0;
}

std::string replace_all(std::string text, const std::string& what, const std::string& with) {
    for (auto pos = text.find(what); pos != std::string::npos;
         pos = text.find(what, pos + with.size())) {
        text.replace(pos, what.size(), with);
    }
    return text;
}

// libldap accepts a space-separated list of URLs (tried in order); every one must be LDAP.
bool valid_url_list(const std::string& urls) {
    std::istringstream in(urls);
    std::string url;
    bool any = false;
    while (in >> url) {
        if (!starts_with(url, "ldap://") && !starts_with(url, "ldaps://")) return false;
        any = true;
    }
    return any;
}

bool uses_ldaps(const std::string& urls) {
    return urls.find("ldaps://") != std::string::npos;
}

}  // namespace

void bind(config::Binder& b, LdapConfig& c) {
    using std::chrono::milliseconds;
    b.bind("auth.ldap.url", c.url);
    b.bind("auth.ldap.start_tls", c.start_tls);
    b.bind("auth.ldap.ca_file", c.ca_file);
    b.bind_choice("auth.ldap.mode", c.mode, {"search", "template"});
    b.bind("auth.ldap.bind_dn_template", c.bind_dn_template);
    b.bind("auth.ldap.search_base", c.search_base);
    b.bind("auth.ldap.search_filter", c.search_filter);
    b.bind("auth.ldap.service_dn", c.service_dn);
    b.bind("auth.ldap.service_password", c.service_password, /*secret=*/true);
    b.bind("auth.ldap.username_attribute", c.username_attribute);
    b.bind("auth.ldap.display_name_attribute", c.display_name_attribute);
    b.bind_duration("auth.ldap.connect_timeout", c.connect_timeout, milliseconds(100),
                    std::chrono::minutes(1));
    b.bind_duration("auth.ldap.timeout", c.timeout, milliseconds(100), std::chrono::minutes(10));

    b.require(valid_url_list(c.url), "auth.ldap.url",
              "must start with ldap:// or ldaps:// (got '" + c.url + "')");
    b.require(!(c.start_tls && uses_ldaps(c.url)), "auth.ldap.start_tls",
              "StartTLS applies to ldap:// URLs; an ldaps:// URL is already TLS");
    b.require(c.mode != "template" || c.bind_dn_template.find(kPlaceholder) != std::string::npos,
              "auth.ldap.bind_dn_template",
              "must contain {username} when auth.ldap.mode is template");
    b.require(c.mode != "search" || c.search_filter.find(kPlaceholder) != std::string::npos,
              "auth.ldap.search_filter", "must contain {username} when auth.ldap.mode is search");
    b.require(!c.username_attribute.empty(), "auth.ldap.username_attribute", "must not be empty");
}

std::string ldap_escape_filter_value(const std::string& value) {
    std::string out;
    out.reserve(value.size());
    for (const char ch : value) {
        switch (ch) {
            case '*':
                out += "\\2a";
                break;
            case '(':
                out += "\\28";
                break;
            case ')':
                out += "\\29";
                break;
            case '\\':
                out += "\\5c";
                break;
            case '\0':
                out += "\\00";
                break;
            default:  // bytes >= 0x80 too: UTF-8 is valid in a filter value
                out += ch;
                break;
        }
    }
    return out;
}

std::string ldap_escape_dn_value(const std::string& value) {
    std::string out;
    out.reserve(value.size());
    for (std::size_t i = 0; i < value.size(); ++i) {
        const char ch = value[i];
        switch (ch) {
            case ',':
            case '+':
            case '"':
            case '\\':
            case '<':
            case '>':
            case ';':
            case '=':
                out += '\\';
                out += ch;
                break;
            case ' ':
                if (i == 0 || i + 1 == value.size()) out += '\\';
                out += ch;
                break;
            case '#':
                if (i == 0) out += '\\';
                out += ch;
                break;
            default:
                // Controls as \XX: OpenLDAP drops unescaped \t \n \r around a value like spaces,
                // so "alice\n" would name alice's entry.
                if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
                    static const char* hex = "0123456789abcdef";
                    out += '\\';
                    out += hex[static_cast<unsigned char>(ch) >> 4];
                    out += hex[static_cast<unsigned char>(ch) & 0xf];
                } else {
                    out += ch;
                }
                break;
        }
    }
    return out;
}

namespace {

AuthResult outcome(AuthOutcome o, std::string detail) {
    AuthResult r;
    r.outcome = o;
    r.detail = std::move(detail);
    return r;
}

timeval to_timeval(std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
}

std::string describe(int rc) {
    return std::string(ldap_err2string(rc)) + " (" + std::to_string(rc) + ")";
}

// The directory answered and refused these credentials (as opposed to not answering).
bool is_rejection(int rc) {
    switch (rc) {
        case LDAP_INVALID_CREDENTIALS:
        case LDAP_INAPPROPRIATE_AUTH:  // the entry has no password
        case LDAP_INVALID_DN_SYNTAX:   // template mode: what the username made of the DN
        case LDAP_NO_SUCH_OBJECT:
        case LDAP_UNWILLING_TO_PERFORM:  // e.g. an unauthenticated bind, a disabled account
        case LDAP_INSUFFICIENT_ACCESS:
        case LDAP_CONSTRAINT_VIOLATION:  // password policy: locked, expired
            return true;
        default:
            return false;
    }
}

struct MessageFree {
    void operator()(LDAPMessage* m) const { ldap_msgfree(m); }
};
using Message = std::unique_ptr<LDAPMessage, MessageFree>;

// One LDAP connection, unbound (and so closed) when it goes out of scope, on every path.
class LdapConnection {
  public:
    LdapConnection() = default;
    LdapConnection(const LdapConnection&) = delete;
    LdapConnection& operator=(const LdapConnection&) = delete;
    ~LdapConnection() {
        if (ld_ != nullptr) ldap_unbind_ext_s(ld_, nullptr, nullptr);
    }

    // Sets up the handle (libldap connects lazily, at the first operation; StartTLS is one).
    // Returns an error text, or nothing on success.
    std::optional<std::string> open(const LdapConfig& c) {
        int rc = ldap_initialize(&ld_, c.url.c_str());
        if (rc != LDAP_SUCCESS) return "ldap_initialize(" + c.url + "): " + describe(rc);

        int version = LDAP_VERSION3;
        const timeval connect_tv = to_timeval(c.connect_timeout);
        const timeval op_tv = to_timeval(c.timeout);
        if ((rc = ldap_set_option(ld_, LDAP_OPT_PROTOCOL_VERSION, &version)) != LDAP_OPT_SUCCESS) {
            return "setting the protocol version failed: " + describe(rc);
        }
        if ((rc = ldap_set_option(ld_, LDAP_OPT_NETWORK_TIMEOUT, &connect_tv)) !=
            LDAP_OPT_SUCCESS) {
            return "setting the connect timeout failed: " + describe(rc);
        }
        if ((rc = ldap_set_option(ld_, LDAP_OPT_TIMEOUT, &op_tv)) != LDAP_OPT_SUCCESS) {
            return "setting the operation timeout failed: " + describe(rc);
        }
        // Never chase referrals: they would bind with the user's password to another server.
        if ((rc = ldap_set_option(ld_, LDAP_OPT_REFERRALS, nullptr /* LDAP_OPT_OFF */)) !=
            LDAP_OPT_SUCCESS) {
            return "disabling referrals failed: " + describe(rc);
        }

        if (c.start_tls || uses_ldaps(c.url)) {
            if (!c.ca_file.empty() &&
                (rc = ldap_set_option(ld_, LDAP_OPT_X_TLS_CACERTFILE, c.ca_file.c_str())) !=
                    LDAP_OPT_SUCCESS) {
                return "setting the TLS CA file failed: " + describe(rc);
            }
            int demand = LDAP_OPT_X_TLS_DEMAND;
            if ((rc = ldap_set_option(ld_, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand)) !=
                LDAP_OPT_SUCCESS) {
                return "requiring a valid server certificate failed: " + describe(rc);
            }
            int is_server = 0;  // the TLS options above apply only once a new context is made
            if ((rc = ldap_set_option(ld_, LDAP_OPT_X_TLS_NEWCTX, &is_server)) !=
                LDAP_OPT_SUCCESS) {
                return "creating the TLS context failed (ca_file '" + c.ca_file +
                       "'): " + describe(rc);
            }
        }
        if (c.start_tls) {
            rc = ldap_start_tls_s(ld_, nullptr, nullptr);
            if (rc != LDAP_SUCCESS) return "StartTLS failed: " + describe(rc) + diagnostic();
        }
        return std::nullopt;
    }

    int simple_bind(const std::string& dn, const std::string& password) {
        berval cred{};
        cred.bv_len = password.size();
        cred.bv_val =
            const_cast<char*>(password.data());  // read only; the C API is not const-correct
        return ldap_sasl_bind_s(ld_, dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr,
                                nullptr);
    }

    // A search asking for `attributes` only, at most `size_limit` entries, within the timeout.
    int search(const std::string& base, int scope, const std::string& filter,
               const std::vector<std::string>& attributes, std::chrono::milliseconds timeout,
               int size_limit, Message& result) {
        std::vector<std::string> copies(attributes);  // the C API wants char*, not const char*
        std::vector<char*> attrs;
        for (auto& a : copies)
            attrs.push_back(a.data());
        attrs.push_back(nullptr);
        timeval tv = to_timeval(timeout);
        LDAPMessage* res = nullptr;
        const int rc = ldap_search_ext_s(ld_, base.c_str(), scope, filter.c_str(), attrs.data(),
                                         /*attrsonly=*/0, nullptr, nullptr, &tv, size_limit, &res);
        result.reset(res);
        return rc;
    }

    // The server's diagnostic message of the last operation, as " - message", or empty.
    std::string diagnostic() const {
        char* msg = nullptr;
        if (ldap_get_option(ld_, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg) != LDAP_OPT_SUCCESS ||
            msg == nullptr)
            return {};
        std::string text = *msg != '\0' ? std::string(" - ") + msg : std::string();
        ldap_memfree(msg);
        return text;
    }

    LDAP* get() const { return ld_; }

  private:
    LDAP* ld_ = nullptr;
};

std::optional<std::string> first_value(LDAP* ld, LDAPMessage* entry, const std::string& attribute) {
    if (attribute.empty()) return std::nullopt;
    berval** values = ldap_get_values_len(ld, entry, attribute.c_str());
    if (values == nullptr) return std::nullopt;
    std::optional<std::string> v;
    if (values[0] != nullptr) v.emplace(values[0]->bv_val, values[0]->bv_len);
    ldap_value_free_len(values);
    return v;
}

std::string entry_dn(LDAP* ld, LDAPMessage* entry) {
    char* dn = ldap_get_dn(ld, entry);
    if (dn == nullptr) return {};
    std::string s(dn);
    ldap_memfree(dn);
    return s;
}

std::vector<std::string> wanted_attributes(const LdapConfig& c) {
    std::vector<std::string> attrs{c.username_attribute};
    if (!c.display_name_attribute.empty()) attrs.push_back(c.display_name_attribute);
    attrs.emplace_back("cn");
    return attrs;
}

// Fills the identity from an entry; empty optional when the entry lacks the username attribute
// (a configuration that does not match the directory).
std::optional<ExternalIdentity> identity_of(LDAP* ld, LDAPMessage* entry, const LdapConfig& c,
                                            std::string dn) {
    auto username = first_value(ld, entry, c.username_attribute);
    if (!username || username->empty()) return std::nullopt;
    ExternalIdentity id;
    id.username = std::move(*username);
    auto display = first_value(ld, entry, c.display_name_attribute);
    if (!display || display->empty()) display = first_value(ld, entry, "cn");
    id.display_name = display.value_or("");
    id.external_ref = std::move(dn);
    return id;
}

// Binds as `dn` with the user's password and maps the result.
std::optional<AuthResult> user_bind(LdapConnection& conn, const std::string& username,
                                    const std::string& dn, const std::string& password) {
    const int rc = conn.simple_bind(dn, password);
    spdlog::debug("ldap: bind as user '{}' dn '{}': {}", username, dn, describe(rc));
    if (rc == LDAP_SUCCESS) return std::nullopt;
    if (is_rejection(rc))
        return outcome(AuthOutcome::rejected, "ldap: bind as " + dn + " refused: " + describe(rc));
    return outcome(AuthOutcome::unavailable,
                   "ldap: bind as " + dn + " failed: " + describe(rc) + conn.diagnostic());
}

AuthResult search_then_bind(LdapConnection& conn, const LdapConfig& c, const std::string& username,
                            const std::string& password) {
    if (!c.service_dn.empty()) {
        // An empty password would make this an unauthenticated bind that some directories accept
        // and then answer with nothing: call it the configuration error it is.
        if (c.service_password.empty()) {
            return outcome(AuthOutcome::unavailable, "ldap: auth.ldap.service_password is empty");
        }
        const int rc = conn.simple_bind(c.service_dn, c.service_password);
        spdlog::debug("ldap: bind as service '{}': {}", c.service_dn, describe(rc));
        if (rc != LDAP_SUCCESS) {
            return outcome(AuthOutcome::unavailable, "ldap: service bind as " + c.service_dn +
                                                         " failed: " + describe(rc) +
                                                         conn.diagnostic());
        }
    }

    const std::string filter =
        replace_all(c.search_filter, kPlaceholder, ldap_escape_filter_value(username));
    Message result;
    const int rc =
        conn.search(c.search_base, LDAP_SCOPE_SUBTREE, filter, wanted_attributes(c), c.timeout,
                    /*size_limit=*/2, result);
    spdlog::debug("ldap: search base '{}' filter '{}': {}", c.search_base, filter, describe(rc));
    if (rc == LDAP_SIZELIMIT_EXCEEDED) {
        return outcome(AuthOutcome::rejected,
                       "ldap: more than one entry matches user '" + username + "'");
    }
    if (rc != LDAP_SUCCESS) {
        return outcome(
            AuthOutcome::unavailable,
            "ldap: search for user '" + username + "' failed: " + describe(rc) + conn.diagnostic());
    }
    const int count = ldap_count_entries(conn.get(), result.get());
    if (count < 0) return outcome(AuthOutcome::unavailable, "ldap: unreadable search result");
    if (count == 0)
        return outcome(AuthOutcome::rejected, "ldap: no entry for user '" + username + "'");
    if (count > 1) {
        return outcome(AuthOutcome::rejected,
                       "ldap: " + std::to_string(count) + " entries match user '" + username + "'");
    }

    LDAPMessage* entry = ldap_first_entry(conn.get(), result.get());
    std::string dn = entry != nullptr ? entry_dn(conn.get(), entry) : std::string();
    // An empty DN would turn the next bind into an anonymous one.
    if (dn.empty()) return outcome(AuthOutcome::unavailable, "ldap: the matching entry has no DN");
    spdlog::debug("ldap: user '{}' is '{}'", username, dn);
    auto identity = identity_of(conn.get(), entry, c, dn);
    if (!identity) {
        return outcome(AuthOutcome::unavailable, "ldap: entry " + dn + " has no attribute '" +
                                                     c.username_attribute +
                                                     "' (auth.ldap.username_attribute)");
    }

    if (auto refused = user_bind(conn, username, dn, password)) return std::move(*refused);
    AuthResult ok;
    ok.outcome = AuthOutcome::ok;
    ok.identity = std::move(*identity);
    ok.detail = "ldap: search-then-bind as " + dn;
    return ok;
}

AuthResult bind_by_template(LdapConnection& conn, const LdapConfig& c, const std::string& username,
                            const std::string& password) {
    const std::string dn =
        replace_all(c.bind_dn_template, kPlaceholder, ldap_escape_dn_value(username));
    if (auto refused = user_bind(conn, username, dn, password)) return std::move(*refused);

    // Bound as the user: read the entry itself for the canonical username and the display name.
    Message result;
    const int rc =
        conn.search(dn, LDAP_SCOPE_BASE, "(objectClass=*)", wanted_attributes(c), c.timeout,
                    /*size_limit=*/1, result);
    spdlog::debug("ldap: read own entry '{}': {}", dn, describe(rc));
    if (rc != LDAP_SUCCESS) {
        return outcome(AuthOutcome::unavailable,
                       "ldap: bound as " + dn +
                           " but cannot read that entry (the user needs read access to it): " +
                           describe(rc) + conn.diagnostic());
    }
    LDAPMessage* entry = ldap_first_entry(conn.get(), result.get());
    if (entry == nullptr)
        return outcome(AuthOutcome::unavailable,
                       "ldap: bound as " + dn + " but the entry is not visible");
    auto identity = identity_of(conn.get(), entry, c, entry_dn(conn.get(), entry));
    if (!identity) {
        return outcome(AuthOutcome::unavailable, "ldap: entry " + dn + " has no attribute '" +
                                                     c.username_attribute +
                                                     "' (auth.ldap.username_attribute)");
    }
    if (identity->external_ref.empty()) identity->external_ref = dn;
    AuthResult ok;
    ok.outcome = AuthOutcome::ok;
    ok.identity = std::move(*identity);
    ok.detail = "ldap: bind as " + dn;
    return ok;
}

AccountCheck account(AccountStatus status, std::string detail) {
    return AccountCheck{status, std::move(detail)};
}

// The DN of an entry's parent, parsed and written back by libldap (RFC 4514 escaping kept);
// nothing when `dn` does not parse or has a single RDN.
std::optional<std::string> parent_dn(const std::string& dn) {
    LDAPDN parsed = nullptr;
    if (ldap_str2dn(dn.c_str(), &parsed, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS ||
        parsed == nullptr) {
        return std::nullopt;
    }
    std::optional<std::string> out;
    char* text = nullptr;
    if (parsed[0] != nullptr && parsed[1] != nullptr &&
        ldap_dn2str(parsed + 1, &text, LDAP_DN_FORMAT_LDAPV3) == LDAP_SUCCESS && text != nullptr) {
        out = std::string(text);
    }
    if (text != nullptr) ldap_memfree(text);
    ldap_dnfree(parsed);
    return out;
}

// A base search for `dn` with `filter`, asking for no attributes: the result code and, on
// success, the number of entries (0: the entry exists but does not match `filter`).
struct BaseRead {
    int rc = LDAP_OTHER;
    int entries = -1;
};

BaseRead read_base(LdapConnection& conn, const std::string& dn, const std::string& filter,
                   std::chrono::milliseconds timeout) {
    Message result;
    BaseRead r;
    r.rc = conn.search(dn, LDAP_SCOPE_BASE, filter, {"1.1"} /* no attributes */, timeout,
                       /*size_limit=*/1, result);
    if (r.rc == LDAP_SUCCESS) r.entries = ldap_count_entries(conn.get(), result.get());
    return r;
}

}  // namespace

bool LdapAuthenticator::can_check_accounts() const {
    if (config_.mode == "search") return true;
    return !config_.service_dn.empty() && !config_.service_password.empty();
}

AccountCheck LdapAuthenticator::check_account(const std::string& username,
                                              const std::string& dn) const {
    if (!can_check_accounts()) {
        return account(AccountStatus::not_checkable,
                       "ldap: template mode without auth.ldap.service_dn and service_password");
    }
    if (dn.empty())
        return account(AccountStatus::unavailable, "ldap: no DN stored for the account");
    LdapConnection conn;
    if (auto error = conn.open(config_))
        return account(AccountStatus::unavailable, "ldap: " + *error);
    if (!config_.service_dn.empty()) {
        if (config_.service_password.empty()) {
            return account(AccountStatus::unavailable, "ldap: auth.ldap.service_password is empty");
        }
        const int rc = conn.simple_bind(config_.service_dn, config_.service_password);
        if (rc != LDAP_SUCCESS) {
            return account(AccountStatus::unavailable,
                           "ldap: service bind as " + config_.service_dn +
                               " failed: " + describe(rc) + conn.diagnostic());
        }
    }
    // Search mode: the entry must still match the login filter (which may exclude, say, disabled
    // accounts), for the account's username.
    const std::string filter =
        config_.mode == "search"
            ? replace_all(config_.search_filter, kPlaceholder, ldap_escape_filter_value(username))
            : std::string("(objectClass=*)");
    const auto entry = read_base(conn, dn, filter, config_.timeout);
    spdlog::debug("ldap: re-check of '{}' ({}): {}, {} entr(ies)", username, dn, describe(entry.rc),
                  entry.entries);
    if (entry.rc == LDAP_SUCCESS) {
        if (entry.entries < 0)
            return account(AccountStatus::unavailable, "ldap: unreadable search result");
        if (entry.entries == 0)
            return account(AccountStatus::gone, "ldap: " + dn + " no longer matches " + filter);
        return account(AccountStatus::active, "ldap: " + dn + " exists");
    }
    if (entry.rc != LDAP_NO_SUCH_OBJECT) {
        return account(AccountStatus::unavailable, "ldap: reading " + dn + " failed: " +
                                                       describe(entry.rc) + conn.diagnostic());
    }
    // "No such object" is also what a directory answers when access rights hide the entry, or
    // for a DN outside its naming contexts: believe it only when the parent entry is visible.
    const auto parent = parent_dn(dn);
    if (!parent)
        return account(AccountStatus::unavailable,
                       "ldap: no entry " + dn + ", and it has no parent to confirm");
    const auto up = read_base(conn, *parent, "(objectClass=*)", config_.timeout);
    if (up.rc == LDAP_SUCCESS && up.entries == 1)
        return account(AccountStatus::gone, "ldap: no entry " + dn);
    return account(AccountStatus::unavailable,
                   "ldap: no entry " + dn + ", but its parent is not visible either (" +
                       describe(up.rc) + "): check the access rights of the search account");
}

AuthResult LdapAuthenticator::authenticate(const std::string& username,
                                           const std::string& password) const {
    // Checked here too, although the caller checks: an empty password is an unauthenticated bind
    // (RFC 4513 5.1.2), which a directory may accept without checking anything.
    if (password.empty()) return outcome(AuthOutcome::rejected, "ldap: empty password");
    if (username.empty()) return outcome(AuthOutcome::rejected, "ldap: empty username");
    if (username.size() > kMaxUsernameBytes)
        return outcome(AuthOutcome::rejected, "ldap: username too long");
    if (username.find('\0') != std::string::npos) {
        return outcome(AuthOutcome::rejected, "ldap: username contains a NUL byte");
    }

    LdapConnection conn;
    if (auto error = conn.open(config_)) {
        spdlog::debug("ldap: connection to {} for user '{}' failed: {}", config_.url, username,
                      *error);
        return outcome(AuthOutcome::unavailable, "ldap: " + *error);
    }
    return config_.mode == "template" ? bind_by_template(conn, config_, username, password)
                                      : search_then_bind(conn, config_, username, password);
}

}  // namespace im::rest

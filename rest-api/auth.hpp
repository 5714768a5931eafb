#pragma once
// Login back-ends other than local passwords. Each authenticator is synchronous and runs on a
// blocking thread (never on an I/O thread); each call has its own connect and operation
// timeouts. The REST layer maps outcomes to HTTP: ok -> session, rejected -> 401,
// unavailable -> 503. An empty password is refused by the caller before any authenticator runs.
// check_account() asks about an existing account without its password: the re-check of a token
// refresh (directory_recheck.hpp).

#include <chrono>
#include <cstdint>
#include <string>

namespace im::config {
class Binder;
}

namespace im::rest {

enum class AuthOutcome {
    ok,           // credentials accepted; identity is filled in
    rejected,     // wrong password, unknown user, ambiguous match
    unavailable,  // the directory or service could not be asked (down, timeout, 5xx, bad answer)
};

// Who the back-end says the user is. The users table gets (or already has) a row for it.
struct ExternalIdentity {
    std::string username;      // the account name to use locally (validated by the caller)
    std::string display_name;  // may be empty: the caller falls back to the username
    std::string external_ref;  // LDAP: the entry's DN; external: the service's user id
};

struct AuthResult {
    AuthOutcome outcome = AuthOutcome::unavailable;
    ExternalIdentity identity;
    std::string detail;  // for logs only: never contains the password
};

// What the directory or service says now about an account it authenticated before.
enum class AccountStatus {
    active,         // it still exists (and, for LDAP search mode, still matches the login filter)
    gone,           // it answered that the account no longer exists or no longer qualifies
    unavailable,    // it could not be asked or gave no usable answer: keep the sessions, ask again
    not_checkable,  // nothing can be asked without the password (configuration)
};

struct AccountCheck {
    AccountStatus status = AccountStatus::unavailable;
    std::string detail;  // for logs
};

// ---- LDAP (OpenLDAP libldap) ----------------------------------------------------------------
struct LdapConfig {
    std::string url = "ldap://127.0.0.1:3890";  // ldaps:// for TLS from the start
    bool start_tls = false;                     // StartTLS on an ldap:// connection
    std::string ca_file;                        // CA bundle to verify the server (TLS)
    // "search": bind as the service account, find the user's entry with search_filter, then bind
    // as that entry's DN with the user's password. "template": bind directly as
    // bind_dn_template with {username} replaced (escaped per RFC 4514).
    std::string mode = "search";
    std::string bind_dn_template = "uid={username},ou=people,dc=im,dc=test";
    std::string search_base = "ou=people,dc=im,dc=test";
    std::string search_filter = "(&(objectClass=inetOrgPerson)(uid={username}))";  // {username} escaped per RFC 4515
    std::string service_dn = "cn=reader,ou=services,dc=im,dc=test";
    std::string service_password;
    std::string username_attribute = "uid";
    std::string display_name_attribute = "displayName";  // falls back to cn
    std::chrono::milliseconds connect_timeout{3000};
    std::chrono::milliseconds timeout{5000};  // per LDAP operation
};

void bind(config::Binder& b, LdapConfig& c);  // keys auth.ldap.*

// RFC 4515: escapes * ( ) \ NUL (and every byte >= 0x80 is kept as is: UTF-8 is valid in filters).
std::string ldap_escape_filter_value(const std::string& value);
// RFC 4514: escapes , + " \ < > ; = and a leading space or #, a trailing space; NUL and every
// other control character as \XX (OpenLDAP would drop a leading or trailing \t \n \r).
std::string ldap_escape_dn_value(const std::string& value);

class LdapAuthenticator {
public:
    explicit LdapAuthenticator(LdapConfig config) : config_(std::move(config)) {}
    // Blocking. Never call with an empty password (refused before, see above).
    AuthResult authenticate(const std::string& username, const std::string& password) const;
    // Search mode: always (the same identity as a login's search: the service account, or
    // anonymous when service_dn is empty). Template mode: only with service_dn and
    // service_password.
    bool can_check_accounts() const;
    // Blocking. Reads the entry `dn` (users.external_ref) with a base search as that identity; in
    // search mode it must still match search_filter for `username`. No such entry is `gone` only
    // when the entry's parent is visible (so an account that sees nothing, or a DN outside the
    // directory, never logs anybody out); an existing entry that no longer matches is `gone`.
    AccountCheck check_account(const std::string& username, const std::string& dn) const;
    const LdapConfig& config() const { return config_; }

private:
    LdapConfig config_;
};

// ---- External HTTP service (the C++ answer to yuanrw/IM's UserSpi) ---------------------------
struct ExternalAuthConfig {
    std::string url;  // http://host:port/path or https://...
    std::string check_url;  // optional: account re-checks (same TLS settings and timeouts)
    std::string ca_file;  // for https: CA bundle (default: the system's)
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds timeout{5000};  // whole request
};

void bind(config::Binder& b, ExternalAuthConfig& c);  // keys auth.external.*

// POSTs {"username", "password"} as JSON. 200 with {"user_id", "username", "display_name"}
// accepts; 401/403 rejects; anything else (timeout, 5xx, malformed answer) is unavailable.
class ExternalAuthenticator {
public:
    explicit ExternalAuthenticator(ExternalAuthConfig config) : config_(std::move(config)) {}
    AuthResult authenticate(const std::string& username, const std::string& password) const;
    bool can_check_accounts() const { return !config_.check_url.empty(); }
    // POSTs {"user_id", "username"} (the service's user id as a string, the local username) to
    // check_url. 200 {"active": true} is active; 200 {"active": false}, 404 and 410 are gone;
    // anything else (timeout, 5xx, 401/403, another answer) is unavailable.
    AccountCheck check_account(const std::string& user_id, const std::string& username) const;
    const ExternalAuthConfig& config() const { return config_; }

private:
    ExternalAuthConfig config_;
};

}  // namespace im::rest

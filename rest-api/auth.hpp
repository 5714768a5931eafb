#pragma once
// Login back-ends other than local passwords. Each authenticator is synchronous and runs on a
// blocking pool thread (never on an I/O thread); each call has its own connect and operation
// timeouts. The REST layer maps outcomes to HTTP: ok -> session, rejected -> 401,
// unavailable -> 503. An empty password is refused by the caller before any authenticator runs.

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
// RFC 4514: escapes , + " \ < > ; = and a leading space or #, a trailing space, NUL.
std::string ldap_escape_dn_value(const std::string& value);

class LdapAuthenticator {
public:
    explicit LdapAuthenticator(LdapConfig config) : config_(std::move(config)) {}
    // Blocking. Never call with an empty password (refused before, see above).
    AuthResult authenticate(const std::string& username, const std::string& password) const;
    const LdapConfig& config() const { return config_; }

private:
    LdapConfig config_;
};

// ---- External HTTP service (the C++ answer to yuanrw/IM's UserSpi) ---------------------------
struct ExternalAuthConfig {
    std::string url;  // http://host:port/path or https://...
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
    const ExternalAuthConfig& config() const { return config_; }

private:
    ExternalAuthConfig config_;
};

}  // namespace im::rest

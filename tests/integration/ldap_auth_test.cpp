// LdapAuthenticator against the real slapd of scripts/services.sh (seed:
// scripts/services/seed.ldif.in).
//
//   IM_RUN_DIR=/tmp/x IM_LDAP_PORT=23890 [IM_LDAP_ALLOW_ANON_DN=1] scripts/services.sh start ldap
//   source /tmp/x/env && build/tests/ldap_auth_itest
//
// With IM_LDAP_ALLOW_ANON_DN=1 slapd itself accepts "DN + empty password" as an anonymous bind;
// the EmptyPassword test first proves that, so its assertion that we refuse it means something.

#include <gtest/gtest.h>
#include <ldap.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "auth.hpp"
#include "test_env.hpp"

namespace im::rest {
namespace {

using im::test::TestEnv;
using std::chrono::milliseconds;

std::string people_base() {
    return "ou=people," + TestEnv::get().ldap_base;
}
std::string alice_dn() {
    return "uid=alice," + people_base();
}

LdapConfig search_config() {
    const auto& env = TestEnv::get();
    LdapConfig c;
    c.url = env.ldap_url();
    c.mode = "search";
    c.search_base = people_base();
    c.search_filter = "(&(objectClass=inetOrgPerson)(uid={username}))";
    c.service_dn = "cn=reader,ou=services," + env.ldap_base;
    c.service_password = "reader_pass";
    c.connect_timeout = milliseconds(2000);
    c.timeout = milliseconds(5000);
    return c;
}

LdapConfig template_config() {
    LdapConfig c = search_config();
    c.mode = "template";
    c.bind_dn_template = "uid={username}," + people_base();
    c.service_dn.clear();
    c.service_password.clear();
    return c;
}

AuthOutcome outcome_of(const LdapConfig& c, const std::string& user, const std::string& password) {
    return LdapAuthenticator(c).authenticate(user, password).outcome;
}

// A raw simple bind with libldap, bypassing LdapAuthenticator: what the directory itself accepts.
int raw_simple_bind(const std::string& dn, const std::string& password) {
    LDAP* ld = nullptr;
    int rc = ldap_initialize(&ld, TestEnv::get().ldap_url().c_str());
    if (rc != LDAP_SUCCESS) return rc;
    int version = LDAP_VERSION3;
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    berval cred{};
    cred.bv_len = password.size();
    cred.bv_val = const_cast<char*>(password.data());
    rc = ldap_sasl_bind_s(ld, dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
    ldap_unbind_ext_s(ld, nullptr, nullptr);
    return rc;
}

// A loopback port that nobody else can take. Not listening: connections to it are refused.
// Listening (`silent`): the kernel completes every handshake, but nothing ever answers.
class LoopbackPort {
  public:
    explicit LoopbackPort(bool silent = false) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        socklen_t len = sizeof addr;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::runtime_error("cannot reserve a loopback port");
        }
        if (silent && ::listen(fd_, 16) != 0)
            throw std::runtime_error("cannot listen on a loopback port");
        port_ = ntohs(addr.sin_port);
    }
    ~LoopbackPort() {
        if (fd_ >= 0) ::close(fd_);
    }
    LoopbackPort(const LoopbackPort&) = delete;
    LoopbackPort& operator=(const LoopbackPort&) = delete;
    std::uint16_t port() const { return port_; }

  private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
};

// ---- search mode ----------------------------------------------------------------------------

TEST(LdapSearchMode, AliceLogsIn) {
    const auto r = LdapAuthenticator(search_config()).authenticate("alice", "alice_pass");
    ASSERT_EQ(r.outcome, AuthOutcome::ok) << r.detail;
    EXPECT_EQ(r.identity.username, "alice");
    EXPECT_EQ(r.identity.display_name, "Alice Liddell");
    EXPECT_EQ(r.identity.external_ref, alice_dn());
}

TEST(LdapSearchMode, OtherSeedUsersLogIn) {
    const auto bob = LdapAuthenticator(search_config()).authenticate("bob", "bob_pass");
    ASSERT_EQ(bob.outcome, AuthOutcome::ok) << bob.detail;
    EXPECT_EQ(bob.identity.username, "bob");
    EXPECT_EQ(bob.identity.display_name, "Bob Builder");

    // Filter metacharacters in the entry's own attributes are only data.
    const auto dave = LdapAuthenticator(search_config()).authenticate("dave", "dave_pass");
    ASSERT_EQ(dave.outcome, AuthOutcome::ok) << dave.detail;
    EXPECT_EQ(dave.identity.display_name, "Dave (QA) *star*");
}

TEST(LdapSearchMode, DirectoryCanonicalUsernameIsReturned) {
    // uid matching is case-insensitive: the identity carries the directory's spelling.
    const auto r = LdapAuthenticator(search_config()).authenticate("ALICE", "alice_pass");
    ASSERT_EQ(r.outcome, AuthOutcome::ok) << r.detail;
    EXPECT_EQ(r.identity.username, "alice");
}

TEST(LdapSearchMode, DisplayNameFallsBackToCn) {
    LdapConfig c = search_config();
    c.display_name_attribute = "description";  // people have none
    const auto r = LdapAuthenticator(c).authenticate("carol", "carol_pass");
    ASSERT_EQ(r.outcome, AuthOutcome::ok) << r.detail;
    EXPECT_EQ(r.identity.display_name, "Carol Danvers");
}

TEST(LdapSearchMode, WrongPasswordIsRejected) {
    const auto r = LdapAuthenticator(search_config()).authenticate("alice", "bob_pass");
    EXPECT_EQ(r.outcome, AuthOutcome::rejected) << r.detail;
    EXPECT_EQ(r.detail.find("bob_pass"), std::string::npos) << r.detail;
    EXPECT_EQ(outcome_of(search_config(), "alice", "alice_pass "), AuthOutcome::rejected);
}

TEST(LdapSearchMode, UnknownUserIsRejected) {
    EXPECT_EQ(outcome_of(search_config(), "mallory", "alice_pass"), AuthOutcome::rejected);
}

TEST(LdapSearchMode, FilterInjectionIsRejected) {
    const auto c = search_config();
    for (const std::string user :
         {"*)(uid=*))(|(uid=*", "*", "alice)(uid=*", "*)(objectClass=*", "admin)(|(password=*)"}) {
        const auto r = LdapAuthenticator(c).authenticate(user, "alice_pass");
        EXPECT_EQ(r.outcome, AuthOutcome::rejected) << "username '" << user << "': " << r.detail;
    }
}

TEST(LdapSearchMode, WildcardPrefixIsNotAWildcard) {
    // Unescaped, (uid=ali*) would match exactly alice and this login would succeed.
    const auto r = LdapAuthenticator(search_config()).authenticate("ali*", "alice_pass");
    EXPECT_EQ(r.outcome, AuthOutcome::rejected) << r.detail;
}

TEST(LdapSearchMode, AmbiguousMatchIsRejected) {
    // A (misconfigured) filter that matches every person: more than one entry, never "the first".
    LdapConfig c = search_config();
    c.search_filter = "(|(uid={username})(objectClass=inetOrgPerson))";
    const auto r = LdapAuthenticator(c).authenticate("alice", "alice_pass");
    EXPECT_EQ(r.outcome, AuthOutcome::rejected) << r.detail;
}

TEST(LdapSearchMode, EmptyPasswordAndBadUsernamesAreRejected) {
    const auto c = search_config();
    EXPECT_EQ(outcome_of(c, "alice", ""), AuthOutcome::rejected);
    EXPECT_EQ(outcome_of(c, "", "alice_pass"), AuthOutcome::rejected);
    EXPECT_EQ(outcome_of(c, std::string("alice\0x", 7), "alice_pass"), AuthOutcome::rejected);
    EXPECT_EQ(outcome_of(c, std::string(300, 'a'), "alice_pass"), AuthOutcome::rejected);
}

TEST(LdapSearchMode, WrongServicePasswordIsUnavailable) {
    LdapConfig c = search_config();
    c.service_password = "not_reader_pass";
    const auto r = LdapAuthenticator(c).authenticate("alice", "alice_pass");
    EXPECT_EQ(r.outcome, AuthOutcome::unavailable) << r.detail;
    EXPECT_EQ(r.detail.find("not_reader_pass"), std::string::npos) << r.detail;
}

TEST(LdapSearchMode, EmptyServicePasswordIsUnavailable) {
    LdapConfig c = search_config();
    c.service_password.clear();
    EXPECT_EQ(outcome_of(c, "alice", "alice_pass"), AuthOutcome::unavailable);
}

TEST(LdapSearchMode, MissingSearchBaseIsUnavailable) {
    LdapConfig c = search_config();
    c.search_base = "ou=nobody," + TestEnv::get().ldap_base;
    EXPECT_EQ(outcome_of(c, "alice", "alice_pass"), AuthOutcome::unavailable);
}

// ---- template mode --------------------------------------------------------------------------

TEST(LdapTemplateMode, AliceLogsIn) {
    const auto r = LdapAuthenticator(template_config()).authenticate("alice", "alice_pass");
    ASSERT_EQ(r.outcome, AuthOutcome::ok) << r.detail;
    EXPECT_EQ(r.identity.username, "alice");
    EXPECT_EQ(r.identity.display_name, "Alice Liddell");
    EXPECT_EQ(r.identity.external_ref, alice_dn());
}

TEST(LdapTemplateMode, WrongPasswordAndUnknownUserAreRejected) {
    EXPECT_EQ(outcome_of(template_config(), "alice", "wrong"), AuthOutcome::rejected);
    EXPECT_EQ(outcome_of(template_config(), "mallory", "alice_pass"), AuthOutcome::rejected);
}

TEST(LdapTemplateMode, DnInjectionIsRejected) {
    const auto c = template_config();
    const std::vector<std::string> users{"alice,ou=people",
                                         "alice,ou=people," + TestEnv::get().ldap_base,
                                         "alice+cn=Alice Liddell",
                                         "x,uid=alice",
                                         "*",
                                         "alice)(uid=*"};
    for (const auto& user : users) {
        const auto r = LdapAuthenticator(c).authenticate(user, "alice_pass");
        EXPECT_EQ(r.outcome, AuthOutcome::rejected) << "username '" << user << "': " << r.detail;
    }
}

// Control characters around a username are data: "alice\n" is not alice. Unescaped, OpenLDAP
// dropped them from the DN like spaces (tests/fuzz/ldap_escape_fuzz.cpp found it).
TEST(LdapTemplateMode, ControlCharactersAroundTheUsernameAreNotIgnored) {
    const auto c = template_config();
    for (const std::string user : {"alice\n", "\talice", "alice\r\n", "alice\t", "\nalice\t"}) {
        const auto r = LdapAuthenticator(c).authenticate(user, "alice_pass");
        EXPECT_EQ(r.outcome, AuthOutcome::rejected) << "username '" << user << "': " << r.detail;
    }
}

TEST(LdapTemplateMode, EmptyPasswordIsRejected) {
    EXPECT_EQ(outcome_of(template_config(), "alice", ""), AuthOutcome::rejected);
}

// ---- the directory cannot be asked ----------------------------------------------------------

TEST(LdapUnavailable, DirectoryDownIsUnavailableWithinTheConnectTimeout) {
    const LoopbackPort closed;
    for (LdapConfig c : {search_config(), template_config()}) {
        c.url = "ldap://127.0.0.1:" + std::to_string(closed.port());
        c.connect_timeout = milliseconds(500);
        const auto start = std::chrono::steady_clock::now();
        const auto r = LdapAuthenticator(c).authenticate("alice", "alice_pass");
        const auto elapsed = std::chrono::steady_clock::now() - start;
        EXPECT_EQ(r.outcome, AuthOutcome::unavailable) << c.mode << ": " << r.detail;
        EXPECT_LT(elapsed, std::chrono::seconds(3)) << c.mode;
    }
}

TEST(LdapUnavailable, SilentServerIsUnavailableWithinTheOperationTimeout) {
    const LoopbackPort silent(/*silent=*/true);
    for (LdapConfig c : {search_config(), template_config()}) {
        c.url = "ldap://127.0.0.1:" + std::to_string(silent.port());
        c.connect_timeout = milliseconds(500);
        c.timeout = milliseconds(500);
        const auto start = std::chrono::steady_clock::now();
        const auto r = LdapAuthenticator(c).authenticate("alice", "alice_pass");
        const auto elapsed = std::chrono::steady_clock::now() - start;
        EXPECT_EQ(r.outcome, AuthOutcome::unavailable) << c.mode << ": " << r.detail;
        EXPECT_GE(elapsed, milliseconds(400)) << c.mode << ": it should have waited for an answer";
        EXPECT_LT(elapsed, std::chrono::seconds(3)) << c.mode;
    }
}

TEST(LdapUnavailable, StartTlsOnAPlainServerIsUnavailable) {
    // The test slapd has no certificate: StartTLS must fail closed, never fall back to plain text.
    LdapConfig c = search_config();
    c.start_tls = true;
    const auto r = LdapAuthenticator(c).authenticate("alice", "alice_pass");
    EXPECT_EQ(r.outcome, AuthOutcome::unavailable) << r.detail;
}

TEST(LdapUnavailable, LdapsToAPlainServerIsUnavailable) {
    // The TLS set-up path: a handshake against a server that speaks no TLS, and a CA file that
    // does not exist. Both fail closed.
    LdapConfig c = search_config();
    c.url = "ldaps://127.0.0.1:" + std::to_string(TestEnv::get().ldap_port);
    c.timeout = milliseconds(2000);
    const auto r = LdapAuthenticator(c).authenticate("alice", "alice_pass");
    EXPECT_EQ(r.outcome, AuthOutcome::unavailable) << r.detail;

    c.ca_file = "/nonexistent/ca.pem";
    const auto r2 = LdapAuthenticator(c).authenticate("alice", "alice_pass");
    EXPECT_EQ(r2.outcome, AuthOutcome::unavailable) << r2.detail;
}

// ---- empty password against a directory that would accept it --------------------------------

TEST(LdapEmptyPassword, RefusedEvenWhenTheDirectoryWouldAcceptIt) {
    const bool anon_dn = TestEnv::get().ldap_allow_anon_dn;
    const int raw = raw_simple_bind(alice_dn(), "");
    if (anon_dn) {
        // Precondition: slapd (allow bind_anon_dn) really accepts this bind, so only our own check
        // stands between an empty password and a login.
        ASSERT_EQ(raw, LDAP_SUCCESS) << "slapd should accept a DN with an empty password with "
                                        "IM_LDAP_ALLOW_ANON_DN=1: "
                                     << ldap_err2string(raw);
    } else {
        ASSERT_NE(raw, LDAP_SUCCESS) << "slapd accepts a DN with an empty password although "
                                        "IM_LDAP_ALLOW_ANON_DN is not 1";
    }
    // A sanity check of the raw helper itself: the right password binds.
    ASSERT_EQ(raw_simple_bind(alice_dn(), "alice_pass"), LDAP_SUCCESS);

    for (const LdapConfig& c : {search_config(), template_config()}) {
        const auto r = LdapAuthenticator(c).authenticate("alice", "");
        EXPECT_EQ(r.outcome, AuthOutcome::rejected) << c.mode << ": " << r.detail;
        EXPECT_TRUE(r.identity.username.empty()) << c.mode;
    }
}

// ---- account re-checks without the password (issue 17, item 9) ------------------------------

AccountStatus check_of(const LdapConfig& c, const std::string& user, const std::string& dn) {
    const auto r = LdapAuthenticator(c).check_account(user, dn);
    if (r.status != AccountStatus::active)
        std::cerr << "  " << user << " " << dn << ": " << r.detail << "\n";
    return r.status;
}

TEST(LdapAccountCheck, ExistingEntryIsActiveMissingOneIsGone) {
    const auto c = search_config();
    EXPECT_TRUE(LdapAuthenticator(c).can_check_accounts());
    EXPECT_EQ(check_of(c, "alice", alice_dn()), AccountStatus::active);
    EXPECT_EQ(check_of(c, "ALICE", alice_dn()), AccountStatus::active);  // uid matches without case
    // No such entry under a parent the service account sees: gone.
    EXPECT_EQ(check_of(c, "zed", "uid=zed," + people_base()), AccountStatus::gone);
    // The entry exists but no longer matches the login filter for that username: gone.
    EXPECT_EQ(check_of(c, "bob", alice_dn()), AccountStatus::gone);
    // The username is escaped into the filter: a wildcard matches nothing.
    EXPECT_EQ(check_of(c, "*", alice_dn()), AccountStatus::gone);
    EXPECT_EQ(check_of(c, "ali*", alice_dn()), AccountStatus::gone);
}

TEST(LdapAccountCheck, WhatCannotBeSeenIsNeverGone) {
    const auto c = search_config();
    // A parent that does not exist (or that access rights hide): cannot tell, keep the sessions.
    EXPECT_EQ(check_of(c, "alice", "uid=alice,ou=nobody," + TestEnv::get().ldap_base),
              AccountStatus::unavailable);
    EXPECT_EQ(check_of(c, "alice", "uid=alice,dc=elsewhere,dc=test"), AccountStatus::unavailable);
    EXPECT_EQ(check_of(c, "alice", ""), AccountStatus::unavailable);
    EXPECT_EQ(check_of(c, "alice", "not a dn"), AccountStatus::unavailable);
    // Anonymous (no service account) sees no people in the test directory: nothing is gone.
    LdapConfig anon = c;
    anon.service_dn.clear();
    anon.service_password.clear();
    EXPECT_NE(check_of(anon, "zed", "uid=zed," + people_base()), AccountStatus::gone);
    // A wrong service password, an unreachable directory.
    LdapConfig wrong = c;
    wrong.service_password = "not_reader_pass";
    EXPECT_EQ(check_of(wrong, "zed", "uid=zed," + people_base()), AccountStatus::unavailable);
    const LoopbackPort closed;
    LdapConfig down = c;
    down.url = "ldap://127.0.0.1:" + std::to_string(closed.port());
    down.connect_timeout = milliseconds(500);
    EXPECT_EQ(check_of(down, "zed", "uid=zed," + people_base()), AccountStatus::unavailable);
}

TEST(LdapAccountCheck, TemplateModeNeedsTheServiceAccount) {
    const auto t = template_config();  // no service account
    EXPECT_FALSE(LdapAuthenticator(t).can_check_accounts());
    EXPECT_EQ(check_of(t, "alice", alice_dn()), AccountStatus::not_checkable);
    LdapConfig with = t;
    with.service_dn = "cn=reader,ou=services," + TestEnv::get().ldap_base;
    with.service_password = "reader_pass";
    EXPECT_TRUE(LdapAuthenticator(with).can_check_accounts());
    EXPECT_EQ(check_of(with, "alice", alice_dn()), AccountStatus::active);
    EXPECT_EQ(check_of(with, "zed", "uid=zed," + people_base()), AccountStatus::gone);
}

}  // namespace
}  // namespace im::rest

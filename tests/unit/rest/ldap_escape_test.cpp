// RFC 4515 filter and RFC 4514 DN escaping of user input, and the auth.ldap.* config rules.
// Pure functions: no directory needed (tests/integration/ldap_auth_test.cpp runs them against
// slapd).

#include <gtest/gtest.h>
#include <ldap.h>

#include <cctype>
#include <string>

#include "auth.hpp"
#include "im/server/config.hpp"

namespace im::rest {
namespace {

using namespace std::string_literals;

// ---- RFC 4515: filter values ----------------------------------------------------------------

TEST(LdapEscapeFilter, PlainValuesAreKept) {
    EXPECT_EQ(ldap_escape_filter_value("alice"), "alice");
    EXPECT_EQ(ldap_escape_filter_value(""), "");
    EXPECT_EQ(ldap_escape_filter_value("a.b-c_d@im.test"), "a.b-c_d@im.test");
    // DN specials mean nothing in a filter value.
    EXPECT_EQ(ldap_escape_filter_value("a,b=c+d;e<f>g\"h#"), "a,b=c+d;e<f>g\"h#");
}

TEST(LdapEscapeFilter, EverySpecialCharacter) {
    EXPECT_EQ(ldap_escape_filter_value("*"), "\\2a");
    EXPECT_EQ(ldap_escape_filter_value("("), "\\28");
    EXPECT_EQ(ldap_escape_filter_value(")"), "\\29");
    EXPECT_EQ(ldap_escape_filter_value("\\"), "\\5c");
    EXPECT_EQ(ldap_escape_filter_value("\0"s), "\\00");
    EXPECT_EQ(ldap_escape_filter_value("a\0b"s), "a\\00b");
    EXPECT_EQ(ldap_escape_filter_value("*()\\\0"s), "\\2a\\28\\29\\5c\\00");
}

TEST(LdapEscapeFilter, AnEscapeSequenceInInputIsEscapedAgain) {
    // "\2a" typed by a user is the three characters, not an asterisk.
    EXPECT_EQ(ldap_escape_filter_value("\\2a"), "\\5c2a");
}

TEST(LdapEscapeFilter, ClassicInjections) {
    EXPECT_EQ(ldap_escape_filter_value("*)(uid=*))(|(uid=*"),
              "\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a");
    EXPECT_EQ(ldap_escape_filter_value("admin)(|(password=*)"),
              "admin\\29\\28|\\28password=\\2a\\29");
    EXPECT_EQ(ldap_escape_filter_value("ali*"), "ali\\2a");
    EXPECT_EQ(ldap_escape_filter_value("alice)(uid=*"), "alice\\29\\28uid=\\2a");
}

TEST(LdapEscapeFilter, NoUnescapedMetacharacterSurvives) {
    const std::string nasty = "*)(|(objectClass=*))(&(uid=\\*\0"s;
    const std::string out = ldap_escape_filter_value(nasty);
    for (char c : {'*', '(', ')', '\0'})
        EXPECT_EQ(out.find(c), std::string::npos) << int(c);
    // Every backslash starts an escape of two hex digits.
    for (std::size_t i = out.find('\\'); i != std::string::npos; i = out.find('\\', i + 1)) {
        ASSERT_LE(i + 2, out.size() - 1);
        EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(out[i + 1])));
        EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(out[i + 2])));
    }
}

TEST(LdapEscapeFilter, Utf8IsKeptIntact) {
    EXPECT_EQ(ldap_escape_filter_value("jürgen"), "jürgen");
    EXPECT_EQ(ldap_escape_filter_value("用户*"), "用户\\2a");
    EXPECT_EQ(ldap_escape_filter_value("😀(x)"), "😀\\28x\\29");
}

TEST(LdapEscapeFilter, SpacesAreKept) {
    EXPECT_EQ(ldap_escape_filter_value(" a b "), " a b ");
}

// ---- RFC 4514: DN attribute values ----------------------------------------------------------

TEST(LdapEscapeDn, PlainValuesAreKept) {
    EXPECT_EQ(ldap_escape_dn_value("alice"), "alice");
    EXPECT_EQ(ldap_escape_dn_value(""), "");
    EXPECT_EQ(ldap_escape_dn_value("a.b-c_d@im.test"), "a.b-c_d@im.test");
    // Filter specials mean nothing in a DN value.
    EXPECT_EQ(ldap_escape_dn_value("a*b(c)"), "a*b(c)");
}

TEST(LdapEscapeDn, EverySpecialCharacter) {
    EXPECT_EQ(ldap_escape_dn_value(","), "\\,");
    EXPECT_EQ(ldap_escape_dn_value("+"), "\\+");
    EXPECT_EQ(ldap_escape_dn_value("\""), "\\\"");
    EXPECT_EQ(ldap_escape_dn_value("\\"), "\\\\");
    EXPECT_EQ(ldap_escape_dn_value("<"), "\\<");
    EXPECT_EQ(ldap_escape_dn_value(">"), "\\>");
    EXPECT_EQ(ldap_escape_dn_value(";"), "\\;");
    EXPECT_EQ(ldap_escape_dn_value("="), "\\=");
    EXPECT_EQ(ldap_escape_dn_value("\0"s), "\\00");
    EXPECT_EQ(ldap_escape_dn_value("a\0b"s), "a\\00b");
    EXPECT_EQ(ldap_escape_dn_value("a,b+c\"d\\e<f>g;h=i"), "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h\\=i");
}

TEST(LdapEscapeDn, LeadingAndTrailingSpaces) {
    EXPECT_EQ(ldap_escape_dn_value(" alice"), "\\ alice");
    EXPECT_EQ(ldap_escape_dn_value("alice "), "alice\\ ");
    EXPECT_EQ(ldap_escape_dn_value(" alice "), "\\ alice\\ ");
    EXPECT_EQ(ldap_escape_dn_value("a b"), "a b");  // inner spaces are fine
    EXPECT_EQ(ldap_escape_dn_value("  a  "), "\\  a \\ ");
    EXPECT_EQ(ldap_escape_dn_value(" "), "\\ ");
    EXPECT_EQ(ldap_escape_dn_value("  "), "\\ \\ ");
}

TEST(LdapEscapeDn, LeadingHashOnly) {
    EXPECT_EQ(ldap_escape_dn_value("#alice"), "\\#alice");
    EXPECT_EQ(ldap_escape_dn_value("al#ice#"), "al#ice#");
    EXPECT_EQ(ldap_escape_dn_value("##"), "\\##");
}

TEST(LdapEscapeDn, DnInjections) {
    EXPECT_EQ(ldap_escape_dn_value("alice,ou=people"), "alice\\,ou\\=people");
    EXPECT_EQ(ldap_escape_dn_value("x,cn=admin,dc=im,dc=test"),
              "x\\,cn\\=admin\\,dc\\=im\\,dc\\=test");
    EXPECT_EQ(ldap_escape_dn_value("alice+uid=bob"), "alice\\+uid\\=bob");
    EXPECT_EQ(ldap_escape_dn_value("*)(uid=*))(|(uid=*"), "*)(uid\\=*))(|(uid\\=*");
}

TEST(LdapEscapeDn, Utf8IsKeptIntact) {
    EXPECT_EQ(ldap_escape_dn_value("jürgen"), "jürgen");
    EXPECT_EQ(ldap_escape_dn_value("用户,x"), "用户\\,x");
    EXPECT_EQ(ldap_escape_dn_value(" 😀 "), "\\ 😀\\ ");
}

// OpenLDAP's DN parser (libldap's and slapd's) drops unescaped \t \n \r around a value like
// spaces: "uid=alice\n,ou=people,..." named alice's entry, so "alice\n" with alice's password
// logged in as alice (and dodged the per-username login rate limit). Found by
// tests/fuzz/ldap_escape_fuzz.cpp.
TEST(LdapEscapeDn, ControlCharactersAreHexEscaped) {
    EXPECT_EQ(ldap_escape_dn_value("alice\n"), "alice\\0a");
    EXPECT_EQ(ldap_escape_dn_value("\talice"), "\\09alice");
    EXPECT_EQ(ldap_escape_dn_value("alice\r"), "alice\\0d");
    EXPECT_EQ(ldap_escape_dn_value("a\x01" "b\x7f"), "a\\01b\\7f");
}

// The property itself, with libldap's parser: the DN built from the template names exactly one
// RDN uid=<the username as typed>.
TEST(LdapEscapeDn, LibldapReadsBackTheExactValue) {
    for (const std::string name : {"alice", "alice\n", "\talice", "alice\t\r\n", " a ", "#a", "a,b=c+d",
                                   "\\", "x\x01y", "\n", "j\xc3\xbcrgen "}) {
        const std::string dn = "uid=" + ldap_escape_dn_value(name) + ",ou=people,dc=im,dc=test";
        LDAPDN parsed = nullptr;
        ASSERT_EQ(ldap_str2dn(dn.c_str(), &parsed, LDAP_DN_FORMAT_LDAPV3), LDAP_SUCCESS) << dn;
        ASSERT_NE(parsed[0], nullptr);
        ASSERT_NE(parsed[0][0], nullptr);
        EXPECT_EQ(parsed[0][1], nullptr) << dn;
        const auto& value = parsed[0][0]->la_value;
        EXPECT_EQ(std::string(value.bv_val, value.bv_len), name) << dn;
        ldap_dnfree(parsed);
    }
}

// ---- auth.ldap.* configuration --------------------------------------------------------------

// Binds an LdapConfig from YAML; returns the ConfigError text, or "" when it is valid.
std::string bind_yaml(const std::string& yaml, LdapConfig& c) {
    config::ConfigSource src;
    src.load_yaml_string(yaml, "test.yaml");
    config::Binder b(src, "IM_REST_");
    bind(b, c);
    try {
        b.finish();
    } catch (const config::ConfigError& e) {
        return e.what();
    }
    return {};
}

std::string bind_yaml(const std::string& yaml) {
    LdapConfig c;
    return bind_yaml(yaml, c);
}

TEST(LdapConfigBind, DefaultsAreValid) {
    config::ConfigSource src;
    config::Binder b(src, "IM_REST_");
    LdapConfig c;
    bind(b, c);
    EXPECT_NO_THROW(b.finish());
    EXPECT_EQ(c.mode, "search");
}

TEST(LdapConfigBind, EveryKeyIsBound) {
    LdapConfig c;
    const auto err = bind_yaml(R"yaml(
auth:
  ldap:
    url: ldaps://ldap.example.com:636
    start_tls: false
    ca_file: /etc/ssl/ca.pem
    mode: template
    bind_dn_template: "uid={username},ou=staff,dc=example,dc=com"
    search_base: "ou=staff,dc=example,dc=com"
    search_filter: "(mail={username})"
    service_dn: "cn=svc,dc=example,dc=com"
    service_password: s3cret
    username_attribute: sAMAccountName
    display_name_attribute: name
    connect_timeout: 750ms
    timeout: 2s
)yaml",
                               c);
    ASSERT_EQ(err, "");
    EXPECT_EQ(c.url, "ldaps://ldap.example.com:636");
    EXPECT_FALSE(c.start_tls);
    EXPECT_EQ(c.ca_file, "/etc/ssl/ca.pem");
    EXPECT_EQ(c.mode, "template");
    EXPECT_EQ(c.bind_dn_template, "uid={username},ou=staff,dc=example,dc=com");
    EXPECT_EQ(c.search_base, "ou=staff,dc=example,dc=com");
    EXPECT_EQ(c.search_filter, "(mail={username})");
    EXPECT_EQ(c.service_dn, "cn=svc,dc=example,dc=com");
    EXPECT_EQ(c.service_password, "s3cret");
    EXPECT_EQ(c.username_attribute, "sAMAccountName");
    EXPECT_EQ(c.display_name_attribute, "name");
    EXPECT_EQ(c.connect_timeout, std::chrono::milliseconds(750));
    EXPECT_EQ(c.timeout, std::chrono::seconds(2));
}

TEST(LdapConfigBind, ServicePasswordIsMaskedInDescribe) {
    config::ConfigSource src;
    src.load_yaml_string("auth:\n  ldap:\n    service_password: hunter2-secret\n");
    config::Binder b(src, "IM_REST_");
    LdapConfig c;
    bind(b, c);
    ASSERT_NO_THROW(b.finish());
    EXPECT_EQ(c.service_password, "hunter2-secret");
    EXPECT_EQ(b.describe().find("hunter2-secret"), std::string::npos);
}

TEST(LdapConfigBind, UrlMustBeLdap) {
    const auto err = bind_yaml("auth:\n  ldap:\n    url: http://127.0.0.1:3890\n");
    EXPECT_NE(err.find("auth.ldap.url"), std::string::npos) << err;
    EXPECT_NE(bind_yaml("auth:\n  ldap:\n    url: 127.0.0.1:389\n"), "");
    EXPECT_NE(bind_yaml("auth:\n  ldap:\n    url: \"\"\n"), "");
    EXPECT_NE(bind_yaml("auth:\n  ldap:\n    url: \"ldap://a:389 http://b\"\n"), "");
    EXPECT_EQ(bind_yaml("auth:\n  ldap:\n    url: ldap://127.0.0.1:3890\n"), "");
    EXPECT_EQ(bind_yaml("auth:\n  ldap:\n    url: ldaps://127.0.0.1:636\n"), "");
    EXPECT_EQ(bind_yaml("auth:\n  ldap:\n    url: \"ldap://a:389 ldap://b:389\"\n"), "");
}

TEST(LdapConfigBind, StartTlsOnLdapsIsAnError) {
    const auto err = bind_yaml("auth:\n  ldap:\n    url: ldaps://h:636\n    start_tls: true\n");
    EXPECT_NE(err.find("auth.ldap.start_tls"), std::string::npos) << err;
    EXPECT_EQ(bind_yaml("auth:\n  ldap:\n    url: ldap://h:389\n    start_tls: true\n"), "");
}

TEST(LdapConfigBind, SearchModeNeedsUsernameInFilter) {
    const auto err =
        bind_yaml("auth:\n  ldap:\n    mode: search\n    search_filter: \"(uid=alice)\"\n");
    EXPECT_NE(err.find("auth.ldap.search_filter"), std::string::npos) << err;
    EXPECT_NE(err.find("{username}"), std::string::npos) << err;
    // The template is not used in search mode: no rule on it.
    EXPECT_EQ(bind_yaml("auth:\n  ldap:\n    mode: search\n    bind_dn_template: \"uid=x\"\n"), "");
}

TEST(LdapConfigBind, TemplateModeNeedsUsernameInTemplate) {
    const auto err =
        bind_yaml("auth:\n  ldap:\n    mode: template\n    bind_dn_template: \"uid=alice,dc=x\"\n");
    EXPECT_NE(err.find("auth.ldap.bind_dn_template"), std::string::npos) << err;
    EXPECT_EQ(bind_yaml("auth:\n  ldap:\n    mode: template\n    search_filter: \"(uid=x)\"\n"),
              "");
}

TEST(LdapConfigBind, UnknownModeAndBadDurationsAreErrors) {
    EXPECT_NE(bind_yaml("auth:\n  ldap:\n    mode: anonymous\n").find("auth.ldap.mode"),
              std::string::npos);
    EXPECT_NE(bind_yaml("auth:\n  ldap:\n    timeout: soon\n").find("auth.ldap.timeout"),
              std::string::npos);
    EXPECT_NE(
        bind_yaml("auth:\n  ldap:\n    connect_timeout: 1ms\n").find("auth.ldap.connect_timeout"),
        std::string::npos);
}

TEST(LdapConfigBind, UnknownKeyIsAnError) {
    const auto err = bind_yaml("auth:\n  ldap:\n    bind_password: x\n");
    EXPECT_NE(err.find("auth.ldap.bind_password"), std::string::npos) << err;
}

TEST(LdapConfigBind, EnvironmentOverridesYaml) {
    config::ConfigSource src(
        {{"IM_REST_AUTH_LDAP_URL", "ldap://10.0.0.1:389"}, {"IM_AUTH_LDAP_MODE", "template"}});
    src.load_yaml_string("auth:\n  ldap:\n    url: ldap://127.0.0.1:3890\n");
    config::Binder b(src, "IM_REST_");
    LdapConfig c;
    bind(b, c);
    ASSERT_NO_THROW(b.finish());
    EXPECT_EQ(c.url, "ldap://10.0.0.1:389");
    EXPECT_EQ(c.mode, "template");
}

// ---- input refused before any network call ------------------------------------------------

TEST(LdapInputChecks, RefusesBadInputWithoutTheNetwork) {
    LdapConfig c;
    c.url =
        "ldap://192.0.2.1:9";  // TEST-NET: would hang until the connect timeout if it were asked
    c.connect_timeout = std::chrono::seconds(30);
    c.service_password = "x";
    const LdapAuthenticator auth(c);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(auth.authenticate("alice", "").outcome, AuthOutcome::rejected);
    EXPECT_EQ(auth.authenticate("", "pw").outcome, AuthOutcome::rejected);
    EXPECT_EQ(auth.authenticate("ali\0ce"s, "pw").outcome, AuthOutcome::rejected);
    EXPECT_EQ(auth.authenticate(std::string(257, 'a'), "pw").outcome, AuthOutcome::rejected);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST(LdapInputChecks, DetailNeverContainsThePassword) {
    LdapConfig c;
    c.url = "ldap://127.0.0.1:1";  // nothing listens on port 1: refused at once
    c.service_password = "x";
    const LdapAuthenticator auth(c);
    const auto r = auth.authenticate("alice", "pw-Zq9-unique");
    EXPECT_EQ(r.outcome, AuthOutcome::unavailable);
    EXPECT_EQ(r.detail.find("pw-Zq9-unique"), std::string::npos) << r.detail;
}

}  // namespace
}  // namespace im::rest

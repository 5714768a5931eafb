// The LDAP escaping of a login's username (rest-api/auth_ldap.cpp), checked against libldap's own
// parsers, the ones that read the filter and DN im-rest builds:
// - ldap_escape_filter_value (RFC 4515): the value leaves no unescaped * ( ) \ NUL, and the
//   filter "(uid=<escaped>)" encodes (ldap_put_vrFilter, the same value unescaping as a search
//   filter) to an equality assertion of exactly the input bytes: no filter injection;
// - ldap_escape_dn_value (RFC 4514): "uid=<escaped>,ou=people,dc=im,dc=test" parses
//   (ldap_str2dn) to four RDNs whose first is the single AVA uid=<the input bytes>: no DN
//   injection. A username reaches the escaping as a JSON string (valid UTF-8, no NUL: the login
//   route refuses NUL), so the DN property is checked for such inputs.
#include <lber.h>
#include <ldap.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "auth.hpp"
#include "fuzz_check.hpp"

namespace {

using im::rest::ldap_escape_dn_value;
using im::rest::ldap_escape_filter_value;

bool hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool valid_utf8(std::string_view s) {
    return utf8_all_of(s, [](std::uint32_t) { return true; });
}

void check_filter(const std::string& value) {
    const std::string escaped = ldap_escape_filter_value(value);
    for (std::size_t i = 0; i < escaped.size(); ++i) {
        const char c = escaped[i];
        FUZZ_CHECK(c != '*' && c != '(' && c != ')' && c != '\0');
        if (c == '\\') {
            FUZZ_CHECK(i + 2 < escaped.size() && hex(escaped[i + 1]) && hex(escaped[i + 2]));
            i += 2;
        }
    }
    // libldap encodes the filter to BER; read the assertion value back.
    const std::string filter = "((uid=" + escaped + "))";
    BerElement* ber = ber_alloc_t(LBER_USE_DER);
    FUZZ_CHECK(ber != nullptr);
    FUZZ_CHECK(ldap_put_vrFilter(ber, filter.c_str()) == 0);
    berval flat{};
    FUZZ_CHECK(ber_flatten2(ber, &flat, 0) == 0);
    BerElement* reader = ber_init(&flat);
    FUZZ_CHECK(reader != nullptr);
    berval attr{};
    berval got{};
    FUZZ_CHECK(ber_scanf(reader, "{{mm}}", &attr, &got) != LBER_ERROR);
    FUZZ_CHECK(std::string_view(attr.bv_val, attr.bv_len) == "uid");
    FUZZ_CHECK(std::string_view(got.bv_val, got.bv_len) == value);
    ber_free(reader, 1);
    ber_free(ber, 1);
}

void check_dn(const std::string& value) {
    const std::string escaped = ldap_escape_dn_value(value);
    if (value.find('\0') != std::string::npos || !valid_utf8(value)) return;
    const std::string dn = "uid=" + escaped + ",ou=people,dc=im,dc=test";
    LDAPDN parsed = nullptr;
    const int rc = ldap_str2dn(dn.c_str(), &parsed, LDAP_DN_FORMAT_LDAPV3);
    if (rc != LDAP_SUCCESS)
        std::fprintf(stderr, "ldap_str2dn(%s): %s\n", dn.c_str(), ldap_err2string(rc));
    FUZZ_CHECK(rc == LDAP_SUCCESS && parsed != nullptr);
    std::size_t rdns = 0;
    while (parsed[rdns] != nullptr)
        ++rdns;
    FUZZ_CHECK(rdns == 4);
    LDAPRDN first = parsed[0];
    FUZZ_CHECK(first[0] != nullptr && first[1] == nullptr);  // one AVA: no '+' smuggled in
    const LDAPAVA* ava = first[0];
    FUZZ_CHECK(std::string_view(ava->la_attr.bv_val, ava->la_attr.bv_len) == "uid");
    FUZZ_CHECK(std::string_view(ava->la_value.bv_val, ava->la_value.bv_len) == value);
    ldap_dnfree(parsed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 4096) return 0;
    const std::string value(reinterpret_cast<const char*>(data), size);
    check_filter(value);
    check_dn(value);
    return 0;
}

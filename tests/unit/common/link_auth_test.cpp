// Link authentication with the cluster secret (common/server link_auth).
#include <gtest/gtest.h>

#include <cstdlib>
#include <sys/stat.h>

#include <fstream>

#include "im/server/link_auth.hpp"

namespace im::link_auth {
namespace {

const std::string kSecret = "0123456789abcdef-cluster";

TEST(LinkAuth, AProvenHelloIsAcceptedOnceAndTheAckProvesTheTransfer) {
    HelloVerifier v(kSecret);
    const auto p = prove_hello(kSecret, "connector-1", 42, 1'000'000);
    EXPECT_EQ(v.verify("connector-1", 42, p.time_ms, p.nonce, p.mac, 1'000'500), HelloVerifier::Result::ok);
    EXPECT_EQ(v.verify("connector-1", 42, p.time_ms, p.nonce, p.mac, 1'000'600), HelloVerifier::Result::replayed);
    const auto ack = ack_mac(kSecret, "transfer-0", 7, p.nonce);
    EXPECT_TRUE(verify_ack(kSecret, "transfer-0", 7, p.nonce, ack));
    EXPECT_FALSE(verify_ack(kSecret, "transfer-1", 7, p.nonce, ack)) << "bound to the transfer id";
    EXPECT_FALSE(verify_ack("another-secret-16b", "transfer-0", 7, p.nonce, ack));
    EXPECT_FALSE(verify_ack(kSecret, "transfer-0", 7, p.nonce, ""));
}

TEST(LinkAuth, HelloMacIsTheProofOfTheHelloFields) {
    const auto p = prove_hello(kSecret, "connector-1", 42, 1'000'000);
    EXPECT_EQ(p.mac, hello_mac(kSecret, "connector-1", 42, p.time_ms, p.nonce));
    EXPECT_EQ(p.mac.size(), 32u);
    EXPECT_NE(p.mac, hello_mac(kSecret, "connector-1", 43, p.time_ms, p.nonce));
    // Length-prefixed fields: moving a byte from one field to the next changes the MAC.
    EXPECT_NE(hello_mac(kSecret, "ab", 1, 2, "c"), hello_mac(kSecret, "a", 1, 2, "bc"));
    HelloVerifier v(kSecret);
    const std::string nonce(kNonceBytes, 'n');
    EXPECT_EQ(v.verify("c", 9, 5'000, nonce, hello_mac(kSecret, "c", 9, 5'000, nonce), 5'000),
              HelloVerifier::Result::ok);
}

TEST(LinkAuth, WrongSecretTamperedFieldsAndStaleTimesAreRefused) {
    HelloVerifier v(kSecret);
    const auto p = prove_hello("a-different-secret!", "c", 1, 5'000'000);
    EXPECT_EQ(v.verify("c", 1, p.time_ms, p.nonce, p.mac, 5'000'000), HelloVerifier::Result::bad_mac);
    const auto q = prove_hello(kSecret, "c", 1, 5'000'000);
    EXPECT_EQ(v.verify("c2", 1, q.time_ms, q.nonce, q.mac, 5'000'000), HelloVerifier::Result::bad_mac);
    EXPECT_EQ(v.verify("c", 2, q.time_ms, q.nonce, q.mac, 5'000'000), HelloVerifier::Result::bad_mac);
    EXPECT_EQ(v.verify("c", 1, q.time_ms + 1, q.nonce, q.mac, 5'000'000), HelloVerifier::Result::bad_mac);
    EXPECT_EQ(v.verify("c", 1, q.time_ms, "", "", 5'000'000), HelloVerifier::Result::bad_mac);
    EXPECT_EQ(v.verify("c", 1, q.time_ms, q.nonce, q.mac, 5'000'000 + 61'000), HelloVerifier::Result::stale);
    EXPECT_EQ(v.verify("c", 1, q.time_ms, q.nonce, q.mac, 5'000'000 - 61'000), HelloVerifier::Result::stale);
}

TEST(LinkAuth, ASecretIsRequiredAndMayComeFromAFile) {
    Config none;
    EXPECT_THROW(resolve(none), std::runtime_error);
    Config short_one{"too-short", "", {}};
    EXPECT_THROW(resolve(short_one), std::runtime_error);
    const std::string path = ::testing::TempDir() + "/cluster-secret";
    {
        std::ofstream(path) << kSecret << "\n";
    }
    ::chmod(path.c_str(), 0644);
    Config readable{"", path, {}};
    EXPECT_THROW(resolve(readable), std::runtime_error) << "a secret file every user can read is refused";
    ::chmod(path.c_str(), 0600);
    Config from_file{"ignored-when-a-file-is-given", path, {}};
    resolve(from_file);
    EXPECT_EQ(from_file.secret, kSecret) << "the trailing newline is dropped";
    Config missing{"", path + ".missing", {}};
    EXPECT_THROW(resolve(missing), std::runtime_error);
}

}  // namespace
}  // namespace im::link_auth

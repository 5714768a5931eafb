#include "im/server/config.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>

namespace im::config {
namespace {

struct Sample {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    std::string password;
    bool tls = false;
    std::chrono::milliseconds timeout{5000};
    std::uint64_t max_body = 1 << 20;
    std::vector<std::string> brokers{"a"};
    std::string mode = "local";
    double ratio = 0.5;
};

void bind_sample(Binder& b, Sample& s) {
    b.bind("http.host", s.host);
    b.bind("http.port", s.port, 0, 65535);
    b.bind("mysql.password", s.password, /*secret=*/true);
    b.bind("tls.enabled", s.tls);
    b.bind_duration("http.timeout", s.timeout, std::chrono::milliseconds(1), std::chrono::minutes(10));
    b.bind_size("http.max_body", s.max_body, 1, 1ull << 30);
    b.bind("mq.brokers", s.brokers);
    b.bind_choice("auth.mode", s.mode, {"local", "ldap", "external"});
    b.bind("sample.ratio", s.ratio, 0.0, 1.0);
}

std::string error_of(ConfigSource& src, const std::string& prefix = "IM_REST_") {
    Sample s;
    Binder b(src, prefix);
    bind_sample(b, s);
    try {
        b.finish();
    } catch (const ConfigError& e) {
        return e.what();
    }
    return {};
}

TEST(Config, DefaultsWhenNothingIsSet) {
    ConfigSource src;
    Sample s;
    Binder b(src, "IM_REST_");
    bind_sample(b, s);
    EXPECT_NO_THROW(b.finish());
    EXPECT_EQ(s.port, 8080);
    EXPECT_EQ(s.timeout, std::chrono::milliseconds(5000));
}

TEST(Config, YamlValuesAndTypes) {
    ConfigSource src;
    src.load_yaml_string(R"(
http:
  host: 0.0.0.0
  port: 9090
  timeout: 250ms
  max_body: 64KiB
tls:
  enabled: yes
mq:
  brokers: [x, y, z]
auth:
  mode: ldap
sample:
  ratio: 0.25
)");
    Sample s;
    Binder b(src, "IM_REST_");
    bind_sample(b, s);
    ASSERT_NO_THROW(b.finish());
    EXPECT_EQ(s.host, "0.0.0.0");
    EXPECT_EQ(s.port, 9090);
    EXPECT_EQ(s.timeout, std::chrono::milliseconds(250));
    EXPECT_EQ(s.max_body, 65536u);
    EXPECT_TRUE(s.tls);
    EXPECT_EQ(s.brokers, (std::vector<std::string>{"x", "y", "z"}));
    EXPECT_EQ(s.mode, "ldap");
    EXPECT_DOUBLE_EQ(s.ratio, 0.25);
}

TEST(Config, PrecedenceFileThenSharedEnvThenProcessEnvThenFlags) {
    ConfigSource file_only;
    file_only.load_yaml_string("http: {port: 1000}");
    Sample s1;
    Binder b1(file_only, "IM_REST_");
    bind_sample(b1, s1);
    EXPECT_EQ(s1.port, 1000);

    ConfigSource shared(Env{{"IM_HTTP_PORT", "2000"}});
    shared.load_yaml_string("http: {port: 1000}");
    Sample s2;
    Binder b2(shared, "IM_REST_");
    bind_sample(b2, s2);
    EXPECT_EQ(s2.port, 2000);

    ConfigSource both(Env{{"IM_HTTP_PORT", "2000"}, {"IM_REST_HTTP_PORT", "3000"}});
    both.load_yaml_string("http: {port: 1000}");
    Sample s3;
    Binder b3(both, "IM_REST_");
    bind_sample(b3, s3);
    EXPECT_EQ(s3.port, 3000);

    both.add_override("http.port=4000");
    Sample s4;
    Binder b4(both, "IM_REST_");
    bind_sample(b4, s4);
    EXPECT_EQ(s4.port, 4000);
    EXPECT_NO_THROW(b4.finish());
}

TEST(Config, EnvListIsCommaSeparated) {
    ConfigSource src(Env{{"IM_MQ_BROKERS", "h1:1, h2:2 ,,h3:3"}});
    Sample s;
    Binder b(src, "IM_REST_");
    bind_sample(b, s);
    EXPECT_EQ(s.brokers, (std::vector<std::string>{"h1:1", "h2:2", "h3:3"}));
}

TEST(Config, BadValueNamesTheKeyAndTheSource) {
    ConfigSource src(Env{{"IM_REST_HTTP_PORT", "eighty"}});
    const auto err = error_of(src);
    EXPECT_NE(err.find("http.port"), std::string::npos) << err;
    EXPECT_NE(err.find("'eighty' is not an integer"), std::string::npos) << err;
    EXPECT_NE(err.find("IM_REST_HTTP_PORT"), std::string::npos) << err;
}

TEST(Config, OutOfRange) {
    ConfigSource src;
    src.load_yaml_string("http: {port: 70000}", "test.yaml");
    const auto err = error_of(src);
    EXPECT_NE(err.find("http.port: 70000 is out of range [0, 65535] (from test.yaml)"), std::string::npos) << err;
}

TEST(Config, EveryErrorReportedAtOnce) {
    ConfigSource src;
    src.load_yaml_string(R"(
http: {port: -1, timeout: soon, max_body: lots}
tls: {enabled: maybe}
auth: {mode: kerberos}
sample: {ratio: 2}
)");
    const auto err = error_of(src);
    for (const char* key : {"http.port", "http.timeout", "http.max_body", "tls.enabled", "auth.mode", "sample.ratio"}) {
        EXPECT_NE(err.find(key), std::string::npos) << key << " missing in: " << err;
    }
    EXPECT_NE(err.find("not one of: local, ldap, external"), std::string::npos) << err;
}

TEST(Config, UnknownKeyInFileIsAnError) {
    ConfigSource src;
    src.load_yaml_string("http: {prot: 80}", "im.yaml");
    const auto err = error_of(src);
    EXPECT_NE(err.find("http.prot: unknown key (from im.yaml)"), std::string::npos) << err;
}

TEST(Config, UnknownKeyInFlagIsAnError) {
    ConfigSource src;
    src.add_override("nope.key=1");
    EXPECT_NE(error_of(src).find("nope.key: unknown key"), std::string::npos);
}

TEST(Config, UnknownEnvVariablesAreIgnored) {
    ConfigSource src(Env{{"IM_SOMETHING_ELSE", "x"}, {"IM_RUN_DIR", "/tmp"}});
    EXPECT_EQ(error_of(src), "");
}

TEST(Config, MalformedYamlAndMissingFile) {
    ConfigSource src;
    EXPECT_THROW(src.load_yaml_string("http: [unclosed"), ConfigError);
    EXPECT_THROW(src.load_yaml_string("just a scalar"), ConfigError);
    try {
        src.load_yaml_file("/nonexistent/im.yaml");
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/im.yaml"), std::string::npos);
    }
}

TEST(Config, YamlFileOnDisk) {
    const std::string path = testing::TempDir() + "/im_config_test.yaml";
    std::ofstream(path) << "http:\n  port: 1234\n";
    ConfigSource src;
    src.load_yaml_file(path);
    Sample s;
    Binder b(src, "IM_REST_");
    bind_sample(b, s);
    EXPECT_NO_THROW(b.finish());
    EXPECT_EQ(s.port, 1234);
}

TEST(Config, BadOverrideSyntax) {
    ConfigSource src;
    EXPECT_THROW(src.add_override("no-equals-sign"), ConfigError);
    EXPECT_THROW(src.add_override("Bad Key=1"), ConfigError);
}

TEST(Config, RequireRule) {
    ConfigSource src;
    Sample s;
    Binder b(src, "IM_REST_");
    bind_sample(b, s);
    b.require(false, "tls.cert_file", "required when tls.enabled is true");
    try {
        b.finish();
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("tls.cert_file: required when tls.enabled is true"), std::string::npos);
    }
}

TEST(Config, DescribeMasksSecrets) {
    ConfigSource src(Env{{"IM_MYSQL_PASSWORD", "hunter2"}});
    Sample s;
    Binder b(src, "IM_REST_");
    bind_sample(b, s);
    const auto text = b.describe();
    EXPECT_EQ(s.password, "hunter2");
    EXPECT_EQ(text.find("hunter2"), std::string::npos) << text;
    EXPECT_NE(text.find("mysql.password = ********"), std::string::npos) << text;
    EXPECT_NE(text.find("http.port = 8080"), std::string::npos) << text;
}

TEST(Config, EnvNameMapping) {
    ConfigSource src;
    Binder b(src, "IM_CONNECTOR_");
    EXPECT_EQ(b.env_name("client.max_frame_bytes"), "IM_CONNECTOR_CLIENT_MAX_FRAME_BYTES");
}

TEST(ConfigParsers, Durations) {
    EXPECT_EQ(parse_duration("250ms"), std::chrono::milliseconds(250));
    EXPECT_EQ(parse_duration("30s"), std::chrono::milliseconds(30000));
    EXPECT_EQ(parse_duration("30"), std::chrono::milliseconds(30000));
    EXPECT_EQ(parse_duration("5m"), std::chrono::milliseconds(300000));
    EXPECT_EQ(parse_duration(" 1h "), std::chrono::milliseconds(3600000));
    EXPECT_FALSE(parse_duration("").has_value());
    EXPECT_FALSE(parse_duration("-5s").has_value());
    EXPECT_FALSE(parse_duration("5 parsecs").has_value());
    EXPECT_FALSE(parse_duration("99999999999999999999s").has_value());
}

TEST(ConfigParsers, Sizes) {
    EXPECT_EQ(parse_size("65536"), 65536u);
    EXPECT_EQ(parse_size("64KiB"), 65536u);
    EXPECT_EQ(parse_size("100MiB"), 100u << 20);
    EXPECT_EQ(parse_size("1GiB"), 1u << 30);
    EXPECT_EQ(parse_size("10kB"), 10000u);
    EXPECT_FALSE(parse_size("KiB").has_value());
    EXPECT_FALSE(parse_size("12 bananas").has_value());
    EXPECT_FALSE(parse_size("99999999999999999999GiB").has_value());
}

TEST(ConfigParsers, Booleans) {
    for (const char* t : {"true", "YES", "on", "1"}) EXPECT_EQ(parse_bool(t), true) << t;
    for (const char* f : {"false", "No", "off", "0"}) EXPECT_EQ(parse_bool(f), false) << f;
    EXPECT_FALSE(parse_bool("maybe").has_value());
}

}  // namespace
}  // namespace im::config

namespace im::config {
namespace {

// Issue 14: a secret in a config file every user of the machine can read is refused.
TEST(ConfigSecrets, ASecretInAWorldReadableFileIsRefused) {
    const std::string path = ::testing::TempDir() + "/im-config-secret.yaml";
    {
        std::ofstream(path) << "mysql:\n  password: hunter2-not-for-everyone\nhttp:\n  host: 127.0.0.1\n";
    }
    ::chmod(path.c_str(), 0644);
    ConfigSource readable;
    readable.load_yaml_file(path);
    Sample s;
    Binder b(readable, "IM_TEST_");
    bind_sample(b, s);
    try {
        b.finish();
        FAIL() << "a password in a world-readable file was accepted";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("mysql.password"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("chmod o-r"), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos) << "the error must not show the secret";
    }
    ::chmod(path.c_str(), 0640);
    ConfigSource private_file;
    private_file.load_yaml_file(path);
    Binder ok(private_file, "IM_TEST_");
    Sample s2;
    bind_sample(ok, s2);
    EXPECT_NO_THROW(ok.finish());
    EXPECT_EQ(s2.password, "hunter2-not-for-everyone");
    // A file without secrets may be world-readable.
    std::ofstream(path) << "http:\n  host: 127.0.0.1\n";
    ::chmod(path.c_str(), 0644);
    ConfigSource plain;
    plain.load_yaml_file(path);
    Binder fine(plain, "IM_TEST_");
    Sample s3;
    bind_sample(fine, s3);
    EXPECT_NO_THROW(fine.finish());
}

}  // namespace
}  // namespace im::config

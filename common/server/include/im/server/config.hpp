#pragma once
// Configuration: defaults < YAML file < IM_* environment variables < --set flags.
//
// Keys are dotted paths ("mysql.port"). A process binds each key to a field of its one config
// struct, with a type and a check; every problem is collected and reported at once, each line
// naming the key and where the bad value came from. Unknown keys in a file are errors (typos).
//
// Environment: for key "mysql.port" and process prefix "IM_REST_", IM_REST_MYSQL_PORT is read
// first, then IM_MYSQL_PORT (shared by every process, e.g. from scripts/services.sh's env file).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace im::config {

class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct RawValue {
    std::vector<std::string> items;  // one item for a scalar
    bool is_list = false;
    std::string origin;  // "config.yaml", "IM_MYSQL_PORT", "--set"
};

using Env = std::map<std::string, std::string>;

class ConfigSource {
public:
    // `env`: the IM_* variables to consider (tests pass their own; processes use process_env()).
    explicit ConfigSource(Env env = {}) : env_(std::move(env)) {}

    static Env process_env();

    void load_yaml_file(const std::string& path);
    void load_yaml_string(const std::string& text, const std::string& origin = "<yaml>");
    // "key=value" from a --set flag.
    void add_override(const std::string& assignment);

    // The winning raw value for `key`, trying env names in order (first hit wins).
    std::optional<RawValue> lookup(const std::string& key,
                                   const std::vector<std::string>& env_names) const;
    const std::map<std::string, RawValue>& file_values() const { return file_; }
    // True when `origin` names a YAML file loaded by load_yaml_file (not the environment or --set).
    bool is_file(const std::string& origin) const { return files_.count(origin) != 0; }
    const std::map<std::string, RawValue>& overrides() const { return overrides_; }

private:
    Env env_;
    std::map<std::string, RawValue> file_;
    std::set<std::string> files_;
    std::map<std::string, RawValue> overrides_;
};

// Parsers shared by the binder and by tests.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& s);  // "250ms" "30s" "5m" "1h"
std::optional<std::uint64_t> parse_size(const std::string& s);  // "512", "64KiB", "100MiB", "1GiB", "10kB"
std::optional<bool> parse_bool(const std::string& s);          // true/false/yes/no/on/off/1/0

class Binder {
public:
    Binder(const ConfigSource& source, std::string env_prefix)
        : source_(source), env_prefix_(std::move(env_prefix)) {}

    using Check = std::function<std::optional<std::string>(const std::string& value_text)>;

    // A secret (secret = true) is masked in describe(), and refused when it comes from a YAML file
    // that every user of the machine can read (chmod o-r it, or pass it by environment).
    void bind(const std::string& key, std::string& field, bool secret = false);
    void bind(const std::string& key, bool& field);
    void bind(const std::string& key, std::int64_t& field, std::int64_t min, std::int64_t max);
    void bind(const std::string& key, std::uint32_t& field, std::uint32_t min, std::uint32_t max);
    void bind(const std::string& key, std::uint16_t& field, std::uint16_t min, std::uint16_t max);
    void bind(const std::string& key, double& field, double min, double max);
    void bind_duration(const std::string& key, std::chrono::milliseconds& field,
                       std::chrono::milliseconds min, std::chrono::milliseconds max);
    void bind_size(const std::string& key, std::uint64_t& field, std::uint64_t min, std::uint64_t max);
    void bind(const std::string& key, std::vector<std::string>& field);
    // One of a fixed set of words.
    void bind_choice(const std::string& key, std::string& field, const std::vector<std::string>& choices);

    // A cross-field rule checked after binding ("tls.cert_file: required when tls.enabled").
    void require(bool ok, const std::string& key, const std::string& message);

    // Throws ConfigError listing every problem (bad values, unknown keys) at once.
    void finish() const;

    // "key = value" lines of everything bound, secrets masked: for --print-config and start-up logs.
    std::string describe() const;

    std::string env_name(const std::string& key) const;  // IM_<PREFIX>_<KEY> (for docs and errors)

private:
    std::optional<RawValue> raw(const std::string& key);
    std::optional<std::string> scalar(const std::string& key);
    void error(const std::string& key, const RawValue& v, const std::string& what);
    void record(const std::string& key, const std::string& value, bool secret);

    const ConfigSource& source_;
    std::string env_prefix_;
    std::vector<std::string> errors_;
    std::vector<std::string> bound_keys_;
    std::vector<std::pair<std::string, std::string>> described_;
};

}  // namespace im::config

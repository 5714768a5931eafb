#pragma once
// What every im-* main() shares: the command line (--config, --set, --print-config), the config
// source built from it, and waiting for MySQL at start-up.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "im/server/config.hpp"

namespace im::process {

struct CliOptions {
    std::string config_file;
    std::vector<std::string> sets;  // key=value
    bool print_config = false;      // print the effective configuration and exit
};

// Parses argv. Returns an exit code when the process must stop now (--help, a usage error).
std::optional<int> parse_cli(int argc, char** argv, const std::string& name, const std::string& about,
                             CliOptions& out);

// YAML file (if any) + the process environment + --set flags. Throws config::ConfigError.
config::ConfigSource make_source(const CliOptions& opts);

// Retries `attempt` (which throws on failure) with backoff until it succeeds or `timeout_s`
// passes; then rethrows the last error. Used at start-up while dependencies come up.
void retry_startup(const std::string& what, int timeout_s, const std::function<void()>& attempt);

}  // namespace im::process

#pragma once
// Logging setup: one spdlog default logger per process, configured from the process config.
// Secrets (passwords, tokens) are never passed to a log call; see docs/OPERATIONS.md.

#include <string>

namespace im::config {
class Binder;
}

namespace im::logging {

struct LogConfig {
    std::string level = "info";  // trace, debug, info, warn, error, critical, off
    std::string file;            // empty: stderr
};

void bind(config::Binder& b, LogConfig& c);

// Installs the default logger named after the process ("im-rest"). Call once in main.
void setup(const std::string& process_name, const LogConfig& c);

}  // namespace im::logging

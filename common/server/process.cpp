#include "im/server/process.hpp"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <thread>

namespace im::process {

std::optional<int> parse_cli(int argc, char** argv, const std::string& name, const std::string& about,
                             CliOptions& out) {
    CLI::App app(about, name);
    app.add_option("-c,--config", out.config_file, "YAML configuration file")->check(CLI::ExistingFile);
    app.add_option("--set", out.sets, "Override a configuration key: --set key=value (repeatable)");
    app.add_flag("--print-config", out.print_config, "Print the effective configuration (secrets masked) and exit");
    app.footer(
        "Configuration precedence: defaults < --config file < IM_* environment variables < --set.\n"
        "Every key K can be set by the environment as IM_<PROCESS>_K or IM_K (dots become underscores).\n"
        "See docs/OPERATIONS.md for every key.");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    return std::nullopt;
}

config::ConfigSource make_source(const CliOptions& opts) {
    config::ConfigSource source(config::ConfigSource::process_env());
    if (!opts.config_file.empty()) source.load_yaml_file(opts.config_file);
    for (const auto& s : opts.sets) source.add_override(s);
    return source;
}

void retry_startup(const std::string& what, int timeout_s, const std::function<void()>& attempt) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    auto delay = std::chrono::milliseconds(100);
    for (int n = 1;; ++n) {
        try {
            attempt();
            return;
        } catch (const std::exception& e) {
            if (std::chrono::steady_clock::now() + delay > deadline) throw;
            spdlog::warn("{}: attempt {} failed ({}), retrying in {} ms", what, n, e.what(), delay.count());
        }
        std::this_thread::sleep_for(delay);
        delay = std::min(delay * 2, std::chrono::milliseconds(2000));
    }
}

}  // namespace im::process

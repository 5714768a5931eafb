#include "im/server/logging.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "im/server/config.hpp"

namespace im::logging {

void bind(config::Binder& b, LogConfig& c) {
    b.bind_choice("log.level", c.level, {"trace", "debug", "info", "warn", "error", "critical", "off"});
    b.bind("log.file", c.file);
}

void setup(const std::string& process_name, const LogConfig& c) {
    spdlog::sink_ptr sink;
    if (c.file.empty()) {
        sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    } else {
        sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(c.file);
    }
    auto logger = std::make_shared<spdlog::logger>(process_name, std::move(sink));
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%L%$ %n[%t] %v", spdlog::pattern_time_type::utc);
    logger->set_level(spdlog::level::from_str(c.level));
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(std::move(logger));
    spdlog::flush_every(std::chrono::seconds(1));
}

}  // namespace im::logging

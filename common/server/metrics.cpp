#include "im/server/metrics.hpp"

#include <dirent.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace im {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {}

prometheus::Counter& Metrics::counter(const std::string& name, const std::string& help,
                                      const prometheus::Labels& labels) {
    std::lock_guard lock(mu_);
    auto& family = counters_[name];
    if (family == nullptr) family = &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_);
    return family->Add(labels);
}

prometheus::Gauge& Metrics::gauge(const std::string& name, const std::string& help,
                                  const prometheus::Labels& labels) {
    std::lock_guard lock(mu_);
    auto& family = gauges_[name];
    if (family == nullptr) family = &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_);
    return family->Add(labels);
}

prometheus::Histogram& Metrics::histogram(const std::string& name, const std::string& help,
                                          const prometheus::Histogram::BucketBoundaries& buckets,
                                          const prometheus::Labels& labels) {
    std::lock_guard lock(mu_);
    auto& family = histograms_[name];
    if (family == nullptr) family = &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_);
    return family->Add(labels, buckets);
}

prometheus::Histogram::BucketBoundaries Metrics::latency_buckets() {
    return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
            0.05,    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0};
}

std::string Metrics::text() const {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, registry_->Collect());
    const auto p = read_process_stats();
    out << "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        << "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total " << p.cpu_seconds << "\n"
        << "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        << "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes " << p.rss_bytes
        << "\n"
        << "# HELP process_open_fds Number of open file descriptors.\n"
        << "# TYPE process_open_fds gauge\nprocess_open_fds " << p.open_fds << "\n"
        << "# HELP process_threads Number of OS threads.\n"
        << "# TYPE process_threads gauge\nprocess_threads " << p.threads << "\n"
        << "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
        << "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds "
        << static_cast<std::uint64_t>(p.start_time_seconds) << "\n";
    return out.str();
}

ProcessStats read_process_stats(int pid) {
    ProcessStats s;
    const std::string dir = pid == 0 ? "/proc/self" : "/proc/" + std::to_string(pid);
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));

    std::ifstream stat(dir + "/stat");
    std::string line;
    if (std::getline(stat, line)) {
        // Fields after the command name (which may contain spaces) start after the last ')'.
        const auto close = line.rfind(')');
        std::istringstream in(close == std::string::npos ? std::string() : line.substr(close + 2));
        std::string f;
        std::vector<std::string> fields;
        while (in >> f) fields.push_back(f);
        // fields[0] is field 3 (state); utime=14, stime=15, num_threads=20, starttime=22, rss=24.
        auto field = [&](std::size_t n) -> double {
            return n - 3 < fields.size() ? std::stod(fields[n - 3]) : 0.0;
        };
        s.cpu_seconds = (field(14) + field(15)) / ticks;
        s.threads = static_cast<std::uint64_t>(field(20));
        s.rss_bytes = static_cast<std::uint64_t>(field(24)) * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
        std::ifstream uptime_file("/proc/uptime");
        double uptime = 0;
        uptime_file >> uptime;
        const double boot = static_cast<double>(time(nullptr)) - uptime;
        s.start_time_seconds = boot + field(22) / ticks;
    }
    if (DIR* d = opendir((dir + "/fd").c_str())) {
        while (const dirent* e = readdir(d)) {
            if (e->d_name[0] != '.') ++s.open_fds;
        }
        closedir(d);
    }
    return s;
}

}  // namespace im

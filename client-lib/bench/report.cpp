#include "report.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "json_lite.hpp"

namespace imbench {

using imclient::detail::json_quote;

namespace fs = std::filesystem;

double Samples::percentile_us(double p) {
    if (v_.empty()) return 0;
    if (!sorted_) {
        std::sort(v_.begin(), v_.end());
        sorted_ = true;
    }
    const double rank = std::ceil(p / 100.0 * static_cast<double>(v_.size()));
    std::size_t i = rank <= 1 ? 0 : static_cast<std::size_t>(rank) - 1;
    i = std::min(i, v_.size() - 1);
    return static_cast<double>(v_[i]) / 1000.0;
}

double Samples::max_us() {
    return percentile_us(100);
}

namespace {

double clock_ticks() {
    static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    return ticks;
}

}  // namespace

double process_cpu_seconds(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(f, line)) return -1;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream in(line.substr(close + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    // Fields after the comm: state(3) ... utime(14) stime(15); index 0 here is field 3.
    for (int i = 3; i <= 15 && (in >> field); ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / clock_ticks();
}

double self_cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto tv = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    return tv(ru.ru_utime) + tv(ru.ru_stime);
}

std::uint64_t process_rss_bytes(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) {
            std::istringstream in(line.substr(6));
            std::uint64_t kb = 0;
            in >> kb;
            return kb * 1024;
        }
    }
    return 0;
}

std::string process_comm(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
    std::string s;
    std::getline(f, s);
    return s;
}

std::vector<WatchedProcess> find_watched_processes(const std::vector<std::string>& dirs) {
    std::vector<WatchedProcess> out;
    auto consider = [&](const fs::path& p) {
        if (p.extension() != ".pid") return;
        std::ifstream f(p);
        long pid = 0;
        if (!(f >> pid) || pid <= 0) return;
        const auto comm = process_comm(static_cast<pid_t>(pid));
        if (comm.empty()) return;  // not running
        for (const auto& w : out)
            if (w.pid == pid) return;
        out.push_back({static_cast<pid_t>(pid), p.stem().string(), comm});
    };
    for (const auto& d : dirs) {
        std::error_code ec;
        if (!fs::is_directory(d, ec)) continue;
        for (fs::recursive_directory_iterator
                 it(d, fs::directory_options::skip_permission_denied, ec),
             end;
             it != end; it.increment(ec)) {
            if (ec) break;
            if (it.depth() > 1) {
                it.disable_recursion_pending();
                continue;
            }
            if (it->is_regular_file(ec)) consider(it->path());
        }
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return out;
}

void CpuMeter::start() {
    start_.clear();
    for (const auto& p : procs_)
        start_.push_back(process_cpu_seconds(p.pid));
    self_start_ = self_cpu_seconds();
}

void CpuMeter::stop() {
    end_.clear();
    for (const auto& p : procs_)
        end_.push_back(process_cpu_seconds(p.pid));
    self_end_ = self_cpu_seconds();
}

std::vector<std::pair<std::string, double>> CpuMeter::per_process() const {
    std::vector<std::pair<std::string, double>> out;
    for (std::size_t i = 0; i < procs_.size() && i < start_.size() && i < end_.size(); ++i) {
        if (start_[i] < 0 || end_[i] < 0) continue;
        out.emplace_back(procs_[i].name, end_[i] - start_[i]);
    }
    return out;
}

std::string format_double(double v, int decimals) {
    if (!std::isfinite(v)) return "0";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

void Report::add(const std::string& key, double value, int decimals) {
    items_.push_back({key, format_double(value, decimals), false});
}

void Report::add(const std::string& key, std::int64_t value) {
    items_.push_back({key, std::to_string(value), false});
}

void Report::add_text(const std::string& key, const std::string& value) {
    items_.push_back({key, value, true});
}

void Report::add_latency(const std::string& prefix, Samples& s,
                         const std::vector<double>& percentiles) {
    for (double p : percentiles) {
        std::string name = format_double(p, p == std::floor(p) ? 0 : 1);
        for (auto& c : name)
            if (c == '.') c = '_';
        add(prefix + "_p" + name + "_us", s.percentile_us(p), 1);
    }
    add(prefix + "_max_us", s.max_us(), 1);
    add(prefix + "_samples", static_cast<std::int64_t>(s.size()));
}

void Report::add_cpu(const CpuMeter& cpu, double interval_s) {
    add("cpu_interval_s", interval_s, 2);
    add("cpu_generator_s", cpu.self_seconds(), 2);
    for (const auto& [name, secs] : cpu.per_process())
        add("cpu_" + name + "_s", secs, 2);
}

std::string Report::json() const {
    std::string out = "{\"command\":" + json_quote(command_);
    for (const auto& it : items_) {
        out += "," + json_quote(it.key) + ":";
        out += it.quoted ? json_quote(it.value) : it.value;
    }
    out += "}";
    return out;
}

bool Report::emit(const std::string& json_out) const {
    std::size_t width = 0;
    for (const auto& it : items_)
        width = std::max(width, it.key.size());
    std::cout << "== im-bench " << command_ << " ==\n";
    for (const auto& it : items_) {
        std::cout << "  " << it.key << std::string(width - it.key.size() + 2, ' ') << it.value
                  << "\n";
    }
    const auto line = json();
    std::cout << line << std::endl;
    if (json_out.empty()) return true;
    std::ofstream f(json_out, std::ios::app);
    f << line << "\n";
    return static_cast<bool>(f);
}

}  // namespace imbench

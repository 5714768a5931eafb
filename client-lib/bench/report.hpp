#pragma once
// im-bench's measurement helpers: latency samples with percentiles, CPU and RSS read from /proc,
// and the report (a human table on stdout plus one JSON line).

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace imbench {

using Clock = std::chrono::steady_clock;

inline std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
}

// Latency samples in nanoseconds; percentiles by sorting once at the end (a run keeps a few
// million samples at most: a few tens of MB).
class Samples {
  public:
    void add(std::int64_t ns) { v_.push_back(ns < 0 ? 0 : ns); }
    void merge(const Samples& o) { v_.insert(v_.end(), o.v_.begin(), o.v_.end()); }
    std::size_t size() const { return v_.size(); }
    void reserve(std::size_t n) { v_.reserve(n); }
    // Percentile p in [0, 100] in microseconds (0 when empty). Sorts on first use.
    double percentile_us(double p);
    double max_us();

  private:
    std::vector<std::int64_t> v_;
    bool sorted_ = false;
};

// CPU seconds (user + system) of a process from /proc/<pid>/stat; negative when it is gone.
double process_cpu_seconds(pid_t pid);
// This process's CPU seconds (getrusage).
double self_cpu_seconds();
// VmRSS of a process in bytes; 0 when unknown.
std::uint64_t process_rss_bytes(pid_t pid);
std::string process_comm(pid_t pid);

// The processes whose CPU a run reports: every live pid named by a *.pid file under the given
// directories (two levels deep: $IM_RUN_DIR/<server>/<name>.pid and the cluster's pid files).
struct WatchedProcess {
    pid_t pid = 0;
    std::string name;  // pid file stem, e.g. "im-connector-0", "redis"
    std::string comm;
};
std::vector<WatchedProcess> find_watched_processes(const std::vector<std::string>& dirs);

// CPU seconds per watched process over an interval.
class CpuMeter {
  public:
    explicit CpuMeter(std::vector<WatchedProcess> procs) : procs_(std::move(procs)) {}
    void start();
    void stop();
    double self_seconds() const { return self_end_ - self_start_; }
    // name -> CPU seconds during the interval
    std::vector<std::pair<std::string, double>> per_process() const;

  private:
    std::vector<WatchedProcess> procs_;
    std::vector<double> start_, end_;
    double self_start_ = 0, self_end_ = 0;
};

// One report: ordered key/values, printed as an aligned table and as one JSON object.
class Report {
  public:
    explicit Report(std::string command) : command_(std::move(command)) {}
    void add(const std::string& key, double value, int decimals = 0);
    void add(const std::string& key, std::int64_t value);
    void add(const std::string& key, std::uint64_t value) {
        add(key, static_cast<std::int64_t>(value));
    }
    void add(const std::string& key, int value) { add(key, static_cast<std::int64_t>(value)); }
    void add_text(const std::string& key, const std::string& value);
    void add_latency(const std::string& prefix, Samples& s, const std::vector<double>& percentiles);
    void add_cpu(const CpuMeter& cpu, double interval_s);

    // Prints the table and the JSON line to stdout; appends the JSON line to json_out when set.
    // Returns false when the file cannot be written.
    bool emit(const std::string& json_out) const;
    std::string json() const;

  private:
    struct Item {
        std::string key;
        std::string value;  // already formatted
        bool quoted = false;
    };
    std::string command_;
    std::vector<Item> items_;
};

std::string format_double(double v, int decimals);

}  // namespace imbench

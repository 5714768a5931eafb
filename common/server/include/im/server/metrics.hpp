#pragma once
// The metrics registry of a process, exposed as Prometheus text on its admin port (/metrics).
// Counters and gauges are prometheus-cpp objects: cheap atomic updates on the hot path, taken once
// by reference at start-up (never looked up per event). Process metrics (CPU, RSS, fds, threads)
// are read from /proc at scrape time.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace im {

class Metrics {
public:
    Metrics();
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    // Same name -> same family; same name + labels -> the same object.
    prometheus::Counter& counter(const std::string& name, const std::string& help,
                                 const prometheus::Labels& labels = {});
    prometheus::Gauge& gauge(const std::string& name, const std::string& help,
                             const prometheus::Labels& labels = {});
    prometheus::Histogram& histogram(const std::string& name, const std::string& help,
                                     const prometheus::Histogram::BucketBoundaries& buckets,
                                     const prometheus::Labels& labels = {});

    // Prometheus text exposition format 0.0.4 of everything, process metrics included.
    std::string text() const;

    // Latency buckets in seconds from 50 us to 10 s.
    static prometheus::Histogram::BucketBoundaries latency_buckets();

private:
    std::shared_ptr<prometheus::Registry> registry_;
    std::mutex mu_;  // guards the family maps (registration only, never the hot path)
    std::map<std::string, prometheus::Family<prometheus::Counter>*> counters_;
    std::map<std::string, prometheus::Family<prometheus::Gauge>*> gauges_;
    std::map<std::string, prometheus::Family<prometheus::Histogram>*> histograms_;
};

// Reads /proc/self: for the process_* metrics, and for im-bench's CPU accounting of other pids.
struct ProcessStats {
    double cpu_seconds = 0;  // user + system
    std::uint64_t rss_bytes = 0;
    std::uint64_t threads = 0;
    std::uint64_t open_fds = 0;
    double start_time_seconds = 0;  // since the Unix epoch
};
ProcessStats read_process_stats(int pid = 0);  // 0: this process

}  // namespace im

#pragma once
// Files (docs/REST.md "Files"): streamed uploads into a content-addressed store, downloads with
// Range, access by conversation, and the sweep of files no message references.
//
// Layout under files.dir: tmp/<random>.part while an upload streams (deleted on any failure,
// swept at start-up after a crash), objects/<sha[0..2]>/<sha256> once complete (fsync'd, then
// renamed; identical content is stored once). Metadata in MySQL `files`; the conversations a file
// was sent in are in `file_refs`, written by the owner transfer with the FILE message.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "http_types.hpp"
#include "im/server/mysql.hpp"

namespace im {
class Metrics;
}
namespace im::config {
class Binder;
}
namespace prometheus {
class Counter;
class Gauge;
}

namespace im::rest {

struct FilesConfig {
    std::string dir = "data/files";
    std::uint64_t max_bytes = 100ull << 20;  // per file; 413 beyond it
    std::chrono::milliseconds orphan_ttl{24 * 3600 *
                                         1000};  // unreferenced files older than this are removed
    std::chrono::milliseconds sweep_interval{10 * 60 * 1000};
    std::uint32_t sweep_batch = 500;  // files examined per sweep round
    std::uint32_t max_uploads = 32;   // uploads in flight at once; more get 503
    std::uint32_t max_uploads_per_user = 4;  // of them, one user's at once; more get 429
    // Bytes one user may upload per window (Redis, shared by the replicas); 429 beyond. 0: off.
    std::uint64_t upload_bytes_per_user = 2ull << 30;
    std::chrono::milliseconds upload_bytes_window{3600 * 1000};
    // An upload starts only while files.dir keeps this much free space after its declared length.
    std::uint64_t min_free_bytes = 1ull << 30;
};

void bind(config::Binder& b, FilesConfig& c);  // keys files.*

// The blob directory. Thread-safe (stateless besides the paths).
class FileStore {
  public:
    // Creates the directories and deletes leftover temporary files. Throws on failure.
    explicit FileStore(std::string dir);
    std::string blob_path(const std::string& sha256_hex) const;
    // A new temporary file (O_EXCL, 0600) and its path; -1 on failure (errno set).
    int create_temp(std::string& path) const;
    // Moves a complete, fsync'd temporary file to its blob path. Returns true when it created the
    // blob, false when the same content was stored already (the temporary file is then deleted)
    // or when it replaced a damaged blob of another size (still referenced by other rows).
    // Throws std::system_error on failure.
    bool place(const std::string& temp_path, const std::string& sha256_hex) const;

  private:
    std::string dir_;
};

struct FileMetrics {
    explicit FileMetrics(Metrics& m);
    prometheus::Counter& upload_bytes;
    prometheus::Counter& download_bytes;
    prometheus::Counter& uploads_ok;
    prometheus::Counter& uploads_failed;
    prometheus::Counter& downloads;
    prometheus::Counter& swept;
    // A row whose blob is gone from files.dir (e.g. a container re-created without a volume on it)
    // or has another size: its downloads answer 410 file_gone.
    prometheus::Counter& lost_missing;
    prometheus::Counter& lost_size_mismatch;
    prometheus::Gauge& in_flight_gauge;
    std::atomic<std::uint32_t> in_flight{0};  // uploads streaming now (files.max_uploads)
};

// Uploads streaming now per user (files.max_uploads_per_user). Entries exist only while a user
// has an upload in flight, so the table is bounded by files.max_uploads.
class UploadsPerUser {
  public:
    bool try_add(std::uint64_t user, std::uint32_t max);
    void remove(std::uint64_t user);

  private:
    std::mutex mu_;
    std::unordered_map<std::uint64_t, std::uint32_t> counts_;
};

// Removes files that no message references once they are older than files.orphan_ttl: its own
// thread and MySQL connection, one round per files.sweep_interval.
class FileSweeper {
  public:
    FileSweeper(const mysql::MysqlConfig& db, const FilesConfig& config, const FileStore& store,
                FileMetrics& metrics);
    ~FileSweeper();
    FileSweeper(const FileSweeper&) = delete;
    FileSweeper& operator=(const FileSweeper&) = delete;
    void start();
    void stop();
    // One round; returns the number of files removed. Public for tests.
    std::size_t sweep_once(mysql::MysqlConnection& db);

  private:
    void run();
    mysql::MysqlConfig db_config_;
    const FilesConfig& config_;
    const FileStore& store_;
    FileMetrics& metrics_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread thread_;
};

// Takes a MySQL named lock for one blob (uploads placing it and the sweeper deleting it must not
// interleave); released on destruction. Throws ApiError 503 when it cannot be taken in time.
class BlobLock {
  public:
    BlobLock(mysql::MysqlConnection& db, const std::string& sha256_hex);
    ~BlobLock();
    BlobLock(const BlobLock&) = delete;
    BlobLock& operator=(const BlobLock&) = delete;

  private:
    mysql::MysqlConnection& db_;
    std::string name_;
};

}  // namespace im::rest

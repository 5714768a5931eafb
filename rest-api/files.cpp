#include "files.hpp"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <cstring>
#include <random>
#include <system_error>
#include <vector>

#include "file_names.hpp"
#include "im/server/config.hpp"
#include "im/server/metrics.hpp"

namespace im::rest {

void bind(config::Binder& b, FilesConfig& c) {
    b.bind("files.dir", c.dir);
    b.bind_size("files.max_bytes", c.max_bytes, 1, 1ull << 40);
    b.bind_duration("files.orphan_ttl", c.orphan_ttl, std::chrono::milliseconds(0),
                    std::chrono::hours(24 * 3650));
    b.bind_duration("files.sweep_interval", c.sweep_interval, std::chrono::milliseconds(100),
                    std::chrono::hours(24));
    b.bind("files.sweep_batch", c.sweep_batch, 1, 100000);
    b.bind("files.max_uploads", c.max_uploads, 1, 100000);
    b.bind("files.max_uploads_per_user", c.max_uploads_per_user, 1, 100000);
    b.bind_size("files.upload_bytes_per_user", c.upload_bytes_per_user, 0, 1ull << 50);
    b.bind_duration("files.upload_bytes_window", c.upload_bytes_window, std::chrono::seconds(1),
                    std::chrono::hours(24 * 30));
    b.bind_size("files.min_free_bytes", c.min_free_bytes, 0, 1ull << 62);
    b.require(!c.dir.empty(), "files.dir", "must not be empty");
    b.require(c.upload_bytes_per_user == 0 || c.upload_bytes_per_user >= c.max_bytes,
              "files.upload_bytes_per_user", "must be 0 (off) or at least files.max_bytes");
}

bool UploadsPerUser::try_add(std::uint64_t user, std::uint32_t max) {
    std::lock_guard lock(mu_);
    auto& n = counts_[user];
    if (n >= max) return false;  // n >= 1: the entry existed
    ++n;
    return true;
}

void UploadsPerUser::remove(std::uint64_t user) {
    std::lock_guard lock(mu_);
    auto it = counts_.find(user);
    if (it != counts_.end() && --it->second == 0) counts_.erase(it);
}

namespace {

std::system_error sys_error(const std::string& what) {
    return {errno, std::generic_category(), what};
}

void make_dir(const std::string& path) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) throw sys_error("mkdir " + path);
}

// Makes a rename or a new directory entry durable.
void fsync_dir(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw sys_error("open " + path);
    const int rc = ::fsync(fd);
    const int saved = errno;
    ::close(fd);
    if (rc != 0) {
        errno = saved;
        throw sys_error("fsync " + path);
    }
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

FileStore::FileStore(std::string dir) : dir_(std::move(dir)) {
    while (dir_.size() > 1 && dir_.back() == '/')
        dir_.pop_back();
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) throw std::system_error(ec, "create " + dir_);
    make_dir(dir_ + "/tmp");
    make_dir(dir_ + "/objects");
    // Temporary files of uploads that were in flight when a previous process died.
    if (DIR* d = ::opendir((dir_ + "/tmp").c_str())) {
        std::size_t removed = 0;
        while (const dirent* e = ::readdir(d)) {
            const std::string name = e->d_name;
            if (name == "." || name == "..") continue;
            if (::unlink((dir_ + "/tmp/" + name).c_str()) == 0) ++removed;
        }
        ::closedir(d);
        if (removed > 0)
            spdlog::info("files: removed {} interrupted upload(s) from {}/tmp", removed, dir_);
    }
}

std::string FileStore::blob_path(const std::string& sha) const {
    return dir_ + "/objects/" + sha.substr(0, 2) + "/" + sha;
}

int FileStore::create_temp(std::string& path) const {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    for (int attempt = 0; attempt < 8; ++attempt) {
        const std::uint64_t r = rng();
        path =
            dir_ + "/tmp/" + to_hex(reinterpret_cast<const unsigned char*>(&r), sizeof r) + ".part";
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

bool FileStore::place(const std::string& temp_path, const std::string& sha) const {
    const std::string sub = dir_ + "/objects/" + sha.substr(0, 2);
    make_dir(sub);
    const std::string target = sub + "/" + sha;
    struct stat st {};
    struct stat incoming {};
    const bool existed = ::stat(target.c_str(), &st) == 0;
    // The same content is there already, unless that blob was damaged (another size): then the
    // new copy replaces it, which heals the files that answered 410 file_gone.
    if (existed && (::stat(temp_path.c_str(), &incoming) != 0 || incoming.st_size == st.st_size)) {
        ::unlink(temp_path.c_str());
        return false;
    }
    if (::rename(temp_path.c_str(), target.c_str()) != 0) throw sys_error("rename to " + target);
    fsync_dir(sub);
    return !existed;
}

FileMetrics::FileMetrics(Metrics& m)
    : upload_bytes(m.counter("im_rest_file_upload_bytes_total",
                             "Bytes received in file uploads (also failed ones).")),
      download_bytes(
          m.counter("im_rest_file_download_bytes_total", "Bytes sent in file downloads.")),
      uploads_ok(
          m.counter("im_rest_file_uploads_total", "File uploads by result.", {{"result", "ok"}})),
      uploads_failed(m.counter("im_rest_file_uploads_total", "File uploads by result.",
                               {{"result", "failed"}})),
      downloads(m.counter("im_rest_file_downloads_total", "File downloads started (200 or 206).")),
      swept(m.counter("im_rest_files_swept_total", "Unreferenced files removed by the sweeper.")),
      lost_missing(m.counter("im_rest_file_blobs_lost_total",
                             "Downloads answered 410: the file's blob is not in files.dir.",
                             {{"reason", "missing"}})),
      lost_size_mismatch(m.counter("im_rest_file_blobs_lost_total",
                                   "Downloads answered 410: the file's blob is not in files.dir.",
                                   {{"reason", "size_mismatch"}})),
      in_flight_gauge(m.gauge("im_rest_file_uploads_in_flight", "Uploads streaming now.")) {}

BlobLock::BlobLock(mysql::MysqlConnection& db, const std::string& sha)
    : db_(db), name_("imf:" + sha.substr(0, 60)) {
    auto& st = db_.prepare("SELECT GET_LOCK(?, 10)");
    st.setString(1, name_);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    if (!rs->next() || rs->isNull(1) || rs->getInt(1) != 1) {
        throw std::runtime_error("could not lock blob " + sha.substr(0, 12) + " within 10 s");
    }
}

BlobLock::~BlobLock() {
    try {
        auto& st = db_.prepare("DO RELEASE_LOCK(?)");
        st.setString(1, name_);
        st.execute();
    } catch (const std::exception& e) {
        // The lock dies with the connection, which a failed statement resets anyway.
        spdlog::warn("files: releasing {} failed: {}", name_, e.what());
    }
}

FileSweeper::FileSweeper(const mysql::MysqlConfig& db, const FilesConfig& config,
                         const FileStore& store, FileMetrics& metrics)
    : db_config_(db), config_(config), store_(store), metrics_(metrics) {}

FileSweeper::~FileSweeper() {
    stop();
}

void FileSweeper::start() {
    thread_ = std::thread([this] { run(); });
}

void FileSweeper::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void FileSweeper::run() {
    std::unique_ptr<mysql::MysqlConnection> db;
    for (;;) {
        {
            std::unique_lock lock(mu_);
            if (cv_.wait_for(lock, config_.sweep_interval, [this] { return stopping_; })) return;
        }
        try {
            if (!db) db = std::make_unique<mysql::MysqlConnection>(db_config_);
            const auto n = sweep_once(*db);
            if (n > 0) spdlog::info("files: removed {} unreferenced file(s)", n);
        } catch (const std::exception& e) {
            spdlog::warn("files: sweep failed: {}", e.what());
            db.reset();  // reconnect next round
        }
    }
}

std::size_t FileSweeper::sweep_once(mysql::MysqlConnection& db) {
    struct Candidate {
        std::uint64_t id;
        std::string sha;
    };
    std::vector<Candidate> candidates;
    {
        auto& st = db.prepare(
            "SELECT f.id, f.sha256 FROM files f WHERE f.created_ms < ? AND NOT EXISTS "
            "(SELECT 1 FROM file_refs r WHERE r.file_id = f.id) ORDER BY f.created_ms LIMIT ?");
        st.setInt64(1, now_ms() - config_.orphan_ttl.count());
        st.setUInt(2, config_.sweep_batch);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        while (rs->next())
            candidates.push_back({rs->getUInt64(1), rs->getString(2).asStdString()});
    }
    std::size_t removed = 0;
    for (const auto& c : candidates) {
        // The lock orders this against an upload of the same content placing its blob.
        BlobLock lock(db, c.sha);
        try {
            auto& del = db.prepare("DELETE FROM files WHERE id = ?");
            del.setUInt64(1, c.id);
            if (del.executeUpdate() == 0) continue;  // removed meanwhile (another replica)
        } catch (const sql::SQLException& e) {
            if (e.getErrorCode() == 1451) continue;  // a message referenced it meanwhile: keep
            throw;
        }
        ++removed;
        metrics_.swept.Increment();
        auto& other = db.prepare("SELECT COUNT(*) FROM files WHERE sha256 = ?");
        other.setString(1, c.sha);
        std::unique_ptr<sql::ResultSet> rs(other.executeQuery());
        if (rs->next() && rs->getUInt64(1) == 0) {
            const auto path = store_.blob_path(c.sha);
            if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
                spdlog::warn("files: cannot remove {}: {}", path, std::strerror(errno));
            }
        }
    }
    return removed;
}

}  // namespace im::rest

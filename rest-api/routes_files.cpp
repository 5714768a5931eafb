// POST /v1/files (streamed upload) and GET /v1/files/{id} (download with Range). See files.hpp for
// the storage layout and docs/REST.md "Files" for the contract.

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>

#include "file_names.hpp"
#include "files.hpp"
#include "im/server/metrics.hpp"
#include "rest_service.hpp"
#include "validation.hpp"

namespace im::rest {
namespace {

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// One of files.max_uploads uploads in flight (503 beyond).
class UploadSlot {
  public:
    UploadSlot(FileMetrics& m, std::uint32_t max) : m_(m) {
        if (m_.in_flight.fetch_add(1) >= max) {
            m_.in_flight.fetch_sub(1);
            ApiError e(503, "overloaded", "too many uploads in progress, retry shortly");
            e.retry_after_s = 1;
            throw e;
        }
        m_.in_flight_gauge.Increment();
    }
    ~UploadSlot() {
        m_.in_flight.fetch_sub(1);
        m_.in_flight_gauge.Decrement();
    }
    UploadSlot(const UploadSlot&) = delete;
    UploadSlot& operator=(const UploadSlot&) = delete;

  private:
    FileMetrics& m_;
};

// One of the user's files.max_uploads_per_user uploads in flight (429 beyond).
class UserUploadSlot {
  public:
    UserUploadSlot(RestService& svc, std::uint64_t user) : svc_(svc), user_(user) {
        if (!svc_.uploads_per_user().try_add(user_, svc_.config().files.max_uploads_per_user)) {
            svc_.count_limited("uploads_per_user");
            ApiError e(429, "rate_limited", "too many of your uploads are in progress, retry shortly");
            e.retry_after_s = 1;
            throw e;
        }
    }
    ~UserUploadSlot() { svc_.uploads_per_user().remove(user_); }
    UserUploadSlot(const UserUploadSlot&) = delete;
    UserUploadSlot& operator=(const UserUploadSlot&) = delete;

  private:
    RestService& svc_;
    std::uint64_t user_;
};

// files.upload_bytes_per_user: counts `bytes` more for the user in the current window; nullopt
// when that fits, else the seconds until the window ends (nothing counted). `stored`: the bytes
// are on disk already (a chunked upload, which declared no length), so they count in any case.
std::optional<int> charge_upload_bytes(Backend& be, RestService& svc, std::uint64_t user, std::uint64_t bytes,
                                       bool stored = false) {
    const auto& files = svc.config().files;
    if (files.upload_bytes_per_user == 0 || bytes == 0) return std::nullopt;
    const auto limit = stored ? std::numeric_limits<std::uint64_t>::max() : files.upload_bytes_per_user;
    auto wait = be.limiter.hit_amount("upload:user:" + std::to_string(user), bytes, limit, files.upload_bytes_window);
    if (wait) svc.count_limited("upload_bytes_per_user");
    return wait;
}

// One upload in progress: the body streams into a temporary file in files.dir/tmp and through
// SHA-256 on the connection's I/O thread (bounded chunks: an append to the page cache and a hash
// of at most UploadRoute::chunk_bytes each); finish() runs the blocking part on the pool: fsync,
// rename to the content address, INSERT. Destroyed unfinished, it deletes the temporary file.
class FileUpload final : public BodySink, public std::enable_shared_from_this<FileUpload> {
  public:
    // charged: the declared length already counted in files.upload_bytes_per_user (otherwise the
    // size is counted once the upload is complete).
    FileUpload(RestService& svc, std::uint64_t owner, std::string name, std::string mime, bool charged,
               std::unique_ptr<UploadSlot> slot, std::unique_ptr<UserUploadSlot> user_slot)
        : svc_(svc),
          slot_(std::move(slot)),
          user_slot_(std::move(user_slot)),
          charged_(charged),
          owner_(owner),
          name_(std::move(name)),
          mime_(std::move(mime)),
          hash_(EVP_MD_CTX_new()) {
        if (!hash_ || EVP_DigestInit_ex(hash_.get(), EVP_sha256(), nullptr) != 1) {
            throw std::runtime_error("SHA-256 is unavailable");
        }
        fd_ = svc_.file_store().create_temp(temp_path_);
        if (fd_ < 0) {
            spdlog::error("files: cannot create a temporary file in {}/tmp: {}",
                          svc_.config().files.dir, std::strerror(errno));
            throw ApiError(507, "insufficient_storage", "the file cannot be stored now");
        }
    }

    ~FileUpload() override {
        if (fd_ >= 0) ::close(fd_);
        if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
        if (!committed_) svc_.file_metrics().uploads_failed.Increment();
    }

    bool write(const char* data, std::size_t n) override {
        svc_.file_metrics().upload_bytes.Increment(static_cast<double>(n));
        if (size_ + n > svc_.config().files.max_bytes) {  // the parser's limit catches this first
            error_ = HttpResponse::error(413, "payload_too_large", "the file is too large");
            return false;
        }
        EVP_DigestUpdate(hash_.get(), data, n);
        std::size_t off = 0;
        while (off < n) {
            const ssize_t w = ::write(fd_, data + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                const bool full = errno == ENOSPC || errno == EDQUOT;
                spdlog::error("files: writing {} failed: {}", temp_path_, std::strerror(errno));
                error_ = full ? HttpResponse::error(507, "insufficient_storage",
                                                    "no space left for the file")
                              : HttpResponse::error(500, "internal", "internal error");
                return false;
            }
            off += static_cast<std::size_t>(w);
        }
        size_ += n;
        return true;
    }

    HttpResponse failure() override { return error_; }

    void finish(std::function<void(HttpResponse)> respond) override {
        auto self = shared_from_this();
        HttpRequest req;
        req.method = "POST";
        req.path = "/v1/files";
        const bool queued = svc_.submit(
            "/v1/files", std::move(req),
            [self](RequestContext& ctx) { return self->commit(ctx.be); }, respond);
        if (!queued) {
            auto r = HttpResponse::error(503, "overloaded", "the server is busy, retry shortly");
            r.headers.emplace_back("Retry-After", "1");
            respond(std::move(r));
        }
    }

  private:
    // On a pool thread.
    HttpResponse commit(Backend& be) {
        if (::fsync(fd_) != 0)
            throw std::runtime_error(std::string("fsync of an upload failed: ") +
                                     std::strerror(errno));
        ::close(fd_);
        fd_ = -1;
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(hash_.get(), digest, &len);
        const std::string sha = to_hex(digest, len);
        std::uint64_t id = 0;
        {
            BlobLock lock(be.db, sha);
            const bool created = svc_.file_store().place(temp_path_, sha);
            temp_path_.clear();  // renamed or deleted
            try {
                auto& ins = be.db.prepare(
                    "INSERT INTO files (owner_id, name, size, sha256, mime, created_ms) VALUES (?, "
                    "?, ?, ?, ?, ?)");
                ins.setUInt64(1, owner_);
                ins.setString(2, name_);
                ins.setUInt64(3, size_);
                ins.setString(4, sha);
                ins.setString(5, mime_);
                ins.setInt64(6, now_ms());
                ins.executeUpdate();
                auto& last = be.db.prepare("SELECT LAST_INSERT_ID()");
                std::unique_ptr<sql::ResultSet> rs(last.executeQuery());
                if (rs->next()) id = rs->getUInt64(1);
            } catch (...) {
                // No row can name a blob this upload created: remove it again.
                if (created) ::unlink(svc_.file_store().blob_path(sha).c_str());
                throw;
            }
        }
        committed_ = true;
        if (!charged_) (void)charge_upload_bytes(be, svc_, owner_, size_, true);  // the next upload pays
        svc_.file_metrics().uploads_ok.Increment();
        spdlog::info("files: user {} uploaded file {} ({} bytes, sha256 {})", owner_, id, size_,
                     sha.substr(0, 16));
        return HttpResponse::json(
            201, {{"id", id}, {"name", name_}, {"size", size_}, {"sha256", sha}, {"mime", mime_}});
    }

    RestService& svc_;
    std::unique_ptr<UploadSlot> slot_;  // first: released last, also when the constructor throws
    std::unique_ptr<UserUploadSlot> user_slot_;
    bool charged_;
    std::uint64_t owner_;
    std::string name_;
    std::string mime_;
    struct HashFree {
        void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
    };
    std::unique_ptr<EVP_MD_CTX, HashFree> hash_;
    int fd_ = -1;
    std::string temp_path_;
    std::uint64_t size_ = 0;
    bool committed_ = false;
    HttpResponse error_ = HttpResponse::error(500, "internal", "internal error");
};

// GET /v1/files/{id}: the owner, a participant of a one-to-one conversation the file was sent in,
// or a member (current or past) of a group it was sent in. A group id is below 2^32 and a
// one-to-one id at or above it, so the halves of a group id are never read as user ids. Anyone
// else gets the same 404 as for a file that does not exist.
HttpResponse download_file(RequestContext& ctx) {
    const auto id = ctx.path_id("id");
    auto& st = ctx.be.db.prepare(
        "SELECT f.name, f.size, f.sha256, f.mime FROM files f WHERE f.id = ? AND (f.owner_id = ? "
        "OR EXISTS "
        "(SELECT 1 FROM file_refs r WHERE r.file_id = f.id AND r.conversation_id >= 4294967296 AND "
        "((r.conversation_id >> 32) = ? OR (r.conversation_id & 4294967295) = ?)) "
        "OR EXISTS "
        "(SELECT 1 FROM file_refs r JOIN group_members gm ON gm.group_id = r.conversation_id AND gm.user_id = ? "
        "WHERE r.file_id = f.id AND r.conversation_id < 4294967296))");
    st.setUInt64(1, id);
    st.setUInt64(2, ctx.me());
    st.setUInt64(3, ctx.me());
    st.setUInt64(4, ctx.me());
    st.setUInt64(5, ctx.me());
    std::string name, sha, mime;
    std::uint64_t size = 0;
    {
        std::unique_ptr<sql::ResultSet> rs;
        ctx.be.db.run_idempotent([&] { rs.reset(st.executeQuery()); });
        if (!rs->next()) throw ApiError(404, "file_not_found", "no such file");
        name = rs->getString(1).asStdString();
        size = rs->getUInt64(2);
        sha = rs->getString(3).asStdString();
        mime = rs->getString(4).asStdString();
    }
    const auto path = ctx.svc.file_store().blob_path(sha);
    // A row whose content is lost (files.dir not on a volume when a container was re-created, a
    // database restored without its files) is the client's "gone", not a server fault: 410, counted.
    const auto gone = [&](prometheus::Counter& counter, const std::string& why) {
        counter.Increment();
        spdlog::error("files: file {} is lost: blob {} {} (is files.dir on persistent storage?)", id,
                      path, why);
        return ApiError(410, "file_gone", "the content of this file is no longer stored");
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) throw gone(ctx.svc.file_metrics().lost_missing, "does not exist");
        spdlog::error("files: file {} has no readable blob {}: {}", id, path, std::strerror(errno));
        throw ApiError(500, "internal", "internal error");
    }
    auto body = std::make_shared<FileBody>(fd, 0, size);
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        spdlog::error("files: fstat of blob {} failed: {}", path, std::strerror(errno));
        throw ApiError(500, "internal", "internal error");
    }
    if (static_cast<std::uint64_t>(info.st_size) != size) {
        throw gone(ctx.svc.file_metrics().lost_size_mismatch,
                   "has " + std::to_string(info.st_size) + " bytes, not the recorded " +
                       std::to_string(size));
    }
    HttpResponse res;
    res.content_type = mime;
    res.headers.emplace_back("Content-Disposition", content_disposition(name));
    res.headers.emplace_back("Accept-Ranges", "bytes");
    res.headers.emplace_back("ETag", "\"" + sha + "\"");
    res.headers.emplace_back("X-Content-Type-Options", "nosniff");
    res.headers.emplace_back("Cache-Control", "private, max-age=0");
    const auto* range_header = ctx.req.header("range");
    const auto range = range_header ? parse_range(*range_header, size)
                                    : ByteRange{ByteRange::Kind::whole, 0, size};
    if (range.kind == ByteRange::Kind::unsatisfiable) {
        auto r = HttpResponse::error(416, "range_not_satisfiable", "the range is outside the file");
        r.headers.emplace_back("Content-Range", "bytes */" + std::to_string(size));
        return r;
    }
    if (range.kind == ByteRange::Kind::partial) {
        res.status = 206;
        res.headers.emplace_back("Content-Range",
                                 "bytes " + std::to_string(range.first) + "-" +
                                     std::to_string(range.first + range.length - 1) + "/" +
                                     std::to_string(size));
        body->offset = range.first;
        body->length = range.length;
    }
    auto& bytes = ctx.svc.file_metrics().download_bytes;
    body->on_bytes = [&bytes](std::uint64_t n) { bytes.Increment(static_cast<double>(n)); };
    ctx.svc.file_metrics().downloads.Increment();
    res.file = std::move(body);
    return res;
}

}  // namespace

std::shared_ptr<BodySink> start_upload(RequestContext& ctx) {
    const auto raw_name = ctx.req.query_param("name");
    if (!raw_name || raw_name->empty())
        throw ApiError(400, "missing_parameter", "'name' is required");
    const auto name = sanitize_file_name(*raw_name);
    if (!name) throw ApiError(400, "invalid_parameter", "'name' must be 1-255 bytes of UTF-8");
    const auto* ct = ctx.req.header("content-type");
    if (ct != nullptr && ct->rfind("multipart/", 0) == 0) {
        throw ApiError(415, "unsupported_media_type",
                       "send the raw file as the body, not multipart");
    }
    // Refuse before a byte is stored when the disk would get too full (a chunked upload declares
    // no length: only the reserve is checked, and ENOSPC while writing answers 507 as well).
    const auto& files = ctx.svc.config().files;
    std::uint64_t declared = 0;
    if (const auto* cl = ctx.req.header("content-length")) declared = parse_id(*cl).value_or(0);
    struct statvfs fs {};
    if (::statvfs(files.dir.c_str(), &fs) == 0) {
        const auto free_bytes = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
        if (free_bytes < files.min_free_bytes || free_bytes - files.min_free_bytes < declared) {
            spdlog::warn("files: upload refused, {} bytes free in {} (reserve {}, declared {})",
                         free_bytes, files.dir, files.min_free_bytes, declared);
            throw ApiError(507, "insufficient_storage", "not enough space for the file");
        }
    }
    // The places first (503 / 429), then the volume: a refused upload counts no bytes.
    auto slot = std::make_unique<UploadSlot>(ctx.svc.file_metrics(), files.max_uploads);
    auto user_slot = std::make_unique<UserUploadSlot>(ctx.svc, ctx.me());
    if (const auto wait = charge_upload_bytes(ctx.be, ctx.svc, ctx.me(), declared)) {
        ApiError e(429, "rate_limited", "upload volume limit reached (files.upload_bytes_per_user), retry later");
        e.retry_after_s = *wait;
        throw e;
    }
    return std::make_shared<FileUpload>(ctx.svc, ctx.me(), *name, normalize_mime(ct ? *ct : ""), declared > 0,
                                        std::move(slot), std::move(user_slot));
}

void add_file_routes(Router<RouteSpec>& r) {
    // POST /v1/files never reaches the router: the HTTP server streams it
    // (RestService::upload_route).
    r.add("GET", "/v1/files/{id}", {download_file, true});
}

}  // namespace im::rest

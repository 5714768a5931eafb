#pragma once
// File upload (POST /v1/files) and download (GET /v1/files/{id}) against im-rest, streamed in
// chunks with SHA-256 computed on the way, over HTTP or HTTPS. Runs as coroutines on the io_context
// given (the client's file-transfer thread: local disk reads and writes happen there, never on the
// thread that runs the chat connection).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "imclient/types.hpp"

namespace imclient::detail {

struct FileHttp {
    std::string rest_url;
    std::string token;
    std::string tls_ca_file;
    std::string user_agent;
    std::chrono::milliseconds connect_timeout{5000};
    std::chrono::milliseconds io_timeout{10000};  // per read or write of one chunk
};

using Progress = std::function<void(std::uint64_t done, std::uint64_t total)>;

struct FileResult {
    ErrorCode code = ErrorCode::none;
    std::string message;
    FileRef file;
};

// Streams the file at `path` to im-rest; the answer's sha256 must match the one computed locally.
void upload_file(boost::asio::io_context& io, FileHttp http, std::string path, Progress progress,
                 std::function<void(FileResult)> done);

// Streams file `file_id` into `path` + ".part", checks its SHA-256 against expected_sha256 (or,
// when empty, the server's ETag), then renames it to `path`. Nothing is left behind on failure.
void download_file(boost::asio::io_context& io, FileHttp http, std::uint64_t file_id,
                   std::string path, std::string expected_sha256, Progress progress,
                   std::function<void(FileResult)> done);

}  // namespace imclient::detail

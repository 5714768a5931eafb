#pragma once
// MySQL/MariaDB through Connector/C++ 1.1 (synchronous, JDBC-style). A MysqlConnection belongs
// to one pool thread: it is never shared, so it needs no lock. Every call may throw
// sql::SQLException; the caller (a blocking pool task) turns it into an answer. Statements are
// prepared once per connection and cached by their SQL text. Only prepared statements carry data
// (transaction control is constant text).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

namespace sql {
class Connection;
class PreparedStatement;
class SQLException;
class Statement;
}  // namespace sql

namespace im::config {
class Binder;
}

namespace im::mysql {

struct MysqlConfig {
    std::string host = "127.0.0.1";
    std::uint16_t port = 3306;
    std::string user = "im";
    std::string password;
    std::string db = "im";
    std::chrono::milliseconds connect_timeout{3000};
    std::chrono::milliseconds io_timeout{10000};  // read and write timeout of every statement
    std::uint32_t pool_size = 8;                  // blocking pool threads, one connection each
    bool migrate = true;                          // apply schema migrations at start-up
};

void bind(config::Binder& b, MysqlConfig& c);

// True for errors that mean the connection is gone (server restart, network, timeout): the
// connection must be reset, and an idempotent unit of work may be retried once.
bool is_connection_error(const sql::SQLException& e);
// Duplicate key (1062).
bool is_duplicate_key(const sql::SQLException& e);
// Deadlock or lock wait timeout (1213, 1205): the transaction may be retried.
bool is_retryable_conflict(const sql::SQLException& e);

class MysqlConnection {
  public:
    explicit MysqlConnection(MysqlConfig config);
    ~MysqlConnection();
    MysqlConnection(const MysqlConnection&) = delete;
    MysqlConnection& operator=(const MysqlConnection&) = delete;

    // The live connection, connecting first if needed; a connection idle for a while is
    // checked (isValid) before use, so a server restart costs no failed request.
    sql::Connection& get();
    // A prepared statement for `sql`, cached for the life of the connection.
    sql::PreparedStatement& prepare(const std::string& sql);
    // Runs f() in a transaction: commit on return, rollback on exception (rethrown). A deadlock
    // or lock wait timeout (InnoDB picked this transaction as the victim) rolls back and runs f()
    // again, up to 3 attempts: f must be restartable (database work and local state only).
    // commit=false: f commits itself (a stored procedure that ends with COMMIT: one round trip
    // fewer); an exception still rolls back and a conflict still retries.
    void transaction(const std::function<void()>& f, bool commit = true);
    // For a connection whose only writes go through transaction() and whose other statements are
    // plain reads (the transfer's writer lanes): autocommit off and READ COMMITTED on every
    // connect, so transaction() sends no START TRANSACTION (the transaction is implicit and ends
    // with COMMIT: one round trip fewer per transaction). Reads outside transaction() see the
    // latest committed data and hold no locks. Call before the first use.
    void set_implicit_transactions() { implicit_transactions_ = true; }
    // Drops the connection (after a connection error); the next get() reconnects.
    void reset();
    // Runs `f` and, when it fails with a connection error on a connection that was reused,
    // resets and runs it once more. Only for idempotent work.
    void run_idempotent(const std::function<void()>& f);
    // Executes a statement without parameters (DDL, migrations).
    void execute(const std::string& sql);

    const MysqlConfig& config() const { return config_; }

  private:
    void rollback_quietly();
    void control(const char* sql);  // START TRANSACTION, COMMIT, ROLLBACK

    MysqlConfig config_;
    std::unique_ptr<sql::Connection> conn_;
    std::unordered_map<std::string, std::unique_ptr<sql::PreparedStatement>> statements_;
    std::unique_ptr<sql::Statement> control_;
    bool implicit_transactions_ = false;
    std::chrono::steady_clock::time_point last_used_{};
};

// MySQL DATETIME(3) text ("2026-11-28 01:02:03.456", UTC) to ms since the epoch.
std::int64_t datetime_to_ms(const std::string& text);
// The inverse, for binding DATETIME(3) parameters: "2026-11-28 01:02:03.456".
std::string ms_to_datetime(std::int64_t ms);

}  // namespace im::mysql

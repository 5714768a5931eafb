#include "im/server/mysql.hpp"

#include <cppconn/connection.h>
#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/statement.h>
#include <mysql_driver.h>

#include <ctime>
#include <mutex>

#include "im/server/config.hpp"

namespace im::mysql {

void bind(config::Binder& b, MysqlConfig& c) {
    b.bind("mysql.host", c.host);
    b.bind("mysql.port", c.port, 1, 65535);
    b.bind("mysql.user", c.user);
    b.bind("mysql.password", c.password, /*secret=*/true);
    b.bind("mysql.db", c.db);
    b.bind_duration("mysql.connect_timeout", c.connect_timeout, std::chrono::milliseconds(100),
                    std::chrono::minutes(1));
    b.bind_duration("mysql.io_timeout", c.io_timeout, std::chrono::seconds(1),
                    std::chrono::minutes(10));
    b.bind("mysql.pool_size", c.pool_size, 1, 256);
    b.bind("mysql.migrate", c.migrate);
}

bool is_connection_error(const sql::SQLException& e) {
    switch (e.getErrorCode()) {
        case 2002:  // can't connect through socket
        case 2003:  // can't connect to server
        case 2006:  // server has gone away
        case 2013:  // lost connection during query
        case 2055:  // lost connection at '%s'
        case 1927:  // connection was killed (MariaDB)
        case 1053:  // server shutdown in progress
            return true;
        default:
            return false;
    }
}

bool is_duplicate_key(const sql::SQLException& e) {
    return e.getErrorCode() == 1062;
}

bool is_retryable_conflict(const sql::SQLException& e) {
    return e.getErrorCode() == 1213 || e.getErrorCode() == 1205;
}

namespace {
sql::mysql::MySQL_Driver* driver() {
    // get_mysql_driver_instance() is not thread-safe on first use.
    static std::mutex mu;
    std::lock_guard lock(mu);
    static sql::mysql::MySQL_Driver* d = sql::mysql::get_mysql_driver_instance();
    return d;
}
constexpr auto kIdleCheckAfter = std::chrono::seconds(30);
}  // namespace

MysqlConnection::MysqlConnection(MysqlConfig config) : config_(std::move(config)) {}

MysqlConnection::~MysqlConnection() {
    reset();
}

sql::Connection& MysqlConnection::get() {
    const auto now = std::chrono::steady_clock::now();
    if (conn_ && now - last_used_ > kIdleCheckAfter && !conn_->isValid()) reset();
    if (!conn_) {
        sql::ConnectOptionsMap opts;
        opts["hostName"] = sql::SQLString(config_.host);
        opts["port"] = static_cast<int>(config_.port);
        opts["userName"] = sql::SQLString(config_.user);
        opts["password"] = sql::SQLString(config_.password);
        opts["schema"] = sql::SQLString(config_.db);
        opts["OPT_CONNECT_TIMEOUT"] =
            static_cast<int>((config_.connect_timeout.count() + 999) / 1000);
        opts["OPT_READ_TIMEOUT"] = static_cast<int>((config_.io_timeout.count() + 999) / 1000);
        opts["OPT_WRITE_TIMEOUT"] = static_cast<int>((config_.io_timeout.count() + 999) / 1000);
        opts["OPT_RECONNECT"] = false;  // a silent reconnect would lose transaction state
        opts["OPT_CHARSET_NAME"] = sql::SQLString("utf8mb4");
        conn_.reset(driver()->connect(opts));
        std::unique_ptr<sql::Statement> st(conn_->createStatement());
        st->execute("SET time_zone = '+00:00'");
        st->execute("SET NAMES utf8mb4 COLLATE utf8mb4_bin");
        if (implicit_transactions_) {
            st->execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
            conn_->setAutoCommit(false);
        }
    }
    last_used_ = now;
    return *conn_;
}

sql::PreparedStatement& MysqlConnection::prepare(const std::string& text) {
    auto& c = get();
    auto it = statements_.find(text);
    if (it == statements_.end()) {
        it = statements_
                 .emplace(text, std::unique_ptr<sql::PreparedStatement>(c.prepareStatement(text)))
                 .first;
    }
    return *it->second;
}

void MysqlConnection::transaction(const std::function<void()>& f, bool commit) {
    constexpr int kAttempts = 3;
    for (int attempt = 1;; ++attempt) {
        // START TRANSACTION ... COMMIT on the text protocol: two round trips, where toggling
        // autocommit off and on again around commit() costs three (a batch of the transfer's
        // writer makes 5-7 round trips in all, so this is a measurable share of its latency).
        if (!implicit_transactions_) control("START TRANSACTION");
        try {
            f();
            if (commit) control("COMMIT");
            return;
        } catch (const sql::SQLException& e) {
            rollback_quietly();
            if (!is_retryable_conflict(e) || attempt == kAttempts) throw;
        } catch (...) {
            rollback_quietly();
            throw;
        }
    }
}

void MysqlConnection::rollback_quietly() {
    if (!conn_) return;
    try {
        control("ROLLBACK");
    } catch (const sql::SQLException&) {
        reset();  // the connection is unusable; the original error matters more
    }
}

void MysqlConnection::control(const char* sql) {
    auto& c = get();
    if (!control_) control_.reset(c.createStatement());
    control_->execute(sql);
}

void MysqlConnection::reset() {
    statements_.clear();  // statements must die before their connection
    control_.reset();
    if (conn_) {
        try {
            conn_->close();
        } catch (const sql::SQLException&) {
        }
        conn_.reset();
    }
}

void MysqlConnection::run_idempotent(const std::function<void()>& f) {
    const bool reused = conn_ != nullptr;
    try {
        f();
    } catch (const sql::SQLException& e) {
        if (!is_connection_error(e)) throw;
        reset();
        if (!reused) throw;
        f();
    }
}

void MysqlConnection::execute(const std::string& text) {
    std::unique_ptr<sql::Statement> st(get().createStatement());
    st->execute(text);
}

std::int64_t datetime_to_ms(const std::string& text) {
    std::tm tm{};
    int ms = 0;
    if (std::sscanf(text.c_str(), "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                    &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
        return 0;
    }
    if (const auto dot = text.find('.'); dot != std::string::npos) {
        std::string frac = text.substr(dot + 1, 3);
        while (frac.size() < 3)
            frac += '0';
        ms = std::atoi(frac.c_str());
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000 + ms;
}

std::string ms_to_datetime(std::int64_t ms) {
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%03d", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms % 1000));
    return buf;
}

}  // namespace im::mysql

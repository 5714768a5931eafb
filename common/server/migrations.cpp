#include "im/server/migrations.hpp"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <set>
#include <sstream>
#include <stdexcept>

#include "im/server/mysql.hpp"

namespace im::mysql {

std::vector<std::string> split_statements(const std::string& sql) {
    std::vector<std::string> out;
    std::istringstream in(sql);
    std::string line, current;
    std::string delimiter = ";";  // "DELIMITER //" switches it (stored procedure bodies hold ';')
    while (std::getline(in, line)) {
        const auto first = line.find_first_not_of(" \t\r");
        if (first == std::string::npos || line.compare(first, 2, "--") == 0) continue;
        const auto last = line.find_last_not_of(" \t\r");
        if (line.compare(first, 10, "DELIMITER ") == 0) {
            delimiter = line.substr(first + 10, last + 1 - (first + 10));
            continue;
        }
        const bool ends = last + 1 >= first + delimiter.size() &&
                          line.compare(last + 1 - delimiter.size(), delimiter.size(), delimiter) == 0;
        if (ends && delimiter != ";") {
            current += line.substr(0, last + 1 - delimiter.size()) + "\n";
        } else {
            current += line + "\n";
        }
        if (ends) {
            out.push_back(current);
            current.clear();
        }
    }
    if (current.find_first_not_of(" \t\r\n") != std::string::npos) out.push_back(current);
    return out;
}

int apply_migrations(MysqlConnection& conn) {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INT NOT NULL PRIMARY KEY, "
        "name VARCHAR(128) NOT NULL, applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) "
        "ENGINE = InnoDB");
    {
        auto& lock = conn.prepare("SELECT GET_LOCK('im_schema_migrations', 60)");
        std::unique_ptr<sql::ResultSet> rs(lock.executeQuery());
        if (!rs->next() || rs->getInt(1) != 1) {
            throw std::runtime_error("could not take the schema migration lock within 60 s");
        }
    }
    int applied = 0;
    try {
        std::set<int> done;
        {
            std::unique_ptr<sql::ResultSet> rs(conn.prepare("SELECT version FROM schema_migrations").executeQuery());
            while (rs->next()) done.insert(rs->getInt(1));
        }
        for (const auto& m : migrations()) {
            if (done.count(m.version) != 0) continue;
            spdlog::info("schema: applying migration {} ({})", m.version, m.name);
            for (const auto& stmt : split_statements(m.sql)) conn.execute(stmt);
            auto& rec = conn.prepare("INSERT INTO schema_migrations (version, name) VALUES (?, ?)");
            rec.setInt(1, m.version);
            rec.setString(2, m.name);
            rec.executeUpdate();
            ++applied;
        }
    } catch (...) {
        try {
            conn.execute("DO RELEASE_LOCK('im_schema_migrations')");
        } catch (const sql::SQLException&) {
        }
        throw;
    }
    conn.execute("DO RELEASE_LOCK('im_schema_migrations')");
    return applied;
}

}  // namespace im::mysql

#pragma once
// Versioned schema migrations: common/sql/NNN_name.sql, compiled into every server binary and
// applied in order at start-up (mysql.migrate, default on) by whichever process comes first; a
// MySQL named lock serializes concurrent starters. Applied versions are recorded in
// schema_migrations. A migration is never edited once released: add the next one.

#include <string>
#include <vector>

namespace im::mysql {

class MysqlConnection;

struct Migration {
    int version;
    const char* name;
    const char* sql;  // statements separated by ';' at the end of a line
};

const std::vector<Migration>& migrations();

// Applies what is missing; returns the number applied. Throws on failure (start-up aborts).
int apply_migrations(MysqlConnection& conn);

// Splits a migration into statements (';' at the end of a line; '--' comment lines dropped).
std::vector<std::string> split_statements(const std::string& sql);

}  // namespace im::mysql

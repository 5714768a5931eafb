// Migration files are split into statements at lines ending with ';', or with the delimiter a
// "DELIMITER x" line sets (stored procedure bodies contain ';'). Every embedded migration splits
// into statements that each end where the file says.
#include <gtest/gtest.h>

#include "im/server/migrations.hpp"

namespace im::mysql {
namespace {

TEST(MigrationsSplit, SemicolonsEndStatementsAndCommentsAndBlankLinesAreSkipped) {
    const auto s = split_statements("-- a comment\nCREATE TABLE a (x INT);\n\nINSERT INTO a\n  VALUES (1);\n");
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0], "CREATE TABLE a (x INT);\n");
    EXPECT_EQ(s[1], "INSERT INTO a\n  VALUES (1);\n");
}

TEST(MigrationsSplit, ADelimiterLineKeepsAProcedureBodyInOneStatement) {
    const auto s = split_statements(
        "DROP PROCEDURE IF EXISTS p;\nDELIMITER //\nCREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND //\n"
        "DELIMITER ;\nSELECT 3;\n");
    ASSERT_EQ(s.size(), 3u);
    EXPECT_EQ(s[0], "DROP PROCEDURE IF EXISTS p;\n");
    EXPECT_EQ(s[1], "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND \n");
    EXPECT_EQ(s[2], "SELECT 3;\n");
}

TEST(MigrationsSplit, EveryEmbeddedMigrationSplitsIntoTerminatedStatements) {
    for (const auto& m : migrations()) {
        const auto stmts = split_statements(m.sql);
        EXPECT_FALSE(stmts.empty()) << m.name;
        for (const auto& st : stmts) {
            EXPECT_EQ(st.find("DELIMITER"), std::string::npos) << m.name << ": " << st;
        }
    }
}

}  // namespace
}  // namespace im::mysql

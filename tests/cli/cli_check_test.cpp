// outpost check, run as a real process.
#include "cli_support.hpp"

namespace outpost::testing {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::milliseconds;

TEST_F(CliCommands, CheckCleanAndDamagedSchema) {
    RunResult r = run_outpost({"check", "--db", db()});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("clean"), std::string::npos);
    EXPECT_TRUE(r.err.empty());
    r = run_outpost({"check", "--db", db(), "--json", "--quick"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_TRUE(parse_json(r.out)["clean"].get<bool>());

    exec_sql("DROP INDEX outpost_records_expiry");
    r = run_outpost({"check", "--db", db()});
    EXPECT_EQ(r.exit_code, 5);
    EXPECT_TRUE(one_error_line(r, "index outpost_records_expiry is missing"));

    exec_sql(
        "CREATE INDEX outpost_records_expiry ON outpost_records (expires_at) "
        "WHERE state = 0 AND expires_at IS NOT NULL");
    exec_sql("UPDATE outpost_records SET state = 7 WHERE id = " + std::to_string(ids_[0]));
    r = run_outpost({"check", "--db", db(), "--json"});
    EXPECT_EQ(r.exit_code, 5);
    EXPECT_EQ(parse_json(r.out)["problems"][0], "1 records have an unknown state");
}

// A damaged schema entry (here an app's view whose SQL no longer parses) makes SQLite refuse the
// whole file on a normal open, as the app's would be: check must say so, not open it leniently
// and call it clean. A rescue still reads it.
TEST_F(CliCommands, CheckOfAFileWithADamagedSchemaEntryIsNotClean) {
    exec_sql("CREATE VIEW app_pending AS SELECT id FROM outpost_records WHERE state = 0");
    exec_sql(
        "PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = 'CREATE VIEW app_pending AS "
        "SELECT id FROM outpost_records WHXRE state = 0' WHERE name = 'app_pending'");
    RunResult r = run_outpost({"check", "--db", db()});
    EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
    EXPECT_EQ(r.out.find("clean\n"), std::string::npos) << r.out;
    r = run_outpost({"stats", "--db", db()});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_TRUE(one_error_line(r, "malformed database schema"));
    r = run_outpost({"export", "--db", db(), "--skip-unreadable"});
    EXPECT_EQ(static_cast<std::size_t>(std::count(r.out.begin(), r.out.end(), '\n')), ids_.size())
        << r.err;
}

// A check that could not run is a failed run (1), not a finding about the file (5).
TEST_F(CliCommands, CheckThatCannotRunExitsOne) {
    RunResult r = run_outpost({"check", "--db", dir_.path().string()});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    r = run_outpost({"check", "--db", dir_.file("absent.db")});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
}

}  // namespace
}  // namespace outpost::testing

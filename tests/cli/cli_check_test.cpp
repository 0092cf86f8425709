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

}  // namespace
}  // namespace outpost::testing

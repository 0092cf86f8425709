// The read commands of outpost, run as a real process: stats, list, show.
#include <set>

#include "cli_support.hpp"

namespace outpost::testing {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::milliseconds;

TEST_F(CliCommands, StatsHuman) {
    const RunResult r = run_outpost({"stats", "--db", db()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(r.err.empty());
    EXPECT_NE(r.out.find("schema          " + std::to_string(kSchemaVersion) + "\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lease           none\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("oldest pending  "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("dropped         0 pending records removed by the quota"),
              std::string::npos)
        << r.out;
    // Aligned tables: numbers right-aligned under their titles.
    EXPECT_NE(r.out.find("STATE      RECORDS  BYTES\n"
                         "pending          3   20 B\n"
                         "delivered        1    4 B\n"
                         "dead             1    4 B\n"
                         "expired          1    5 B\n"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("TOPIC           RECORDS  PENDING  BYTES\n"
                         "logs/app              2        0    9 B\n"
                         "sensors/temp          2        1    8 B\n"
                         "fw/blob               1        1    4 B\n"
                         "sensors/pump-7        1        1   12 B\n"),
              std::string::npos)
        << r.out;
}

TEST_F(CliCommands, StatsJsonAndLease) {
    RunResult r = run_outpost({"stats", "--db", db(), "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json j = parse_json(r.out);
    EXPECT_EQ(j["counts"]["pending"], 3);
    EXPECT_EQ(j["counts"]["dead"], 1);
    EXPECT_EQ(j["counts"]["delivered"], 1);
    EXPECT_EQ(j["counts"]["expired"], 1);
    EXPECT_EQ(j["bytes"]["pending"], 4 + 12 + 4);
    EXPECT_EQ(j["dropped"], 0);
    EXPECT_EQ(j["schema_version"], kSchemaVersion);
    EXPECT_TRUE(j["lease"].is_null());
    EXPECT_GE(j["oldest_pending_age_ms"].get<std::int64_t>(), 0);
    EXPECT_GT(j["file_bytes"].get<std::int64_t>(), 0);
    EXPECT_EQ(j["journal_mode"], "wal");
    ASSERT_EQ(j["top_topics"].size(), 4u);
    EXPECT_EQ(j["top_topics"][0]["records"], 2);  // logs/app, sensors/temp: 2 each

    // A live dispatcher's lease (this test process) is reported as active.
    {
        SqliteStore store(db());
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        const std::int64_t now = SystemClock::instance().wall_ms();
        store.acquire_lease({"owner-1", host, ::getpid(), now, now, now + 60'000});
    }
    r = run_outpost({"stats", "--db", db(), "--json"});
    j = parse_json(r.out);
    ASSERT_FALSE(j["lease"].is_null());
    EXPECT_EQ(j["lease"]["pid"], ::getpid());
    EXPECT_TRUE(j["lease"]["active"].get<bool>());
    r = run_outpost({"stats", "--db", db()});
    EXPECT_NE(r.out.find("pid " + std::to_string(::getpid())), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("(active)"), std::string::npos) << r.out;
}

TEST_F(CliCommands, ListFilters) {
    auto ids_of = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {"list", "--db", db(), "--json"});
        const RunResult r = run_outpost(args);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        std::vector<std::int64_t> ids;
        for (const json& rec : parse_json(r.out)) {
            ids.push_back(rec["id"].get<std::int64_t>());
        }
        return ids;
    };
    EXPECT_EQ(ids_of({}), ids_);
    EXPECT_EQ(ids_of({"--state", "pending"}),
              (std::vector<std::int64_t>{ids_[0], ids_[1], ids_[2]}));
    EXPECT_EQ(ids_of({"--state", "dead"}), (std::vector<std::int64_t>{ids_[3]}));
    EXPECT_EQ(ids_of({"--state", "delivered"}), (std::vector<std::int64_t>{ids_[4]}));
    EXPECT_EQ(ids_of({"--state", "expired"}), (std::vector<std::int64_t>{ids_[5]}));
    EXPECT_EQ(ids_of({"--topic", "sensors/"}),
              (std::vector<std::int64_t>{ids_[0], ids_[1], ids_[3]}));
    EXPECT_EQ(ids_of({"--topic", "sensors/%"}), (std::vector<std::int64_t>{}));  // no wildcards
    EXPECT_EQ(ids_of({"--key", "pump-7"}), (std::vector<std::int64_t>{ids_[1]}));
    EXPECT_EQ(ids_of({"--limit", "2"}), (std::vector<std::int64_t>{ids_[0], ids_[1]}));
    EXPECT_EQ(ids_of({"--limit", "2", "--after", std::to_string(ids_[1])}),
              (std::vector<std::int64_t>{ids_[2], ids_[3]}));
    EXPECT_EQ(ids_of({"--state", "pending", "--topic", "sensors/temp"}),
              (std::vector<std::int64_t>{ids_[0]}));

    const RunResult human = run_outpost({"list", "--db", db(), "--state", "dead"});
    EXPECT_EQ(human.exit_code, 0);
    EXPECT_EQ(count_lines(human.out), 2u) << human.out;
    EXPECT_NE(human.out.find("not authorized"), std::string::npos) << human.out;
    EXPECT_EQ(run_outpost({"list", "--db", db(), "--key", "none"}).out, "no records\n");
    EXPECT_EQ(run_outpost({"list", "--db", db(), "--key", "none", "--json"}).out, "[]\n");
}

TEST_F(CliCommands, ListPagesBeyondOnePage) {
    std::vector<Message> many;
    for (int i = 0; i < 1234; ++i) {
        many.push_back(Message::text("bulk/" + std::to_string(i % 7), "x"));
    }
    add(many);
    const RunResult r =
        run_outpost({"list", "--db", db(), "--limit", "0", "--topic", "bulk/", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json j = parse_json(r.out);
    ASSERT_EQ(j.size(), 1234u);
    std::set<std::int64_t> seen;
    for (const json& rec : j)
        seen.insert(rec["id"].get<std::int64_t>());
    EXPECT_EQ(seen.size(), 1234u);
    EXPECT_EQ(parse_json(run_outpost({"list", "--db", db(), "--json"}).out).size(), 100u)
        << "default limit";
    const RunResult human = run_outpost({"list", "--db", db(), "--limit", "5"});
    EXPECT_EQ(count_lines(human.out), 7u) << human.out;  // title, 5 rows, the hint
    EXPECT_NE(human.out.find("--after " + std::to_string(ids_[4]) + " "), std::string::npos)
        << human.out;
}

TEST_F(CliCommands, ShowTextBinaryAndMissing) {
    RunResult r = run_outpost({"show", "--db", db(), std::to_string(ids_[1])});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("topic           sensors/pump-7"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("key             pump-7"), std::string::npos);
    EXPECT_NE(r.out.find("header          origin=test"), std::string::npos);
    EXPECT_NE(r.out.find("UTF-8 text"), std::string::npos);
    EXPECT_NE(r.out.find("{\"rpm\":1200}\n"), std::string::npos);

    r = run_outpost({"show", "--db", db(), std::to_string(ids_[2])});
    ASSERT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("binary (hex)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("00000000  00 ff 41 0a"), std::string::npos) << r.out;

    r = run_outpost({"show", "--db", db(), std::to_string(ids_[2]), "--json"});
    json j = parse_json(r.out);
    EXPECT_EQ(j["payload_encoding"], "hex");
    EXPECT_EQ(j["payload"], "00ff410a");
    r = run_outpost({"show", "--db", db(), std::to_string(ids_[1]), "--json"});
    j = parse_json(r.out);
    EXPECT_EQ(j["payload_encoding"], "utf-8");
    EXPECT_EQ(j["payload"], "{\"rpm\":1200}");
    EXPECT_EQ(j["key"], "pump-7");
    EXPECT_EQ(j["priority"], 3);
    EXPECT_EQ(j["headers"][0]["name"], "origin");

    r = run_outpost({"show", "--db", db(), "999999"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_error_line(r, "no record with id 999999"));
}

TEST_F(CliCommands, ReadCommandsNeverModifyTheFile) {
    const std::string before = read_file(db());
    const auto mtime = std::filesystem::last_write_time(db());
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"stats", "--db", db()},
             {"stats", "--db", db(), "--json"},
             {"list", "--db", db()},
             {"show", "--db", db(), std::to_string(ids_[0])},
             {"export", "--db", db()},
             {"check", "--db", db()},
             {"purge", "--db", db(), "--state", "dead", "--dry-run"}}) {
        SCOPED_TRACE(joined(args));
        EXPECT_EQ(run_outpost(args).exit_code, 0);
    }
    EXPECT_EQ(read_file(db()), before);
    EXPECT_EQ(std::filesystem::last_write_time(db()), mtime);
}

}  // namespace
}  // namespace outpost::testing

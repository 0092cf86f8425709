// The outpost command: options from a config file or the environment, sync without MQTT.
#include "cli_support.hpp"

namespace outpost::testing {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::milliseconds;

TEST_F(CliCommands, ConfigFileBeforeOrAfterTheCommand) {
    const std::string cfg = dir_.file("outpost.toml");
    write_file(cfg, "[stats]\ntop = 1\njson = true\n");
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"--config", cfg, "stats", "--db", db()}, {"stats", "--db", db(), "--config", cfg}}) {
        SCOPED_TRACE(joined(args));
        const RunResult r = run_outpost(args);
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(parse_json(r.out)["top_topics"].size(), 1u);
    }
    // The command line wins over the file.
    const RunResult r = run_outpost({"--config", cfg, "stats", "--db", db(), "--top", "3"});
    EXPECT_EQ(parse_json(r.out)["top_topics"].size(), 3u);
}

TEST_F(CliCommands, DbFromEnvironment) {
    RunOptions env;
    env.env = {"OUTPOST_DB=" + db()};
    const RunResult r = run_outpost({"stats", "--json"}, env);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(parse_json(r.out)["counts"]["pending"], 3);
}

#ifndef OUTPOST_CLI_HAVE_MQTT
TEST_F(CliCommands, SyncSaysItIsUnavailableWithoutMqtt) {
    const RunResult r =
        run_outpost({"sync", "--db", db(), "--broker", "tcp://127.0.0.1:1", "--timeout", "1s"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_error_line(r, "sync is unavailable"));
    EXPECT_EQ(counts().pending, 3u);
}
#endif

}  // namespace
}  // namespace outpost::testing

// The outpost command, run as a real process: help, version and usage errors (exit 2).
#include "cli_support.hpp"

namespace outpost::testing {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::milliseconds;

const std::vector<std::string> kCommands = {"stats", "list",   "show",  "add", "retry",
                                            "purge", "export", "check", "sync"};

// ---- help ----------------------------------------------------------------------------------

TEST(CliHelp, TopLevelListsEveryCommandAndTheExitCodes) {
    const RunResult r = run_outpost({"--help"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (const std::string& c : kCommands) {
        EXPECT_NE(r.out.find("  " + c + " "), std::string::npos) << c << " missing:\n" << r.out;
    }
    EXPECT_NE(r.out.find("Exit codes"), std::string::npos);
    EXPECT_NE(r.out.find("4 sync left nothing pending"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--config"), std::string::npos);
    EXPECT_NE(r.out.find("30s, 5m, 2h, 7d"), std::string::npos);
}

TEST(CliHelp, EveryCommandDocumentsItsOptions) {
    const std::vector<std::pair<std::string, std::vector<std::string>>> expected = {
        {"stats", {"--db", "--json", "--top"}},
        {"list",
         {"--db", "--state", "--topic", "--key", "--limit", "--after",
          "present when\nthe command starts"}},
        {"show", {"--db", "ID", "hex"}},
        {"add",
         {"--topic", "--payload", "--payload-file", "--key", "--qos", "--priority", "--ttl",
          "--header", "NAME=VALUE", "Example"}},
        {"retry", {"--all-dead", "ID"}},
        {"purge", {"--state", "--older-than", "--dry-run", "pending", "present when it starts"}},
        {"export", {"--state", "base64", "present when it starts"}},
        {"check", {"--quick", "Exits 0 only when"}},
        {"sync",
         {"--broker", "--client-id", "--username", "--password-file", "--ca-file", "--cert-file",
          "--key-file", "--mqtt-version", "--timeout", "[sync]", "drained_with_failures",
          "4  nothing is left pending"}},
    };
    for (const auto& [command, words] : expected) {
        const RunResult r = run_outpost({command, "--help"});
        EXPECT_EQ(r.exit_code, 0) << command << ": " << r.err;
        for (const std::string& w : words) {
            EXPECT_NE(r.out.find(w), std::string::npos) << command << " help lacks " << w;
        }
    }
}

TEST(CliHelp, VersionExitsZero) {
    const RunResult r = run_outpost({"--version"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("outpost "), std::string::npos);
}

// ---- usage errors: exit 2, one line on stderr -----------------------------------------------

class CliUsage : public CliTest {};

TEST_F(CliUsage, BadArgumentsExitTwoWithOneLine) {
    create_outbox();
    const std::string cfg = dir_.file("bad.toml");
    write_file(cfg, "[sync]\nbrokr = \"tcp://127.0.0.1:1\"\n");
    const std::vector<std::vector<std::string>> cases = {
        {},
        {"frobnicate"},
        {"stats"},  // no --db
        {"stats", "--db", db(), "--bogus"},
        {"list", "--db", db(), "--state", "sleeping"},
        {"list", "--db", db(), "--limit", "many"},
        {"list", "--db", db(), "--limit", "-1"},
        {"show", "--db", db()},
        {"show", "--db", db(), "abc"},
        {"add", "--db", db()},  // no --topic
        {"add", "--db", db(), "--topic", "t", "--payload", "x", "--payload-file", "f"},
        {"add", "--db", db(), "--topic", "t", "--qos", "3"},
        {"add", "--db", db(), "--topic", "t", "--ttl", "5"},
        {"add", "--db", db(), "--topic", "t", "--ttl", "5 parsecs"},
        {"add", "--db", db(), "--topic", "t", "--header", "no-equals-sign"},
        {"retry", "--db", db()},
        {"retry", "--db", db(), "1", "--all-dead"},
        {"retry", "--db", db(), "one"},
        {"purge", "--db", db()},
        {"purge", "--db", db(), "--state", "pending"},
        {"purge", "--db", db(), "--state", "all"},
        {"purge", "--db", db(), "--state", "dead", "--older-than", "-5m"},
        {"export", "--db", db(), "--state", "nope"},
        {"stats", "--db", db(), "--busy-timeout", "5"},
        {"sync", "--db", db()},  // no --broker
        {"sync", "--db", db(), "--broker", "tcp://127.0.0.1:1", "--mqtt-version", "4"},
        {"sync", "--db", db(), "--broker", "tcp://127.0.0.1:1", "--timeout", "soon"},
#ifdef OUTPOST_CLI_HAVE_MQTT
        {"sync", "--db", db(), "--broker", "127.0.0.1:1883"},                    // no scheme
        {"sync", "--db", db(), "--broker", "tcp://h:1", "--key-file", "k.pem"},  // no cert
#endif
        {"--config", dir_.file("missing.toml"), "stats", "--db", db()},
        {"--config", cfg, "sync", "--db", db(), "--broker", "tcp://127.0.0.1:1"},
    };
    const std::string before = read_file(db());
    for (const auto& args : cases) {
        std::string joined;
        for (const auto& a : args)
            joined += a + " ";
        SCOPED_TRACE(joined);
        const RunResult r = run_outpost(args);
        EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
        EXPECT_TRUE(one_error_line(r, "usage error"));
        EXPECT_TRUE(r.out.empty()) << r.out;
    }
    EXPECT_EQ(read_file(db()), before) << "a refused command changed the file";
}

TEST_F(CliUsage, PurgePendingIsRefusedWithAReason) {
    create_outbox();
    add_text("t", "x");
    const RunResult r = run_outpost({"purge", "--db", db(), "--state", "pending"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_TRUE(one_error_line(r, "pending"));
    EXPECT_EQ(counts().pending, 1u);
}

}  // namespace
}  // namespace outpost::testing

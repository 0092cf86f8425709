// The outpost command, run as a real process: every command, its exit codes, bad arguments and
// bad files (missing, not SQLite, corrupt, newer schema, read-only).
#include <linux/fs.h>
#include <sys/ioctl.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

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

// ---- bad files -------------------------------------------------------------------------------

// Every command with the arguments it needs, against `db`.
std::vector<std::vector<std::string>> every_command(const std::string& db) {
    return {
        {"stats", "--db", db},
        {"list", "--db", db},
        {"show", "--db", db, "1"},
        {"add", "--db", db, "--topic", "t", "--payload", "x"},
        {"retry", "--db", db, "--all-dead"},
        {"retry", "--db", db, "1"},
        {"purge", "--db", db, "--state", "dead"},
        {"purge", "--db", db, "--state", "dead", "--dry-run"},
        {"export", "--db", db},
        {"check", "--db", db},
#ifdef OUTPOST_CLI_HAVE_MQTT
        {"sync", "--db", db, "--broker", "tcp://127.0.0.1:1", "--timeout", "1s"},
#endif
    };
}

std::string joined(const std::vector<std::string>& args) {
    std::string out;
    for (const auto& a : args)
        out += a + " ";
    return out;
}

class CliBadFile : public CliTest {};

TEST_F(CliBadFile, MissingFileIsNamedAndNeverCreated) {
    const std::string missing = dir_.file("nope.db");
    for (const auto& args : every_command(missing)) {
        SCOPED_TRACE(joined(args));
        const RunResult r = run_outpost(args);
        EXPECT_EQ(r.exit_code, 1);
        EXPECT_TRUE(one_error_line(r, "nope.db: no such file"));
        EXPECT_FALSE(std::filesystem::exists(missing));
        EXPECT_FALSE(std::filesystem::exists(missing + "-wal"));
    }
}

TEST_F(CliBadFile, DirectoryIsRefused) {
    const RunResult r = run_outpost({"stats", "--db", dir_.path().string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_error_line(r, "is a directory"));
}

TEST_F(CliBadFile, NotSqliteIsNamedAndNotModified) {
    const std::string text = "this is a text file, not a database\n" + std::string(2000, 'x');
    write_file(db(), text);
    for (const auto& args : every_command(db())) {
        SCOPED_TRACE(joined(args));
        const RunResult r = run_outpost(args);
        EXPECT_EQ(r.exit_code, 1);
        EXPECT_NE(r.err.find("not a SQLite database"), std::string::npos) << r.err;
        EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    }
    EXPECT_EQ(read_file(db()), text);
}

TEST_F(CliBadFile, SqliteWithoutOutpostTablesIsRefused) {
    {
        SQLite::Database app(db(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        app.exec("CREATE TABLE readings (t REAL)");
    }
    const std::string before = read_file(db());
    for (const auto& args : every_command(db())) {
        SCOPED_TRACE(joined(args));
        const RunResult r = run_outpost(args);
        EXPECT_EQ(r.exit_code, 1);
        EXPECT_NE(r.err.find("no outpost tables"), std::string::npos) << r.err;
    }
    EXPECT_EQ(read_file(db()), before) << "the outpost tables must not be created by the tool";
}

TEST_F(CliBadFile, NewerSchemaIsRefusedAndNotModified) {
    add_text("t", "x");
    exec_sql("UPDATE outpost_meta SET value = '99' WHERE name = 'schema_version'");
    const std::string before = read_file(db());
    for (const auto& args : every_command(db())) {
        SCOPED_TRACE(joined(args));
        const RunResult r = run_outpost(args);
        EXPECT_EQ(r.exit_code, 1);
        EXPECT_NE(r.err.find("99"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("newer"), std::string::npos) << r.err;
        EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    }
    EXPECT_EQ(read_file(db()), before);
    const RunResult check = run_outpost({"check", "--db", db(), "--json"});
    EXPECT_EQ(check.exit_code, 1);
    const json j = parse_json(check.out);
    EXPECT_FALSE(j["clean"].get<bool>());
    EXPECT_EQ(j["schema_version"], 99);
}

// Overwrites the second half of the file: the records' pages, not the header or the schema.
void damage_second_half(const std::string& path) {
    std::string data = read_file(path);
    ASSERT_GT(data.size(), 16384u);
    const std::size_t page = 4096;
    const std::size_t from = (data.size() / 2 / page) * page;
    for (std::size_t i = from; i < data.size(); ++i) {
        data[i] = static_cast<char>(0xA5 ^ (i & 0xFF));
    }
    write_file(path, data);
}

TEST_F(CliBadFile, CorruptDatabaseFailsCheckAndReadsReportIt) {
    std::vector<Message> many;
    for (int i = 0; i < 400; ++i) {
        many.push_back(Message::text("sensors/" + std::to_string(i), std::string(200, 'p')));
    }
    add(many);  // all connections closed: the WAL is checkpointed into the file
    ASSERT_FALSE(std::filesystem::exists(db() + "-wal"));
    damage_second_half(db());
    const std::string before = read_file(db());

    const RunResult check = run_outpost({"check", "--db", db()});
    EXPECT_EQ(check.exit_code, 1) << check.out;
    EXPECT_NE(check.out.find("NOT CLEAN"), std::string::npos) << check.out;
    EXPECT_TRUE(one_error_line(check, "problem"));

    const RunResult quick = run_outpost({"check", "--db", db(), "--quick", "--json"});
    EXPECT_EQ(quick.exit_code, 1);
    EXPECT_FALSE(parse_json(quick.out)["clean"].get<bool>());

    for (const auto& args :
         std::vector<std::vector<std::string>>{{"stats", "--db", db()},
                                               {"list", "--db", db(), "--limit", "0"},
                                               {"export", "--db", db()}}) {
        SCOPED_TRACE(joined(args));
        const RunResult r = run_outpost(args);
        EXPECT_EQ(r.exit_code, 1);
        EXPECT_NE(r.err.find("corrupt"), std::string::npos) << r.err;
        EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    }
    // Salvage: what is readable is exported, the rest is counted; exit 1 all the same.
    const RunResult salvage = run_outpost({"export", "--db", db(), "--skip-unreadable"});
    EXPECT_EQ(salvage.exit_code, 1);
    EXPECT_TRUE(one_error_line(salvage, "unreadable record ids"));
    const auto lines = parse_lines(salvage.out);
    EXPECT_GT(lines.size(), 50u) << "the undamaged first half is readable";
    EXPECT_LT(lines.size(), 400u);
    std::string expected_payload;  // base64 of 200 'p': "ppp" -> "cHBw" 66 times, "pp" -> "cHA="
    for (int i = 0; i < 66; ++i)
        expected_payload += "cHBw";
    expected_payload += "cHA=";
    std::set<std::int64_t> ids;
    for (const json& l : lines) {
        EXPECT_EQ(l["payload"], expected_payload);
        EXPECT_EQ(l["topic"].get<std::string>().rfind("sensors/", 0), 0u);
        ids.insert(l["id"].get<std::int64_t>());
    }
    EXPECT_EQ(ids.size(), lines.size());

    EXPECT_EQ(read_file(db()), before) << "reading a corrupt file must not change it";
}

// ---- read-only files --------------------------------------------------------------------------

// Sets or clears the immutable attribute (chattr +i): the only way to make a file read-only
// for root, which these tests run as. False when the file system does not support it.
bool set_immutable(const std::string& path, bool on) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    int flags = 0;
    bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    if (ok) {
        flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
        ok = ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    }
    ::close(fd);
    return ok;
}

class CliReadOnly : public CliTest {
  protected:
    void SetUp() override {
        ids_ = add({Message::text("a/1", "one"), Message::text("a/2", "two")});
        apply(Outcome::Kind::dead, {ids_[1]});
    }
    void TearDown() override { set_immutable(db(), false); }

    // Read commands work; writing commands fail with one line naming read-only; the file is
    // unchanged.
    void expect_read_only_behaviour(const RunOptions& as) {
        const std::string before = read_file(db());
        for (const auto& args : std::vector<std::vector<std::string>>{
                 {"stats", "--db", db()},
                 {"list", "--db", db()},
                 {"show", "--db", db(), std::to_string(ids_[0])},
                 {"export", "--db", db()},
                 {"check", "--db", db()},
                 {"purge", "--db", db(), "--state", "dead", "--dry-run"}}) {
            SCOPED_TRACE(joined(args));
            const RunResult r = run_outpost(args, as);
            EXPECT_EQ(r.exit_code, 0) << r.err;
        }
        for (const auto& args : std::vector<std::vector<std::string>>{
                 {"add", "--db", db(), "--topic", "t", "--payload", "x"},
                 {"retry", "--db", db(), "--all-dead"},
                 {"retry", "--db", db(), std::to_string(ids_[1])},
                 {"purge", "--db", db(), "--state", "dead"}}) {
            SCOPED_TRACE(joined(args));
            const RunResult r = run_outpost(args, as);
            EXPECT_EQ(r.exit_code, 1) << r.out;
            EXPECT_TRUE(one_error_line(r, "read-only"));
        }
        EXPECT_EQ(read_file(db()), before);
    }

    std::vector<std::int64_t> ids_;
};

TEST_F(CliReadOnly, ImmutableFile) {
    if (!set_immutable(db(), true)) {
        GTEST_SKIP() << "chattr +i is not supported here (needs root and ext4/xfs/btrfs); "
                        "under root a chmod 0444 file stays writable, so it proves nothing";
    }
    expect_read_only_behaviour({});
}

TEST_F(CliReadOnly, FileAndDirectoryNotWritableByTheUser) {
    if (::geteuid() != 0) {
        ::chmod(db().c_str(), 0444);
        ::chmod(dir_.path().c_str(), 0555);
        expect_read_only_behaviour({});
        ::chmod(dir_.path().c_str(), 0700);
        return;
    }
    // As root: run the tool as nobody, with the file and its directory owned by root. The WAL
    // database has no -shm file and none can be created: the read-only fallback is exercised.
    ::chmod(dir_.path().c_str(), 0755);
    ::chmod(db().c_str(), 0444);
    ASSERT_FALSE(std::filesystem::exists(db() + "-shm"));
    RunOptions nobody;
    nobody.uid = 65534;
    expect_read_only_behaviour(nobody);
}

// ---- the commands ------------------------------------------------------------------------------

class CliCommands : public CliTest {
  protected:
    void SetUp() override {
        Message binary;
        binary.topic = "fw/blob";
        binary.payload = {std::byte{0x00}, std::byte{0xff}, std::byte{0x41}, std::byte{0x0a}};
        Message keyed = Message::text("sensors/pump-7", "{\"rpm\":1200}");
        keyed.key = "pump-7";
        keyed.headers = {{"origin", "test"}};
        keyed.priority = 3;
        ids_ = add({Message::text("sensors/temp", "21.5"), keyed, binary,
                    Message::text("sensors/temp", "21.7"), Message::text("logs/app", "boot"),
                    Message::text("logs/app", "ready")});
        apply(Outcome::Kind::dead, {ids_[3]});
        apply(Outcome::Kind::delivered, {ids_[4]}, hours(48));
        apply(Outcome::Kind::expired, {ids_[5]}, hours(1));
    }
    std::vector<std::int64_t> ids_;
};

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

TEST_F(CliCommands, AddEveryPayloadSourceAndOption) {
    RunResult r = run_outpost(
        {"add",       "--db",     db(),    "--topic",  "cmd/x",      "--payload", "hello",
         "--key",     "k1",       "--qos", "2",        "--priority", "5",         "--ttl",
         "1h",        "--header", "a=1",   "--header", "b=x=y",      "--retain",  "--content-type",
         "text/plain"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::int64_t id = std::stoll(r.out);
    Record rec = record(id);
    EXPECT_EQ(rec.message.topic, "cmd/x");
    EXPECT_EQ(rec.message.payload_view(), "hello");
    EXPECT_EQ(rec.message.key, "k1");
    EXPECT_EQ(rec.message.qos, 2);
    EXPECT_EQ(rec.message.priority, 5);
    EXPECT_TRUE(rec.message.retain);
    EXPECT_EQ(rec.message.content_type, "text/plain");
    ASSERT_TRUE(rec.expires_at);
    EXPECT_EQ(*rec.expires_at - rec.created_at, 3'600'000);
    EXPECT_EQ(rec.message.headers, (std::vector<Header>{{"a", "1"}, {"b", "x=y"}}));
    EXPECT_EQ(rec.state, RecordState::pending);

    const std::string binary("\x00\x01\xfe\xff", 4);
    write_file(dir_.file("p.bin"), binary);
    r = run_outpost(
        {"add", "--db", db(), "--topic", "fw", "--payload-file", dir_.file("p.bin"), "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(record(parse_json(r.out)["id"].get<std::int64_t>()).message.payload_view(), binary);

    RunOptions in;
    in.stdin_data = "from stdin\n";
    r = run_outpost({"add", "--db", db(), "--topic", "s", "--payload-file", "-"}, in);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(record(std::stoll(r.out)).message.payload_view(), "from stdin\n");
}

TEST_F(CliCommands, AddWithoutPayloadStoresAnEmptyOne) {
    const RunResult r = run_outpost({"add", "--db", db(), "--topic", "empty"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(record(std::stoll(r.out)).message.payload.empty());
}

TEST_F(CliCommands, AddRefusesWhatTheLibraryRefuses) {
    const auto before = counts().pending;
    RunResult r = run_outpost({"add", "--db", db(), "--topic", "a/+/b", "--payload", "x"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_error_line(r, "topic"));
    r = run_outpost(
        {"add", "--db", db(), "--topic", "t", "--payload-file", dir_.file("missing.bin")});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_error_line(r, "missing.bin"));
    EXPECT_EQ(counts().pending, before);
}

TEST_F(CliCommands, RetryIdsAndAllDead) {
    const std::vector<std::int64_t> more =
        add({Message::text("d/1", "x"), Message::text("d/2", "y")});
    apply(Outcome::Kind::dead, more);
    ASSERT_EQ(counts().dead, 3u);

    RunResult r = run_outpost({"retry", "--db", db(), std::to_string(ids_[3])});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    Record rec = record(ids_[3]);
    EXPECT_EQ(rec.state, RecordState::pending);
    EXPECT_EQ(rec.attempts, 0u);

    // A pending id and a dead one: the dead one is requeued, the other reported, exit 1.
    r = run_outpost(
        {"retry", "--db", db(), std::to_string(ids_[0]), std::to_string(more[0]), "--json"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_error_line(r, std::to_string(ids_[0])));
    const json j = parse_json(r.out);
    EXPECT_EQ(j["requeued"], json::array({more[0]}));
    EXPECT_EQ(j["failed"][0]["id"], ids_[0]);
    EXPECT_EQ(record(more[0]).state, RecordState::pending);

    r = run_outpost({"retry", "--db", db(), "--all-dead"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "requeued 1 dead record\n");
    EXPECT_EQ(counts().dead, 0u);
    r = run_outpost({"retry", "--db", db(), "--all-dead", "--json"});
    EXPECT_EQ(parse_json(r.out)["requeued"], 0);
}

TEST_F(CliCommands, PurgeByStateAgeAndDryRun) {
    const std::vector<std::int64_t> recent = add({Message::text("r", "1")});
    apply(Outcome::Kind::delivered, recent);  // delivered just now
    ASSERT_EQ(counts().delivered, 2u);

    RunResult r = run_outpost(
        {"purge", "--db", db(), "--state", "delivered", "--older-than", "1d", "--dry-run"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "would delete 1 delivered record older than 1d\n");
    EXPECT_EQ(counts().delivered, 2u);

    r = run_outpost(
        {"purge", "--db", db(), "--state", "delivered", "--older-than", "1d", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(parse_json(r.out)["deleted"], 1);
    EXPECT_EQ(counts().delivered, 1u);
    EXPECT_FALSE(Admin(db()).get(ids_[4]));
    EXPECT_TRUE(Admin(db()).get(recent[0]));

    r = run_outpost({"purge", "--db", db(), "--state", "expired", "--older-than", "2h"});
    EXPECT_EQ(r.out, "deleted 0 expired records older than 2h\n");
    r = run_outpost({"purge", "--db", db(), "--state", "expired"});
    EXPECT_EQ(r.out, "deleted 1 expired record\n");
    r = run_outpost({"purge", "--db", db(), "--state", "dead"});
    EXPECT_EQ(r.out, "deleted 1 dead record\n");
    EXPECT_EQ(counts().pending, 3u) << "pending records are never purged";
}

TEST_F(CliCommands, PurgeManyInBatches) {
    std::vector<Message> many(2500, Message::text("bulk", "x"));
    const auto ids = add(many);
    apply(Outcome::Kind::dead, ids, hours(3));
    const RunResult r = run_outpost({"purge", "--db", db(), "--state", "dead", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(parse_json(r.out)["deleted"], 2501);
    EXPECT_EQ(counts().dead, 0u);
    EXPECT_EQ(counts().pending, 3u);
}

// Decodes RFC 4648 base64 (the test's own, independent of the tool's encoder).
std::string from_base64(const std::string& in) {
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    unsigned buf = 0;
    int bits = 0;
    for (const char c : in) {
        if (c == '=')
            break;
        buf = (buf << 6) | static_cast<unsigned>(alphabet.find(c));
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((buf >> bits) & 0xFF);
        }
    }
    return out;
}

TEST_F(CliCommands, ExportJsonLinesWithBase64Payloads) {
    RunResult r = run_outpost({"export", "--db", db()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto lines = parse_lines(r.out);
    ASSERT_EQ(lines.size(), ids_.size());
    for (std::size_t i = 0; i < lines.size(); ++i) {
        EXPECT_EQ(lines[i]["id"], ids_[i]);
        EXPECT_EQ(from_base64(lines[i]["payload"].get<std::string>()),
                  record(ids_[i]).message.payload_view());
        EXPECT_FALSE(lines[i]["uid"].get<std::string>().empty());
    }
    EXPECT_EQ(lines[2]["payload"], "AP9BCg==");
    EXPECT_EQ(lines[3]["state"], "dead");
    EXPECT_EQ(lines[3]["attempts"], 10);

    r = run_outpost({"export", "--db", db(), "--state", "pending", "--json"});
    EXPECT_EQ(parse_lines(r.out).size(), 3u);
    r = run_outpost({"export", "--db", db(), "--state", "dead"});
    EXPECT_EQ(parse_lines(r.out).size(), 1u);

    // On an undamaged file, salvage mode exports the same and exits 0.
    const RunResult plain = run_outpost({"export", "--db", db()});
    r = run_outpost({"export", "--db", db(), "--skip-unreadable"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, plain.out);
}

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
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_error_line(r, "index outpost_records_expiry is missing"));

    exec_sql(
        "CREATE INDEX outpost_records_expiry ON outpost_records (expires_at) "
        "WHERE state = 0 AND expires_at IS NOT NULL");
    exec_sql("UPDATE outpost_records SET state = 7 WHERE id = " + std::to_string(ids_[0]));
    r = run_outpost({"check", "--db", db(), "--json"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(parse_json(r.out)["problems"][0], "1 records have an unknown state");
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

// ---- next to a live app -----------------------------------------------------------------------

TEST_F(CliCommands, WaitsForTheAppsWriteLockThenSucceeds) {
    // The app holds the write lock for 300 ms; add waits (busy timeout) rather than failing.
    SQLite::Database app(db(), SQLite::OPEN_READWRITE);
    app.exec("BEGIN IMMEDIATE");
    std::thread release([&] {
        std::this_thread::sleep_for(milliseconds(300));
        app.exec("COMMIT");
    });
    const RunResult r = run_outpost({"add", "--db", db(), "--topic", "t", "--payload", "x"});
    release.join();
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(CliCommands, GivesUpOnABusyFileWithATransientError) {
    SQLite::Database app(db(), SQLite::OPEN_READWRITE);
    app.exec("BEGIN IMMEDIATE");
    const RunResult r = run_outpost(
        {"add", "--db", db(), "--topic", "t", "--payload", "x", "--busy-timeout", "200ms"});
    app.exec("ROLLBACK");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_error_line(r, "locked"));
}

TEST_F(CliCommands, EveryCommandWorksWhileTheAppKeepsWriting) {
    // The app commits small transactions non-stop; no command may fail with "locked". Under
    // ASan on a loaded machine the app added records about as fast as list --limit 0 and export
    // read them: they chased the growing table until the runner killed them (136 s, a failed
    // CI run). They now stop at the records present when they start (CliGrowing tests that on
    // its own). The app stops after kMaxCommits (30,000 records: longer than the commands take
    // at the pace measured under ASan, 2,600 records/s) so the work of each command stays
    // bounded on any machine.
    constexpr int kMaxCommits = 1500;
    std::atomic<bool> stop{false};
    std::atomic<int> app_commits{0};
    std::thread app([&] {
        SQLite::Database conn(db(), SQLite::OPEN_READWRITE);
        Outbox outbox(conn);
        while (!stop && app_commits < kMaxCommits) {
            SQLite::Transaction tx(conn);
            for (int i = 0; i < 20; ++i) {
                outbox.add(Message::text("live/" + std::to_string(i), std::string(100, 'x')));
            }
            tx.commit();
            ++app_commits;
            std::this_thread::sleep_for(milliseconds(2));
        }
    });
    const std::vector<std::vector<std::string>> commands = {
        {"stats", "--db", db()},
        {"list", "--db", db(), "--limit", "0"},
        {"show", "--db", db(), std::to_string(ids_[0])},
        {"export", "--db", db()},
        {"add", "--db", db(), "--topic", "t", "--payload", "x"},
        {"retry", "--db", db(), "--all-dead"},
        {"purge", "--db", db(), "--state", "expired"},
        {"check", "--db", db(), "--quick"},
    };
    for (int round = 0; round < 2; ++round) {
        for (const auto& args : commands) {
            SCOPED_TRACE(joined(args));
            const RunResult r = run_outpost(args);
            EXPECT_EQ(r.exit_code, 0) << r.err;
        }
    }
    stop = true;
    app.join();
    EXPECT_GT(app_commits.load(), 0);
}

TEST_F(CliCommands, ReadsWhileTheAppHoldsTheWriteLock) {
    // WAL: readers never wait for the writer.
    SQLite::Database app(db(), SQLite::OPEN_READWRITE);
    app.exec("BEGIN IMMEDIATE");
    app.exec("UPDATE outpost_records SET priority = 9");
    const RunResult r = run_outpost({"stats", "--db", db(), "--busy-timeout", "0s"});
    app.exec("ROLLBACK");
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

// ---- commands over a growing outbox --------------------------------------------------------

// The app keeps committing while a paged command runs. The app here is driven by the command's
// own output: before the command writes its first 64 KiB, and again for every further 64 KiB
// (no more than ~220 records of export or list --json), it commits kBatch = 1,000 records in
// one transaction on its own connection. So the app adds several times faster than the command
// reads on any machine and under any sanitizer, and it stops on its own after kMaxBatches.
class CliGrowing : public CliTest {
  protected:
    static constexpr int kBatch = 1000;
    static constexpr int kMaxBatches = 60;
    static constexpr std::size_t kChunk = 65536;  // one read of run_outpost() at most

    void SetUp() override {
        // 2,000 records: every 3rd dead, every 5th other one delivered (kept), the rest pending.
        std::vector<Message> ms;
        for (int i = 0; i < 2000; ++i) {
            ms.push_back(
                Message::text("pre/" + std::to_string(i % 7), "reading " + std::to_string(i)));
        }
        const std::vector<std::int64_t> ids = add(ms);
        std::vector<std::int64_t> dead, delivered;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            (i % 3 == 0 ? dead : i % 5 == 0 ? delivered : pending_at_start_).push_back(ids[i]);
        }
        apply(Outcome::Kind::dead, dead);
        apply(Outcome::Kind::delivered, delivered);
        max_id_at_start_ = ids.back();
    }

    // Runs `args` while the app adds kBatch records per kChunk of the command's output; `batches`
    // counts the app's commits.
    RunResult run_while_the_app_writes(const std::vector<std::string>& args, int& batches) {
        SQLite::Database app(db(), SQLite::OPEN_READWRITE);
        Outbox outbox(app);
        RunOptions o;
        o.timeout = std::chrono::minutes(5);
        o.on_stdout = [&](std::size_t bytes) {
            while (batches < kMaxBatches && static_cast<std::size_t>(batches) <= bytes / kChunk) {
                SQLite::Transaction tx(app);
                for (int i = 0; i < kBatch; ++i) {
                    outbox.add(Message::text("live/" + std::to_string(i % 7), "new reading"));
                }
                tx.commit();
                ++batches;
            }
        };
        return run_outpost(args, o);
    }

    // The ids of the pending records up to `last_id`, from the file reopened with plain SQLite.
    std::vector<std::int64_t> pending_ids_up_to(std::int64_t last_id) {
        SQLite::Database plain(db(), SQLite::OPEN_READONLY);
        SQLite::Statement q(
            plain, "SELECT id FROM outpost_records WHERE state = 0 AND id <= ? ORDER BY id");
        q.bind(1, last_id);
        std::vector<std::int64_t> out;
        while (q.executeStep()) {
            out.push_back(q.getColumn(0).getInt64());
        }
        return out;
    }

    // What a bounded command must have written: every record pending when it started, in
    // order, and of the records committed after that at most the one batch the app committed
    // while the command was starting (it may read the largest id before or after that commit).
    void expect_the_records_present_at_start(const std::vector<std::int64_t>& got, int batches) {
        EXPECT_LT(batches, kMaxBatches)
            << "the app stopped adding (after " << kMaxBatches * kBatch
            << " records) before the command ended: it chases the records committed after it "
               "started";
        ASSERT_FALSE(got.empty());
        EXPECT_LE(got.back(), max_id_at_start_ + kBatch)
            << "records committed after the command started were written";
        EXPECT_EQ(got, pending_ids_up_to(got.back()));
        const std::vector<std::int64_t> at_start(
            got.begin(), got.begin() + std::min(got.size(), pending_at_start_.size()));
        EXPECT_EQ(at_start, pending_at_start_);
        // The app did write while the command ran (its output is several chunks long).
        EXPECT_GE(batches, 3);
    }

    std::int64_t max_id_at_start_ = 0;
    std::vector<std::int64_t> pending_at_start_;
};

TEST_F(CliGrowing, ExportEndsAtTheRecordsPresentWhenItStarted) {
    int batches = 0;
    const RunResult r =
        run_while_the_app_writes({"export", "--db", db(), "--state", "pending"}, batches);
    ASSERT_FALSE(r.timed_out) << "export did not end";
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::int64_t> got;
    for (const json& line : parse_lines(r.out)) {
        EXPECT_EQ(line["state"], "pending");
        got.push_back(line["id"].get<std::int64_t>());
    }
    expect_the_records_present_at_start(got, batches);
}

TEST_F(CliGrowing, ListWithoutLimitEndsAtTheRecordsPresentWhenItStarted) {
    int batches = 0;
    const RunResult r = run_while_the_app_writes(
        {"list", "--db", db(), "--state", "pending", "--limit", "0", "--json"}, batches);
    ASSERT_FALSE(r.timed_out) << "list --limit 0 did not end";
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::int64_t> got;
    for (const json& record : parse_json(r.out)) {
        EXPECT_EQ(record["state"], "pending");
        got.push_back(record["id"].get<std::int64_t>());
    }
    expect_the_records_present_at_start(got, batches);
}

TEST_F(CliGrowing, PurgeEndsAtTheRecordsPresentWhenItStarted) {
    // 3,000 more delivered records (more than one purge batch of 1,000). A trigger stands in
    // for a dispatcher that keeps delivering (with retention): every delivered record the purge
    // deletes brings two new delivered ones, committed with the purge's own batch, until ids
    // reach 100,000. Deterministic: the set grows faster than the purge deletes, on any machine.
    std::vector<Message> more(3000, Message::text("done/t", "delivered"));
    const std::vector<std::int64_t> ids = add(more);
    apply(Outcome::Kind::delivered, ids);
    const std::uint64_t delivered_at_start = counts().delivered;
    ASSERT_GT(delivered_at_start, 3000u);
    exec_sql(R"sql(
CREATE TRIGGER app_keeps_delivering AFTER DELETE ON outpost_records
WHEN old.state = 1 AND (SELECT max(id) FROM outpost_records) < 100000
BEGIN
    INSERT INTO outpost_records (uid, state, topic, payload, qos, retain, priority, created_at,
                                 done_at)
    VALUES (lower(hex(randomblob(16))), 1, 'live/t', x'00', 1, 0, 0, 0, 0),
           (lower(hex(randomblob(16))), 1, 'live/t', x'00', 1, 0, 0, 0, 0);
END)sql");
    const std::int64_t last_id_at_start = ids.back();
    RunOptions o;
    o.timeout = std::chrono::minutes(5);
    const RunResult r = run_outpost({"purge", "--db", db(), "--state", "delivered", "--json"}, o);
    ASSERT_FALSE(r.timed_out) << "purge did not end";
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(parse_json(r.out)["deleted"], delivered_at_start) << r.out;
    SQLite::Database plain(db(), SQLite::OPEN_READONLY);
    EXPECT_EQ(plain
                  .execAndGet("SELECT count(*) FROM outpost_records WHERE state = 1 AND id <= " +
                              std::to_string(last_id_at_start))
                  .getInt64(),
              0);
    EXPECT_EQ(plain
                  .execAndGet("SELECT count(*) FROM outpost_records WHERE state = 1 AND id > " +
                              std::to_string(last_id_at_start))
                  .getInt64(),
              static_cast<std::int64_t>(2 * delivered_at_start))
        << "every record delivered after the purge started is still there";
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

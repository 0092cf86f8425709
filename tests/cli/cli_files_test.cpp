// The outpost command on bad files (missing, not SQLite, corrupt, newer schema, read-only)
// and export, the command that rescues what a damaged file still holds.
#include <linux/fs.h>
#include <sys/ioctl.h>

#include <filesystem>
#include <set>

#include "cli_support.hpp"

namespace outpost::testing {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::milliseconds;

// ---- bad files -------------------------------------------------------------------------------

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
        EXPECT_EQ(r.exit_code, args[0] == "check" ? 5 : 1);
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
        EXPECT_EQ(r.exit_code, args[0] == "check" ? 5 : 1);
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
        EXPECT_EQ(r.exit_code, args[0] == "check" ? 5 : 1);
        EXPECT_NE(r.err.find("99"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("newer"), std::string::npos) << r.err;
        EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    }
    EXPECT_EQ(read_file(db()), before);
    const RunResult check = run_outpost({"check", "--db", db(), "--json"});
    EXPECT_EQ(check.exit_code, 5);
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
    EXPECT_EQ(check.exit_code, 5) << check.out;
    EXPECT_NE(check.out.find("NOT CLEAN"), std::string::npos) << check.out;
    EXPECT_TRUE(one_error_line(check, "problem"));

    const RunResult quick = run_outpost({"check", "--db", db(), "--quick", "--json"});
    EXPECT_EQ(quick.exit_code, 5);
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

}  // namespace
}  // namespace outpost::testing

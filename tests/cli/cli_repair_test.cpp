// The commands of outpost that write, run as a real process: add, retry, purge.
#include "cli_support.hpp"

namespace outpost::testing {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::milliseconds;

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

}  // namespace
}  // namespace outpost::testing

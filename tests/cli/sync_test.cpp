// `outpost sync` against a real mosquitto on a free loopback port: drained (exit 0), drained but
// records went dead or expired (exit 4), timed out (exit 3), refused (exit 1: lease held, bad
// credentials), secrets never printed.
#include <thread>

#include "cli_support.hpp"
#include "subscriber.hpp"
#include "testkit/aedes.hpp"
#include "testkit/mosquitto.hpp"

namespace outpost::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class CliSync : public CliTest {
  protected:
    std::vector<std::int64_t> add_many(int n, const std::string& prefix = "sync/") {
        std::vector<Message> many;
        for (int i = 0; i < n; ++i) {
            Message m =
                Message::text(prefix + std::to_string(i % 5), "reading " + std::to_string(i));
            m.key = "k" + std::to_string(i % 3);
            many.push_back(std::move(m));
        }
        return add(many);
    }

    // Record `id` has failed 9 times before (the default cap is 10) and is due at once: the
    // next rejection makes it dead.
    void one_try_left(std::int64_t id) {
        SqliteStore store(db());
        Outcome o;
        o.kind = Outcome::Kind::retry;
        o.id = id;
        o.attempts = 9;
        o.next_attempt_at = 0;
        o.error = "PUBACK reason 0x87 not authorized";
        o.at = SystemClock::instance().wall_ms();
        store.apply({o}, /*keep_delivered=*/false);
    }
};

TEST_F(CliSync, DeliversEveryPendingRecordAndExitsZero) {
    Mosquitto broker;
    Subscriber sub(broker.uri(), "sync/#", 1);
    add_many(300);
    const RunResult r = run_outpost({"sync", "--db", db(), "--broker", broker.uri(), "--timeout",
                                     "60s", "--progress", "lines"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("delivered 300, dead 0, expired 0, pending 0"), std::string::npos)
        << r.out;
    EXPECT_NE(r.err.find("sync: delivered 300"), std::string::npos) << r.err;  // final line
    EXPECT_EQ(counts().pending, 0u);
    EXPECT_TRUE(sub.wait_for_distinct("outpost-id", 300, 10s)) << sub.count();
    // The lease is given back: the app's dispatcher may start at once.
    const auto lease = Admin(db()).lease();
    EXPECT_TRUE(!lease || !lease->blocks_new_dispatcher());
}

TEST_F(CliSync, RecordsThatWentDeadOrExpiredDuringTheSyncExitFour) {
    // The broker's ACL denies one topic: MQTT 5 answers PUBACK 0x87, an attempt. The denied
    // record has failed 9 times before (default cap 10), so this sync's try makes it dead; a
    // second record's ttl has passed, so the sync expires it. Everything else is delivered. The
    // outbox is drained, but two records were given up on: a technician must not read "0 = all
    // delivered".
    MosquittoOptions mo;
    mo.acl = "topic readwrite sync/#\ntopic read denied/#\n";
    Mosquitto broker(mo);
    Subscriber sub(broker.uri(), "sync/#", 1);
    add_many(20);
    const std::int64_t denied = add_text("denied/valve", "no");
    one_try_left(denied);
    Message stale = Message::text("sync/stale", "too late");
    stale.ttl = 1ms;
    add({stale});
    std::this_thread::sleep_for(20ms);  // its ttl passes before the sync starts

    RunResult r = run_outpost(
        {"sync", "--db", db(), "--broker", broker.uri(), "--timeout", "60s", "--progress", "none"});
    EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
    EXPECT_NE(r.out.find("delivered 20, dead 1, expired 1, pending 0"), std::string::npos) << r.out;
    EXPECT_TRUE(one_error_line(r, "2 records were not delivered"));
    EXPECT_NE(r.err.find("1 went dead, 1 expired"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("outpost list --db " + db() + " --state dead"), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("--state expired"), std::string::npos) << r.err;
    const StoreCounts c = counts();
    EXPECT_EQ(c.pending, 0u);
    EXPECT_EQ(c.dead, 1u);
    EXPECT_EQ(c.expired, 1u);
    EXPECT_EQ(record(denied).last_error, "PUBACK reason 0x87 not authorized");
    EXPECT_TRUE(sub.wait_for_distinct("outpost-id", 20, 10s)) << sub.count();

    // --json says the same in its last line.
    Message again = Message::text("denied/valve", "still no");
    const std::int64_t second = add({again}).front();
    one_try_left(second);
    r = run_outpost({"sync", "--db", db(), "--broker", broker.uri(), "--timeout", "60s", "--json"});
    EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
    const auto lines = parse_lines(r.out);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back()["result"], "drained_with_failures") << lines.back().dump();
    EXPECT_EQ(lines.back()["dead"], 1);
    EXPECT_EQ(lines.back()["expired"], 0);
    EXPECT_EQ(lines.back()["pending"], 0);

    // Records that were dead before the sync started are not this sync's failures: exit 0.
    add_many(3);
    r = run_outpost({"sync", "--db", db(), "--broker", broker.uri(), "--timeout", "60s"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(counts().dead, 2u);
}

TEST_F(CliSync, TimeoutWinsOverRecordsThatWentDead) {
    // Records still pending at the timeout: exit 3 (not 4), and the dead ones are named too.
    MosquittoOptions mo;
    mo.acl = "topic read denied/#\n";  // everything else is denied as well: no topic allowed
    Mosquitto broker(mo);
    const std::int64_t poison = add_text("denied/a", "x");
    one_try_left(poison);
    add_text("denied/b", "y");  // attempts 0: retried after a 1 s backoff, so still pending
    const RunResult r = run_outpost(
        {"sync", "--db", db(), "--broker", broker.uri(), "--timeout", "8s", "--progress", "none"});
    EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
    EXPECT_TRUE(one_error_line(r, "timed out after 8s"));
    EXPECT_NE(r.err.find("1 records still pending"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("1 went dead"), std::string::npos) << r.err;
    EXPECT_EQ(counts().dead, 1u);
}

TEST_F(CliSync, JsonLinesProgressAndResult) {
    Mosquitto broker;
    add_many(50);
    const RunResult r = run_outpost({"sync", "--db", db(), "--broker", broker.uri(), "--json",
                                     "--timeout", "60s", "--mqtt-version", "3"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto lines = parse_lines(r.out);
    ASSERT_FALSE(lines.empty());
    for (const json& l : lines) {
        EXPECT_TRUE(l.contains("event")) << l.dump();
    }
    EXPECT_EQ(lines.back()["event"], "done");
    EXPECT_EQ(lines.back()["result"], "drained");
    EXPECT_EQ(lines.back()["delivered"], 50);
    EXPECT_EQ(lines.back()["pending"], 0);
    EXPECT_EQ(lines.back()["mqtt_version"], 4);
    EXPECT_TRUE(lines.back().contains("unrouted")) << lines.back().dump();
}

// aedes speaks MQTT 3.1.1 only and answers an MQTT 5 CONNECT with return code 1. Before the
// fallback, sync failed with "cannot connect to X: cannot connect to X: CONNACK reason 0x01
// granted qos 1".
TEST_F(CliSync, ABrokerThatRefusesMqtt5IsSyncedIn311UnlessPinned) {
    if (!testing::Aedes::available()) {
        GTEST_SKIP()
            << "aedes is not installed (tools/install-deps.sh installs it with Node >= 20)";
    }
    testing::Aedes broker;
    Subscriber sub(broker.uri(), "sync/#", 1, 4);
    add_many(25);
    RunResult r = run_outpost({"sync", "--db", db(), "--broker", broker.uri(), "--mqtt-version",
                               "5", "--timeout", "30s", "--progress", "none"});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_TRUE(one_error_line(r, "does not speak MQTT 5")) << r.err;
    EXPECT_EQ(r.err.find("granted"), std::string::npos) << r.err;
    const auto first = r.err.find("cannot connect to");
    EXPECT_EQ(r.err.find("cannot connect to", first + 1), std::string::npos) << r.err;
    EXPECT_EQ(counts().pending, 25u);

    r = run_outpost({"sync", "--db", db(), "--broker", broker.uri(), "--json", "--timeout", "60s",
                     "--progress", "none"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json done = parse_lines(r.out).back();
    EXPECT_EQ(done["delivered"], 25);
    EXPECT_EQ(done["mqtt_version"], 4);
    EXPECT_NE(r.err.find("the broker does not speak MQTT 5, so sync spoke MQTT 3.1.1"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(counts().pending, 0u);
    EXPECT_TRUE(sub.wait_for_count(25, 10s)) << sub.count();
}

TEST_F(CliSync, ProgressBarShowsCountRateAndEta) {
    Mosquitto broker;
    add_many(40);
    // --progress bar forces what a terminal gets (the test's stderr is a pipe).
    const RunResult r = run_outpost(
        {"sync", "--db", db(), "--broker", broker.uri(), "--timeout", "60s", "--progress", "bar"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("\r\x1b[K["), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("] 40/40 100% "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("/s ETA 0s"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.back(), '\n');
}

TEST_F(CliSync, NothingPendingExitsZeroWithoutConnecting) {
    create_outbox();
    const RunResult r =
        run_outpost({"sync", "--db", db(), "--broker", "tcp://127.0.0.1:1", "--timeout", "5s"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("nothing pending"), std::string::npos);
}

TEST_F(CliSync, UnreachableBrokerTimesOutWithExitThree) {
    add_many(10);
    const std::string uri = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
    const auto start = std::chrono::steady_clock::now();
    const RunResult r = run_outpost({"sync", "--db", db(), "--broker", uri, "--timeout", "2s"});
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
    EXPECT_NE(r.err.find("timed out after 2s"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("10 records still pending"), std::string::npos) << r.err;
    EXPECT_EQ(counts().pending, 10u);
    EXPECT_LT(took, 20s);
}

TEST_F(CliSync, InterruptStopsCleanlyAndReleasesTheLease) {
    add_many(10);
    const std::string uri = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
    std::atomic<pid_t> pid{0};
    RunOptions o;
    o.pid = &pid;
    RunResult r;
    std::thread sync([&] {
        r = run_outpost({"sync", "--db", db(), "--broker", uri, "--timeout", "60s"}, o);
    });
    // Wait until it holds the lease (it is then inside the dispatch loop), then interrupt it.
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    for (;;) {
        const auto lease = Admin(db()).lease();
        if ((lease && lease->blocks_new_dispatcher()) ||
            std::chrono::steady_clock::now() > give_up) {
            break;
        }
        std::this_thread::sleep_for(50ms);
    }
    ASSERT_NE(pid.load(), 0);
    ::kill(pid.load(), SIGINT);
    sync.join();
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("interrupted"), std::string::npos) << r.err;
    EXPECT_EQ(counts().pending, 10u);
    const auto lease = Admin(db()).lease();
    EXPECT_TRUE(!lease || !lease->blocks_new_dispatcher()) << "the lease must be released";
}

TEST_F(CliSync, RefusesWhileAnotherDispatcherHoldsTheLease) {
    Mosquitto broker;
    add_many(5);
    {
        SqliteStore store(db());
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        const std::int64_t now = SystemClock::instance().wall_ms();
        store.acquire_lease({"the-app", host, ::getpid(), now, now, now + 60'000});
    }
    const RunResult r =
        run_outpost({"sync", "--db", db(), "--broker", broker.uri(), "--timeout", "5s"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_error_line(r, "another dispatcher holds the lease"));
    EXPECT_NE(r.err.find("pid " + std::to_string(::getpid())), std::string::npos);
    EXPECT_EQ(counts().pending, 5u);
    EXPECT_FALSE(broker.log_contains("New client connected")) << "refused before connecting";
}

TEST_F(CliSync, TakesOverTheLeaseOfADeadProcessOnThisHost) {
    Mosquitto broker;
    add_many(5);
    {
        // A pid that cannot be alive: the holder crashed.
        SqliteStore store(db());
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        const std::int64_t now = SystemClock::instance().wall_ms();
        store.acquire_lease({"crashed", host, 0x3fffffff, now, now, now + 60'000});
    }
    const RunResult r =
        run_outpost({"sync", "--db", db(), "--broker", broker.uri(), "--timeout", "30s"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(counts().pending, 0u);
}

TEST_F(CliSync, BadCredentialsFailAtOnceAndTheSecretIsNeverPrinted) {
    MosquittoOptions auth;
    auth.users = {{"device", "right-secret-4711"}};
    Mosquitto broker(auth);
    add_many(3);
    write_file(dir_.file("wrong.pass"), "wrong-secret-0815\n");
    RunResult r =
        run_outpost({"sync", "--db", db(), "--broker", broker.uri(), "--username", "device",
                     "--password-file", dir_.file("wrong.pass"), "--timeout", "30s"});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_TRUE(one_error_line(r, "cannot connect"));
    const auto first = r.err.find("cannot connect to");
    EXPECT_EQ(r.err.find("cannot connect to", first + 1), std::string::npos)
        << "the servers are named once: " << r.err;
    EXPECT_EQ(r.err.find("wrong-secret-0815"), std::string::npos);
    EXPECT_EQ(r.out.find("wrong-secret-0815"), std::string::npos);
    EXPECT_EQ(counts().pending, 3u);

    // The right password, with the broker options from a config file.
    write_file(dir_.file("right.pass"), "right-secret-4711\n");
    const std::string cfg = dir_.file("outpost.toml");
    write_file(cfg, "[sync]\nbroker = \"" + broker.uri() +
                        "\"\nusername = \"device\"\npassword-file = \"" + dir_.file("right.pass") +
                        "\"\ntimeout = \"30s\"\n");
    r = run_outpost({"--config", cfg, "sync", "--db", db(), "--progress", "none"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(counts().pending, 0u);
    EXPECT_EQ(r.err.find("right-secret-4711"), std::string::npos);
    EXPECT_EQ(r.out.find("right-secret-4711"), std::string::npos);

    // --help shows no secrets either (no defaults are captured for them).
    r = run_outpost({"--config", cfg, "sync", "--help"});
    EXPECT_EQ(r.out.find("right-secret-4711"), std::string::npos);
}

TEST_F(CliSync, UserInfoInABrokerUriIsNotPrinted) {
    add_many(2);
    const std::string uri = "tcp://user:hunter2@127.0.0.1:" + std::to_string(free_loopback_port());
    const RunResult r = run_outpost({"sync", "--db", db(), "--broker", uri, "--timeout", "1s"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(r.err.find("hunter2"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("hunter2"), std::string::npos) << r.out;
}

TEST_F(CliSync, FailsOverToTheNextBrokerUri) {
    Mosquitto broker;
    add_many(20);
    const std::string dead = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
    const RunResult r = run_outpost(
        {"sync", "--db", db(), "--broker", dead, "--broker", broker.uri(), "--timeout", "30s"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(counts().pending, 0u);
}

TEST_F(CliSync, BrokerThatComesUpDuringTheSyncIsCaughtUpWith) {
    // The device's link comes up while sync waits: the dispatcher reconnects and drains.
    add_many(20);
    Mosquitto broker;
    const std::string uri = broker.uri();
    broker.stop();
    // The sync runs on a thread; the broker is started from this one (the helper's broker dies
    // with the thread that started it: PR_SET_PDEATHSIG).
    RunResult r;
    std::thread sync([&] {
        r = run_outpost({"sync", "--db", db(), "--broker", uri, "--timeout", "30s"});
    });
    std::this_thread::sleep_for(1500ms);
    broker.start();
    sync.join();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(counts().pending, 0u);
}

}  // namespace
}  // namespace outpost::testing

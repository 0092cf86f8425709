// kill -9 of a real app process (fault-app) that adds events in transactions, a seeded share
// rolled back, while its own Dispatcher drains them to a real mosquitto. The test SIGKILLs it at
// moments drawn from scenario_seed(), many times, and after each kill checks the file with
// plain SQLite (integrity_check) and that the next start takes the lease of the killed process
// at once: the lease row (outpost_lease, read by plain SQLite) names the new pid well within the
// lease TTL, and the app itself exits 4 if start() refused with LeaseHeld. A seeded fifth of the
// runs is a drain-only dispatcher process (outpost's store alone on the killed app's file), a
// tenth is killed while it starts (opening, WAL recovery, taking the lease). A last drain-only
// run drains everything; the oracle (app_events vs. a mosquitto_sub log) then judges: nothing
// lost, nothing rolled back sent, nothing reordered, nothing stuck. Duplicates are at-least-once's
// price: the app runs with K ordering keys, so at most K records are in flight (or acknowledged
// but not yet marked: a key is freed only once its outcome is written) when it dies, and the
// bound is K per kill.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "oracle.hpp"
#include "subscriber.hpp"
#include "testkit/mosquitto.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::faults {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr int kKeys = 6;
constexpr auto kLeaseTtl = 30s;  // the default; "at once" must be far below it
constexpr auto kTakeoverBound = 5s;

TEST(FaultKill9, AppKilledWhileAddingAndDrainingLosesNothing) {
    const std::string name = "kill9-app";
    const std::uint64_t seed = scenario_seed(name);
    std::mt19937_64 rng(seed);
    const int kills = sized(50, 300);
    const std::string app = binary_from_env("FAULT_APP");

    testing::Mosquitto broker;
    testing::Subscriber sub(broker.uri(), std::string(kTopicPrefix) + "#", 1);
    testing::TempDir dir;
    const std::string path = dir.file("app.db");
    const std::string log = dir.file("app.log");

    auto start = [&](std::vector<std::string> extra) {
        const std::string ttl_ms = std::to_string(std::chrono::milliseconds(kLeaseTtl).count());
        std::vector<std::string> argv{app, "--db", path, "--broker", broker.uri()};
        argv.insert(argv.end(), {"--keys", std::to_string(kKeys), "--lease-ttl-ms", ttl_ms});
        argv.insert(argv.end(), extra.begin(), extra.end());
        return std::make_unique<Child>(argv, log);
    };
    // Waits until the lease row names `child`; returns how long that took since `since`.
    auto await_lease = [&](Child& child, steady::time_point since) -> std::chrono::milliseconds {
        while (steady::now() - since < kLeaseTtl) {
            if (lease_pid(path) == child.pid()) {
                return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - since);
            }
            if (auto rc = child.wait_for(0ms)) {
                ADD_FAILURE() << "fault-app exited " << *rc << " before taking the lease:\n"
                              << child.log();
                return kLeaseTtl;
            }
            std::this_thread::sleep_for(1ms);
        }
        ADD_FAILURE() << "no lease after " << kLeaseTtl.count() << " s:\n" << child.log();
        return kLeaseTtl;
    };

    std::uniform_int_distribution<int> moment_ms(0, 400);
    std::uniform_int_distribution<int> percent(0, 99);
    std::uniform_int_distribution<int> early_ms(0, 40);
    int drain_only_runs = 0, early_kills = 0;
    std::chrono::milliseconds worst_takeover{0};
    for (int k = 0; k < kills; ++k) {
        const auto t0 = steady::now();
        // Mostly the app that writes and drains; now and then a dispatcher process of its own,
        // which opens only outpost's store on the file the killed app left.
        const bool drain_only = k > 0 && percent(rng) < 20;
        drain_only_runs += drain_only ? 1 : 0;
        auto child = drain_only ? start({"--drain-only"})
                                : start({"--forever", "--rollback-percent", "20", "--seed",
                                         std::to_string(rng() >> 1)});
        if (k > 0 && percent(rng) < 10) {
            // Now and then while it starts: opening the file, recovering the WAL the last one
            // left, taking the lease.
            ++early_kills;
            std::this_thread::sleep_for(std::chrono::milliseconds(early_ms(rng)));
            child->kill9();
            ASSERT_EQ(integrity_check(path), "ok") << "after early kill " << k;
            continue;
        }
        const auto took = await_lease(*child, t0);
        if (k > 0) {  // the first start finds no lease; every later one finds the killed one's
            worst_takeover = std::max(worst_takeover, took);
        }
        ASSERT_LT(took, kTakeoverBound) << "kill " << k << ": lease not taken at once";
        // The fault itself: a moment drawn from the seed while it writes and drains.
        std::this_thread::sleep_for(std::chrono::milliseconds(moment_ms(rng)));
        ASSERT_TRUE(child->running()) << "fault-app ended by itself:\n" << child->log();
        child->kill9();
        const std::string check = integrity_check(path);
        ASSERT_EQ(check, "ok") << "after kill " << k;
    }

    // The final run: start (taking the last killed app's lease), drain, exit.
    const auto t0 = steady::now();
    auto last = start({"--drain-only", "--exit-when-drained", "--drain-timeout-ms", "120000"});
    worst_takeover = std::max(worst_takeover, await_lease(*last, t0));
    const auto rc = last->wait_for(150s);
    ASSERT_TRUE(rc.has_value()) << "the final run did not drain:\n" << last->log();
    ASSERT_EQ(*rc, 0) << last->log();
    ASSERT_EQ(integrity_check(path), "ok");

    const std::vector<Event> committed = committed_events(path);
    EXPECT_TRUE(sub.wait_for_distinct("outpost-id", committed.size(), 60s))
        << "arrived " << sub.count() << " of " << committed.size() << " committed";
    std::vector<std::string> arrived;
    for (const auto& m : sub.messages()) {
        arrived.push_back(m.payload);
    }
    const Tally tally = judge(committed, arrived, outbox_states(path));
    report(name, tally);
    std::cout << "scenario " << name << ": " << kills << " kills (" << drain_only_runs
              << " of a drain-only process, " << early_kills
              << " while starting), worst lease takeover " << worst_takeover.count()
              << " ms (lease ttl " << kLeaseTtl.count() << " s), duplicate bound " << kills * kKeys
              << std::endl;
    std::string examples;
    for (const auto& e : tally.examples) {
        examples += "\n  " + e;
    }
    EXPECT_TRUE(tally.sound()) << tally.line(name) << examples;
    EXPECT_LE(tally.duplicated, static_cast<std::size_t>(kills * kKeys)) << tally.line(name);
    EXPECT_GT(tally.committed, static_cast<std::size_t>(kills)) << "the app hardly wrote";
    EXPECT_LT(worst_takeover, kTakeoverBound);
}

}  // namespace
}  // namespace outpost::faults

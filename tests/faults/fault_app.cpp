// fault-app: a small but real outpost app for the process-level fault scenarios (kill -9,
// concurrent writers). It opens the file as an app does (SQLiteCpp Database + outpost::Outbox,
// its business table app_events), adds events in transactions (a seeded share rolled back) with
// the oracle's add_event(), and optionally runs its own Dispatcher + MqttBroker. The scenarios
// run it as a child process and SIGKILL it, or run several at once; they judge by the oracle,
// never by what this program prints.
//
//   fault-app --db FILE [--transactions N | --forever] [--keys K] [--key-prefix P]
//             [--rollback-percent R] [--seed S] [--broker URI [--client-id ID] [--window N]
//             [--lease-ttl-ms MS] [--drain-only] [--exit-when-drained [--drain-timeout-ms MS]]]
//
// Without --broker it is a pure writer and exits when its transactions are done. With --broker
// it takes the file's lease (exit 4 when another dispatcher holds it: the scenarios need the
// lease of a killed app taken at once), prints "lease taken after N ms", writes, and then either
// drains and exits (--exit-when-drained) or dispatches until SIGTERM/SIGINT. --drain-only makes
// it a dispatcher process of its own: no Outbox, no business table, only outpost's SqliteStore.
//
// Busy: add_event() opens a deferred transaction that reads (the next seq) before it writes, and
// SQLite answers such an upgrade with SQLITE_BUSY at once, without the busy timeout, when another
// connection writes meanwhile. That is the app's own statement; like any app doing so, this one
// rolls back and runs the transaction again (counted, printed as "app retries"). A busy error
// thrown by outpost itself (Outbox, Dispatcher) is never retried: it ends the app with exit 5,
// because outpost promises that its busy timeout absorbs concurrent writers.
//
// Exit codes: 0 ok, 1 error, 2 usage, 3 drain timed out, 4 lease held, 5 busy from outpost.
#include <SQLiteCpp/SQLiteCpp.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "oracle.hpp"
#include "outpost/mqtt_broker.hpp"
#include "outpost/outpost.hpp"

namespace {

using steady = std::chrono::steady_clock;

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Config {
    std::string db;
    std::int64_t transactions = 0;
    bool forever = false;
    int keys = 4;
    std::string key_prefix = "k";
    int rollback_percent = 0;
    std::optional<std::uint64_t> seed;
    std::string broker;
    std::string client_id;
    std::size_t window = 100;
    std::chrono::milliseconds lease_ttl{std::chrono::seconds(30)};
    bool drain_only = false;
    bool exit_when_drained = false;
    std::chrono::milliseconds drain_timeout{std::chrono::seconds(60)};
};

std::int64_t parse_int(const std::string& flag, const std::string& value, std::int64_t lo,
                       std::int64_t hi) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) {
        throw UsageError(flag + " wants an integer from " + std::to_string(lo) + " to " +
                         std::to_string(hi) + ", not '" + value + "'");
    }
    return v;
}

Config parse(int argc, char** argv) {
    Config c;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                throw UsageError(flag + " needs a value");
            }
            return argv[++i];
        };
        if (flag == "--db") {
            c.db = value();
        } else if (flag == "--transactions") {
            c.transactions = parse_int(flag, value(), 0, INT64_MAX);
        } else if (flag == "--forever") {
            c.forever = true;
        } else if (flag == "--keys") {
            c.keys = static_cast<int>(parse_int(flag, value(), 1, 10000));
        } else if (flag == "--key-prefix") {
            c.key_prefix = value();
        } else if (flag == "--rollback-percent") {
            c.rollback_percent = static_cast<int>(parse_int(flag, value(), 0, 100));
        } else if (flag == "--seed") {
            c.seed = static_cast<std::uint64_t>(parse_int(flag, value(), 0, INT64_MAX));
        } else if (flag == "--broker") {
            c.broker = value();
        } else if (flag == "--client-id") {
            c.client_id = value();
        } else if (flag == "--window") {
            c.window = static_cast<std::size_t>(parse_int(flag, value(), 1, 65535));
        } else if (flag == "--lease-ttl-ms") {
            c.lease_ttl = std::chrono::milliseconds(parse_int(flag, value(), 1, INT32_MAX));
        } else if (flag == "--drain-only") {
            c.drain_only = true;
        } else if (flag == "--exit-when-drained") {
            c.exit_when_drained = true;
        } else if (flag == "--drain-timeout-ms") {
            c.drain_timeout = std::chrono::milliseconds(parse_int(flag, value(), 1, INT32_MAX));
        } else if (flag == "--help" || flag == "-h") {
            throw UsageError("");
        } else {
            throw UsageError("unknown option '" + flag + "'");
        }
    }
    if (c.db.empty()) {
        throw UsageError("--db FILE is required");
    }
    if (c.forever && c.transactions != 0) {
        throw UsageError("--forever and --transactions exclude each other");
    }
    if (c.broker.empty() && (c.exit_when_drained || !c.client_id.empty())) {
        throw UsageError("--exit-when-drained and --client-id need --broker");
    }
    if (c.drain_only && (c.broker.empty() || c.forever || c.transactions != 0)) {
        throw UsageError("--drain-only needs --broker and excludes --transactions and --forever");
    }
    if (c.forever && c.exit_when_drained) {
        throw UsageError("--forever never gets to --exit-when-drained");
    }
    if (c.client_id.empty()) {
        c.client_id = "fault-app-" + std::to_string(::getpid());
    }
    return c;
}

constexpr const char* kUsage =
    "usage: fault-app --db FILE [--transactions N | --forever] [--keys K] [--key-prefix P]\n"
    "                 [--rollback-percent R] [--seed S] [--broker URI [--client-id ID]\n"
    "                 [--window N] [--lease-ttl-ms MS] [--drain-only] [--exit-when-drained\n"
    "                 [--drain-timeout-ms MS]]]\n";

// Set by SIGTERM/SIGINT: stop writing, stop the dispatcher cleanly, exit 0.
std::atomic<bool> g_stop{false};
// Storage errors the dispatcher reported (and retried) as events: a busy one is a busy that
// reached the app, through its event handler.
std::atomic<long> g_dispatch_errors{0};
extern "C" void on_signal(int) {
    g_stop.store(true);
}

bool busy(int code) {
    return (code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED;
}

// Thrown for a busy error outpost let through: exit 5.
struct OutpostBusy : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Rethrows an outpost error that says "busy" as OutpostBusy; others as they are.
[[noreturn]] void rethrow_outpost(const outpost::Error& e, const std::string& doing) {
    if (e.kind() == outpost::ErrorKind::storage && busy(e.code())) {
        throw OutpostBusy(doing + ": outpost returned a busy error (" +
                          std::string(outpost::to_string(e.kind())) + ", code " +
                          std::to_string(e.code()) + "): " + e.what());
    }
    throw;
}

int run(const Config& c) {
    const auto t0 = steady::now();
    const std::uint64_t seed = c.seed ? *c.seed : std::random_device{}();
    std::mt19937_64 rng(seed);

    // The file must exist or be creatable, as for any app; the business table is the app's. A
    // pure drainer is a dispatcher process of its own: it opens only outpost's store.
    std::unique_ptr<SQLite::Database> db;
    std::unique_ptr<outpost::Outbox> outbox;
    if (!c.drain_only) {
        db = std::make_unique<SQLite::Database>(c.db, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        try {
            outbox = std::make_unique<outpost::Outbox>(*db);
        } catch (const outpost::Error& e) {
            rethrow_outpost(e, "opening the outbox");
        }
        db->exec(outpost::faults::kAppSchema);
    }

    std::unique_ptr<outpost::SqliteStore> store;
    std::unique_ptr<outpost::MqttBroker> broker;
    std::unique_ptr<outpost::Dispatcher> dispatcher;
    if (!c.broker.empty()) {
        try {
            store = std::make_unique<outpost::SqliteStore>(c.db);
            outpost::MqttOptions mqtt;
            mqtt.servers = {c.broker};
            mqtt.client_id = c.client_id;
            broker = std::make_unique<outpost::MqttBroker>(mqtt);
            outpost::DispatcherOptions d;
            d.window = c.window;
            d.lease_ttl = c.lease_ttl;
            d.on_event = [](const outpost::DispatchEvent& e) {
                if (e.kind == outpost::DispatchEvent::Kind::error) {
                    g_dispatch_errors.fetch_add(1);
                }
                if (e.kind == outpost::DispatchEvent::Kind::error ||
                    e.kind == outpost::DispatchEvent::Kind::lease_lost) {
                    std::cerr << "fault-app: dispatcher " << outpost::to_string(e.kind) << ": "
                              << e.detail << std::endl;
                }
            };
            dispatcher = std::make_unique<outpost::Dispatcher>(*store, *broker, d);
            dispatcher->start();
        } catch (const outpost::LeaseHeld& e) {
            std::cerr << "fault-app: error: " << e.what() << std::endl;
            return 4;
        } catch (const outpost::Error& e) {
            rethrow_outpost(e, "starting the dispatcher");
        }
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count();
        std::cout << "lease taken after " << ms << " ms" << std::endl;
    }

    std::vector<std::string> keys;
    for (int k = 0; k < c.keys; ++k) {
        keys.push_back(c.key_prefix + std::to_string(k));
    }
    std::uniform_int_distribution<int> pick_key(0, c.keys - 1);
    std::uniform_int_distribution<int> percent(0, 99);
    std::mt19937_64 jitter(seed ^ 0x9e3779b97f4a7c15ULL);  // apart from the events' own stream
    std::uniform_int_distribution<int> pause_us(0, 1000 << 6);
    std::int64_t committed = 0, rolled_back = 0, app_retries = 0;
    for (std::int64_t n = 0; (c.forever || n < c.transactions) && !g_stop.load(); ++n) {
        const std::string& key = keys[static_cast<std::size_t>(pick_key(rng))];
        const bool roll_back = percent(rng) < c.rollback_percent;
        for (int attempt = 0;; ++attempt) {
            try {
                outpost::faults::add_event(*db, *outbox, key, roll_back, rng);
                break;
            } catch (const outpost::Error& e) {
                rethrow_outpost(e, "adding an event");
            } catch (const SQLite::Exception& e) {
                // The app's own read-then-write transaction lost the race for the write lock:
                // again after a random pause that grows with each attempt, as SQLite's own busy
                // handler waits (up to 100 ms), so that a retrying app competes with other
                // connections' busy handlers as an app waiting in BEGIN IMMEDIATE would, and
                // does not starve them.
                if (!busy(e.getErrorCode()) || attempt >= 10000) {
                    throw;
                }
                ++app_retries;
                const int ceiling_us = 1000 << std::min(attempt, 6);
                std::this_thread::sleep_for(
                    std::chrono::microseconds(pause_us(jitter) % (ceiling_us + 1)));
            }
        }
        ++(roll_back ? rolled_back : committed);
    }
    std::cout << "wrote " << committed << " committed, " << rolled_back << " rolled back, "
              << app_retries << " app retries" << std::endl;

    int rc = 0;
    if (dispatcher) {
        if (c.exit_when_drained) {
            if (dispatcher->drain(c.drain_timeout)) {
                std::cout << "drained" << std::endl;
            } else {
                std::cerr << "fault-app: error: not drained after " << c.drain_timeout.count()
                          << " ms: " << dispatcher->stats().last_error << std::endl;
                rc = 3;
            }
        } else {
            while (!g_stop.load()) {
                std::this_thread::sleep_for(std::chrono::milliseconds(20));  // signal poll
            }
        }
        dispatcher->stop();
        std::cout << "stopped after " << g_dispatch_errors.load() << " dispatcher errors"
                  << std::endl;
    }
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
    try {
        return run(parse(argc, argv));
    } catch (const UsageError& e) {
        if (*e.what() != '\0') {
            std::cerr << "fault-app: " << e.what() << "\n";
        }
        std::cerr << kUsage;
        return 2;
    } catch (const OutpostBusy& e) {
        std::cerr << "fault-app: error: " << e.what() << std::endl;
        return 5;
    } catch (const std::exception& e) {
        std::cerr << "fault-app: error: " << e.what() << std::endl;
        return 1;
    }
}

// Fault suite, network: the uplink fails under a running app, and nothing committed is lost, no
// attempt is burned while the broker cannot be reached, and a half-open connection is noticed
// within 1.5 keepalives + 2 s.
//
// How: two network namespaces made by the test (names carry the pid, removed on every exit
// path; leftovers of dead runs are removed by name prefix first), joined by a veth pair on a
// private /30. Namespace B holds mosquitto (on 127.0.0.1 and its veth address) and the
// mosquitto_sub oracle, which reaches it over B's own loopback, so no fault ever touches the
// oracle. Namespace A holds the app: this test binary re-executed in A (fork, setns, exec) in
// its child mode (NetworkChild.App), a Dispatcher + MqttBroker on the app's SQLite file, which
// reports its connection events on a pipe. The test process writes the events (business row +
// outbox message in one transaction, oracle.hpp) at a steady pace throughout, then cuts the
// link: `ip link set down` on A's end, a blackhole route to the broker in A, iptables DROP both
// ways in B (a half-open connection: the broker never answers and never resets), or a link
// that flaps every few seconds. After the heal everything must arrive (judged by the oracle),
// and the attempts column of every record, read by plain SQLite (delivered records are
// retained for it), must still be 0.
//
// Needs root and `ip netns` (iproute2) and, for the half-open case, iptables; skipped with the
// reason otherwise.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <outpost/mqtt_broker.hpp>
#include <outpost/outpost.hpp>

#include "oracle.hpp"
#include "subscriber.hpp"
#include "testkit/mosquitto.hpp"
#include "testkit/temp_dir.hpp"

extern char** environ;

namespace outpost::faults {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using testing::Mosquitto;
using testing::MosquittoOptions;
using testing::Subscriber;
using testing::TempDir;

constexpr const char* kPrefix = "outpost-net-";  // every namespace this suite makes
constexpr const char* kChildEnv = "OUTPOST_NET_CHILD";
constexpr const char* kAddrA = "10.213.0.1";
constexpr const char* kAddrB = "10.213.0.2";  // the broker's veth address
constexpr std::chrono::seconds kKeepalive{2};
// The bound of the issue: a half-open connection is noticed within 1.5 keepalives + 2 s.
constexpr auto kNoticeBound = kKeepalive * 3 / 2 + 2s;
constexpr int kKeys = 4;

// A shell command's exit status and output (stdout and stderr).
struct Ran {
    int status = -1;
    std::string output;
};

Ran run(const std::string& cmd) {
    Ran r;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (p == nullptr) {
        return r;
    }
    char buf[512];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
        r.output.append(buf, n);
    }
    const int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

void must(const std::string& cmd) {
    const Ran r = run(cmd);
    if (r.status != 0) {
        throw std::runtime_error("`" + cmd + "` failed (" + std::to_string(r.status) +
                                 "): " + r.output);
    }
}

// Kills what still runs in namespace `name` (only processes of ours get there), then removes it.
void remove_netns(const std::string& name) {
    std::istringstream pids(run("ip netns pids " + name).output);
    for (long pid = 0; pids >> pid;) {
        ::kill(static_cast<pid_t>(pid), SIGKILL);
    }
    run("ip netns delete " + name);
}

// Namespaces left behind by runs that died before their cleanup (SIGKILL, a timeout): their
// name holds the pid of the run, which is gone.
void remove_leftovers() {
    std::istringstream list(run("ip netns list").output);
    for (std::string line; std::getline(list, line);) {
        const std::string name = line.substr(0, line.find(' '));
        if (name.rfind(kPrefix, 0) != 0) {
            continue;
        }
        const long pid = std::strtol(name.c_str() + std::strlen(kPrefix), nullptr, 10);
        if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
            remove_netns(name);
        }
    }
}

// Why these scenarios cannot run here, or empty when they can.
std::string unavailable() {
    if (::geteuid() != 0) {
        return "network namespaces need root";
    }
    const std::string probe = std::string(kPrefix) + std::to_string(::getpid()) + "-probe";
    const Ran r = run("ip netns add " + probe);
    run("ip netns delete " + probe);
    if (r.status != 0) {
        return "`ip netns add` does not work here: " + r.output;
    }
    return {};
}

// Namespaces A and B joined by veth-a (A, kAddrA) and veth-b (B, kAddrB). The veth is made
// inside A, so it never exists in the host's namespace; deleting the namespaces deletes it.
class NetPair {
  public:
    NetPair() {
        static int made = 0;
        const std::string base =
            kPrefix + std::to_string(::getpid()) + "-" + std::to_string(++made);
        a_ = base + "-a";
        b_ = base + "-b";
        try {
            must("ip netns add " + a_);
            must("ip netns add " + b_);
            must("ip -n " + a_ + " link add veth-a type veth peer name veth-b netns " + b_);
            must("ip -n " + a_ + " addr add " + kAddrA + "/30 dev veth-a");
            must("ip -n " + b_ + " addr add " + kAddrB + "/30 dev veth-b");
            for (const auto& [ns, dev] : {std::pair{a_, "veth-a"}, std::pair{b_, "veth-b"}}) {
                must("ip -n " + ns + " link set lo up");
                must("ip -n " + ns + " link set " + dev + " up");
            }
        } catch (...) {
            remove();
            throw;
        }
    }
    ~NetPair() { remove(); }
    NetPair(const NetPair&) = delete;
    NetPair& operator=(const NetPair&) = delete;

    const std::string& a() const { return a_; }
    const std::string& b() const { return b_; }
    // `ip -n A ...`, `ip netns exec B iptables ...`
    void in_a(const std::string& cmd) const { must("ip -n " + a_ + " " + cmd); }
    void iptables_b(const std::string& rule) const {
        must("ip netns exec " + b_ + " iptables -w " + rule);
    }

  private:
    void remove() {
        remove_netns(a_);
        remove_netns(b_);
    }
    std::string a_, b_;
};

// Moves the calling thread into a named namespace for its lifetime; whatever the thread forks
// or starts meanwhile (mosquitto, mosquitto_sub, the subscriber's reader) stays there.
class InNetns {
  public:
    explicit InNetns(const std::string& name) {
        home_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        const int target = ::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
        const bool ok = home_ >= 0 && target >= 0 && ::setns(target, CLONE_NEWNET) == 0;
        const int err = errno;
        if (target >= 0) {
            ::close(target);
        }
        if (!ok) {
            if (home_ >= 0) {
                ::close(home_);
            }
            throw std::runtime_error("setns into " + name + ": " + std::strerror(err));
        }
    }
    ~InNetns() {
        if (::setns(home_, CLONE_NEWNET) != 0) {
            std::abort();  // the test thread would go on in the wrong namespace
        }
        ::close(home_);
    }
    InNetns(const InNetns&) = delete;
    InNetns& operator=(const InNetns&) = delete;

  private:
    int home_ = -1;
};

// What the app child told, each line stamped on arrival.
struct ChildEvent {
    steady::time_point at;
    std::string line;  // "connected ..." or "disconnected ..."
};

// The app (Dispatcher + MqttBroker) as a child process in namespace `netns`: this binary again,
// in NetworkChild.App. It stops when its stdin closes (destructor), SIGKILL after 10 s.
class AppChild {
  public:
    AppChild(const std::string& netns, const std::string& config) {
        char exe[4096];
        const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) {
            throw std::runtime_error("readlink /proc/self/exe failed");
        }
        exe[n] = '\0';
        std::vector<std::string> args{exe, "--gtest_filter=NetworkChild.App"};
        std::vector<std::string> env{std::string(kChildEnv) + "=" + config};
        for (char** e = environ; *e != nullptr; ++e) {
            if (std::strncmp(*e, kChildEnv, std::strlen(kChildEnv)) != 0) {
                env.emplace_back(*e);
            }
        }
        std::vector<char*> argv, envp;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        for (auto& e : env) {
            envp.push_back(e.data());
        }
        envp.push_back(nullptr);
        int in[2], ev[2];
        if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(ev, O_CLOEXEC) != 0) {
            throw std::runtime_error("pipe2 failed");
        }
        const int ns = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ == 0) {
            // Async-signal-safe calls only until exec: the test process has threads.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent || ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
                ::_exit(126);
            }
            ::dup2(in[0], 0);
            ::dup2(ev[1], 3);
            ::execve(argv[0], argv.data(), envp.data());
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(ev[1]);
        if (ns >= 0) {
            ::close(ns);
        }
        stdin_ = in[1];
        events_ = ev[0];
        if (pid_ < 0) {
            throw std::runtime_error("fork failed");
        }
        reader_ = std::thread([this] { read_events(); });
    }
    ~AppChild() { stop(); }
    AppChild(const AppChild&) = delete;
    AppChild& operator=(const AppChild&) = delete;

    // Closes its stdin (the dispatcher stops, in-flight answers are written) and reaps it.
    // Returns its exit status, -1 when it had to be killed.
    int stop() {
        if (pid_ <= 0) {
            return exit_status_;
        }
        ::close(stdin_);
        const auto deadline = steady::now() + 10s;
        int status = 0;
        pid_t r = 0;
        while ((r = ::waitpid(pid_, &status, WNOHANG)) == 0 && steady::now() < deadline) {
            std::this_thread::sleep_for(20ms);  // a child's exit can only be polled or signalled
        }
        if (r == 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
            exit_status_ = -1;
        } else {
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        pid_ = -1;
        reader_.join();
        ::close(events_);
        return exit_status_;
    }

    // The first event at or after `since` whose line starts with `what`, waiting up to
    // `timeout`.
    std::optional<ChildEvent> wait_for(const std::string& what, steady::time_point since,
                                       std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        std::optional<ChildEvent> found;
        cv_.wait_for(lock, timeout, [&] {
            for (const ChildEvent& e : events_seen_) {
                if (e.at >= since && e.line.rfind(what, 0) == 0) {
                    found = e;
                    return true;
                }
            }
            return false;
        });
        return found;
    }

    std::string transcript() {
        std::lock_guard lock(mutex_);
        std::string out;
        const auto t0 = events_seen_.empty() ? steady::now() : events_seen_.front().at;
        for (const ChildEvent& e : events_seen_) {
            out += "  +" + std::to_string((e.at - t0) / 1ms) + " ms " + e.line + "\n";
        }
        return out;
    }

  private:
    void read_events() {
        std::string partial;
        char buf[1024];
        for (;;) {
            const ssize_t n = ::read(events_, buf, sizeof buf);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return;
            }
            const auto now = steady::now();
            partial.append(buf, static_cast<std::size_t>(n));
            for (auto nl = partial.find('\n'); nl != std::string::npos; nl = partial.find('\n')) {
                std::lock_guard lock(mutex_);
                events_seen_.push_back({now, partial.substr(0, nl)});
                partial.erase(0, nl + 1);
                cv_.notify_all();
            }
        }
    }

    pid_t pid_ = -1;
    int stdin_ = -1;
    int events_ = -1;
    int exit_status_ = -1;
    std::thread reader_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<ChildEvent> events_seen_;
};

// Plain SQLite, read-only: how many records have a non-zero attempts column, and the highest.
std::pair<long, long> burned_attempts(const std::string& path) {
    sqlite3* db = nullptr;
    sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt* st = nullptr;
    std::pair<long, long> out{-1, -1};
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FILTER (WHERE attempts <> 0), "
                           "coalesce(max(attempts), 0) FROM outpost_records",
                           -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        out = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)};
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

// One scenario's world: the namespaces, the broker and oracle in B, the app in A, a writer.
class World {
  public:
    explicit World(const std::string& name) : seed_(scenario_seed(name)), rng_(seed_) {
        {
            InNetns in(net_.b());
            MosquittoOptions mo;
            mo.also_listen_on = {kAddrB};
            mosq_ = std::make_unique<Mosquitto>(mo);
            sub_ = std::make_unique<Subscriber>(mosq_->uri(), std::string(kTopicPrefix) + "#", 1);
        }
        db_.exec(kAppSchema);
        // The app's child reads its configuration from one environment variable.
        const std::string uri =
            "tcp://" + std::string(kAddrB) + ":" + std::to_string(mosq_->port());
        app_ = std::make_unique<AppChild>(
            net_.a(), path_ + "|" + uri + "|" + std::to_string(kKeepalive.count()) + "|" +
                          "outpost-net-" + std::to_string(::getpid()));
    }
    ~World() { stop_writing(); }

    // Events at a steady pace (one every 10 ms, keys in turn) until stop_writing().
    void start_writing() {
        writer_ = std::thread([this] {
            std::mt19937_64 rng(seed_ + 1);
            for (int i = 0; !stop_.load(); ++i) {
                const std::string key = "k" + std::to_string(i % kKeys);
                try {
                    add_event(db_, outbox_, key, i % 17 == 5, rng);  // a few roll back
                } catch (const SQLite::Exception& e) {
                    // The dispatcher's write won the race for the lock (a deferred transaction
                    // cannot wait for it): the app tries again later, as an app would.
                    if (e.getErrorCode() != SQLITE_BUSY && e.getErrorCode() != SQLITE_LOCKED) {
                        writer_error_ = e.what();
                        return;
                    }
                }
                std::this_thread::sleep_for(10ms);  // the app's pace, not a synchronisation
            }
        });
    }
    void stop_writing() {
        stop_.store(true);
        if (writer_.joinable()) {
            writer_.join();
        }
    }

    // Waits until the app is connected and the oracle saw `n` more messages.
    void expect_flowing(std::size_t more, const char* when) {
        ASSERT_TRUE(app_->wait_for("connected", start_, 20s)) << when << "\n" << app_->transcript();
        const std::size_t target = sub_->count() + more;
        ASSERT_TRUE(sub_->wait_for_count(target, 30s))
            << when << ": " << sub_->count() << " of " << target << " arrived\n"
            << app_->transcript() << mosq_->log();
    }

    // After the last heal: stops writing, waits for every committed event, stops the app, judges.
    Tally finish(const std::string& name, std::size_t outages) {
        stop_writing();
        EXPECT_EQ(writer_error_, "") << "the app's writes failed";
        const auto committed = committed_events(path_);
        EXPECT_TRUE(sub_->wait_for_distinct("outpost-id", committed.size(), 60s))
            << sub_->count() << " arrived of " << committed.size() << " committed\n"
            << app_->transcript();
        EXPECT_EQ(app_->stop(), 0) << "the app child failed";
        std::vector<std::string> arrived;
        for (const auto& m : sub_->messages()) {
            arrived.push_back(m.payload);
        }
        const Tally tally = judge(committed, arrived, outbox_states(path_));
        report(name, tally);
        EXPECT_TRUE(tally.sound()) << tally.line(name) << "\n" << app_->transcript();
        for (const auto& ex : tally.examples) {
            ADD_FAILURE() << ex;
        }
        // At-least-once: what was in flight when a connection died may come again, at most a
        // window (100) per outage.
        EXPECT_LE(tally.duplicated, 100 * outages) << tally.line(name);
        const auto [burned, most] = burned_attempts(path_);
        EXPECT_EQ(burned, 0) << burned << " records have attempts, up to " << most
                             << ": an outage burned them\n"
                             << app_->transcript();
        EXPECT_EQ(integrity_check(path_), "ok");
        return tally;
    }

    NetPair& net() { return net_; }
    AppChild& app() { return *app_; }
    std::mt19937_64& rng() { return rng_; }

  private:
    NetPair net_;  // first: removed last, after every process in it was stopped
    std::uint64_t seed_;
    std::mt19937_64 rng_;
    std::unique_ptr<Mosquitto> mosq_;
    std::unique_ptr<Subscriber> sub_;
    TempDir dir_;
    std::string path_ = dir_.file("app.db");
    SQLite::Database db_{path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE};
    Outbox outbox_{db_};
    std::unique_ptr<AppChild> app_;
    steady::time_point start_ = steady::now();
    std::thread writer_;
    std::atomic<bool> stop_{false};
    std::string writer_error_;  // set by the writer thread before it ends
};

class Network : public ::testing::Test {
  protected:
    void SetUp() override {
        if (const std::string why = unavailable(); !why.empty()) {
            GTEST_SKIP() << why;
        }
        remove_leftovers();
    }
};

// One outage while events flow: the link is cut by `cut`, restored by `heal`. The app must
// notice within the bound (when `half_open_bound`), burn no attempt during the outage, and
// deliver everything after the heal.
// `idle`: nothing is written before the heal, so no publish is in flight when the link dies and
// only the client's own probing can notice it.
void outage(const std::string& name, const std::function<void(NetPair&)>& cut,
            const std::function<void(NetPair&)>& heal, bool idle = false) {
    World w(name);
    if (idle) {
        ASSERT_TRUE(w.app().wait_for("connected", steady::now() - 1h, 20s)) << w.app().transcript();
        // Idle for more than half a keepalive: the link is cut between the client's probes.
        std::this_thread::sleep_for(kKeepalive * 3 / 4);  // the idle time is the scenario
    } else {
        w.start_writing();
        w.expect_flowing(50, "before the fault");
    }
    if (::testing::Test::HasFatalFailure()) {
        return;
    }
    const auto t0 = steady::now();
    cut(w.net());
    const auto noticed = w.app().wait_for("disconnected", t0, kNoticeBound + 20s);
    ASSERT_TRUE(noticed) << "the app never noticed the outage\n" << w.app().transcript();
    const auto took = noticed->at - t0;
    std::cout << "scenario " << name << ": noticed after " << took / 1ms << " ms (bound "
              << kNoticeBound / 1ms << " ms, keepalive " << kKeepalive.count() << " s)"
              << std::endl;
    EXPECT_LE(took, kNoticeBound) << w.app().transcript();
    // The outage goes on: reconnect attempts fail meanwhile, and must not cost any record an
    // attempt; records committed meanwhile wait.
    std::this_thread::sleep_for(3s);  // the outage's length is the scenario, not a wait
    const auto t1 = steady::now();
    heal(w.net());
    ASSERT_TRUE(w.app().wait_for("connected", t1, 30s)) << "no reconnect after the heal\n"
                                                        << w.app().transcript();
    if (idle) {
        w.start_writing();
    }
    w.expect_flowing(50, "after the heal");
    w.finish(name, 1);
}

TEST_F(Network, LinkCutIsNoticedAndNothingIsLost) {
    outage(
        "network-link-cut", [](NetPair& n) { n.in_a("link set veth-a down"); },
        [](NetPair& n) { n.in_a("link set veth-a up"); });
}

TEST_F(Network, BlackholedRouteIsNoticedAndNothingIsLost) {
    outage(
        "network-blackhole",
        [](NetPair& n) { n.in_a(std::string("route add blackhole ") + kAddrB + "/32"); },
        [](NetPair& n) { n.in_a(std::string("route del blackhole ") + kAddrB + "/32"); });
}

// iptables DROP both ways in B: the app's packets vanish and nothing comes back, no RST, no
// FIN (mosquitto's own keepalive closes its side, unseen): the half-open connection that only
// the client's keepalive can find.
void drop_both_ways(NetPair& n) {
    n.iptables_b("-A INPUT -i veth-b -j DROP");
    n.iptables_b("-A OUTPUT -o veth-b -j DROP");
}
void allow_both_ways(NetPair& n) {
    n.iptables_b("-D INPUT -i veth-b -j DROP");
    n.iptables_b("-D OUTPUT -o veth-b -j DROP");
}

TEST_F(Network, HalfOpenConnectionIsNoticedWithinTheKeepaliveBound) {
    if (run("command -v iptables").status != 0) {
        GTEST_SKIP() << "iptables is not installed (apt-get install iptables)";
    }
    outage("network-half-open", drop_both_ways, allow_both_ways);
}

// The same while the app is idle: nothing in flight, so only the client's probe can tell.
TEST_F(Network, HalfOpenConnectionOfAnIdleAppIsNoticedWithinTheKeepaliveBound) {
    if (run("command -v iptables").status != 0) {
        GTEST_SKIP() << "iptables is not installed (apt-get install iptables)";
    }
    outage("network-half-open-idle", drop_both_ways, allow_both_ways, true);
}

// The link goes down and up every few seconds (random lengths from the seed), shorter and
// longer than the keepalive, while events flow.
TEST_F(Network, FlappingLinkLosesNothingAndBurnsNoAttempt) {
    const std::string name = "network-flapping";
    World w(name);
    w.start_writing();
    w.expect_flowing(50, "before flapping");
    if (HasFatalFailure()) {
        return;
    }
    std::uniform_int_distribution<int> ms(500, 4000);
    const int flaps = sized(5, 20);
    for (int i = 0; i < flaps; ++i) {
        w.net().in_a("link set veth-a down");
        std::this_thread::sleep_for(std::chrono::milliseconds(ms(w.rng())));  // the fault
        w.net().in_a("link set veth-a up");
        std::this_thread::sleep_for(std::chrono::milliseconds(ms(w.rng())));
    }
    // A flap shorter than the keepalive bound may leave the connection up (TCP retransmits
    // once the link is back); a longer one made the app reconnect. Either way, it flows again.
    w.expect_flowing(50, "after flapping");
    w.finish(name, static_cast<std::size_t>(flaps));
}

// The app side, run only as the child of a scenario above (in namespace A): a Dispatcher and
// an MqttBroker on the scenario's file; connection events go to fd 3, one line each; it stops
// when stdin closes.
TEST(NetworkChild, App) {
    const char* config = std::getenv(kChildEnv);
    if (config == nullptr) {
        GTEST_SKIP() << "the app side of the Network scenarios: runs only as their child";
    }
    std::vector<std::string> f;
    std::istringstream in(config);
    for (std::string part; std::getline(in, part, '|');) {
        f.push_back(part);
    }
    ASSERT_EQ(f.size(), 4u) << config;
    SqliteStore store(f[0]);
    MqttOptions mqtt;
    mqtt.servers = {f[1]};
    mqtt.keepalive = std::chrono::seconds(std::stoi(f[2]));
    mqtt.client_id = f[3];
    mqtt.connect_timeout = 2s;
    MqttBroker broker(mqtt);
    DispatcherOptions o;
    o.poll_interval = 50ms;  // the writer is another process: it is seen by polling
    o.reconnect_initial = 100ms;
    o.reconnect_max = 1s;
    o.connect_timeout = 2s;
    o.retention = std::chrono::hours(1);  // delivered records stay, for their attempts column
    o.on_event = [](const DispatchEvent& e) {
        if (e.kind != DispatchEvent::Kind::connected &&
            e.kind != DispatchEvent::Kind::disconnected) {
            return;
        }
        const std::string line = std::string(to_string(e.kind)) + " " + e.detail + "\n";
        [[maybe_unused]] const ssize_t n = ::write(3, line.data(), line.size());
    };
    Dispatcher dispatcher(store, broker, o);
    dispatcher.start();
    char buf[64];
    for (ssize_t n = 1; n != 0;) {
        n = ::read(0, buf, sizeof buf);
        if (n < 0 && errno != EINTR) {
            break;
        }
    }
    dispatcher.stop(5s);
}

}  // namespace
}  // namespace outpost::faults

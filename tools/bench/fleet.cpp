// fleet-jitter, fleet-no-jitter: a fleet of dispatchers coming back after a broker outage.
//
// 200 devices, each a process of its own by default (--fleet-processes N packs them into N),
// each with its own SQLite file and MqttBroker (own client id), connect to one mosquitto and
// idle. The broker is killed: every device loses it at the same instant, the one event that
// synchronizes a real fleet. While it is down each device commits a backlog; the dispatchers
// retry with their backoff. After the outage the broker comes back on the same port, and the
// bench records, from that moment, when each device's winning connect attempt began (what the
// broker sees), its `connected` event, and the moment its whole backlog was acknowledged (checked
// afterwards: no record pending in any file). Run once with reconnect_jitter 0.5 (the default)
// and once with 0: without jitter every device keeps the same schedule and comes back in the
// same instant, which the peak of connects per 100 ms shows.
//
// One device per process because that is what a fleet is, and because paho-c serializes the
// clients of one process: its network thread completes new connections only between polls of
// the existing sockets (src/mqtt/mqtt_broker.cpp), so 50 clients in a process connect in
// batches whatever their timing, a herd of the bench's own making.
//
// Processes: this binary in child mode (--fleet-child), told what to do on stdin ("add",
// "quit") and reporting on stdout, one line per event, times in steady-clock (CLOCK_MONOTONIC,
// shared by all processes of the machine) nanoseconds.
#include <SQLiteCpp/SQLiteCpp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "bench.hpp"
#include "outpost/dispatcher.hpp"
#include "outpost/mqtt_broker.hpp"
#include "outpost/outbox.hpp"
#include "outpost/sqlite_store.hpp"
#include "testkit/mosquitto.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::bench {

using namespace std::chrono_literals;

namespace {

constexpr int kDevices = 200;
constexpr int kRecords = 200;  // backlog per device
// Backoff 500 ms doubling to a 10 s cap: after the 20 s outage every device has failed 6 or 7
// times and waits at the cap, so the broker comes back in the middle of the longest waits, as
// after any real outage longer than the ramp. The cap is not the default 60 s only to keep the
// run short: the spread with jitter scales with it. The no-jitter schedule (0, 0.5, 1.5, 3.5, 7.5,
// 15.5, 25.5 s after the loss) puts every device's next try 5.5 s after the broker is back.
// --quick: a 10 s outage and a 4 s cap (no-jitter tries at 7.5 and 11.5 s).
constexpr std::chrono::milliseconds kInitial{500};
std::chrono::milliseconds cap(const Config& c) {
    return c.quick ? std::chrono::milliseconds(4'000) : std::chrono::milliseconds(10'000);
}
std::chrono::milliseconds outage(const Config& c) {
    if (c.fleet_outage_ms) {
        return std::chrono::milliseconds(*c.fleet_outage_ms);
    }
    return c.quick ? std::chrono::milliseconds(10'000) : std::chrono::milliseconds(20'000);
}

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
}

long cpu_ms_self() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000L +
           (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1000L;
}

int thread_count() {
    int n = 0;
    for ([[maybe_unused]] const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
        ++n;
    }
    return n;
}

// MqttBroker, telling when each connect() call began (about when the device's SYN leaves:
// what the broker sees) apart from when it succeeded (the `connected` event, which also holds
// paho's time to complete the handshake inside a process of 50 clients).
class TimedBroker final : public MessageBroker {
  public:
    TimedBroker(MqttOptions o, std::function<void(std::int64_t, bool)> attempted)
        : inner_(std::move(o)), attempted_(std::move(attempted)) {}
    void connect(std::chrono::milliseconds timeout) override {
        const std::int64_t t = now_ns();
        try {
            inner_.connect(timeout);
        } catch (...) {
            attempted_(t, false);
            throw;
        }
        attempted_(t, true);
    }
    void disconnect(std::chrono::milliseconds timeout) noexcept override {
        inner_.disconnect(timeout);
    }
    bool connected() const noexcept override { return inner_.connected(); }
    void publish(const Record& record, PublishCallback done) override {
        inner_.publish(record, std::move(done));
    }
    void set_connection_handler(ConnectionHandler handler) override {
        inner_.set_connection_handler(std::move(handler));
    }

  private:
    MqttBroker inner_;
    std::function<void(std::int64_t, bool)> attempted_;
};

// CPU time (user + system) of process `pid` in ms, from /proc/PID/stat.
long cpu_ms_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    if (close == std::string::npos) {
        return -1;
    }
    std::istringstream rest(text.substr(close + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14 and 15: utime, stime
        if (i == 14) {
            utime = std::stol(field);
        } else if (i == 15) {
            stime = std::stol(field);
        }
    }
    return (utime + stime) * 1000L / ::sysconf(_SC_CLK_TCK);
}

// One child process: its pipes and what it reported.
struct Child {
    pid_t pid = -1;
    FILE* to = nullptr;  // its stdin
    int from = -1;       // its stdout
    std::string pending;
    bool up = false, added = false, done = false;
    std::string summary;
};

struct Row {
    std::vector<double> attempt_s;      // per device: broker start -> start of the attempt that won
    std::vector<double> last_failed_s;  // per device: start of its last failed attempt (< 0)
    std::vector<double> connect_s;      // per device: broker start -> first connected event
    std::vector<double> drained_s;      // per device: broker start -> backlog acknowledged
    int peak_100ms = 0;
    int attempt_peak_100ms = 0;
    double outage_s = 0;        // measured: kill() returned until start() was called
    double broker_start_s = 0;  // how long Mosquitto::start() took (spawn until it accepts TCP)
    long mosquitto_cpu_ms = 0;
    std::vector<std::string> summaries;
};

double pct(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(std::lround(p * static_cast<double>(v.size() - 1)))];
}

// The most values of `t` (seconds, any order) within any window of `width`.
int peak_in_window(std::vector<double> t, double width) {
    std::sort(t.begin(), t.end());
    int best = 0;
    std::size_t lo = 0;
    for (std::size_t hi = 0; hi < t.size(); ++hi) {
        while (t[hi] - t[lo] >= width) {
            ++lo;
        }
        best = std::max(best, static_cast<int>(hi - lo + 1));
    }
    return best;
}

Row run_fleet(const Config& c, double jitter, const std::string& dir) {
    const int processes = c.fleet_processes;
    const int per_process = kDevices / processes;
    testing::Mosquitto broker;  // mosquitto's defaults, as a fleet would meet them
    std::vector<Child> kids(static_cast<std::size_t>(processes));
    for (int p = 0; p < processes; ++p) {
        int in[2], out[2];
        if (::pipe(in) != 0 || ::pipe(out) != 0) {
            throw std::runtime_error("pipe failed");
        }
        const std::string sub = dir + "/p" + std::to_string(p);
        std::filesystem::create_directories(sub);
        const pid_t pid = ::fork();
        if (pid == 0) {
            ::dup2(in[0], 0);
            ::dup2(out[1], 1);
            for (int fd : {in[0], in[1], out[0], out[1]}) {
                ::close(fd);
            }
            char j[32];
            std::snprintf(j, sizeof j, "%.3f", jitter);
            ::execl(c.self_exe.c_str(), c.self_exe.c_str(), "--fleet-child", broker.uri().c_str(),
                    sub.c_str(), std::to_string(p).c_str(), j, std::to_string(per_process).c_str(),
                    std::to_string(cap(c).count()).c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(out[1]);
        kids[p].pid = pid;
        kids[p].to = ::fdopen(in[1], "w");
        kids[p].from = out[0];
    }
    Row row;
    std::int64_t t_start = 0;  // the broker's restart, ns
    std::vector<double> first_connect(kDevices, -1);
    std::vector<double> drained(kDevices, -1);
    std::vector<double> winning(kDevices, -1);
    std::vector<std::int64_t> last_failed(kDevices, 0);  // ns
    // Reads what the children said until `until()` holds or `deadline` passes.
    auto pump = [&](const std::function<bool()>& until, std::chrono::seconds deadline,
                    const char* what) {
        const auto end = Clock::now() + deadline;
        while (!until()) {
            if (Clock::now() > end) {
                throw std::runtime_error(std::string("fleet: timed out waiting for ") + what);
            }
            std::vector<pollfd> fds;
            for (const Child& k : kids) {
                fds.push_back({k.from, POLLIN, 0});
            }
            ::poll(fds.data(), fds.size(), 100);
            for (std::size_t i = 0; i < kids.size(); ++i) {
                if ((fds[i].revents & (POLLIN | POLLHUP)) == 0) {
                    continue;
                }
                char buf[4096];
                const ssize_t got = ::read(kids[i].from, buf, sizeof buf);
                if (got <= 0) {
                    if (!kids[i].done) {
                        throw std::runtime_error("fleet: child " + std::to_string(i) +
                                                 " ended early: " + kids[i].pending);
                    }
                    continue;
                }
                kids[i].pending.append(buf, static_cast<std::size_t>(got));
                for (std::size_t nl; (nl = kids[i].pending.find('\n')) != std::string::npos;) {
                    const std::string line = kids[i].pending.substr(0, nl);
                    kids[i].pending.erase(0, nl + 1);
                    std::istringstream l(line);
                    std::string word;
                    l >> word;
                    int dev = 0;
                    std::int64_t t = 0;
                    if (word == "up") {
                        kids[i].up = true;
                    } else if (word == "added") {
                        kids[i].added = true;
                    } else if (word == "summary") {
                        kids[i].summary = line.substr(8);
                        kids[i].done = true;
                    } else if (word == "connected" && (l >> dev >> t) && t_start != 0) {
                        double& f = first_connect[i * static_cast<std::size_t>(per_process) +
                                                  static_cast<std::size_t>(dev)];
                        if (f < 0) {
                            f = static_cast<double>(t - t_start) / 1e9;
                        }
                    } else if (word == "attempt" && (l >> dev >> t >> word)) {
                        const std::size_t d = i * static_cast<std::size_t>(per_process) +
                                              static_cast<std::size_t>(dev);
                        if (word == "fail") {
                            if (t_start == 0 || t < t_start) {  // the schedule while down
                                last_failed[d] = t;
                            }
                        } else if (t_start != 0 && winning[d] < 0) {
                            winning[d] = static_cast<double>(t - t_start) / 1e9;
                        }
                    } else if (word == "drained" && (l >> dev >> t)) {
                        drained[i * static_cast<std::size_t>(per_process) +
                                static_cast<std::size_t>(dev)] =
                            static_cast<double>(t - t_start) / 1e9;
                    } else if (word == "error") {
                        throw std::runtime_error("fleet: child " + std::to_string(i) + ": " + line);
                    }
                }
            }
        }
    };
    auto all = [&](bool Child::*flag) {
        return [&kids, flag] {
            return std::all_of(kids.begin(), kids.end(),
                               [flag](const Child& k) { return k.*flag; });
        };
    };
    try {
        pump(all(&Child::up), 60s, "the fleet to connect");
        broker.kill();
        const auto lost = Clock::now();
        for (Child& k : kids) {
            std::fputs("add\n", k.to);
            std::fflush(k.to);
        }
        pump(all(&Child::added), 60s, "the backlogs");
        std::this_thread::sleep_until(lost + outage(c));
        t_start = now_ns();
        row.outage_s = std::chrono::duration<double>(Clock::now() - lost).count();
        broker.start();
        row.broker_start_s = static_cast<double>(now_ns() - t_start) / 1e9;
        pump(
            [&] {
                return std::all_of(drained.begin(), drained.end(), [](double d) { return d >= 0; });
            },
            120s, "the backlogs to drain");
        row.mosquitto_cpu_ms = cpu_ms_of(broker.pid());
        for (Child& k : kids) {
            std::fputs("quit\n", k.to);
            std::fflush(k.to);
        }
        pump(all(&Child::done), 60s, "the children to stop");
    } catch (...) {
        for (Child& k : kids) {
            ::kill(k.pid, SIGKILL);
            ::waitpid(k.pid, nullptr, 0);
        }
        throw;
    }
    for (Child& k : kids) {
        std::fclose(k.to);
        ::close(k.from);
        int status = 0;
        ::waitpid(k.pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            throw std::runtime_error("fleet: a child failed: " + k.summary);
        }
        row.summaries.push_back(k.summary);
    }
    for (double f : first_connect) {
        if (f < 0) {
            throw std::runtime_error("fleet: a device drained without a connected event");
        }
    }
    for (std::int64_t f : last_failed) {
        if (f != 0) {
            row.last_failed_s.push_back(static_cast<double>(f - t_start) / 1e9);
        }
    }
    if (row.last_failed_s.empty()) {
        row.last_failed_s.push_back(0);
    }
    row.attempt_s = winning;
    row.connect_s = first_connect;
    row.drained_s = drained;
    row.peak_100ms = peak_in_window(first_connect, 0.1);
    row.attempt_peak_100ms = peak_in_window(winning, 0.1);
    return row;
}

}  // namespace

int fleet_child(const std::string& uri, const std::string& dir, int process, double jitter,
                int devices, std::chrono::milliseconds max) {
    std::mutex out_mutex;
    auto say = [&](const std::string& line) {
        std::lock_guard lock(out_mutex);
        std::fputs((line + "\n").c_str(), stdout);
        std::fflush(stdout);
    };
    try {
        struct Device {
            std::string path;
            std::unique_ptr<SqliteStore> store;
            std::unique_ptr<TimedBroker> broker;
            std::unique_ptr<Dispatcher> dispatcher;
            std::atomic<int> delivered{0};
            std::atomic<int> failed_connects{0};
            std::atomic<bool> connected{false};
        };
        std::vector<std::unique_ptr<Device>> devs;
        for (int i = 0; i < devices; ++i) {
            auto d = std::make_unique<Device>();
            d->path = dir + "/device-" + std::to_string(i) + ".db";
            prefill(d->path, 0, "fleet/" + std::to_string(process) + "/" + std::to_string(i));
            d->store = std::make_unique<SqliteStore>(d->path);
            MqttOptions mo;
            mo.servers = {uri};
            mo.client_id = "outpost-fleet-" + std::to_string(::getpid()) + "-" + std::to_string(i);
            d->broker = std::make_unique<TimedBroker>(mo, [i, &say](std::int64_t t, bool ok) {
                say("attempt " + std::to_string(i) + " " + std::to_string(t) +
                    (ok ? " ok" : " fail"));
            });
            DispatcherOptions o;
            o.reconnect_initial = kInitial;
            o.reconnect_max = max;
            o.reconnect_jitter = jitter;
            Device* dev = d.get();
            o.on_event = [dev, i, &say](const DispatchEvent& e) {
                switch (e.kind) {
                    case DispatchEvent::Kind::connected:
                        dev->connected = true;
                        say("connected " + std::to_string(i) + " " + std::to_string(now_ns()));
                        break;
                    case DispatchEvent::Kind::disconnected:
                        dev->connected = false;
                        ++dev->failed_connects;
                        break;
                    case DispatchEvent::Kind::delivered:
                        if (++dev->delivered == kRecords) {
                            say("drained " + std::to_string(i) + " " + std::to_string(now_ns()));
                        }
                        break;
                    default:
                        break;
                }
            };
            d->dispatcher = std::make_unique<Dispatcher>(*d->store, *d->broker, o);
            devs.push_back(std::move(d));
        }
        // All at once, as a fleet powered up together (or that lost its broker together) is.
        for (auto& d : devs) {
            d->dispatcher->start();
        }
        while (
            !std::all_of(devs.begin(), devs.end(), [](auto& d) { return d->connected.load(); })) {
            std::this_thread::sleep_for(5ms);
        }
        say("up");
        for (std::string cmd; std::getline(std::cin, cmd);) {
            if (cmd == "add") {
                // While the broker is down: the dispatchers are offline, retrying.
                for (int i = 0; i < devices; ++i) {
                    SQLite::Database db(devs[i]->path, SQLite::OPEN_READWRITE);
                    Outbox outbox(db);
                    const std::string topic =
                        "fleet/" + std::to_string(process) + "/" + std::to_string(i);
                    SQLite::Transaction tx(db);
                    for (int k = 0; k < kRecords; ++k) {
                        outbox.add(
                            Message::text(topic, payload_for(static_cast<std::uint64_t>(k))));
                    }
                    tx.commit();
                }
                say("added");
            } else if (cmd == "quit") {
                break;
            }
        }
        for (auto& d : devs) {
            d->dispatcher->stop();
        }
        long pending = 0, attempts = 0;
        for (auto& d : devs) {
            SQLite::Database db(d->path, SQLite::OPEN_READONLY);
            pending +=
                db.execAndGet("SELECT count(*) FROM outpost_records WHERE state = 0").getInt64();
            attempts += d->failed_connects;
        }
        const long cpu = cpu_ms_self();
        const int threads = thread_count();
        say("summary pending=" + std::to_string(pending) +
            " failed_connects=" + std::to_string(attempts) + " cpu_ms=" + std::to_string(cpu) +
            " peak_rss_kib=" + std::to_string(peak_rss_kib()) +
            " threads=" + std::to_string(threads));
        devs.clear();
        return pending == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        say(std::string("error ") + e.what());
        return 1;
    }
}

void fleet_scenarios(const Config& c, std::vector<Result>& out) {
    testing::TempDir dir;
    for (const double jitter : {0.5, 0.0}) {
        const std::string sub = dir.file(jitter > 0 ? "jitter" : "no-jitter");
        const auto t0 = Clock::now();
        const Row row = run_fleet(c, jitter, sub);
        long cpu = 0, rss = 0, rss_sum = 0, threads = 0, failed = 0;
        for (const std::string& s : row.summaries) {
            long p = 0, f = 0, cp = 0, r = 0, t = 0;
            std::sscanf(s.c_str(),
                        "pending=%ld failed_connects=%ld cpu_ms=%ld peak_rss_kib=%ld threads=%ld",
                        &p, &f, &cp, &r, &t);
            cpu += cp;
            rss = std::max(rss, r);
            rss_sum += r;
            threads = std::max(threads, t);
            failed += f;
        }
        const double drain_all = *std::max_element(row.drained_s.begin(), row.drained_s.end());
        auto spread = [](const std::vector<double>& v) {
            char buf[96];
            std::snprintf(buf, sizeof buf, "%.2f / %.2f / %.2f / %.2f", pct(v, 0), pct(v, 0.5),
                          pct(v, 0.9), pct(v, 1.0));
            return std::string(buf);
        };
        char note[1024];
        std::snprintf(
            note, sizeof note,
            "%d devices (%d processes x %d), %d records each added during a %.1f s outage, "
            "backoff %lld ms..%lld s, jitter %.1f. From broker start (up in %.2f s), min / "
            "median / p90 / max: the winning connect() call began %s s (peak %d in 100 ms), "
            "connected %s s (peak %d in 100 ms), drained %s s. Last failed attempts within "
            "%.2f s of each other. %ld failed connects; CPU %.1f s in all children, mosquitto "
            "%.1f s; peak RSS %ld MiB and %ld threads per child of %d, %ld MiB in all",
            kDevices, c.fleet_processes, kDevices / c.fleet_processes, kRecords, row.outage_s,
            static_cast<long long>(kInitial.count()), static_cast<long long>(cap(c).count() / 1000),
            jitter, row.broker_start_s, spread(row.attempt_s).c_str(), row.attempt_peak_100ms,
            spread(row.connect_s).c_str(), row.peak_100ms, spread(row.drained_s).c_str(),
            pct(row.last_failed_s, 1.0) - pct(row.last_failed_s, 0), failed,
            static_cast<double>(cpu) / 1000.0, static_cast<double>(row.mosquitto_cpu_ms) / 1000.0,
            rss / 1024, threads, kDevices / c.fleet_processes, rss_sum / 1024);
        Result r;
        r.scenario = jitter > 0 ? "fleet-jitter" : "fleet-no-jitter";
        r.outpost = drain_all;
        r.unit = "s to drain";
        r.goal = "reported";
        r.note = note;
        out.push_back(r);
        std::fprintf(stderr, "outpost-bench: %s took %.1f s: %s\n", r.scenario.c_str(),
                     seconds_since(t0), note);
    }
}

}  // namespace outpost::bench

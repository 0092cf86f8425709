// drain-qos1, drain-naive, drain-rtt20, latency, backlog-1m, idle: the dispatch side against a
// raw paho publisher and the naive outbox loop, all on the bench's own mosquitto.
#include <SQLiteCpp/SQLiteCpp.h>
#include <mqtt/async_client.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "bench.hpp"
#include "outpost/dispatcher.hpp"
#include "outpost/mqtt_broker.hpp"
#include "outpost/outbox.hpp"
#include "outpost/sqlite_store.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::bench {

using namespace std::chrono_literals;

namespace {

std::string client_id(const char* what) {
    static std::atomic<int> n{0};
    return std::string("outpost-bench-") + what + "-" + std::to_string(::getpid()) + "-" +
           std::to_string(n++);
}

// A paho client as the baselines use it: MQTT 5 (like MqttBroker's default), no persistence,
// queue large enough for the window.
struct RawClient {
    explicit RawClient(const std::string& uri)
        : create(MQTTVERSION_5), cli(uri, client_id("raw"), with_buffer(create), nullptr) {
        mqtt::connect_options c;
        c.set_mqtt_version(MQTTVERSION_5);
        c.set_clean_start(true);
        c.set_automatic_reconnect(false);
        c.set_max_inflight(65535);
        cli.connect(c)->wait();
    }
    ~RawClient() {
        try {
            cli.disconnect()->wait_for(2s);
        } catch (...) {
        }
    }
    static const mqtt::create_options& with_buffer(mqtt::create_options& o) {
        o.set_max_buffered_messages(1 << 20);
        return o;
    }
    mqtt::create_options create;
    mqtt::async_client cli;
};

// Counts acknowledgements for a window of outstanding publishes.
class Window : public virtual mqtt::iaction_listener {
  public:
    explicit Window(std::size_t limit) : limit_(limit) {}
    void acquire() {
        std::unique_lock lock(m_);
        cv_.wait(lock, [&] { return outstanding_ < limit_; });
        ++outstanding_;
    }
    void wait_empty() {
        std::unique_lock lock(m_);
        cv_.wait(lock, [&] { return outstanding_ == 0; });
    }
    std::uint64_t failures() const { return failures_; }

  private:
    void release() {
        {
            std::lock_guard lock(m_);
            --outstanding_;
        }
        cv_.notify_all();
    }
    void on_success(const mqtt::token&) override { release(); }
    void on_failure(const mqtt::token&) override {
        ++failures_;
        release();
    }
    std::mutex m_;
    std::condition_variable cv_;
    std::size_t limit_;
    std::size_t outstanding_ = 0;
    std::atomic<std::uint64_t> failures_{0};
};

// CPU time of each thread of this process in microseconds (schedstat: nanosecond accounting,
// unlike the 10 ms ticks of stat), by thread name.
std::map<std::string, long> thread_cpu_us() {
    std::map<std::string, long> out;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
        std::string name;
        std::getline(std::ifstream(task.path() / "comm"), name);
        long ns = 0;
        std::ifstream(task.path() / "schedstat") >> ns;
        out[name] += ns / 1000;
    }
    return out;
}

long cpu_ms() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000L +
           (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1000L;
}

Result rate_result(std::string scenario, double ours, double base, double goal, std::string note) {
    Result r;
    r.scenario = std::move(scenario);
    r.outpost = ours;
    r.baseline = base;
    r.ratio = ours / base;
    r.unit = "msg/s";
    r.goal = "ratio >= " + std::to_string(goal).substr(0, std::to_string(goal).find('.') + 3);
    r.met = *r.ratio >= goal;
    r.note = std::move(note);
    return r;
}

// MqttOptions' default id property.
constexpr const char* kIdProperty = "outpost-id";

// Runs this binary in child mode to drain `db` (outpost's defaults, the id property sent);
// returns {rate, peak RSS KiB}.
std::pair<double, long> drain_in_child(const Config& c, const std::string& db, std::uint64_t n) {
    int out[2];
    if (::pipe(out) != 0) {
        throw std::runtime_error("pipe failed");
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::close(out[0]);
        ::close(out[1]);
        const std::string count = std::to_string(n);
        ::execl(c.self_exe.c_str(), c.self_exe.c_str(), "--drain-child", db.c_str(),
                c.broker_uri.c_str(), count.c_str(), kIdProperty, static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(out[1]);
    std::string text;
    char buf[256];
    ssize_t got;
    while ((got = ::read(out[0], buf, sizeof buf)) > 0) {
        text.append(buf, static_cast<std::size_t>(got));
    }
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    double rate = 0;
    long rss = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        std::sscanf(text.c_str(), "%lf %ld", &rate, &rss) != 2) {
        throw std::runtime_error("the drain child failed: " + text);
    }
    return {rate, rss};
}

// Replaces whatever is at `path` with a backlog of `n` pending records.
void fresh_backlog(const std::string& path, std::uint64_t n) {
    for (const char* suffix : {"", "-wal", "-shm"}) {
        std::filesystem::remove(path + suffix);
    }
    prefill(path, n);
}

// Runs `base` and `ours` in turn, `rounds` times each, telling each round on stderr; returns
// their medians {base, ours}.
template <typename Base, typename Ours>
std::pair<double, double> take_turns(const std::string& name, int rounds, Base base, Ours ours) {
    std::vector<double> b, o;
    for (int i = 0; i < rounds; ++i) {
        b.push_back(base());
        o.push_back(ours());
        std::fprintf(stderr, "outpost-bench: %s round %d/%d: baseline %.0f, outpost %.0f\n",
                     name.c_str(), i + 1, rounds, b.back(), o.back());
    }
    return {median(b), median(o)};
}

}  // namespace

double RawPublisher::drain(const std::string& uri, std::uint64_t n, std::size_t window,
                           const std::string& id_property) {
    RawClient client(uri);
    Window w(window);
    const std::string body = payload_for(0);
    // A uid's shape: 36 characters, a counter in the last 12.
    std::string id = "01890a5d-ac96-774b-bcce-000000000000";
    const auto t0 = Clock::now();
    for (std::uint64_t i = 0; i < n; ++i) {
        w.acquire();
        auto msg = mqtt::make_message("bench/raw", body.data(), body.size(), 1, false);
        if (!id_property.empty()) {
            std::uint64_t v = i;
            for (std::size_t k = id.size(); k-- > id.size() - 12; v >>= 4) {
                id[k] = "0123456789abcdef"[v & 15];
            }
            mqtt::properties props;
            props.add(mqtt::property(mqtt::property::USER_PROPERTY, id_property, id));
            msg->set_properties(std::move(props));
        }
        client.cli.publish(msg, nullptr, w);
    }
    w.wait_empty();
    const double rate = static_cast<double>(n) / seconds_since(t0);
    if (w.failures() != 0) {
        throw std::runtime_error("raw publisher: " + std::to_string(w.failures()) + " failures");
    }
    return rate;
}

std::vector<double> RawPublisher::round_trips(const std::string& uri, std::size_t n,
                                              std::chrono::milliseconds interval) {
    RawClient client(uri);
    const std::string body = payload_for(0);
    std::vector<double> ms;
    auto next = Clock::now();
    for (std::size_t i = 0; i < n; ++i) {
        std::this_thread::sleep_until(next);
        next += interval;
        const auto t0 = Clock::now();
        client.cli.publish("bench/latency", body.data(), body.size(), 1, false)->wait();
        ms.push_back(seconds_since(t0) * 1000.0);
    }
    return ms;
}

double naive_drain(const std::string& path, const std::string& uri, std::uint64_t n,
                   const std::string& synchronous) {
    SQLite::Database db(path, SQLite::OPEN_READWRITE);
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("PRAGMA synchronous = " + synchronous);
    RawClient client(uri);
    SQLite::Statement select(db,
                             "SELECT id, topic, payload, qos FROM outpost_records "
                             "WHERE state = 0 ORDER BY id LIMIT 100");
    SQLite::Statement mark(db, "UPDATE outpost_records SET state = 1, done_at = ? WHERE id = ?");
    std::uint64_t sent = 0;
    const auto t0 = Clock::now();
    while (sent < n) {
        struct Row {
            std::int64_t id;
            std::string topic, payload;
            int qos;
        };
        std::vector<Row> rows;
        while (select.executeStep()) {
            rows.push_back({select.getColumn(0).getInt64(), select.getColumn(1).getString(),
                            select.getColumn(2).getString(), select.getColumn(3).getInt()});
        }
        select.reset();
        if (rows.empty()) {
            break;
        }
        for (const Row& r : rows) {
            client.cli.publish(r.topic, r.payload.data(), r.payload.size(), r.qos, false)->wait();
            mark.bind(1, static_cast<std::int64_t>(sent));
            mark.bind(2, r.id);
            mark.exec();
            mark.reset();
            ++sent;
        }
    }
    return static_cast<double>(sent) / seconds_since(t0);
}

double outpost_drain(const std::string& path, const std::string& uri, std::uint64_t n,
                     std::size_t window, const std::string& synchronous,
                     const std::string& id_property) {
    SqliteStoreOptions so;
    so.synchronous = synchronous;
    SqliteStore store(path, so);
    MqttOptions mo;
    mo.servers = {uri};
    mo.client_id = client_id("outpost");
    mo.id_property = id_property;
    MqttBroker broker(mo);
    DispatcherOptions o;
    o.window = window;
    Dispatcher d(store, broker, o);
    broker.connect(std::chrono::seconds(10));  // timed like the raw publisher: once connected
    const auto t0 = Clock::now();
    d.start();
    if (!d.drain(std::chrono::minutes(10))) {
        throw std::runtime_error("outpost drain did not finish: " + d.stats().last_error);
    }
    const double secs = seconds_since(t0);
    const DispatcherStats s = d.stats();
    d.stop();
    if (s.delivered < n) {
        throw std::runtime_error("outpost drain delivered " + std::to_string(s.delivered) + " of " +
                                 std::to_string(n));
    }
    return static_cast<double>(n) / secs;
}

int drain_child(const std::string& db, const std::string& uri, std::uint64_t expected,
                const std::string& id_property) {
    try {
        const double rate = outpost_drain(db, uri, expected, 100, "NORMAL", id_property);
        std::printf("%.1f %ld\n", rate, peak_rss_kib());
        return 0;
    } catch (const std::exception& e) {
        std::printf("error: %s\n", e.what());
        return 1;
    }
}

void drain_scenarios(const Config& c, std::vector<Result>& out) {
    testing::TempDir dir;
    // drain-qos1: outpost against the raw publisher, same window, 100 in flight, the same
    // packets on the wire (no id property on either side); drain-qos1-id: both sides add a
    // 36-character id user property to every message, as outpost does by default.
    // Rates on this VM swing by a third from one run to the next: the two sides take turns,
    // `rounds` times, and each reports its median.
    const int rounds = c.quick ? 1 : 3;
    for (const std::string id : {"", kIdProperty}) {
        const std::uint64_t n = c.quick ? 10'000 : 100'000;
        const std::string db = dir.file("qos1" + id + ".db");
        const std::string name = id.empty() ? "drain-qos1" : "drain-qos1-id";
        const auto [base, ours] = take_turns(
            name, rounds, [&] { return RawPublisher::drain(c.broker_uri, n, 100, id); },
            [&] {
                fresh_backlog(db, n);
                return outpost_drain(db, c.broker_uri, n, 100, "NORMAL", id);
            });
        out.push_back(
            rate_result(id.empty() ? "drain-qos1" : "drain-qos1-id", ours, base, 0.90,
                        std::to_string(n) + " x 200 B, QoS 1, window 100, " +
                            (id.empty() ? "no id property (the same packets)"
                                        : "both add user property " + id + " (outpost's default)") +
                            ", median of " + std::to_string(rounds)));
    }
    // drain-naive at NORMAL and FULL.
    for (const std::string sync : {"NORMAL", "FULL"}) {
        const std::uint64_t n = c.quick ? 2'000 : 20'000;
        const std::string a = dir.file("naive-" + sync + ".db");
        const std::string b = dir.file("ours-" + sync + ".db");
        const std::string name = "drain-naive-" + std::string(sync == "FULL" ? "full" : "normal");
        const auto [base, ours] = take_turns(
            name, rounds,
            [&] {
                fresh_backlog(a, n);
                return naive_drain(a, c.broker_uri, n, sync);
            },
            [&] {
                fresh_backlog(b, n);
                return outpost_drain(b, c.broker_uri, n, 100, sync, "");
            });
        out.push_back(rate_result(name, ours, base, sync == "FULL" ? 10.0 : 2.5,
                                  std::to_string(n) + " x 200 B, synchronous=" + sync +
                                      ", the same packets (no id property), median of " +
                                      std::to_string(rounds)));
    }
    // drain-rtt20: through a proxy that holds every chunk 10 ms each way.
    {
        DelayProxy proxy(c.broker_port, 10ms);
        const std::uint64_t naive_n = c.quick ? 100 : 400;
        const std::uint64_t ours_n = c.quick ? 5'000 : 30'000;
        const std::string a = dir.file("rtt-naive.db");
        const std::string b = dir.file("rtt-ours.db");
        prefill(a, naive_n);
        prefill(b, ours_n);
        const double base = naive_drain(a, proxy.uri(), naive_n, "NORMAL");
        const double ours = outpost_drain(b, proxy.uri(), ours_n, 1000, "NORMAL", "");
        out.push_back(rate_result("drain-rtt20", ours, base, 50.0,
                                  "20 ms round trip; outpost window 1000; naive " +
                                      std::to_string(naive_n) + " msg, outpost " +
                                      std::to_string(ours_n)));
    }
}

void latency_scenario(const Config& c, std::vector<Result>& out) {
    const std::size_t n = c.quick ? 200 : 1000;
    testing::TempDir dir;
    const std::string path = dir.file("latency.db");
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE readings (id INTEGER PRIMARY KEY, value REAL)");
    Outbox outbox(db);  // WAL
    // The usual setting of a WAL app (survives a crash; FULL adds an fsync to every commit).
    db.exec("PRAGMA synchronous = NORMAL");
    SqliteStore store(path);
    MqttOptions mo;
    mo.servers = {c.broker_uri};
    mo.client_id = client_id("latency");
    MqttBroker broker(mo);

    std::mutex m;
    std::condition_variable cv;
    std::unordered_map<std::int64_t, Clock::time_point> acked;
    DispatcherOptions o;
    o.on_event = [&](const DispatchEvent& e) {
        if (e.kind == DispatchEvent::Kind::delivered) {
            std::lock_guard lock(m);
            acked[e.record_id] = Clock::now();
            cv.notify_all();
        }
    };
    Dispatcher d(store, broker, o);
    d.start();
    while (!d.stats().connected) {
        std::this_thread::sleep_for(1ms);
    }
    std::vector<double> ours;
    const std::string body = payload_for(0);
    auto next = Clock::now();
    for (std::size_t i = 0; i < n; ++i) {
        std::this_thread::sleep_until(next);
        next += 10ms;  // 100 msg/s
        const auto t0 = Clock::now();
        std::int64_t id;
        {
            SQLite::Transaction tx(db);
            db.exec("INSERT INTO readings (value) VALUES (21.5)");
            id = outbox.add(Message::text("bench/latency", body));
            tx.commit();
        }
        std::unique_lock lock(m);
        if (!cv.wait_for(lock, 10s, [&] { return acked.count(id) != 0; })) {
            throw std::runtime_error("latency: no PUBACK within 10 s");
        }
        ours.push_back(std::chrono::duration<double, std::milli>(acked[id] - t0).count());
    }
    d.stop();
    std::vector<double> base = RawPublisher::round_trips(c.broker_uri, n, 10ms);
    auto pct = [](std::vector<double> v, double p) {
        std::sort(v.begin(), v.end());
        return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
    };
    const double p50 = pct(ours, 0.50), p99 = pct(ours, 0.99);
    const double b50 = pct(base, 0.50), b99 = pct(base, 0.99);
    Result r50{
        "latency-p50",
        p50,
        b50,
        b50 / p50,
        "ms",
        "p50 <= 2 ms",
        p50 <= 2.0,
        "add + commit (synchronous=NORMAL) until PUBACK, 100 msg/s, " + std::to_string(n) + " msg"};
    Result r99{"latency-p99", p99,
               b99,           b99 / p99,
               "ms",          "p99 <= 10 ms",
               p99 <= 10.0,   "baseline: raw paho publish-to-PUBACK"};
    out.push_back(r50);
    out.push_back(r99);
}

void backlog_scenario(const Config& c, std::vector<Result>& out) {
    testing::TempDir dir;
    const std::uint64_t big = c.quick ? 100'000 : 1'000'000;
    const std::string small_db = dir.file("10k.db");
    const std::string big_db = dir.file("big.db");
    prefill(small_db, 10'000);
    const auto [small_rate, small_rss] = drain_in_child(c, small_db, 10'000);
    prefill(big_db, big);
    const auto [big_rate, big_rss] = drain_in_child(c, big_db, big);
    // The reference rate: a drain-qos1 run of 100,000 in a child, measured now.
    const std::string ref_db = dir.file("ref.db");
    const std::uint64_t ref_n = c.quick ? 10'000 : 100'000;
    prefill(ref_db, ref_n);
    const auto [ref_rate, ref_rss] = drain_in_child(c, ref_db, ref_n);
    (void)ref_rss;
    (void)small_rate;
    Result rate = rate_result(
        "backlog-1m-rate", big_rate, ref_rate, 0.90,
        std::to_string(big) + " pending; baseline: drain-qos1 rate of " + std::to_string(ref_n));
    rate.goal = "within 10% of drain-qos1";
    out.push_back(rate);
    Result rss;
    rss.scenario = "backlog-1m-rss";
    rss.outpost = static_cast<double>(big_rss) / 1024.0;
    rss.baseline = static_cast<double>(small_rss) / 1024.0;
    rss.ratio = *rss.baseline / rss.outpost;
    rss.unit = "MiB";
    rss.goal = "<= 16 MiB and <= +10% of 10,000";
    rss.met = rss.outpost <= 16.0 && rss.outpost <= *rss.baseline * 1.10;
    rss.note = "peak RSS of the dispatching process; baseline: 10,000 pending";
    out.push_back(rss);
}

// Bytes this process has caused to be written to storage so far (/proc/self/io write_bytes:
// counted when a page-cache page is dirtied, so what the disk or flash will get).
long long storage_write_bytes() {
    std::ifstream io("/proc/self/io");
    std::string name;
    long long value = 0;
    while (io >> name >> value) {
        if (name == "write_bytes:") {
            return value;
        }
    }
    throw std::runtime_error(
        "/proc/self/io has no write_bytes (kernel without task I/O accounting)");
}

void flash_scenarios(const Config& c, std::vector<Result>& out) {
    testing::TempDir dir;
    const std::uint64_t n = c.quick ? 2'000 : 20'000;
    for (const std::string sync : {"NORMAL", "FULL"}) {
        const std::string a = dir.file("flash-naive-" + sync + ".db");
        const std::string b = dir.file("flash-ours-" + sync + ".db");
        // Written per delivered message by `drain`, from a clean page cache, up to and including
        // the checkpoint when its connection closes.
        auto per_message = [&](const std::string& db, const std::function<void()>& drain) {
            fresh_backlog(db, n);
            ::sync();
            const long long before = storage_write_bytes();
            drain();
            return static_cast<double>(storage_write_bytes() - before) / static_cast<double>(n);
        };
        const double base = per_message(a, [&] { naive_drain(a, c.broker_uri, n, sync); });
        const double ours =
            per_message(b, [&] { outpost_drain(b, c.broker_uri, n, 100, sync, ""); });
        Result r;
        r.scenario = "flash-drain-" + std::string(sync == "FULL" ? "full" : "normal");
        r.outpost = ours;
        r.baseline = base;
        r.ratio = base / ours;
        r.unit = "B/msg";
        r.goal = "reported";
        r.note = "bytes written to storage per delivered message (write_bytes), " +
                 std::to_string(n) + " x 200 B, synchronous=" + sync + "; baseline: the naive loop";
        out.push_back(r);
    }
}

void idle_scenario(const Config& c, std::vector<Result>& out) {
    const auto span = c.quick ? 2s : 10s;
    testing::TempDir dir;
    const std::string path = dir.file("idle.db");
    prefill(path, 0);
    SqliteStore store(path);
    MqttOptions mo;
    mo.servers = {c.broker_uri};
    mo.client_id = client_id("idle");
    MqttBroker broker(mo);
    Dispatcher d(store, broker);
    d.start();
    while (!d.stats().connected) {
        std::this_thread::sleep_for(1ms);
    }
    const double scale = 10.0 / std::chrono::duration<double>(span).count();
    long t0 = cpu_ms();
    std::this_thread::sleep_for(span);
    const double up = static_cast<double>(cpu_ms() - t0) * scale;
    c.stop_broker();
    std::this_thread::sleep_for(1s);  // let the loss be noticed
    const auto threads_before = thread_cpu_us();
    t0 = cpu_ms();
    std::this_thread::sleep_for(span);
    const double down = static_cast<double>(cpu_ms() - t0) * scale;
    std::string breakdown;
    for (const auto& [name, us] : thread_cpu_us()) {
        const auto it = threads_before.find(name);
        const double ms = static_cast<double>(us - (it == threads_before.end() ? 0 : it->second)) *
                          scale / 1000.0;
        char buf[96];
        std::snprintf(buf, sizeof buf, "%s%s %.1f", breakdown.empty() ? "" : ", ", name.c_str(),
                      ms);
        breakdown += buf;
    }
    d.stop();
    c.start_broker();
    for (const auto& [name, v] : {std::pair{"idle-broker-up", up}, {"idle-broker-down", down}}) {
        Result r;
        r.scenario = name;
        r.outpost = v;
        r.unit = "ms CPU / 10 s";
        r.goal = "<= 10 ms";
        r.met = v <= 10.0;
        r.note = "whole process CPU (dispatcher + paho threads)";
        if (name == std::string("idle-broker-down")) {
            r.note += "; per thread, ms: " + breakdown;
        }
        out.push_back(r);
    }
}

}  // namespace outpost::bench

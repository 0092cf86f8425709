// `outpost sync`: deliver the pending records of a device that was offline, then exit.
//
// The same machinery as the app's own dispatcher (SqliteStore + Dispatcher + MqttBroker), run
// until the outbox is drained or the timeout passes. The lease makes it refuse while the app's
// dispatcher runs: two dispatchers on one file would send everything twice.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "command.hpp"
#include "duration.hpp"
#include "outpost/admin.hpp"
#include "outpost/dispatcher.hpp"
#include "outpost/error.hpp"
#include "outpost/mqtt_broker.hpp"
#include "outpost/process.hpp"
#include "outpost/sqlite_store.hpp"
#include "sync.hpp"
#include "text.hpp"

namespace outpost::cli {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_signal(int) {
    g_interrupted = 1;
}

// SIGINT/SIGTERM end the sync cleanly (the lease is released, in-flight acks are written).
class SignalGuard {
  public:
    SignalGuard() {
        struct sigaction sa = {};
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGINT, &sa, &old_int_);
        ::sigaction(SIGTERM, &sa, &old_term_);
    }
    ~SignalGuard() {
        ::sigaction(SIGINT, &old_int_, nullptr);
        ::sigaction(SIGTERM, &old_term_, nullptr);
    }
    SignalGuard(const SignalGuard&) = delete;
    SignalGuard& operator=(const SignalGuard&) = delete;

  private:
    struct sigaction old_int_ = {}, old_term_ = {};
};

std::string read_password(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot open password file " + path);
    }
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') {
        line.pop_back();
    }
    return line;
}

// `text` with every broker URI replaced by its redacted form and the password masked: messages
// from lower layers may quote a URI with its user:password@ part.
std::string scrub(std::string text, const std::vector<std::string>& uris,
                  const std::optional<std::string>& password) {
    auto replace_all = [&text](const std::string& from, const std::string& to) {
        if (from.empty() || from == to) {
            return;
        }
        for (std::size_t at = text.find(from); at != std::string::npos;
             at = text.find(from, at + to.size())) {
            text.replace(at, from.size(), to);
        }
    };
    for (const std::string& u : uris) {
        replace_all(u, redact_uri(u));
    }
    if (password) {
        replace_all(*password, "***");
    }
    return text;
}

// The option of `outpost sync` that sets each MqttOptions field it fills in, by
// InvalidConfig::field() (an index, servers[1], names the same option as servers).
constexpr std::pair<std::string_view, std::string_view> kOptionOfField[] = {
    {"servers", "--broker"},         {"client_id", "--client-id"}, {"username", "--username"},
    {"password", "--password-file"}, {"tls.ca_file", "--ca-file"}, {"tls.cert_file", "--cert-file"},
    {"tls.key_file", "--key-file"},
};

std::optional<std::string_view> option_of(std::string_view field) {
    field = field.substr(0, field.find('['));
    for (const auto& [name, option] : kOptionOfField) {
        if (name == field) {
            return option;
        }
    }
    return std::nullopt;
}

// `text`, the message of `e`, in the words of the command line: its "MqttOptions.FIELD" becomes
// the option that sets the field, and so does another field it names ("set without
// tls.cert_file"). A dotted name cannot be an ordinary word of the message.
std::string option_names(const InvalidConfig& e, std::string text) {
    if (const auto option = option_of(e.field())) {
        const std::string prefix = "MqttOptions." + e.field();
        if (text.starts_with(prefix)) {
            text.replace(0, prefix.size(), *option);
        }
    }
    for (const auto& [name, option] : kOptionOfField) {
        if (name.find('.') == std::string_view::npos) {
            continue;
        }
        for (std::size_t at = text.find(name); at != std::string::npos;
             at = text.find(name, at + option.size())) {
            text.replace(at, name.size(), option);
        }
    }
    return text;
}

std::string brokers_text(const std::vector<std::string>& uris) {
    std::string out;
    for (const std::string& u : uris) {
        out += (out.empty() ? "" : ", ") + redact_uri(u);
    }
    return out;
}

// What the dispatcher told us, kept for the messages at the end.
struct EventLog {
    std::mutex mutex;
    std::string last_connection_error;
    bool lease_lost = false;
};

// Progress output: a bar on a terminal, plain lines otherwise, JSON Lines with --json.
class Progress {
  public:
    enum class Mode { none, bar, lines, json };

    Progress(Mode mode, std::uint64_t initial_pending)
        : mode_(mode), initial_(initial_pending), start_(Clock::now()), last_line_(start_) {}

    void update(const DispatcherStats& s, std::uint64_t pending, bool final_update = false) {
        const auto now = Clock::now();
        const double secs = std::chrono::duration<double>(now - start_).count();
        const double rate = secs > 0 ? static_cast<double>(s.delivered) / secs : 0.0;
        const std::uint64_t done = s.delivered + s.dead + s.expired;
        const std::uint64_t total = std::max<std::uint64_t>(initial_, done + pending);
        std::string eta = "-";
        if (pending == 0) {
            eta = "0s";
        } else if (rate > 0) {
            eta = format_duration(Ms(
                static_cast<std::int64_t>(std::ceil(static_cast<double>(pending) / rate) * 1000)));
        }
        char rate_text[32];
        std::snprintf(rate_text, sizeof rate_text, "%.0f/s", rate);
        switch (mode_) {
            case Mode::none:
                break;
            case Mode::bar: {
                constexpr int kWidth = 30;
                const double frac = total == 0 ? 1.0 : static_cast<double>(done) / total;
                const int filled = static_cast<int>(frac * kWidth);
                std::cerr << "\r\x1b[K[" << std::string(filled, '#')
                          << std::string(kWidth - filled, '.') << "] " << done << '/' << total
                          << ' ' << static_cast<int>(frac * 100) << "% " << rate_text << " ETA "
                          << eta << (s.connected || final_update ? "" : " (not connected)");
                if (final_update) {
                    std::cerr << '\n';
                }
                std::cerr.flush();
                break;
            }
            case Mode::lines:
                if (final_update || now - last_line_ >= std::chrono::seconds(5)) {
                    last_line_ = now;
                    std::cerr << "sync: delivered " << s.delivered << ", dead " << s.dead
                              << ", expired " << s.expired << ", pending " << pending << ", "
                              << rate_text << ", ETA " << eta
                              << (s.connected || final_update ? "" : ", not connected") << '\n';
                }
                break;
            case Mode::json:
                if (final_update || now - last_line_ >= std::chrono::seconds(1)) {
                    last_line_ = now;
                    std::cout << json{{"event", "progress"},
                                      {"delivered", s.delivered},
                                      {"dead", s.dead},
                                      {"expired", s.expired},
                                      {"pending", pending},
                                      {"in_flight", s.in_flight},
                                      {"connected", s.connected},
                                      {"rate_per_s", std::round(rate * 10) / 10},
                                      {"elapsed_ms", static_cast<std::int64_t>(secs * 1000)}}
                                     .dump()
                              << std::endl;
                }
                break;
        }
    }

  private:
    Mode mode_;
    std::uint64_t initial_;
    Clock::time_point start_, last_line_;
};

Progress::Mode progress_mode(const Common& common, const SyncArgs& args) {
    if (common.json) {
        return Progress::Mode::json;
    }
    if (args.progress == "none")
        return Progress::Mode::none;
    if (args.progress == "bar")
        return Progress::Mode::bar;
    if (args.progress == "lines")
        return Progress::Mode::lines;
    return ::isatty(STDERR_FILENO) ? Progress::Mode::bar : Progress::Mode::lines;
}

}  // namespace

int run_sync(const Common& common, const SyncArgs& args) {
    const Ms timeout = parse_duration(args.timeout);
    const auto deadline = Clock::now() + timeout;

    MqttOptions mqtt;
    mqtt.servers = args.brokers;
    mqtt.client_id = args.client_id.empty() ? "outpost-sync-" + this_process().host + "-" +
                                                  std::to_string(this_process().pid)
                                            : args.client_id;
    mqtt.version = args.mqtt_version == 3   ? MqttVersion::v3_1_1
                   : args.mqtt_version == 5 ? MqttVersion::v5
                                            : MqttVersion::v5_or_3_1_1;
    mqtt.username = args.username;
    if (args.password_file) {
        mqtt.password = read_password(*args.password_file);
    }
    if (args.ca_file) {
        mqtt.tls.ca_file = *args.ca_file;
    }
    if (args.cert_file) {
        mqtt.tls.cert_file = *args.cert_file;
    }
    if (args.key_file) {
        mqtt.tls.key_file = *args.key_file;
    }
    mqtt.connect_timeout = std::clamp(timeout, Ms(1000), Ms(10'000));
    // Bad broker options (a malformed URI, a key file without a certificate) are usage errors,
    // found before the file is opened. Nothing touches the network yet.
    std::unique_ptr<MqttBroker> broker_owner;
    try {
        broker_owner = std::make_unique<MqttBroker>(mqtt);
    } catch (const InvalidConfig& e) {
        throw UsageError("sync: " + option_names(e, scrub(e.what(), args.brokers, mqtt.password)));
    }
    MqttBroker& broker = *broker_owner;

    // The file and the lease first, read-only, before any network traffic: connecting first
    // could take over the MQTT session of a live dispatcher that uses the same client id.
    Admin admin(common.db, admin_options(common, true));
    if (const auto lease = admin.lease(); lease && lease->blocks_new_dispatcher()) {
        const std::int64_t now = SystemClock::instance().wall_ms();
        throw LeaseHeld("another dispatcher holds the lease of " + common.db + ": pid " +
                        std::to_string(lease->holder.pid) + " on " + lease->holder.host +
                        ", last heartbeat " +
                        format_duration(Ms(now - lease->holder.heartbeat_at)) +
                        " ago; stop it (the app) or wait until the lease expires in " +
                        format_duration(Ms(lease->holder.expires_at - now)) + ", then retry");
    }
    const std::uint64_t initial_pending = admin.count(RecordState::pending);

    Progress progress(progress_mode(common, args), initial_pending);

    if (initial_pending == 0) {
        // Nothing to send: no connection, no lease taken.
        if (common.json) {
            std::cout << json{{"event", "done"},
                              {"result", "drained"},
                              {"delivered", 0},
                              {"pending", 0}}
                             .dump()
                      << '\n';
        } else {
            std::cout << "nothing pending: 0 records to deliver\n";
        }
        return kExitOk;
    }

    // A broker that refuses us for good (bad credentials, TLS verification, a bad URI) is an
    // error now; one that is merely unreachable is what an offline device expects: the
    // dispatcher keeps reconnecting with backoff until the timeout.
    EventLog log;
    try {
        broker.connect(std::min(timeout, Ms(30'000)));
    } catch (const BrokerError& e) {
        if (!e.transient()) {
            // The library's text already names the servers; scrub() redacts their credentials.
            throw BrokerError(scrub(e.what(), args.brokers, mqtt.password), false, e.code());
        }
        std::lock_guard lock(log.mutex);
        log.last_connection_error = scrub(e.what(), args.brokers, mqtt.password);
    }

    SqliteStore store(common.db, SqliteStoreOptions{admin_options(common, false).busy_timeout});
    DispatcherOptions options;
    options.window = args.window;
    options.on_event = [&log, &args, &mqtt](const DispatchEvent& e) {
        if (e.kind == DispatchEvent::Kind::disconnected && !e.detail.empty()) {
            std::lock_guard lock(log.mutex);
            log.last_connection_error = scrub(e.detail, args.brokers, mqtt.password);
        } else if (e.kind == DispatchEvent::Kind::lease_lost) {
            std::lock_guard lock(log.mutex);
            log.lease_lost = true;
        }
    };
    Dispatcher dispatcher(store, broker, options);
    SignalGuard signals;
    dispatcher.start();  // throws LeaseHeld if the app's dispatcher won the race

    bool drained = false;
    for (;;) {
        const auto now = Clock::now();
        if (now >= deadline || g_interrupted != 0) {
            break;
        }
        const Ms tick = std::min(std::chrono::duration_cast<Ms>(deadline - now), Ms(250));
        if (dispatcher.drain(tick)) {
            drained = true;
            break;
        }
        {
            std::lock_guard lock(log.mutex);
            if (log.lease_lost) {
                break;
            }
        }
        progress.update(dispatcher.stats(), admin.count(RecordState::pending));
    }
    dispatcher.stop(Ms(5000));
    broker.disconnect(Ms(1000));

    const DispatcherStats s = dispatcher.stats();
    const std::uint64_t pending = admin.count(RecordState::pending);
    progress.update(s, pending, true);
    std::string last_error;
    bool lease_lost = false;
    {
        std::lock_guard lock(log.mutex);
        last_error = log.last_connection_error;
        lease_lost = log.lease_lost;
    }
    const bool ok = pending == 0 && (drained || !lease_lost);
    // Records this sync gave up on (the retry cap, a ttl): the outbox may be drained, but not
    // everything reached the broker. Records that were dead before the sync are not counted.
    const std::uint64_t given_up = s.dead + s.expired;
    const char* result = ok && given_up == 0  ? "drained"
                         : ok                 ? "drained_with_failures"
                         : g_interrupted != 0 ? "interrupted"
                         : lease_lost         ? "lease_lost"
                                              : "timeout";
    if (common.json) {
        std::cout << json{{"event", "done"},
                          {"result", result},
                          {"delivered", s.delivered},
                          {"unrouted", s.unrouted},
                          {"dead", s.dead},
                          {"expired", s.expired},
                          {"pending", pending},
                          {"mqtt_version", broker.version() == MqttVersion::v5 ? 5 : 4},
                          {"last_error", last_error.empty() ? json(nullptr) : json(last_error)}}
                         .dump(-1, ' ', false, json::error_handler_t::replace)
                  << '\n';
    } else {
        std::cout << "delivered " << s.delivered << ", dead " << s.dead << ", expired " << s.expired
                  << ", pending " << pending << '\n';
    }
    if (s.reconnects > 0 && args.mqtt_version == 0 && broker.version() == MqttVersion::v3_1_1) {
        std::cerr << "outpost: note: the broker does not speak MQTT 5, so sync spoke MQTT 3.1.1: "
                     "no outpost-id property, headers, content type or expiry were sent (give "
                     "--mqtt-version 3 to say so, or 5 to refuse such a broker)\n";
    }
    if (s.unrouted > 0) {
        std::cerr << "outpost: note: " << s.unrouted
                  << (s.unrouted == 1 ? " delivered record was" : " delivered records were")
                  << " acknowledged with PUBACK reason 0x10 \"no matching subscribers\": the "
                     "broker had no subscriber for "
                  << (s.unrouted == 1 ? "it, so nobody received it"
                                      : "them, so nobody received them")
                  << " unless the broker keeps messages for later subscribers\n";
    }
    if (ok && given_up == 0) {
        return kExitOk;
    }
    // "1 went dead, 2 expired during the sync (see: outpost list --db F --state dead, ...)".
    std::string failures;
    if (given_up > 0) {
        std::string see;
        if (s.dead > 0) {
            failures = std::to_string(s.dead) + " went dead";
            see = "outpost list --db " + shell_word(common.db) + " --state dead";
        }
        if (s.expired > 0) {
            failures += (failures.empty() ? "" : ", ") + std::to_string(s.expired) + " expired";
            see += (see.empty() ? "" : ", ") + std::string("outpost list --db ") +
                   shell_word(common.db) + " --state expired";
        }
        failures += " during the sync (see: " + see + ")";
    }
    if (ok) {
        std::cerr << "outpost: error: sync drained the outbox, but " << given_up
                  << (given_up == 1 ? " record was" : " records were")
                  << " not delivered: " << one_line(failures) << '\n';
        return kExitSyncGaveUp;
    }
    std::string why = std::to_string(pending) + " records still pending";
    if (!last_error.empty() && !s.connected) {
        why += " (broker " + brokers_text(args.brokers) + ": " + last_error + ")";
    }
    if (!failures.empty()) {
        why += "; " + failures;
    }
    if (g_interrupted != 0) {
        std::cerr << "outpost: error: sync interrupted; " << one_line(why) << '\n';
        return kExitFailure;
    }
    if (lease_lost) {
        std::cerr << "outpost: error: sync lost its lease to another dispatcher; " << one_line(why)
                  << '\n';
        return kExitFailure;
    }
    std::cerr << "outpost: error: sync timed out after " << format_duration(timeout) << "; "
              << one_line(why) << '\n';
    return kExitSyncTimeout;
}

}  // namespace outpost::cli

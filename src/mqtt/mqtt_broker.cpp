// MqttBroker: the MessageBroker contract on top of paho-mqtt-cpp 1.2 (checked against the
// installed headers, not the newer online docs).
//
// What lives here: the paho client's life cycle (connect, loss, disconnect, destroy), the
// completion plumbing around the ledger, and flow control for the server's receive maximum.
// Elsewhere in src/mqtt: publish_ledger (each publish completes exactly once, no paho),
// message_mapping (Record -> paho message, and its packet size), connect_options (MqttOptions
// -> paho create/connect/TLS options, CONNACK -> ServerLimits, TLS file checks), reason_codes
// (paho and MQTT codes -> outpost's errors, local refusals), tls_probe (OpenSSL's diagnosis of a
// failed TLS connect), mqtt_options (MqttOptions::validate()).
//
// Completions. Every publish gets a sequence number, kept with its callback in `ledger`
// (publish_ledger.hpp). Whoever takes an entry out of it (paho's acknowledgement, the
// connection-lost handler, disconnect(), a publish that throws) is the one who calls its
// callback: that is how "done exactly once" holds whatever order paho's threads report things in.
// paho does not always fail every in-flight token when the socket dies (measured: 2 of 5,018 never
// completed), so the ledger, not paho, decides what is outstanding, and a late answer from an
// earlier connection finds its sequence number gone.
//
// One paho client, reused. Measured with paho-c 1.3.12: a client connects in ~10 ms when it is
// the only one in the process, but in 1-2 s while another client object exists (its network
// thread polls the existing sockets for 1 s before it looks at the new one). Reconnecting the
// same client object is fast, so the client lives while the broker is connected and through
// the first reconnect attempt after a loss. A failed connect attempt destroys it (~100-200 ms,
// paho stopping its threads when no client is left): offline, an idle client's threads are most
// of the process's CPU. A connect attempt we gave up on at our timeout while paho was still
// working on it "poisons" the client (paho never completes a second connect on it); it is
// destroyed at the start of the next connect(), within that call's deadline, before a fresh one
// is made.
//
// Half-open connections. paho-c 1.3.12 pings only once nothing was *sent* for a keepalive and
// gives the PINGRESP 1.5 keepalives: a link that dies silently (no RST, no FIN: a NAT dropping
// state, a cut cable behind a switch) went unnoticed for up to 2.5 keepalives after the last
// send, and the publishes in flight waited that long. So the broker watches the link itself
// (watch()): every answer from the server (CONNACK, PUBACK/PUBREC, a probe's UNSUBACK) is heard;
// after half a keepalive of silence it probes with an UNSUBSCRIBE of a filter it never
// subscribed (harmless on every broker, answered like any packet); after 1.5 keepalives of
// silence the connection counts as lost, as the MQTT server would count ours. Detection: at
// most 1.5 keepalives + one watchdog tick after the last answer.
#include "outpost/mqtt_broker.hpp"

#include <mqtt/async_client.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "connect_options.hpp"
#include "message_mapping.hpp"
#include "outpost/error.hpp"
#include "publish_ledger.hpp"
#include "reason_codes.hpp"
#include "tls_probe.hpp"

namespace outpost {

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;
using mqtt_detail::ServerLimits;
using Ledger = detail::PublishLedger;

// From this many QoS 1/2 publishes in flight on, a new publish is held back and sent by paho's
// receive thread when the next acknowledgement arrives (see publish()). Below it (a trickle, the
// latency case) publish() sends at once: a lone publish never waits for someone else's answer.
constexpr std::size_t kHandOffInFlight = 8;

// What destroying a paho client may take (paho stops its threads in 100 ms steps).
constexpr std::chrono::milliseconds kDestroyTime{500};

// The liveness probe: never subscribed, so unsubscribing changes nothing on the server.
constexpr const char* kProbeFilter = "outpost/liveness-probe";

std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch())
        .count();
}

// A paho listener that forwards to a function (the probe's answers).
class ForwardingListener final : public mqtt::iaction_listener {
  public:
    explicit ForwardingListener(std::function<void(const mqtt::token&, bool)> f)
        : f_(std::move(f)) {}
    void on_success(const mqtt::token& tok) override { f_(tok, true); }
    void on_failure(const mqtt::token& tok) override { f_(tok, false); }

  private:
    std::function<void(const mqtt::token&, bool)> f_;
};

}  // namespace

struct MqttBroker::Impl {
    // --- Data members, grouped by the lock that guards them ------------------------------------

    class PublishListener;  // the nested types the members name are defined below them
    struct Client;
    class CallbackScope;

    // A publish held back because the server's receive maximum is reached.
    struct Held {
        std::uint64_t seq;
        mqtt::message_ptr msg;
    };

    // Set by the constructor, read-only afterwards: any thread, no lock.
    MqttOptions options;
    const Clock& clock;

    // The protocol the client speaks (v5 or v3_1_1). Changed only by connect(), on the caller's
    // thread, while no client exists (a fallback makes a new one); read by paho's threads.
    std::atomic<MqttVersion> speaking;

    // Guarded by `mutex`: the publishes not yet completed and the state of the connection they
    // were sent on, changed together (a loss fails what is outstanding and marks the connection
    // down in one step). Taken by the caller's thread and paho's threads, never held while paho
    // is called or a callback of the caller's runs.
    mutable std::mutex mutex;
    Ledger ledger;                    // every publish not yet completed (publish_ledger.hpp)
    std::condition_variable drained;  // notified when `ledger` empties or the connection is lost
    std::atomic<bool> up{false};      // written under `mutex`; connected() reads it without
    bool lost_while_down = false;     // a loss reported while connect() was still deciding
    std::string current_server;       // the URI of the current (or last) connection
    ServerLimits limits;              // from the CONNACK of the current connection
    // Flow control for the server's receive maximum, which paho leaves to us (limits_from() in
    // connect_options.cpp says why): publish(), finish() and take_releasable().
    std::size_t in_flight = 0;  // QoS 1/2 publishes handed to paho
    std::deque<Held> held;      // QoS 1/2 publishes waiting for a slot

    // Guarded by `handler_mutex`: replaced by set_connection_handler() (any thread), copied out
    // by notify() before the call, so the handler never runs with the lock held.
    std::mutex handler_mutex;
    std::shared_ptr<ConnectionHandler> handler;

    // paho threads inside our entry points (CallbackScope), and how disconnect() waits them out.
    // The count is atomic; `callback_mutex` only pairs with `callbacks_idle`.
    std::atomic<int> callbacks_running{0};
    std::mutex callback_mutex;
    std::condition_variable callbacks_idle;
    // Per thread, no lock: the broker whose entry point this thread runs, if any.
    static thread_local const Impl* inside_callback;

    // Liveness (see "Half-open connections" at the top). Atomics: written by paho's threads and
    // connect(), read by the watchdog. `last_heard` (steady ns) is set under `mutex` when a
    // connection is declared up, so the watchdog's check under `mutex` sees it consistent.
    std::atomic<std::int64_t> last_heard{0};
    std::atomic<std::uint64_t> generation{0};  // connections made: the probe's user context
    std::atomic<bool> probe_out{false};        // a probe is waiting for its answer
    ForwardingListener probe_listener{
        [this](const mqtt::token& tok, bool ok) { on_probe_answer(tok, ok); }};
    // The watchdog thread (started by the first successful connect()) and its stop signal.
    std::mutex watch_mutex;
    std::condition_variable watch_cv;
    bool watch_stop = false;  // guarded by watch_mutex
    std::thread watchdog;

    // Taken by the watchdog around its probe (a paho call on `client`) and by whoever replaces
    // `client` (before `client_mutex`), so the probe never runs on a client being destroyed.
    // Never taken by paho's threads, and never waited for with `client_mutex` held: no cycle
    // with paho's global lock (see send_all()).
    std::mutex probe_mutex;
    // Guarded by `client_mutex` against the receive thread's sends (finish() -> send_all()).
    // Replaced only by connect() and the destructor, on the caller's thread, which reads it
    // without the lock otherwise.
    std::mutex client_mutex;
    // Last member: destroyed first (the destructor destroys it explicitly anyway).
    std::unique_ptr<Client> client;

    // --- Types -----------------------------------------------------------------------------------

    // One listener for every publish: the sequence number travels as paho's user context, so
    // nothing per message has to outlive the publish() call on our side.
    class PublishListener final : public mqtt::iaction_listener {
      public:
        explicit PublishListener(Impl& impl) : impl_(impl) {}
        void on_success(const mqtt::token& tok) override;
        void on_failure(const mqtt::token& tok) override;

      private:
        Impl& impl_;
    };

    struct Client {
        Client(Impl& owner, const mqtt::create_options& create)
            : listener(owner),
              paho(owner.options.servers.front(), owner.options.client_id, create, nullptr) {}

        PublishListener listener;
        bool poisoned = false;  // a connect attempt on it was abandoned (see the top of the file)
        // Last member: destroyed first, so no paho callback can outlive what it points to.
        mqtt::async_client paho;
    };

    // Marks a paho thread inside one of our entry points (connection lost, DISCONNECT, a
    // publish's answer), from which the caller's callbacks run. disconnect() waits until none
    // is left (wait_for_callbacks()). Taken first thing, before the entry point looks at `up`
    // or `ledger` under `mutex`: an entry point that still finds work there is counted
    // before disconnect() clears it, and one that comes later finds nothing to report.
    class CallbackScope {
      public:
        explicit CallbackScope(Impl& impl) : impl_(impl), outer_(inside_callback) {
            impl_.callbacks_running.fetch_add(1);
            inside_callback = &impl_;
        }
        ~CallbackScope() {
            inside_callback = outer_;
            if (impl_.callbacks_running.fetch_sub(1) == 1) {
                std::lock_guard lock(impl_.callback_mutex);
                impl_.callbacks_idle.notify_all();
            }
        }
        CallbackScope(const CallbackScope&) = delete;
        CallbackScope& operator=(const CallbackScope&) = delete;

      private:
        Impl& impl_;
        const Impl* outer_;
    };

    // --- Life cycle ------------------------------------------------------------------------------

    Impl(MqttOptions opts, const Clock& clk)
        : options(validated(std::move(opts))),
          clock(clk),
          speaking(mqtt_detail::first_version(options)) {}

    static MqttOptions validated(MqttOptions o) {
        o.validate();
        return o;
    }

    ~Impl() {
        stop_watchdog();
        disconnect(milliseconds(1000));
        destroy_client(milliseconds(500));
    }

    bool mqtt5() const { return speaking.load() == MqttVersion::v5; }
    // Speaking 3.1.1 although the options left the version open: a server refused MQTT 5.
    bool fell_back() const { return !mqtt5() && options.version == MqttVersion::v5_or_3_1_1; }

    // --- completions and receive-maximum flow control ------------------------------------------

    // Completes publish `seq` with `result` unless someone else already did, then hands paho
    // the held-back publishes its slot makes room for.
    void finish(std::uint64_t seq, const PublishResult& result) {
        std::optional<Ledger::Entry> p;
        std::vector<Held> release;
        {
            std::lock_guard lock(mutex);
            p = ledger.take(seq);
            if (!p) {
                return;
            }
            if (p->sent && p->qos > 0 && in_flight > 0) {
                --in_flight;
            }
            release = take_releasable();
            if (ledger.empty()) {
                drained.notify_all();
            }
        }
        Ledger::complete(*p, result);
        send_all(release);
    }

    // The qos of publish `seq` while it is outstanding, else nullopt (already completed).
    std::optional<int> qos_of(std::uint64_t seq) const {
        std::lock_guard lock(mutex);
        return ledger.qos_of(seq);
    }

    // Caller holds `mutex`. Moves held publishes into flight while the receive maximum allows.
    std::vector<Held> take_releasable() {
        std::vector<Held> out;
        while (!held.empty() && in_flight < limits.receive_maximum) {
            Held h = std::move(held.front());
            held.pop_front();
            if (!ledger.mark_sent(h.seq)) {
                continue;  // completed meanwhile (connection lost)
            }
            ++in_flight;
            out.push_back(std::move(h));
        }
        return out;
    }

    // Hands publishes to paho, in order; never with `mutex` held (paho takes its own lock, and
    // calls us back from its threads). Runs on the caller's thread or, for held-back publishes,
    // on paho's receive thread, so `client` is read under `client_mutex`. No deadlock with
    // paho's global lock, which the receive thread holds while it runs our callbacks: that
    // thread takes `client_mutex` only with held-back publishes in hand, and the caller sends
    // directly (holding `client_mutex` into paho) only while none are held.
    void send_all(const std::vector<Held>& batch) {
        if (batch.empty()) {
            return;
        }
        std::vector<std::pair<std::uint64_t, PublishResult>> refused;
        {
            std::lock_guard lock(client_mutex);
            for (const Held& h : batch) {
                if (auto failure = try_send(h.seq, h.msg)) {
                    refused.emplace_back(h.seq, std::move(*failure));
                }
            }
        }
        for (const auto& [seq, result] : refused) {
            finish(seq, result);
        }
    }

    // Caller holds `client_mutex`. nullopt once paho took the publish, else why it did not.
    std::optional<PublishResult> try_send(std::uint64_t seq, const mqtt::message_ptr& msg) {
        if (!client) {
            return PublishResult::lost("not connected to " +
                                       mqtt_detail::server_list(options.servers));
        }
        try {
            client->paho.publish(msg, reinterpret_cast<void*>(static_cast<std::uintptr_t>(seq)),
                                 client->listener);
            return std::nullopt;
        } catch (const mqtt::exception& e) {
            return mqtt_detail::publish_failure(e.get_return_code(), e.get_message(),
                                                server_copy());
        } catch (const std::exception& e) {
            return PublishResult::rejected_with(
                0, std::string("refused by the MQTT client: ") + e.what(), false);
        }
    }

    void notify(bool up_now, const std::string& reason) noexcept {
        std::shared_ptr<ConnectionHandler> h;
        {
            std::lock_guard lock(handler_mutex);
            h = handler;
        }
        try {
            if (h && *h) {
                (*h)(up_now, reason);
            }
        } catch (...) {
        }
    }

    // paho's connection-lost or (MQTT 5) DISCONNECT callback, on a paho thread; or the
    // watchdog's verdict (`if_silent_for`: only when the server is still silent that long,
    // checked under `mutex` against a connection made meanwhile).
    // Returns whether this call declared the connection lost.
    bool on_lost(const char* what, const std::string& detail,
                 std::optional<std::chrono::nanoseconds> if_silent_for = std::nullopt) {
        CallbackScope scope(*this);
        Ledger::Batch failed;
        std::string reason;
        {
            std::lock_guard lock(mutex);
            if (if_silent_for &&
                (!up.load() ||
                 std::chrono::nanoseconds(steady_ns() - last_heard.load()) < *if_silent_for)) {
                return false;
            }
            if (!up.load()) {
                // Either a second report of the same loss, or a loss while connect() is still
                // deciding: connect() checks this flag before it declares the connection up.
                lost_while_down = true;
                return false;
            }
            up.store(false);
            reason = "connection to " + current_server + " " + what +
                     (detail.empty() ? "" : ": " + detail);
            failed = ledger.take_all();
            held.clear();
            in_flight = 0;
            drained.notify_all();
        }
        Ledger::complete_all(failed, PublishResult::lost(reason));
        notify(false, reason);
        return true;
    }

    // --- connecting ------------------------------------------------------------------------------

    void make_client() {
        const mqtt::create_options create = mqtt_detail::create_options_for(speaking.load());
        try {
            auto fresh = std::make_unique<Client>(*this, create);
            std::lock_guard probe_lock(probe_mutex);
            std::lock_guard lock(client_mutex);
            client = std::move(fresh);
        } catch (const mqtt::exception& e) {
            throw BrokerError(
                "cannot connect to " + mqtt_detail::server_list(options.servers) + ": " + e.what(),
                false, e.get_return_code());
        }
        client->paho.set_connection_lost_handler(
            [this](const std::string& cause) { on_lost("lost", cause); });
        if (mqtt5()) {
            client->paho.set_disconnected_handler([this](const mqtt::properties&,
                                                         mqtt::ReasonCode code) {
                on_lost("closed by the server", "DISCONNECT reason " + mqtt_detail::hex_code(code) +
                                                    " " + mqtt_reason_name(code));
            });
        }
    }

    // Destroys the paho client, first giving paho up to `grace` to finish the callbacks of its
    // delivery tokens (paho removes a token after its callback returned).
    void destroy_client(milliseconds grace) noexcept {
        if (!client) {
            return;
        }
        try {
            const auto until = steady::now() + grace;
            while (!client->paho.get_pending_delivery_tokens().empty() && steady::now() < until) {
                std::this_thread::sleep_for(milliseconds(5));
            }
        } catch (...) {
        }
        std::unique_ptr<Client> old;
        {
            // Taken out under the lock, destroyed outside it: paho's destroy waits for its
            // receive thread, which may be waiting for this lock to hand over a publish.
            std::lock_guard probe_lock(probe_mutex);
            std::lock_guard lock(client_mutex);
            old = std::move(client);
        }
        old.reset();
    }

    // What one connect attempt to one server came to.
    struct Attempt {
        enum class Kind { connected, refused_mqtt5, failed };
        Kind kind = Kind::failed;
        ServerLimits limits;               // connected
        std::optional<BrokerError> error;  // failed: the reason, naming the server
    };

    // One connect attempt to `uri` on the current client, in the version it speaks: this
    // server's time ends at `server_deadline` (paho's own timeout; the probes), the whole
    // connect()'s at `deadline` (our wait). refused_mqtt5 when the server does not speak MQTT 5
    // (it said so, or it closes an MQTT 5 CONNECT without a CONNACK, as RabbitMQ 3 does) and the
    // options leave the version open: the caller asks again in 3.1.1.
    Attempt attempt_connect(const std::string& uri, steady::time_point server_deadline,
                            steady::time_point deadline, milliseconds timeout) {
        Attempt out;
        auto left_until = [](steady::time_point t) {
            return std::max(milliseconds(0),
                            std::chrono::duration_cast<milliseconds>(t - steady::now()));
        };
        const mqtt::connect_options copts = mqtt_detail::connect_options_for(
            options, speaking.load(), uri, left_until(server_deadline));
        auto time_left = [&] { return left_until(deadline); };
        try {
            mqtt::token_ptr tok = connect_when_paho_is_ready(copts, server_deadline);
            if (!tok->wait_for(time_left())) {
                client->poisoned = true;
                out.error = BrokerError(
                    uri + ": no answer within " + std::to_string(timeout.count()) + " ms", true);
                return out;
            }
            out.limits =
                mqtt_detail::limits_from(tok->get_connect_response().get_properties(), mqtt5());
            out.kind = Attempt::Kind::connected;
            return out;
        } catch (const mqtt::exception& e) {
            const int rc = e.get_return_code();
            const bool open = mqtt5() && options.version == MqttVersion::v5_or_3_1_1;
            if (rc > 0 && open && mqtt_detail::refuses_mqtt5(rc)) {
                out.kind = Attempt::Kind::refused_mqtt5;
                return out;
            }
            // The probes spend this server's time only, never the next one's.
            const milliseconds probe_time = left_until(server_deadline);
            const std::string tls =
                rc == MQTTASYNC_FAILURE && mqtt_detail::is_tls_uri(uri) && probe_time.count() > 0
                    ? mqtt_detail::probe_tls_failure(uri, options.tls, probe_time / 2)
                    : "";
            std::string hint;
            // paho says "TCP connect completion failure" (-1) for a socket closed after its
            // CONNECT, and words a refused, unresolvable or timed-out connect otherwise; an MQTT 5
            // CONNECT of our own then shows whether the server closes on it without a word
            // (plain TCP servers only).
            if (rc == MQTTASYNC_FAILURE && mqtt5() && tls.empty() &&
                e.get_message().find("completion failure") != std::string::npos &&
                mqtt_detail::closes_mqtt5_connect(uri, std::min(milliseconds(1000), probe_time))) {
                if (open) {
                    out.kind = Attempt::Kind::refused_mqtt5;
                    return out;
                }
                hint =
                    "; the server closes an MQTT 5 CONNECT without a CONNACK: it may not speak "
                    "MQTT 5 (RabbitMQ 3 answers so); connect with MQTT 3.1.1, or leave the "
                    "version open (v5_or_3_1_1) to fall back to it";
            }
            const auto failure =
                rc > 0 ? mqtt_detail::classify_connack(rc, mqtt5())
                       : mqtt_detail::classify_connect_error(rc, e.get_message(), tls);
            out.error = BrokerError(uri + ": " + failure.reason + hint, failure.transient, rc);
            return out;
        }
    }

    // paho refuses a connect while it is still tearing down the last connection (-18, "command
    // ignored": seen right after a lost connection, when its threads had not finished with it):
    // that passes within milliseconds, so it is asked again until `until`.
    mqtt::token_ptr connect_when_paho_is_ready(const mqtt::connect_options& copts,
                                               steady::time_point until) {
        for (;;) {
            try {
                return client->paho.connect(copts);
            } catch (const mqtt::exception& e) {
                if (e.get_return_code() != MQTTASYNC_COMMAND_IGNORED || steady::now() >= until) {
                    throw;
                }
            }
            std::this_thread::sleep_for(milliseconds(10));  // paho has nothing to wait on
        }
    }

    // Tries options.servers one at a time, in order, each with its share of the time left
    // (paho's own list would do it, but a reused paho client then reports the first server as
    // the one reached, whichever it was). On a server that does not speak MQTT 5 and options
    // that leave the version open, asks that server again in 3.1.1; if that connects, this
    // broker speaks 3.1.1 from then on. Throws BrokerError naming every server tried: not
    // transient when any refusal was not (credentials, TLS verification, ...).
    std::string connect_to_some_server(steady::time_point deadline, milliseconds timeout,
                                       const std::string& target, ServerLimits& limits) {
        std::vector<BrokerError> errors;
        const std::size_t n = options.servers.size();
        for (std::size_t i = 0; i < n && !(client && client->poisoned); ++i) {
            const std::string& uri = options.servers[i];
            const auto left = std::chrono::duration_cast<milliseconds>(deadline - steady::now());
            if (left <= milliseconds(0)) {
                break;
            }
            const milliseconds share =
                std::min(options.connect_timeout, left / static_cast<milliseconds::rep>(n - i));
            const auto server_deadline = steady::now() + share;
            Attempt a = attempt_connect(uri, server_deadline, deadline, timeout);
            if (a.kind == Attempt::Kind::refused_mqtt5 && options.password && !options.username) {
                a.error = BrokerError(uri +
                                          ": the server does not speak MQTT 5, and MQTT 3.1.1 "
                                          "forbids a password without a user name: set a user name",
                                      false, 1);
            } else if (a.kind == Attempt::Kind::refused_mqtt5) {
                switch_version(MqttVersion::v3_1_1);
                a = attempt_connect(uri, server_deadline, deadline, timeout);
                // Connected: 3.1.1 from now on (fell_back()). Else 3.1.1 did not help either, so
                // this server is no reason to give up 5. A poisoned client goes at the start of
                // the next connect(), which makes the new one in 5.
                if (a.kind != Attempt::Kind::connected && client->poisoned) {
                    speaking.store(MqttVersion::v5);
                } else if (a.kind != Attempt::Kind::connected) {
                    switch_version(MqttVersion::v5);
                }
            }
            if (a.kind == Attempt::Kind::connected) {
                limits = a.limits;
                return uri;
            }
            errors.push_back(a.error ? *a.error
                                     : BrokerError(uri + ": does not speak MQTT 5 or 3.1.1", true));
        }
        std::string why;
        bool transient = true;
        int code = 0;
        for (const BrokerError& e : errors) {
            why += (why.empty() ? "" : "; ") + std::string(e.what());
            if (transient && !e.transient()) {
                transient = false;
                code = e.code();
            } else if (transient) {
                code = e.code();
            }
        }
        if (why.empty()) {
            why = "no time left for an attempt within " + std::to_string(timeout.count()) + " ms";
        }
        // One server: its URI is the target already.
        if (n == 1 && why.starts_with(options.servers.front() + ": ")) {
            why.erase(0, options.servers.front().size() + 2);
        }
        throw BrokerError("cannot connect to " + target + ": " + why, transient, code);
    }

    void connect(milliseconds timeout) {
        if (up.load()) {
            return;
        }
        const auto deadline = steady::now() + timeout;
        const std::string target = mqtt_detail::server_list(options.servers);
        mqtt_detail::check_tls_files(options);
        if (client && client->poisoned) {
            destroy_client(milliseconds(0));
        }
        if (!client) {
            make_client();
        } else if (client->paho.is_connected()) {
            // We saw a loss paho does not agree with (a late report from an earlier
            // connection): start over from a clean state.
            try {
                client->paho.disconnect(0)->wait_for(milliseconds(500));
            } catch (const std::exception&) {
            }
        }
        {
            std::lock_guard lock(mutex);
            lost_while_down = false;
        }

        std::string server_uri;
        ServerLimits limits;
        try {
            server_uri = connect_to_some_server(deadline, timeout, target, limits);
        } catch (const BrokerError&) {
            // Offline, a paho client costs CPU for nothing: its receive thread polls ten times a
            // second and its send thread once. Without any client paho stops both threads, and
            // the next attempt makes a fresh client (the only one, so it connects at once). That
            // takes paho 100-200 ms: only while the deadline leaves room for it (else the client
            // is reused next time). A poisoned client goes at the start of the next connect().
            if (client && !client->poisoned && deadline - steady::now() > kDestroyTime) {
                destroy_client(milliseconds(0));
            }
            throw;
        }

        bool lost_already = false;
        {
            std::lock_guard lock(mutex);
            lost_already = lost_while_down;
            if (!lost_already) {
                current_server = server_uri;
                this->limits = limits;
                in_flight = 0;
                held.clear();
                last_heard.store(steady_ns());  // the CONNACK
                generation.fetch_add(1);
                probe_out.store(false);
                up.store(true);
            }
        }
        start_watchdog();
        if (lost_already) {
            throw BrokerError("cannot connect to " + target + ": connection to " + server_uri +
                                  " lost right after it was accepted",
                              true);
        }
        notify(true, "connected to " + server_uri +
                         (fell_back() ? " (MQTT 3.1.1: the server refused MQTT 5)" : ""));
    }

    // Makes the paho client anew for `version` (paho ties a client to the version it was made
    // with).
    void switch_version(MqttVersion version) {
        destroy_client(milliseconds(0));
        speaking.store(version);
        make_client();
    }

    void disconnect(milliseconds timeout) noexcept {
        const auto deadline = steady::now() + timeout;
        bool was_up = false;
        std::string server_uri;
        {
            // Still connected: let what is outstanding (held-back publishes included, they
            // flow as acknowledgements free slots) be answered, up to the deadline.
            std::unique_lock lock(mutex);
            drained.wait_until(lock, deadline, [this] { return ledger.empty() || !up.load(); });
            was_up = up.exchange(false);
            server_uri = current_server;
        }
        if (was_up && client) {
            try {
                const auto left =
                    std::max(milliseconds(0),
                             std::chrono::duration_cast<milliseconds>(deadline - steady::now()));
                auto tok = client->paho.disconnect(static_cast<int>(left.count()));
                tok->wait_for(left + milliseconds(100));
            } catch (const std::exception&) {
                // Already gone: whatever is outstanding is lost, reported below.
            }
        }
        Ledger::Batch failed;
        {
            std::lock_guard lock(mutex);
            failed = ledger.take_all();
            held.clear();
            in_flight = 0;
        }
        const std::string reason = "disconnected from " + server_uri;
        Ledger::complete_all(failed, PublishResult::lost(reason + " before an acknowledgement"));
        if (was_up) {
            notify(false, reason);
        }
        wait_for_callbacks();
    }

    // Returns once no paho thread runs a callback of the caller's: after a lost connection, a
    // paho thread may still be completing the publishes it failed (or telling the connection
    // handler) when disconnect() finds nothing left to do, and the caller (the Dispatcher's
    // stop()) may free what those callbacks point to as soon as disconnect() returns. `up` is
    // false and `ledger` empty by now, so no new callback can start: each entry point was
    // either counted before it looked, or finds nothing. Not from inside a callback (the
    // contract forbids calling disconnect() there; this keeps a mistake from hanging).
    void wait_for_callbacks() noexcept {
        if (inside_callback == this) {
            return;
        }
        std::unique_lock lock(callback_mutex);
        callbacks_idle.wait(lock, [this] { return callbacks_running.load() == 0; });
    }

    // --- publishing ------------------------------------------------------------------------------

    void publish(const Record& record, PublishCallback done) {
        const int qos = record.message.qos;
        mqtt::message_ptr msg;
        try {
            msg = mqtt_detail::to_message(record, mqtt5(), options.id_property, clock);
        } catch (const mqtt::exception& e) {
            Ledger::Entry p{std::move(done), qos};
            Ledger::complete(p, mqtt_detail::publish_failure(e.get_return_code(), e.get_message(),
                                                             server_copy()));
            return;
        }

        std::uint64_t seq = 0;
        bool send_now = false;
        std::optional<PublishResult> refusal;
        {
            std::lock_guard lock(mutex);
            if (up.load() && client) {
                refusal = mqtt_detail::local_refusal(record, limits, mqtt5(), options.id_property);
                if (!refusal) {
                    // With a stream of acknowledgements coming, the publish waits for the next
                    // one and paho's receive thread sends it (finish()): one thread less
                    // fighting over paho's global lock, measured +10-15% drain rate.
                    send_now = qos == 0 || (held.empty() && in_flight < limits.receive_maximum &&
                                            in_flight < kHandOffInFlight);
                    if (send_now) {
                        in_flight += qos > 0 ? 1 : 0;
                    }
                    seq = ledger.add(std::move(done), qos, send_now);
                    if (!send_now) {
                        held.push_back(Held{seq, msg});
                    }
                }
            }
        }
        if (refusal) {
            // Sending it would make the server close the connection (a packet too large, a QoS
            // or retain the CONNACK ruled out, a string MQTT forbids), and the dispatcher would
            // send it again after every reconnect without counting an attempt.
            Ledger::Entry p{std::move(done), qos};
            Ledger::complete(p, *refusal);
            return;
        }
        if (seq == 0) {
            Ledger::Entry p{std::move(done), qos};
            Ledger::complete(p, PublishResult::lost("not connected to " +
                                                    mqtt_detail::server_list(options.servers)));
            return;
        }
        if (send_now) {
            send_all({Held{seq, msg}});
        }
    }

    std::string server_copy() const {
        std::lock_guard lock(mutex);
        return current_server;
    }

    static std::uint64_t seq_of(const mqtt::token& tok) {
        return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(tok.get_user_context()));
    }

    static const char* ack_name(int qos) { return qos == 2 ? "PUBREC" : "PUBACK"; }

    void on_publish_success(const mqtt::token& tok) {
        CallbackScope scope(*this);
        const std::uint64_t seq = seq_of(tok);
        const auto qos = qos_of(seq);
        if (!qos) {
            return;  // completed already (a loss, or an answer from an earlier connection)
        }
        if (*qos > 0) {
            last_heard.store(steady_ns());  // an acknowledgement (QoS 0 only left the socket)
        }
        const int reason = static_cast<int>(tok.get_reason_code());
        // paho-c 1.3 reports an MQTT 5 acknowledgement >= 0x80 through onFailure5; this guards
        // a version that reports it as a success with the code attached.
        if (mqtt5() && *qos > 0 && reason >= 0x80 && reason != mqtt::MQTTPP_V3_CODE) {
            finish(seq, mqtt_detail::rejection(reason, ack_name(*qos)));
            return;
        }
        if (mqtt5() && *qos > 0 && reason == kNoMatchingSubscribers) {
            // Routed to nobody: delivered as far as the broker goes, reported by the Dispatcher.
            finish(seq, PublishResult::delivered_with(reason, std::string(ack_name(*qos)) +
                                                                  " reason 0x10 " +
                                                                  mqtt_reason_name(reason)));
            return;
        }
        finish(seq, PublishResult::delivered_ok());
    }

    void on_publish_failure(const mqtt::token& tok) {
        CallbackScope scope(*this);
        const std::uint64_t seq = seq_of(tok);
        const auto qos = qos_of(seq);
        if (!qos) {
            return;
        }
        const int rc = tok.get_return_code();
        const int reason = static_cast<int>(tok.get_reason_code());
        // Measured on paho-c 1.3.12 + mosquitto 2.0: a PUBACK/PUBREC with reason >= 0x80 arrives
        // here with rc 0 and the reason code; a dying socket fails tokens with rc -1/-3/-11.
        if (mqtt5() && rc == 0 && reason >= 0x80 && reason != mqtt::MQTTPP_V3_CODE) {
            last_heard.store(steady_ns());  // the server answered, with a rejection
            finish(seq, mqtt_detail::rejection(reason, ack_name(*qos)));
            return;
        }
        finish(seq, mqtt_detail::publish_failure(rc == 0 ? -1 : rc, "", server_copy()));
    }

    // --- liveness (see "Half-open connections" at the top) -------------------------------------

    // In nanoseconds before the arithmetic: keepalive * 3 / 2 in seconds would cut 1.5 s to 1 s.
    std::chrono::nanoseconds lost_after() const {
        return std::chrono::nanoseconds(options.keepalive) * 3 / 2;
    }
    std::chrono::nanoseconds probe_after() const {
        return std::chrono::nanoseconds(options.keepalive) / 2;
    }

    void start_watchdog() {
        if (options.keepalive.count() == 0 || watchdog.joinable()) {
            return;
        }
        watchdog = std::thread([this] { watch(); });
    }

    void stop_watchdog() noexcept {
        {
            std::lock_guard lock(watch_mutex);
            watch_stop = true;
        }
        watch_cv.notify_all();
        if (watchdog.joinable()) {
            watchdog.join();
        }
    }

    // The watchdog's loop: a tick of keepalive / 8 (100 ms .. 1 s) is the detection's slack.
    void watch() {
        const auto tick = std::clamp<milliseconds>(
            std::chrono::duration_cast<milliseconds>(options.keepalive) / 8, milliseconds(100),
            milliseconds(1000));
        std::unique_lock lock(watch_mutex);
        while (!watch_cv.wait_for(lock, tick, [this] { return watch_stop; })) {
            lock.unlock();
            check_liveness();
            lock.lock();
        }
    }

    void check_liveness() {
        if (!up.load()) {
            return;
        }
        const std::chrono::nanoseconds silent(steady_ns() - last_heard.load());
        if (silent >= lost_after()) {
            if (on_lost("lost",
                        "no answer from the server for " +
                            std::to_string(silent / milliseconds(1)) + " ms (keepalive " +
                            std::to_string(options.keepalive.count()) +
                            " s): the link is down or half-open",
                        lost_after())) {
                close_after_verdict();
            }
        } else if (silent >= probe_after() && !probe_out.exchange(true)) {
            send_probe();
        }
    }

    // After the watchdog's verdict paho still holds the connection: were the link only slow,
    // paho would go on sending the publishes just failed (duplicates) and pinging. So it is
    // closed now, with a DISCONNECT (a clean close: no Will) that is not waited for.
    void close_after_verdict() noexcept {
        std::lock_guard lock(probe_mutex);
        if (!client || up.load()) {
            return;  // gone, or connect() made a new connection meanwhile
        }
        try {
            client->paho.disconnect(0);
        } catch (const std::exception&) {
            // Already disconnected: nothing to close.
        }
    }

    void send_probe() {
        std::lock_guard lock(probe_mutex);
        if (!client || !up.load()) {
            probe_out.store(false);
            return;
        }
        try {
            client->paho.unsubscribe(
                kProbeFilter,
                reinterpret_cast<void*>(static_cast<std::uintptr_t>(generation.load())),
                probe_listener);
        } catch (const std::exception&) {
            probe_out.store(false);  // paho refused it (disconnected): the next tick decides
        }
    }

    // On a paho thread. An UNSUBACK (MQTT 5: any reason code, even a refusal) is an answer; a
    // failure paho made up (rc != 0: the connection went) is not.
    void on_probe_answer(const mqtt::token& tok, bool ok) {
        const auto gen =
            static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(tok.get_user_context()));
        if (gen != generation.load()) {
            return;  // a probe of an earlier connection
        }
        if (ok || tok.get_return_code() == 0) {
            last_heard.store(steady_ns());
        }
        probe_out.store(false);
    }
};

thread_local const MqttBroker::Impl* MqttBroker::Impl::inside_callback = nullptr;

void MqttBroker::Impl::PublishListener::on_success(const mqtt::token& tok) {
    impl_.on_publish_success(tok);
}

void MqttBroker::Impl::PublishListener::on_failure(const mqtt::token& tok) {
    impl_.on_publish_failure(tok);
}

MqttBroker::MqttBroker(MqttOptions options, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}

MqttBroker::~MqttBroker() = default;

void MqttBroker::connect(std::chrono::milliseconds timeout) {
    impl_->connect(timeout);
}

void MqttBroker::disconnect(std::chrono::milliseconds timeout) noexcept {
    impl_->disconnect(timeout);
}

bool MqttBroker::connected() const noexcept {
    return impl_->up.load();
}

void MqttBroker::publish(const Record& record, PublishCallback done) {
    impl_->publish(record, std::move(done));
}

void MqttBroker::set_connection_handler(ConnectionHandler handler) {
    auto h = std::make_shared<ConnectionHandler>(std::move(handler));
    std::lock_guard lock(impl_->handler_mutex);
    impl_->handler = std::move(h);
}

MqttVersion MqttBroker::version() const noexcept {
    return impl_->speaking.load();
}

std::string MqttBroker::server() const {
    return impl_->server_copy();
}

const MqttOptions& MqttBroker::options() const noexcept {
    return impl_->options;
}

}  // namespace outpost

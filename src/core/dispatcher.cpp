// The dispatcher loop. Everything here runs on one thread (the dispatcher's, or the caller's in
// run_once()), except the few members under `mutex`, which the broker's threads and the app's
// threads touch: completions, the wake flag, the stop flag and the stats snapshot.
#include "outpost/dispatcher.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <queue>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "outpost/error.hpp"

namespace outpost {

const char* to_string(DispatchEvent::Kind kind) noexcept {
    switch (kind) {
        case DispatchEvent::Kind::delivered:
            return "delivered";
        case DispatchEvent::Kind::retry_scheduled:
            return "retry_scheduled";
        case DispatchEvent::Kind::dead:
            return "dead";
        case DispatchEvent::Kind::expired:
            return "expired";
        case DispatchEvent::Kind::connected:
            return "connected";
        case DispatchEvent::Kind::disconnected:
            return "disconnected";
        case DispatchEvent::Kind::lease_lost:
            return "lease_lost";
        case DispatchEvent::Kind::error:
            return "error";
    }
    return "unknown";
}

void DispatcherOptions::validate() const {
    if (window < 1 || window > 65535) {
        throw InvalidConfig("DispatcherOptions::window is " + std::to_string(window) +
                                "; it must be within 1..65535",
                            "window");
    }
    retry.validate();
    auto positive = [](std::chrono::milliseconds v, const char* name) {
        if (v.count() <= 0) {
            throw InvalidConfig(std::string("DispatcherOptions::") + name + " must be positive",
                                name);
        }
    };
    positive(ack_timeout, "ack_timeout");
    positive(poll_interval, "poll_interval");
    positive(reconnect_initial, "reconnect_initial");
    positive(connect_timeout, "connect_timeout");
    positive(lease_ttl, "lease_ttl");
    // Times are computed as now + d on the monotonic clock (nanoseconds) and on the wall clock
    // (ms): a "never" of hundreds of years would overflow both.
    auto bounded = [](std::chrono::milliseconds v, const char* name) {
        if (v > kMaxDuration) {
            throw InvalidConfig(std::string("DispatcherOptions::") + name + " is " +
                                    std::to_string(v.count()) + " ms; it must be at most " +
                                    std::to_string(kMaxDuration.count()) + " ms (100 years)",
                                name);
        }
    };
    bounded(ack_timeout, "ack_timeout");
    bounded(poll_interval, "poll_interval");
    bounded(reconnect_initial, "reconnect_initial");
    bounded(reconnect_max, "reconnect_max");
    bounded(connect_timeout, "connect_timeout");
    bounded(lease_ttl, "lease_ttl");
    bounded(retention, "retention");
    bounded(retry.max_backoff, "retry.max_backoff");
    if (reconnect_max < reconnect_initial) {
        throw InvalidConfig("DispatcherOptions::reconnect_max must be at least reconnect_initial",
                            "reconnect_max");
    }
    if (retention.count() < 0) {
        throw InvalidConfig("DispatcherOptions::retention must not be negative", "retention");
    }
    if (max_batch < 1) {
        throw InvalidConfig("DispatcherOptions::max_batch must be at least 1", "max_batch");
    }
}

namespace {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

// How often an offline dispatcher looks at the database (for TTL expiry and other writers).
constexpr Ms kOfflinePoll{5000};
// A connection lost sooner than this after it was made, with no publish answered on it, was of
// no use: losing several in a row backs the reconnects off.
constexpr Clock::duration kYoungConnection = 10s;
// A publish lost with its connection within this time of being sent, with nothing sent after it
// acknowledged, is suspected of having made the broker drop the connection (see judge_loss).
constexpr Clock::duration kSuspectWindow = 5s;

// initial x 2^(failures-1), capped at `max`, scaled by a factor in [0.5, 1] drawn from
// `sample` (full jitter on the upper half: a fleet that lost the same broker spreads out).
Ms backoff_delay(Ms initial, Ms max, std::uint32_t failures, double sample) {
    double d = static_cast<double>(initial.count());
    for (std::uint32_t i = 1; i < failures && d < static_cast<double>(max.count()); ++i) {
        d *= 2;
    }
    d = std::min(d, static_cast<double>(max.count()));
    d *= 0.5 + 0.5 * std::clamp(sample, 0.0, 1.0);
    return Ms(static_cast<std::int64_t>(d));
}

std::string random_token(std::mt19937_64& rng) {
    char out[33];
    std::snprintf(out, sizeof out, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    return out;
}

std::string host_name() {
    std::array<char, 256> buf{};
    if (::gethostname(buf.data(), buf.size() - 1) != 0) {
        return "unknown";
    }
    return buf.data();
}

}  // namespace

struct Dispatcher::Impl {
    // A publish handed to the broker and not yet written back, or an outcome decided without a
    // publish (expired, unreadable, a suspected poison message) waiting to be written.
    struct Flight {
        std::uint64_t seq = 0;  // matches the completion to this publish; 0: no publish
        PendingRef ref;         // the record as scanned (key, priority, attempts before this)
        Clock::time_point sent_at{};
        Clock::time_point deadline{};    // ack timeout
        std::optional<Outcome> outcome;  // decided, waiting to be written
        bool alone = false;      // sent as the only publish in flight (a suspect, see judge_loss)
        bool after_ack = false;  // ... after something was acknowledged on its connection
    };
    struct Completion {
        std::int64_t id;
        std::uint64_t seq;
        PublishResult result;
    };
    // A record, or a key's head, that waits for its retry time.
    struct Due {
        std::int64_t at;  // wall ms
        PendingRef ref;   // keyless: the record; keyed: the head when it was rescheduled
        bool operator>(const Due& o) const { return at > o.at; }
    };
    // The first publish lost with each connection, to tell a message the broker answers by
    // dropping the connection (mosquitto does so for some topics and properties).
    struct Lost {
        std::int64_t id = 0;
        Flight flight;  // as it was when lost
    };

    Store& store;
    MessageBroker& broker;
    DispatcherOptions opt;
    const Clock& clock;

    // --- shared with other threads, under `mutex` ---
    mutable std::mutex mutex;
    std::condition_variable cv;        // wakes the loop
    std::condition_variable drain_cv;  // wakes drain()
    std::vector<Completion> completions;
    std::size_t outstanding = 0;   // handed to the broker, no completion queued yet
    bool completions_due = false;  // enough completions queued to be worth a step
    bool wake_flag = true;
    bool rescan_flag = false;  // a wake for records behind the scan position (requeue)
    bool stop_flag = false;
    bool conn_event = false;
    std::uint64_t steps_started = 0;
    std::uint64_t idle_at_step = 0;  // last step that found nothing pending and nothing in flight
    DispatcherStats stats;

    // --- dispatching thread only ---
    std::unordered_map<std::int64_t, Flight> flights;
    std::size_t sent = 0;  // flights whose outcome is not decided yet

    // The dispatch queue: where the next records come from, and which keys must wait.
    //
    // Sources, in the order publish_due() takes them: keys whose head's retry is due and keys
    // that became free (their head, by one seek on the key index), records whose retry is due,
    // records that arrived before the scan position (a higher priority), then the forward pass
    // over the dispatch order from `cursor`. The pass skips records of blocked keys without
    // remembering them: each blocked key is asked for its head when it is free again, so a key's
    // backlog costs nothing while it waits, and other keys flow on. Every record the pass
    // skips has a way back: busy key -> freed, waiting key or record -> `dues`.
    DispatchCursor cursor;
    bool at_end = false;       // the pass reached the end of the pending records
    std::int64_t seen_id = 0;  // the last id an arrivals check saw: records up to it lie ahead
                               // of the cursor or were considered; newer ones are arrivals
    bool arrivals_due = true;  // records may have been committed since seen_id
    std::unordered_set<std::string> busy_keys;                   // a record of the key is in flight
    std::unordered_map<std::string, std::int64_t> waiting_keys;  // key -> when its head is due
    std::unordered_set<std::int64_t> waiting_ids;  // keyless records waiting (in `dues` or not)
    std::unordered_set<std::string> freed;  // keys that became free since they were last asked
    std::priority_queue<Due, std::vector<Due>, std::greater<>> dues;
    std::optional<std::int64_t> forgotten_due;  // earliest retry `dues` had no room for
    std::int64_t requeues = -1;                 // Store::requeue_count() last seen
    std::int64_t data_version = -1;
    std::optional<std::int64_t> next_expiry;  // earliest expires_at of a pending record
    bool next_expiry_known = false;
    Clock::time_point next_poll{};
    std::optional<Clock::time_point> error_hold;  // after a failed step: not before this
    std::mt19937_64 rng{std::random_device{}()};
    std::uniform_real_distribution<double> unit{0.0, 1.0};

    LeaseInfo lease;
    bool lease_held = false;
    bool lease_ever = false;
    Clock::time_point next_heartbeat{};

    bool was_connected = false;
    std::uint32_t connect_failures = 0;
    std::uint32_t quick_losses = 0;  // connections in a row that died young
    Clock::time_point connected_at{};
    Clock::time_point next_connect{};
    std::uint64_t acked_seq = 0;     // highest seq acknowledged on this connection
    std::optional<Lost> loss_first;  // earliest publish lost with this connection
    // The record suspected of making the broker drop the connection (0: none), whether a loss
    // was already counted against it, and the suspect itself while it is held back to be sent
    // alone (its key stays busy meanwhile).
    std::int64_t suspect_id = 0;
    bool suspect_proven = false;
    std::optional<PendingRef> held;
    std::int64_t clock_offset = 0;  // wall - monotonic, to notice wall-clock steps
    bool clock_checked = false;
    Clock::time_point next_purge{};
    std::uint64_t seq = 0;

    std::thread thread;
    bool running = false;

    Impl(Store& s, MessageBroker& b, DispatcherOptions o, const Clock& c)
        : store(s), broker(b), opt(std::move(o)), clock(c) {
        opt.validate();
        lease.owner = random_token(rng);
        lease.host = host_name();
        lease.pid = static_cast<std::int64_t>(::getpid());
    }

    std::size_t due_capacity() const { return std::max<std::size_t>(4096, 16 * opt.window); }

    void emit(DispatchEvent e) {
        if (opt.on_event) {
            try {
                opt.on_event(e);
            } catch (...) {
                // A failing handler must not stop dispatch.
            }
        }
    }

    void note_error(const std::string& what) {
        {
            std::lock_guard lock(mutex);
            stats.last_error = what;
        }
        emit({DispatchEvent::Kind::error, 0, 0, 0, what});
    }

    void wake(bool rescan) {
        {
            std::lock_guard lock(mutex);
            wake_flag = true;
            rescan_flag = rescan_flag || rescan;
        }
        cv.notify_one();
    }

    // Called from broker threads.
    void complete(std::int64_t id, std::uint64_t s, const PublishResult& r) {
        bool wake;
        {
            std::lock_guard lock(mutex);
            completions.push_back({id, s, r});
            if (outstanding > 0) {  // a late answer to a given-up publish may come after a reset
                --outstanding;
            }
            // Wake the loop once a quarter of what is out has come back (or the last of it):
            // it then refills a quarter of the window at once instead of ping-ponging one
            // message at a time, while the rest of the window keeps the broker busy. A single
            // message in flight (the latency case) wakes it at once.
            const std::size_t n = completions.size();
            wake = outstanding == 0 || n >= std::max<std::size_t>(1, (outstanding + n) / 4);
            completions_due = completions_due || wake;
        }
        if (wake) {
            cv.notify_one();
        }
    }

    std::int64_t mono_ms(Clock::time_point t) const {
        return std::chrono::duration_cast<Ms>(t.time_since_epoch()).count();
    }

    // A short pause before trying again after a failure, never a spin on a disk that stays
    // full or a database that stays busy.
    Clock::duration retry_pause() const {
        return std::min<Clock::duration>(opt.poll_interval, std::chrono::seconds(1));
    }

    // ---- lease ----

    void take_lease() {
        const std::int64_t now = clock.wall_ms();
        lease.started_at = lease_ever ? lease.started_at : now;
        lease.heartbeat_at = now;
        lease.expires_at = now + opt.lease_ttl.count();
        store.acquire_lease(lease);  // throws LeaseHeld
        lease_held = true;
        lease_ever = true;
        next_heartbeat = clock.now() + opt.lease_ttl / 3;
    }

    void keep_lease() {
        if (clock.now() < next_heartbeat) {
            return;
        }
        // Until the store answers: a store that throws is asked again after a pause, not in a
        // spin.
        next_heartbeat = clock.now() + std::min<Clock::duration>(opt.lease_ttl / 3, retry_pause());
        if (!lease_held) {
            try {
                take_lease();
                reset_scan();
            } catch (const LeaseHeld&) {
                next_heartbeat = clock.now() + opt.lease_ttl / 3;
            }
            return;
        }
        const std::int64_t now = clock.wall_ms();
        if (store.renew_lease(lease.owner, now, now + opt.lease_ttl.count())) {
            next_heartbeat = clock.now() + opt.lease_ttl / 3;
            return;
        }
        // Someone took the lease over (ours lapsed: the process stalled longer than lease_ttl).
        // Stop sending; what is in flight will be sent again by the new holder.
        lease_held = false;
        drop_flights();
        next_heartbeat = clock.now() + opt.lease_ttl / 3;
        note_error("the dispatcher lease was taken over by another dispatcher");
        emit({DispatchEvent::Kind::lease_lost, 0, 0, 0, "lease taken over"});
    }

    // ---- connection ----

    // Remembers the earliest publish lost with the current connection.
    void note_lost(std::int64_t id, const Flight& f) {
        if (f.seq != 0 && (!loss_first || f.seq < loss_first->flight.seq)) {
            loss_first = Lost{id, f};
        }
    }

    // The publishes the broker answered before the loss was noticed (their answers still
    // queued). They are sent again like the rest (an acknowledgement from a broker that is going
    // away is worth little: a killed mosquitto loses what it acknowledged and had not passed
    // on), but none of them is suspected of the loss.
    std::unordered_set<std::uint64_t> answered_before_loss() {
        std::unordered_set<std::uint64_t> answered;
        std::lock_guard lock(mutex);
        for (const Completion& c : completions) {
            auto it = flights.find(c.id);
            if (c.result.status != PublishResult::Status::connection_lost && it != flights.end() &&
                it->second.seq == c.seq) {
                answered.insert(c.seq);
                acked_seq = std::max(acked_seq, c.seq);
            }
        }
        return answered;
    }

    // Forgets every undecided publish: the records are pending in the database and will be
    // sent again. Never an attempt.
    void drop_flights(const std::unordered_set<std::uint64_t>& answered = {}) {
        std::size_t dropped = 0;
        for (auto it = flights.begin(); it != flights.end();) {
            if (!it->second.outcome) {
                if (answered.count(it->second.seq) == 0) {
                    note_lost(it->first, it->second);
                }
                if (it->second.ref.key) {
                    busy_keys.erase(*it->second.ref.key);
                }
                it = flights.erase(it);
                ++dropped;
            } else {
                ++it;
            }
        }
        sent = 0;
        reset_scan();
        std::lock_guard lock(mutex);
        outstanding = 0;
        stats.connection_losses += dropped;
    }

    // A connection died. A record right after whose publish it died (within kSuspectWindow,
    // nothing sent after it acknowledged) becomes the suspect: it is held back and, on the next
    // connections, sent alone once something else was acknowledged there. When the connection
    // then dies right after it again, that is evidence, and the loss counts as an attempt for
    // it (then on every such loss), so the retry cap ends it and the records behind it go. A
    // flaky link or a broker restart can make an innocent record the suspect, but cannot give
    // the evidence: that needs the connection to work for others and die on this one alone.
    // Also backs off reconnecting to a broker that keeps dropping useless young connections.
    void judge_loss() {
        const auto now = clock.now();
        // A connection that answered nothing and died young: the broker keeps dropping us.
        // One that carried acknowledgements was useful, however short: reconnect at once.
        const bool useless = now - connected_at < kYoungConnection && acked_seq == 0;
        quick_losses = useless ? quick_losses + 1 : 0;
        std::optional<Lost> s;
        s.swap(loss_first);
        if (!s || now - s->flight.sent_at > kSuspectWindow || acked_seq > s->flight.seq) {
            return;  // not right after a publish
        }
        if (s->id != suspect_id) {
            release_held();
            suspect_id = s->id;
            suspect_proven = false;
            return;
        }
        if (!s->flight.alone || !(s->flight.after_ack || suspect_proven) ||
            flights.count(s->id) != 0) {
            return;  // suspected again, but no evidence yet
        }
        suspect_proven = true;
        Flight f;
        f.ref = s->flight.ref;
        f.outcome = failure(s->id, f,
                            "the broker dropped the connection right after this publish, sent "
                            "alone (a message it refuses by disconnecting?)");
        if (f.ref.key) {
            busy_keys.insert(*f.ref.key);  // freed once the attempt is written
        }
        flights.emplace(s->id, std::move(f));
    }

    // Lets a held suspect go back to the dispatch queue.
    void release_held() {
        if (held && held->key) {
            busy_keys.erase(*held->key);
            freed.insert(*held->key);
        }
        held.reset();
    }

    Ms reconnect_delay() {
        return backoff_delay(opt.reconnect_initial, opt.reconnect_max, connect_failures, unit(rng));
    }

    // Returns true when connected after the call.
    bool ensure_connected() {
        if (broker.connected()) {
            if (!was_connected) {  // connected by someone else, or a connect that raced
                on_connected();
            }
            return true;
        }
        if (was_connected) {
            was_connected = false;
            drop_flights(answered_before_loss());
            judge_loss();
            {
                std::lock_guard lock(mutex);
                stats.connected = false;
            }
            emit({DispatchEvent::Kind::disconnected, 0, 0, 0, "connection lost"});
            // The first reconnect at once; a broker that keeps dropping young connections is
            // backed off like one that refuses them.
            connect_failures = quick_losses > 1 ? quick_losses - 1 : 0;
            next_connect = clock.now() + (connect_failures > 0 ? reconnect_delay() : Ms(0));
        }
        if (clock.now() < next_connect) {
            return false;
        }
        try {
            broker.connect(opt.connect_timeout);
        } catch (const std::exception& e) {
            ++connect_failures;
            next_connect = clock.now() + reconnect_delay();
            note_error(e.what());
            emit({DispatchEvent::Kind::disconnected, 0, 0, 0, e.what()});
            return false;
        }
        on_connected();
        return true;
    }

    void on_connected() {
        was_connected = true;
        connect_failures = 0;
        connected_at = clock.now();
        acked_seq = 0;
        loss_first.reset();
        reset_scan();
        {
            std::lock_guard lock(mutex);
            stats.connected = true;
            ++stats.reconnects;
        }
        emit({DispatchEvent::Kind::connected, 0, 0, 0, ""});
    }

    // ---- the dispatch queue ----

    // Starts the forward pass again from the first pending record, forgetting what the last
    // pass learnt (waiting keys, due retries). Busy keys stay: they are in `flights`.
    void reset_scan() {
        cursor = DispatchCursor{};
        at_end = false;
        arrivals_due = true;
        waiting_keys.clear();
        waiting_ids.clear();
        freed.clear();
        dues = {};
        forgotten_due.reset();
    }

    // Remembers that `r` (or its key's head) waits until `at`.
    void wait_for(const PendingRef& r, std::int64_t at) {
        if (r.key) {
            waiting_keys[*r.key] = at;
        } else {
            waiting_ids.insert(r.id);
        }
        if (dues.size() < due_capacity()) {
            dues.push({at, r});
        } else {
            // No room: a pass from the top finds it when it is due.
            forgotten_due = std::min(forgotten_due.value_or(at), at);
        }
    }

    // The earliest wall time something waits for.
    std::optional<std::int64_t> next_due() const {
        std::optional<std::int64_t> t = forgotten_due;
        if (!dues.empty()) {
            t = std::min(t.value_or(dues.top().at), dues.top().at);
        }
        return t;
    }

    // True when the dispatch queue has more to look at than this step looked at.
    bool queue_busy() const {
        return !freed.empty() || arrivals_due || !at_end ||
               (!dues.empty() && dues.top().at <= clock.wall_ms());
    }

    // A suspect goes alone: nothing else while it is out, and once the connection has shown it
    // works (or the suspect was proven), nothing new until the window is empty, then it goes.
    bool suspect_blocks() const {
        if (suspect_id == 0) {
            return false;
        }
        auto it = flights.find(suspect_id);
        if (it != flights.end() && it->second.alone && !it->second.outcome) {
            return true;
        }
        return held && (acked_seq > 0 || suspect_proven) && sent > 0;
    }

    // Publishes what the window allows; returns how many publishes were made. A step that
    // throws leaves no trace: the keys it marked busy are free again and the pass starts over.
    std::size_t publish_due() {
        std::vector<PendingRef> chosen;
        try {
            choose(chosen);
            return send_chosen(chosen);
        } catch (...) {
            for (const PendingRef& c : chosen) {
                if (c.key && flights.count(c.id) == 0) {
                    busy_keys.erase(*c.key);
                }
            }
            reset_scan();
            throw;
        }
    }

    void choose(std::vector<PendingRef>& chosen) {
        const std::int64_t now = clock.wall_ms();
        if (suspect_blocks()) {
            return;
        }
        if (held && (acked_seq > 0 || suspect_proven)) {  // and the window is empty
            chosen.push_back(*held);
            held.reset();
            return;
        }
        auto room = [&] { return opt.window - std::min(opt.window, sent + chosen.size()); };
        auto consider = [&](const PendingRef& r) {
            if (flights.count(r.id) != 0 || (!r.key && waiting_ids.count(r.id) != 0)) {
                return;  // in flight, or waiting in `dues`
            }
            if (r.key && (busy_keys.count(*r.key) != 0 || waiting_keys.count(*r.key) != 0)) {
                return;  // asked again when the key is free or due
            }
            if (r.expires_at && *r.expires_at <= now) {
                Flight f;
                f.ref = r;
                f.outcome = Outcome{Outcome::Kind::expired,       r.id, r.attempts, 0,
                                    "ttl passed before delivery", now};
                if (r.key) {
                    busy_keys.insert(*r.key);  // freed once the outcome is written
                }
                flights.emplace(r.id, std::move(f));
                return;
            }
            if (r.next_attempt_at > now) {
                wait_for(r, r.next_attempt_at);
                return;
            }
            if (r.key) {
                busy_keys.insert(*r.key);  // one per key within this batch too
            }
            if (r.id == suspect_id) {
                held = r;  // sent alone, see judge_loss()
                return;
            }
            chosen.push_back(r);
        };
        auto head_of = [&](const std::string& key) {
            if (std::optional<PendingRef> head = store.key_head(key)) {
                consider(*head);
            }
        };

        if (forgotten_due && *forgotten_due <= now) {
            reset_scan();  // `dues` had no room for some: look at everything again
        }
        // 1. Waits that are over: keyed heads and keyless records.
        while (!dues.empty() && dues.top().at <= now && room() > 0) {
            const Due d = dues.top();
            dues.pop();
            if (d.ref.key) {
                auto w = waiting_keys.find(*d.ref.key);
                if (w == waiting_keys.end() || w->second != d.at) {
                    continue;  // a stale entry: the key was rescheduled or forgotten
                }
                waiting_keys.erase(w);
                head_of(*d.ref.key);
            } else if (waiting_ids.erase(d.ref.id) != 0) {
                consider(d.ref);
            }
        }
        // 2. Keys that became free: their head, wherever it lies.
        while (!freed.empty() && room() > 0) {
            const std::string key = *freed.begin();
            freed.erase(freed.begin());
            head_of(key);
        }
        // 3. Arrivals that lie before the pass position (a higher priority than the cursor's);
        // the others lie ahead of it and the pass reaches them.
        if (arrivals_due && room() > 0) {
            const std::int64_t upto = store.last_id();
            std::vector<PendingRef> refs;
            if (!cursor.at_start && upto > seen_id) {
                refs = store.scan_arrivals(seen_id, upto, cursor.priority, room() + 1);
            }
            std::int64_t done_upto = upto;
            if (refs.size() > room()) {
                refs.pop_back();
                done_upto = refs.back().id;  // the rest next step
            } else {
                arrivals_due = false;
            }
            std::stable_sort(
                refs.begin(), refs.end(),
                [](const PendingRef& a, const PendingRef& b) { return a.priority > b.priority; });
            for (const PendingRef& r : refs) {
                if (r.key) {
                    head_of(*r.key);  // an earlier record of its key goes first
                } else {
                    consider(r);
                }
            }
            seen_id = std::max(seen_id, done_upto);
            at_end = false;  // the others lie ahead of the cursor
        }
        // 4. The forward pass, at most `scan_budget` rows per step (the loop comes back at once
        // while the pass has not reached the end).
        const std::size_t scan_budget = std::max<std::size_t>(256, 2 * opt.window);
        std::size_t examined = 0;
        while (room() > 0 && !at_end && examined < scan_budget) {
            const std::size_t want = std::max<std::size_t>(room(), 32);
            const std::vector<PendingRef> refs = store.scan_pending(cursor, want);
            if (refs.size() < want) {
                at_end = true;
            }
            for (const PendingRef& r : refs) {
                if (room() == 0) {
                    at_end = false;  // more may follow; come back from here
                    break;
                }
                // seen_id stays: ids below this one may lie behind the cursor at a higher
                // priority, committed since the last arrivals check.
                cursor = DispatchCursor{r.priority, r.id, false};
                ++examined;
                consider(r);
            }
        }
        // 5. A held suspect with nothing else to do goes alone now.
        if (held && chosen.empty() && sent == 0) {
            chosen.push_back(*held);
            held.reset();
        }
    }

    // Loads and publishes the chosen records. Records removed meanwhile (purged by hand) do not
    // come back from the store; their keys are freed again. A record that cannot be read goes
    // to dead with the reason.
    std::size_t send_chosen(const std::vector<PendingRef>& chosen) {
        if (chosen.empty()) {
            return 0;
        }
        std::vector<std::int64_t> ids;
        ids.reserve(chosen.size());
        for (const PendingRef& c : chosen) {
            ids.push_back(c.id);
        }
        LoadedRecords loaded = store.load_pending(ids);
        std::unordered_map<std::int64_t, const PendingRef*> refs;
        for (const PendingRef& c : chosen) {
            refs.emplace(c.id, &c);
        }
        const std::int64_t now = clock.wall_ms();
        for (const UnreadableRecord& u : loaded.unreadable) {
            Flight f;
            f.ref = *refs.at(u.id);
            f.outcome = Outcome{Outcome::Kind::dead, u.id, f.ref.attempts, 0, u.reason, now};
            flights.emplace(u.id, std::move(f));  // its key stays busy until that is written
        }
        std::size_t made = 0;
        for (const Record& rec : loaded.records) {
            if (!send(rec, *refs.at(rec.id))) {
                break;  // the connection went down under us
            }
            ++made;
        }
        for (const PendingRef& c : chosen) {
            if (c.key && flights.count(c.id) == 0) {
                busy_keys.erase(*c.key);
                freed.insert(*c.key);
            }
        }
        return made;
    }

    // Hands one record to the broker. False when the broker refused because it is not connected.
    bool send(const Record& rec, PendingRef ref) {
        const std::uint64_t s = ++seq;
        ref.attempts = rec.attempts;
        const auto now = clock.now();
        Flight& f = flights[rec.id];
        f = Flight{s, std::move(ref), now, now + opt.ack_timeout, std::nullopt};
        f.alone = rec.id == suspect_id;
        f.after_ack = acked_seq > 0;
        if (f.ref.key) {
            busy_keys.insert(*f.ref.key);
        }
        ++sent;
        {
            std::lock_guard lock(mutex);
            ++outstanding;
            ++stats.published;
        }
        try {
            broker.publish(rec,
                           [this, id = rec.id, s](const PublishResult& r) { complete(id, s, r); });
        } catch (const std::exception& e) {
            // Could not even start: treat like a lost connection (no attempt burned).
            complete(rec.id, s, PublishResult::lost(e.what()));
            return false;
        }
        return true;
    }

    // ---- completions ----

    // Decides the outcome of a failed attempt.
    Outcome failure(std::int64_t id, const Flight& f, const std::string& why) {
        const std::uint32_t attempts = f.ref.attempts + 1;
        const std::int64_t now = clock.wall_ms();
        if (auto at = opt.retry.next_attempt_at(attempts, now, unit(rng))) {
            return {Outcome::Kind::retry, id, attempts, *at, why, now};
        }
        return {Outcome::Kind::dead, id, attempts, 0, why, now};
    }

    // Collects completions and ack timeouts into decided flights. Returns how many were decided.
    std::size_t collect(bool connected) {
        std::vector<Completion> done;
        {
            std::lock_guard lock(mutex);
            done.swap(completions);
            completions_due = false;
        }
        std::size_t decided = 0;
        for (const Completion& c : done) {
            auto it = flights.find(c.id);
            if (it == flights.end() || it->second.seq != c.seq || it->second.outcome) {
                continue;  // a late answer to a publish we already gave up on
            }
            Flight& f = it->second;
            switch (c.result.status) {
                case PublishResult::Status::delivered:
                    acked_seq = std::max(acked_seq, f.seq);
                    f.outcome = Outcome{Outcome::Kind::delivered, c.id, f.ref.attempts, 0, "",
                                        clock.wall_ms()};
                    break;
                case PublishResult::Status::rejected:
                    acked_seq = std::max(acked_seq, f.seq);
                    f.outcome = failure(
                        c.id, f,
                        c.result.reason.empty() ? "rejected by the broker" : c.result.reason);
                    break;
                case PublishResult::Status::connection_lost:
                    note_lost(c.id, f);
                    if (f.ref.key) {
                        busy_keys.erase(*f.ref.key);
                    }
                    flights.erase(it);
                    --sent;
                    reset_scan();
                    {
                        std::lock_guard lock(mutex);
                        ++stats.connection_losses;
                    }
                    continue;
            }
            --sent;
            ++decided;
        }
        if (connected) {
            const auto now = clock.now();
            for (auto& [id, f] : flights) {
                if (!f.outcome && f.deadline <= now) {
                    f.outcome = failure(id, f,
                                        "no acknowledgement within " +
                                            std::to_string(opt.ack_timeout.count()) + " ms");
                    f.seq = 0;  // ignore the answer if it ever comes
                    --sent;
                    ++decided;
                }
            }
        }
        return decided;
    }

    // Writes decided outcomes, in batches of max_batch. On a storage error they stay decided
    // and are written by a later step: nothing is sent twice meanwhile.
    std::size_t write_outcomes() {
        // Gathered first: finish() erases flights, which must not happen under an iteration.
        std::vector<Outcome> decided;
        for (const auto& [id, f] : flights) {
            if (f.outcome) {
                decided.push_back(*f.outcome);
            }
        }
        std::size_t written = 0;
        std::vector<Outcome> batch;
        for (std::size_t i = 0; i < decided.size(); i += opt.max_batch) {
            const std::size_t end = std::min(decided.size(), i + opt.max_batch);
            batch.assign(decided.begin() + static_cast<std::ptrdiff_t>(i),
                         decided.begin() + static_cast<std::ptrdiff_t>(end));
            store.apply(batch, opt.retention.count() > 0);
            for (const Outcome& o : batch) {
                finish(o);
            }
            written += batch.size();
        }
        return written;
    }

    // Bookkeeping once an outcome is in the database.
    void finish(const Outcome& o) {
        auto it = flights.find(o.id);
        if (it == flights.end()) {
            return;
        }
        PendingRef ref = std::move(it->second.ref);
        flights.erase(it);
        if (ref.key) {
            busy_keys.erase(*ref.key);
        }
        DispatchEvent e{DispatchEvent::Kind::delivered, o.id, o.attempts, 0, o.error};
        {
            std::lock_guard lock(mutex);
            switch (o.kind) {
                case Outcome::Kind::delivered:
                    ++stats.delivered;
                    break;
                case Outcome::Kind::retry:
                    ++stats.retries;
                    e.kind = DispatchEvent::Kind::retry_scheduled;
                    e.next_attempt_at = o.next_attempt_at;
                    break;
                case Outcome::Kind::dead:
                    ++stats.dead;
                    e.kind = DispatchEvent::Kind::dead;
                    break;
                case Outcome::Kind::expired:
                    ++stats.expired;
                    e.kind = DispatchEvent::Kind::expired;
                    break;
            }
        }
        if (o.id == suspect_id && o.kind != Outcome::Kind::retry) {
            suspect_id = 0;  // answered, dead or expired: no longer a suspect
            suspect_proven = false;
        }
        if (o.kind == Outcome::Kind::retry) {
            // The record (and its key's later records) wait; it lies before the cursor, so it
            // comes back through `dues`.
            ref.attempts = o.attempts;
            ref.next_attempt_at = o.next_attempt_at;
            wait_for(ref, o.next_attempt_at);
        } else if (ref.key) {
            freed.insert(*ref.key);  // the key's next record may go
        }
        emit(e);
    }

    // ---- housekeeping ----

    void housekeeping() {
        const auto now = clock.now();
        const std::int64_t wall = clock.wall_ms();
        // A wall clock that stepped backwards would leave retry times far in the future.
        const std::int64_t offset = wall - mono_ms(now);
        if (!clock_checked || offset < clock_offset - 1000) {
            store.clamp_retry_times(wall, opt.retry.max_backoff.count());
            reset_scan();
        }
        clock_offset = offset;
        clock_checked = true;

        if (now >= next_poll) {
            // Offline there is nothing to send: look less often (TTL expiry still runs).
            next_poll = now + (was_connected ? opt.poll_interval
                                             : std::max<Ms>(opt.poll_interval, kOfflinePoll));
            const std::int64_t v = store.data_version();
            if (v != data_version) {
                const std::int64_t r = store.requeue_count();  // before v counts as seen
                data_version = v;
                // Another connection committed: new records (arrivals), or a requeue, which
                // puts records before the pass position.
                arrivals_due = true;
                at_end = false;
                next_expiry_known = false;
                if (r != requeues) {
                    requeues = r;
                    reset_scan();
                }
            }
            if (!next_expiry_known) {
                next_expiry = store.next_expiry();
                next_expiry_known = true;
            }
            if (next_expiry && *next_expiry <= wall) {
                std::vector<std::int64_t> in_flight;
                for (const auto& [id, f] : flights) {
                    in_flight.push_back(id);
                }
                for (std::int64_t id : store.expire_due(wall, in_flight)) {
                    {
                        std::lock_guard lock(mutex);
                        ++stats.expired;
                    }
                    emit({DispatchEvent::Kind::expired, id, 0, 0, "ttl passed before delivery"});
                }
                // Records in flight stay overdue until answered: looked at again next poll.
                next_expiry = store.next_expiry();
            }
        }
        if (opt.retention.count() > 0 && now >= next_purge) {
            next_purge = now + std::min<Ms>(opt.retention, 60s);
            store.purge_delivered(wall - opt.retention.count());
        }
    }

    // ---- one step ----

    std::size_t step() {
        {
            std::lock_guard lock(mutex);
            ++steps_started;
            if (wake_flag) {
                // New records were committed in this process: arrivals, or ahead of the pass.
                wake_flag = false;
                arrivals_due = true;
                at_end = false;
                next_expiry_known = false;  // they may carry a ttl
            }
            if (rescan_flag) {
                rescan_flag = false;
                reset_scan();  // requeued records lie before the cursor
            }
        }
        std::size_t work = 0;
        bool failed = false;
        try {
            keep_lease();
            if (!lease_held) {
                // Answers to publishes given up with the lease: nothing to do with them.
                std::lock_guard lock(mutex);
                completions.clear();
                completions_due = false;
                return 0;
            }
            const bool connected = ensure_connected();
            work += collect(connected);
            housekeeping();
            // Publish first, then write: the broker works on the next publishes while the
            // outcomes of the last ones go to disk. Decided records stay in `flights` until
            // written, so the scan cannot pick them again meanwhile.
            if (connected) {
                work += publish_due();
            }
            work += write_outcomes();
            if (sent == 0 && flights.empty() && (!queue_busy() || !connected) &&
                !store.has_pending()) {
                std::lock_guard lock(mutex);
                idle_at_step = steps_started;
            }
        } catch (const Error& e) {
            failed = true;
            note_error(e.what());
        } catch (const std::exception& e) {
            failed = true;
            note_error(std::string("unexpected error: ") + e.what());
        }
        if (failed) {
            error_hold = clock.now() + retry_pause();
        } else {
            error_hold.reset();
        }
        {
            std::lock_guard lock(mutex);
            stats.in_flight = sent;
        }
        drain_cv.notify_all();
        return work;
    }

    // The earliest moment the loop has something to do without being woken.
    Clock::time_point next_deadline() const {
        const auto now = clock.now();
        if (!lease_held) {
            return next_heartbeat;  // nothing else happens without the lease
        }
        auto t = std::min(next_poll, next_heartbeat);
        if (!was_connected) {
            t = std::min(t, next_connect);
        } else if (sent < opt.window && queue_busy() && !suspect_blocks()) {
            t = now;  // the dispatch queue has more, and the window has room
        }
        for (const auto& [id, f] : flights) {
            if (!f.outcome) {
                t = std::min(t, f.deadline);
            } else {
                // An outcome is waiting to be written after a storage error: try again soon,
                // without spinning on a disk that stays full.
                t = std::min(t, now + retry_pause());
            }
        }
        if (const auto due = next_due()) {
            t = std::min(t, now + Ms(std::clamp<std::int64_t>(*due - clock.wall_ms(), 0,
                                                              kMaxDuration.count())));
        }
        if (opt.retention.count() > 0) {
            t = std::min(t, next_purge);
        }
        if (error_hold) {
            t = std::max(t, *error_hold);
        }
        return t;
    }

    void loop() {
        while (true) {
            step();
            const auto deadline = next_deadline();
            std::unique_lock lock(mutex);
            if (stop_flag) {
                break;
            }
            const auto wait = deadline - clock.now();
            if (wait > Clock::duration::zero()) {
                cv.wait_for(lock, wait, [this] {
                    return stop_flag || wake_flag || completions_due || conn_event;
                });
            }
            conn_event = false;
        }
    }

    // Stopping: no new publishes; wait for what is in flight, up to the deadline. The deadline
    // is real time (steady_clock), whatever clock drives the dispatcher's schedule.
    void finish_up(std::chrono::steady_clock::time_point deadline) {
        using std::chrono::steady_clock;
        try {
            while (sent > 0 && steady_clock::now() < deadline && broker.connected()) {
                {
                    std::unique_lock lock(mutex);
                    cv.wait_until(lock, std::min(deadline, steady_clock::now() + 50ms),
                                  [this] { return !completions.empty(); });
                }
                collect(false);
                write_outcomes();
            }
            collect(false);
            write_outcomes();
        } catch (const std::exception& e) {
            note_error(e.what());
        }
        broker.disconnect(std::chrono::duration_cast<Ms>(std::max<steady_clock::duration>(
            deadline - steady_clock::now(), steady_clock::duration::zero())));
        // What is still undecided is pending in the database: sent again next time.
        flights.clear();
        busy_keys.clear();
        held.reset();  // found again (and held again) by the next start's pass
        sent = 0;
        was_connected = false;
        if (lease_held) {
            store.release_lease(lease.owner);
            lease_held = false;
        }
        std::lock_guard lock(mutex);
        outstanding = 0;
        stats.connected = false;
        stats.in_flight = 0;
    }
};

Dispatcher::Dispatcher(Store& store, MessageBroker& broker, DispatcherOptions options,
                       const Clock& clock)
    : impl_(std::make_unique<Impl>(store, broker, std::move(options), clock)) {
    Impl* impl = impl_.get();
    broker.set_connection_handler([impl](bool, const std::string&) {
        {
            std::lock_guard lock(impl->mutex);
            impl->conn_event = true;
        }
        impl->cv.notify_one();
    });
    store.set_wake_handler([impl](bool rescan) { impl->wake(rescan); });
}

Dispatcher::~Dispatcher() {
    stop();
    impl_->store.set_wake_handler({});
    impl_->broker.set_connection_handler({});
}

void Dispatcher::start() {
    Impl& s = *impl_;
    if (s.running) {
        throw Error(ErrorKind::invalid_config, "Dispatcher::start() called twice without stop()");
    }
    if (!s.lease_held) {
        s.take_lease();  // throws LeaseHeld to the caller: a second dispatcher must know
    }
    {
        std::lock_guard lock(s.mutex);
        s.stop_flag = false;
        s.wake_flag = true;
        s.stats.running = true;
    }
    s.running = true;
    s.thread = std::thread([&s] {
#ifdef __linux__
        ::pthread_setname_np(::pthread_self(), "outpost-disp");  // visible in top -H, perf
#endif
        s.loop();
    });
}

void Dispatcher::stop(std::chrono::milliseconds deadline) noexcept {
    Impl& s = *impl_;
    const auto until = std::chrono::steady_clock::now() + deadline;
    if (s.running) {
        {
            std::lock_guard lock(s.mutex);
            s.stop_flag = true;
        }
        s.cv.notify_one();
        s.thread.join();
        s.running = false;
    }
    if (s.lease_held || s.was_connected || !s.flights.empty()) {
        s.finish_up(until);
    }
    {
        std::lock_guard lock(s.mutex);
        s.stats.running = false;
    }
    s.drain_cv.notify_all();
}

std::size_t Dispatcher::run_once() {
    Impl& s = *impl_;
    if (!s.lease_ever) {
        s.take_lease();
    }
    return s.step();
}

void Dispatcher::wake() noexcept {
    impl_->wake(true);
}

bool Dispatcher::drain(std::chrono::milliseconds timeout) {
    Impl& s = *impl_;
    std::unique_lock lock(s.mutex);
    // Only a step that starts after this call can vouch for records committed before it.
    const std::uint64_t after = s.steps_started;
    s.wake_flag = true;
    s.cv.notify_one();
    return s.drain_cv.wait_for(lock, timeout, [&] {
        return s.idle_at_step > after || !s.stats.running;
    }) && s.idle_at_step > after;
}

DispatcherStats Dispatcher::stats() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->stats;
}

}  // namespace outpost

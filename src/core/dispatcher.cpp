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
                            "; it must be within 1..65535");
    }
    retry.validate();
    auto positive = [](std::chrono::milliseconds v, const char* name) {
        if (v.count() <= 0) {
            throw InvalidConfig(std::string("DispatcherOptions::") + name + " must be positive");
        }
    };
    positive(ack_timeout, "ack_timeout");
    positive(poll_interval, "poll_interval");
    positive(reconnect_initial, "reconnect_initial");
    positive(connect_timeout, "connect_timeout");
    positive(lease_ttl, "lease_ttl");
    if (reconnect_max < reconnect_initial) {
        throw InvalidConfig("DispatcherOptions::reconnect_max must be at least reconnect_initial");
    }
    if (retention.count() < 0) {
        throw InvalidConfig("DispatcherOptions::retention must not be negative");
    }
    if (max_batch < 1) {
        throw InvalidConfig("DispatcherOptions::max_batch must be at least 1");
    }
}

namespace {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

// How often an offline dispatcher looks at the database (for TTL expiry and other writers).
constexpr Ms kOfflinePoll{5000};

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
    // A publish handed to the broker and not yet written back.
    struct Flight {
        std::uint64_t seq = 0;  // matches the completion to this publish
        std::optional<std::string> key;
        std::uint32_t attempts = 0;      // attempts before this publish
        Clock::time_point deadline{};    // ack timeout
        std::optional<Outcome> outcome;  // decided, waiting to be written
    };
    struct Completion {
        std::int64_t id;
        std::uint64_t seq;
        PublishResult result;
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
    std::size_t sent = 0;                          // flights whose outcome is not decided yet
    std::unordered_set<std::string> busy_keys;     // a record of the key is in flight
    std::unordered_set<std::string> waiting_keys;  // the key's head waits for its retry time
    // Due records the scan passed because their key was busy, per key in dispatch order.
    std::unordered_map<std::string, std::deque<PendingRef>> parked;
    std::size_t parked_count = 0;
    std::unordered_set<std::string> freed;  // keys that became free since the last step
    DispatchCursor cursor;
    bool at_end = false;  // the last scan reached the end of the pending records
    std::optional<std::int64_t> next_retry_wall;
    std::int64_t data_version = -1;
    std::optional<std::int64_t> next_expiry;  // earliest expires_at of a pending record
    bool next_expiry_known = false;
    Clock::time_point next_poll{};
    std::mt19937_64 rng{std::random_device{}()};
    std::uniform_real_distribution<double> unit{0.0, 1.0};

    LeaseInfo lease;
    bool lease_held = false;
    bool lease_ever = false;
    Clock::time_point next_heartbeat{};

    bool was_connected = false;
    std::uint32_t connect_failures = 0;
    Clock::time_point next_connect{};
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

    // Forgets every undecided publish: the records are pending in the database and will be
    // sent again. Never an attempt.
    void drop_flights() {
        std::size_t dropped = 0;
        for (auto it = flights.begin(); it != flights.end();) {
            if (!it->second.outcome) {
                if (it->second.key) {
                    busy_keys.erase(*it->second.key);
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

    Ms reconnect_delay() {
        double d = static_cast<double>(opt.reconnect_initial.count());
        for (std::uint32_t i = 1; i < connect_failures && d < opt.reconnect_max.count(); ++i) {
            d *= 2;
        }
        d = std::min(d, static_cast<double>(opt.reconnect_max.count()));
        // Full jitter on the upper half: a fleet that lost the same broker spreads out.
        d *= 0.5 + 0.5 * unit(rng);
        return Ms(static_cast<std::int64_t>(d));
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
            drop_flights();
            {
                std::lock_guard lock(mutex);
                stats.connected = false;
            }
            emit({DispatchEvent::Kind::disconnected, 0, 0, 0, "connection lost"});
            connect_failures = 0;
            next_connect = clock.now();  // first reconnect at once, then back off
        }
        if (clock.now() < next_connect) {
            return false;
        }
        try {
            broker.connect(opt.connect_timeout);
        } catch (const Error& e) {
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
        reset_scan();
        {
            std::lock_guard lock(mutex);
            stats.connected = true;
            ++stats.reconnects;
        }
        emit({DispatchEvent::Kind::connected, 0, 0, 0, ""});
    }

    // ---- scanning and publishing ----

    // Starts the forward scan again from the first pending record, forgetting what the last
    // pass learnt (parked records, waiting keys).
    void reset_scan() {
        cursor = DispatchCursor{};
        at_end = false;
        waiting_keys.clear();
        next_retry_wall.reset();
        parked.clear();
        parked_count = 0;
        freed.clear();
    }

    bool key_blocked(const std::optional<std::string>& key) const {
        return key && (busy_keys.count(*key) != 0 || waiting_keys.count(*key) != 0);
    }

    // Publishes what the window allows; returns how many publishes were made.
    //
    // Two sources, in dispatch order: first the parked records of keys that became free (they
    // lie before the cursor), then a forward scan from the cursor. The scan examines at most
    // `scan_budget` rows per step and parks at most `park_limit` rows, so a backlog held back
    // by busy keys costs O(window) per step, not O(backlog).
    std::size_t publish_due() {
        const std::int64_t now = clock.wall_ms();
        std::vector<Chosen> chosen;
        auto room = [&] { return opt.window - std::min(opt.window, sent + chosen.size()); };
        auto consider = [&](const PendingRef& r, bool from_scan) {
            if (flights.count(r.id) != 0) {
                return;
            }
            if (r.expires_at && *r.expires_at <= now) {
                flights[r.id] = Flight{0,
                                       std::nullopt,
                                       r.attempts,
                                       {},
                                       Outcome{Outcome::Kind::expired, r.id, r.attempts, 0,
                                               "ttl passed before delivery", now}};
                if (r.key) {
                    freed.insert(*r.key);  // the next one of its key may go
                }
                return;
            }
            if (r.next_attempt_at > now) {
                if (r.key) {
                    waiting_keys.insert(*r.key);
                }
                next_retry_wall =
                    std::min(next_retry_wall.value_or(r.next_attempt_at), r.next_attempt_at);
                return;
            }
            if (key_blocked(r.key)) {
                if (from_scan) {  // wait in memory for the key to become free
                    parked[*r.key].push_back(r);
                    ++parked_count;
                }
                return;
            }
            if (r.key) {
                busy_keys.insert(*r.key);  // one per key within this batch too
            }
            chosen.push_back({r.id, r.key});
        };

        // 1. Keys that became free: their next parked record.
        while (!freed.empty() && room() > 0) {
            const std::string key = *freed.begin();
            freed.erase(freed.begin());
            auto it = parked.find(key);
            while (it != parked.end() && !it->second.empty() && !key_blocked(key)) {
                const PendingRef r = it->second.front();
                it->second.pop_front();
                --parked_count;
                consider(r, false);
            }
            if (it != parked.end() && it->second.empty()) {
                parked.erase(it);
            }
        }
        // 2. Forward from the cursor.
        const std::size_t scan_budget = std::max<std::size_t>(256, 2 * opt.window);
        const std::size_t park_limit = std::max<std::size_t>(4096, 16 * opt.window);
        std::size_t examined = 0;
        while (room() > 0 && !at_end && examined < scan_budget && parked_count < park_limit) {
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
                cursor = DispatchCursor{r.priority, r.id, false};
                ++examined;
                consider(r, true);
            }
        }
        return send_chosen(chosen);
    }

    struct Chosen {
        std::int64_t id;
        std::optional<std::string> key;
    };

    // Loads and publishes the chosen records. Records removed meanwhile (purged by hand) do not
    // come back from the store; their keys are freed again.
    std::size_t send_chosen(const std::vector<Chosen>& chosen) {
        std::vector<std::int64_t> ids;
        ids.reserve(chosen.size());
        for (const Chosen& c : chosen) {
            ids.push_back(c.id);
        }
        std::size_t made = 0;
        for (const Record& rec : store.load_pending(ids).records) {
            if (!send(rec)) {
                break;  // the connection went down under us
            }
            ++made;
        }
        for (const Chosen& c : chosen) {
            if (c.key && flights.count(c.id) == 0) {
                busy_keys.erase(*c.key);
                freed.insert(*c.key);
            }
        }
        return made;
    }

    // Hands one record to the broker. False when the broker refused because it is not connected.
    bool send(const Record& rec) {
        const std::uint64_t s = ++seq;
        Flight& f = flights[rec.id];
        f = Flight{s, rec.message.key, rec.attempts, clock.now() + opt.ack_timeout, std::nullopt};
        if (f.key) {
            busy_keys.insert(*f.key);
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
        } catch (const Error& e) {
            // Could not even start: treat like a lost connection (no attempt burned).
            complete(rec.id, s, PublishResult::lost(e.what()));
            return false;
        }
        return true;
    }

    // ---- completions ----

    // Decides the outcome of a failed attempt.
    Outcome failure(std::int64_t id, const Flight& f, const std::string& why) {
        const std::uint32_t attempts = f.attempts + 1;
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
                    f.outcome =
                        Outcome{Outcome::Kind::delivered, c.id, f.attempts, 0, "", clock.wall_ms()};
                    break;
                case PublishResult::Status::rejected:
                    f.outcome = failure(
                        c.id, f,
                        c.result.reason.empty() ? "rejected by the broker" : c.result.reason);
                    break;
                case PublishResult::Status::connection_lost:
                    if (f.key) {
                        busy_keys.erase(*f.key);
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
        std::vector<Outcome> batch;
        std::size_t written = 0;
        auto flush = [&] {
            store.apply(batch, opt.retention.count() > 0);
            for (const Outcome& o : batch) {
                finish(o);
            }
            written += batch.size();
            batch.clear();
        };
        for (const auto& [id, f] : flights) {
            if (f.outcome) {
                batch.push_back(*f.outcome);
                if (batch.size() >= opt.max_batch) {
                    flush();
                }
            }
        }
        if (!batch.empty()) {
            flush();
        }
        return written;
    }

    // Bookkeeping once an outcome is in the database.
    void finish(const Outcome& o) {
        auto it = flights.find(o.id);
        std::optional<std::string> key;
        if (it != flights.end()) {
            key = std::move(it->second.key);
            flights.erase(it);
        }
        if (key) {
            busy_keys.erase(*key);
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
        if (o.kind == Outcome::Kind::retry) {
            // The key's head now waits: its later records must not overtake it. The record
            // lies before the cursor, so the scan will not see it again until a rescan.
            if (key) {
                waiting_keys.insert(*key);
            }
            next_retry_wall =
                std::min(next_retry_wall.value_or(o.next_attempt_at), o.next_attempt_at);
        } else if (key) {
            // The key is free again: its next record, if the scan passed it, is parked.
            freed.insert(*key);
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
                data_version = v;
                reset_scan();  // another process committed (or changed) records
                next_expiry_known = false;
            }
            if (!next_expiry_known) {
                next_expiry = store.next_expiry();
                next_expiry_known = true;
            }
            if (next_expiry && *next_expiry <= wall) {
                for (std::int64_t id : store.expire_due(wall)) {
                    {
                        std::lock_guard lock(mutex);
                        ++stats.expired;
                    }
                    emit({DispatchEvent::Kind::expired, id, 0, 0, "ttl passed before delivery"});
                }
                next_expiry = store.next_expiry();
            }
        }
        if (opt.retention.count() > 0 && now >= next_purge) {
            next_purge = now + std::min<Ms>(opt.retention, 60s);
            store.purge_delivered(wall - opt.retention.count());
        }
        if (next_retry_wall && *next_retry_wall <= wall) {
            reset_scan();  // a retry is due; the record lies before the cursor
        }
    }

    // ---- one step ----

    std::size_t step() {
        {
            std::lock_guard lock(mutex);
            ++steps_started;
            if (wake_flag) {
                // New records were committed in this process: they lie after the cursor
                // (higher ids), so the scan only has to go on. A higher priority among them is
                // found by the next data_version poll, which rescans.
                wake_flag = false;
                at_end = false;
                next_expiry_known = false;  // they may carry a ttl
            }
            if (rescan_flag) {
                rescan_flag = false;
                reset_scan();  // requeued records lie before the cursor
            }
        }
        std::size_t work = 0;
        try {
            keep_lease();
            if (!lease_held) {
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
            if (sent == 0 && flights.empty() && (at_end || !connected) && !store.has_pending()) {
                std::lock_guard lock(mutex);
                idle_at_step = steps_started;
            }
        } catch (const Error& e) {
            note_error(e.what());
        } catch (const std::exception& e) {
            note_error(std::string("unexpected error: ") + e.what());
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
        auto t = std::min(next_poll, next_heartbeat);
        if (!was_connected) {
            t = std::min(t, next_connect);
        }
        for (const auto& [id, f] : flights) {
            if (!f.outcome) {
                t = std::min(t, f.deadline);
            } else {
                // An outcome is waiting to be written after a storage error: try again soon,
                // without spinning on a disk that stays full.
                t = std::min(t, clock.now() + std::min<Clock::duration>(opt.poll_interval, 1s));
            }
        }
        if (next_retry_wall) {
            t = std::min(
                t, clock.now() + Ms(std::max<std::int64_t>(0, *next_retry_wall - clock.wall_ms())));
        }
        if (opt.retention.count() > 0) {
            t = std::min(t, next_purge);
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
        } catch (const Error& e) {
            note_error(e.what());
        }
        broker.disconnect(std::chrono::duration_cast<Ms>(std::max<steady_clock::duration>(
            deadline - steady_clock::now(), steady_clock::duration::zero())));
        // What is still undecided is pending in the database: sent again next time.
        flights.clear();
        busy_keys.clear();
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

// The dispatcher loop: it orchestrates the parts that own the dispatch state and is the only
// one that calls across them, writes outcomes, keeps the connection and emits events:
//   DispatchQueue  (dispatch_queue.hpp)  which record goes next; per-key order
//   FlightTable    (flight_table.hpp)    what is out, its answer, its decided outcome
//   PoisonSuspect  (poison_suspect.hpp)  a message the broker answers by disconnecting
//   LeaseKeeper    (lease_keeper.hpp)    the claim to be the only dispatcher of the file
//   Backoff        (backoff.hpp)         reconnect delays (and RetryPolicy's)
// Everything runs on one thread (the dispatcher's, or the caller's in run_once()), except the
// members under `mutex`, which the broker's threads and the app's threads touch.
#include "outpost/dispatcher.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "backoff.hpp"
#include "dispatch_queue.hpp"
#include "flight_table.hpp"
#include "lease_keeper.hpp"
#include "outpost/error.hpp"
#include "poison_suspect.hpp"

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
    if (!(reconnect_jitter >= 0.0 && reconnect_jitter <= 1.0)) {  // also refuses nan
        throw InvalidConfig("DispatcherOptions::reconnect_jitter must be within [0, 1]",
                            "reconnect_jitter");
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

std::int64_t mono_ms(Clock::time_point t) {
    return std::chrono::duration_cast<Ms>(t.time_since_epoch()).count();
}

}  // namespace

struct Dispatcher::Impl {
    Store& store;
    MessageBroker& broker;
    const DispatcherOptions opt;
    const Clock& clock;

    // --- shared with other threads, under `mutex` ---
    mutable std::mutex mutex;
    std::condition_variable cv;        // wakes the loop
    std::condition_variable drain_cv;  // wakes drain()
    detail::CompletionInbox inbox;     // answers from the broker's threads
    bool wake_flag = true;
    bool rescan_flag = false;  // a wake for records behind the scan position (requeue)
    bool stop_flag = false;
    bool conn_event = false;
    std::uint64_t steps_started = 0;
    std::uint64_t idle_at_step = 0;  // last step that found nothing pending and nothing in flight
    DispatcherStats stats;

    // --- dispatching thread only ---
    detail::LeaseKeeper lease;
    detail::DispatchQueue queue;
    detail::FlightTable flights;
    detail::PoisonSuspect suspect;

    // The connection.
    const detail::Backoff reconnect_backoff;
    std::mt19937_64 rng{std::random_device{}()};
    std::uniform_real_distribution<double> unit{0.0, 1.0};
    bool was_connected = false;
    std::uint32_t connect_failures = 0;
    std::uint32_t quick_losses = 0;  // connections in a row that died young
    Clock::time_point connected_at{};
    Clock::time_point next_connect{};

    // Housekeeping: other writers, expiry, clock steps, purges.
    std::int64_t requeues = -1;  // Store::requeue_count() last seen
    std::int64_t data_version = -1;
    std::optional<std::int64_t> next_expiry;  // earliest expires_at of a pending record
    bool next_expiry_known = false;
    Clock::time_point next_poll{};
    std::int64_t clock_offset = 0;  // wall - monotonic, to notice wall-clock steps
    bool clock_checked = false;
    Clock::time_point next_purge{};
    std::optional<Clock::time_point> error_hold;  // after a failed step: not before this

    std::thread thread;
    bool running = false;

    Impl(Store& s, MessageBroker& b, DispatcherOptions o, const Clock& c)
        : store(s),
          broker(b),
          opt((o.validate(), std::move(o))),
          clock(c),
          lease(store, clock, opt.lease_ttl, retry_pause()),
          queue(opt.window),
          flights(opt.retry, opt.ack_timeout, clock),
          reconnect_backoff{opt.reconnect_initial, opt.reconnect_max, 2.0, opt.reconnect_jitter} {}

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
            wake = inbox.push({id, s, r});
        }
        if (wake) {
            cv.notify_one();
        }
    }

    // A short pause before trying again after a failure, never a spin on a disk that stays
    // full or a database that stays busy.
    Clock::duration retry_pause() const {
        return std::min<Clock::duration>(opt.poll_interval, std::chrono::seconds(1));
    }

    // ---- lease ----

    void keep_lease() {
        switch (lease.keep()) {
            case detail::LeaseKeeper::Change::none:
                return;
            case detail::LeaseKeeper::Change::taken:
                queue.reset();
                return;
            case detail::LeaseKeeper::Change::lost:
                // What is in flight will be sent again by the new holder.
                drop_flights();
                note_error("the dispatcher lease was taken over by another dispatcher");
                emit({DispatchEvent::Kind::lease_lost, 0, 0, 0, "lease taken over"});
                return;
        }
    }

    // ---- connection ----

    // Forgets every undecided publish: the records are pending in the database and will be
    // sent again. Never an attempt. `answered`: publishes the broker answered before the loss
    // was noticed (their answers still queued); they are sent again like the rest (an
    // acknowledgement from a broker that is going away is worth little: a killed mosquitto loses
    // what it acknowledged and had not passed on), but none of them is suspected of the loss.
    void drop_flights(const std::unordered_set<std::uint64_t>& answered = {}) {
        const auto dropped = flights.drop_undecided();
        for (const auto& [id, f] : dropped) {
            if (answered.count(f.seq) == 0) {
                suspect.note_lost(id, f);
            }
            if (f.ref.key) {
                queue.release(*f.ref.key);
            }
        }
        queue.reset();
        std::lock_guard lock(mutex);
        inbox.forget_outstanding();
        stats.connection_losses += dropped.size();
    }

    std::unordered_set<std::uint64_t> answered_before_loss() {
        std::lock_guard lock(mutex);
        return flights.answered(inbox.queued());
    }

    // A connection died: judges the suspect (see PoisonSuspect), and backs off reconnecting to a
    // broker that keeps dropping useless young connections.
    void judge_loss() {
        const auto now = clock.now();
        // A connection that answered nothing and died young: the broker keeps dropping us.
        // One that carried acknowledgements was useful, however short: reconnect at once.
        const bool useless = now - connected_at < kYoungConnection && flights.acked_seq() == 0;
        quick_losses = useless ? quick_losses + 1 : 0;
        detail::PoisonSuspect::Verdict v = suspect.judge(now, flights);
        if (v.released && v.released->key) {
            queue.free(*v.released->key);
        }
        if (v.proven) {
            const std::int64_t id = v.proven->id;
            Outcome o = flights.failure(id, *v.proven,
                                        "the broker dropped the connection right after this "
                                        "publish, sent alone (a message it refuses by "
                                        "disconnecting?)");
            if (v.proven->key) {
                queue.mark_busy(*v.proven->key);  // freed once the attempt is written
            }
            flights.decide(std::move(*v.proven), std::move(o));
        }
    }

    Ms reconnect_delay() { return reconnect_backoff.delay(connect_failures, unit(rng)); }

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
        flights.new_connection();
        suspect.new_connection();
        queue.reset();
        {
            std::lock_guard lock(mutex);
            stats.connected = true;
            ++stats.reconnects;
        }
        emit({DispatchEvent::Kind::connected, 0, 0, 0, ""});
    }

    // ---- publishing ----

    // Publishes what the window allows; returns how many publishes were made. A step that
    // throws leaves no trace: the keys it marked busy are free again and the pass starts over.
    std::size_t publish_due() {
        std::vector<PendingRef> chosen;
        try {
            choose(chosen);
            return send_chosen(chosen);
        } catch (...) {
            for (const PendingRef& c : chosen) {
                if (c.key && !flights.contains(c.id)) {
                    queue.release(*c.key);
                }
            }
            queue.reset();
            throw;
        }
    }

    // The records to send now: a suspect alone when its time has come, else what the queue
    // picks. Records the queue found expired become decided flights at once; a suspect it found
    // is held.
    void choose(std::vector<PendingRef>& chosen) {
        if (suspect.blocks(flights)) {
            return;
        }
        if (std::optional<PendingRef> ready = suspect.take_ready(flights)) {
            chosen.push_back(std::move(*ready));  // and the window is empty
            return;
        }
        const std::int64_t now = clock.wall_ms();
        detail::DispatchQueue::Picked picked;
        auto adopt = [&] {
            for (PendingRef& r : picked.expired) {
                const std::int64_t id = r.id;
                const std::uint32_t attempts = r.attempts;
                flights.decide(std::move(r), Outcome{Outcome::Kind::expired, id, attempts, 0,
                                                     "ttl passed before delivery", now});
            }
            if (picked.held) {
                suspect.hold(std::move(*picked.held));
            }
            chosen = std::move(picked.send);
        };
        try {
            queue.pick(
                store, now, opt.window - std::min(opt.window, flights.sent()),
                [this](std::int64_t id) { return flights.contains(id); }, suspect.id(), picked);
        } catch (...) {
            adopt();  // publish_due() frees the keys of `chosen`
            throw;
        }
        adopt();
        // A held suspect with nothing else to do goes alone now.
        if (chosen.empty() && flights.sent() == 0) {
            if (std::optional<PendingRef> held = suspect.take_held()) {
                chosen.push_back(std::move(*held));
            }
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
            const PendingRef& ref = *refs.at(u.id);
            // Its key stays busy until that is written.
            flights.decide(ref, Outcome{Outcome::Kind::dead, u.id, ref.attempts, 0, u.reason, now});
        }
        std::size_t made = 0;
        for (const Record& rec : loaded.records) {
            if (!send(rec, *refs.at(rec.id))) {
                break;  // the connection went down under us
            }
            ++made;
        }
        for (const PendingRef& c : chosen) {
            if (c.key && !flights.contains(c.id)) {
                queue.free(*c.key);
            }
        }
        return made;
    }

    // Hands one record to the broker. False when the broker refused because it is not connected.
    bool send(const Record& rec, const PendingRef& ref) {
        if (ref.key) {
            queue.mark_busy(*ref.key);
        }
        const std::uint64_t s = flights.launch(ref, rec.attempts, rec.id == suspect.id());
        {
            std::lock_guard lock(mutex);
            inbox.expect_one();
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

    // ---- outcomes ----

    // Collects answers and ack timeouts into decided flights. Returns how many were decided.
    std::size_t collect(bool connected) {
        std::vector<detail::Completion> answers;
        {
            std::lock_guard lock(mutex);
            answers = inbox.take();
        }
        detail::FlightTable::Collected c = flights.collect(answers, connected);
        if (!c.lost.empty()) {
            for (const auto& [id, f] : c.lost) {
                suspect.note_lost(id, f);
                if (f.ref.key) {
                    queue.release(*f.ref.key);
                }
            }
            queue.reset();
            std::lock_guard lock(mutex);
            stats.connection_losses += c.lost.size();
        }
        return c.decided;
    }

    // Writes decided outcomes, in batches of max_batch. On a storage error they stay decided
    // and are written by a later step: nothing is sent twice meanwhile.
    std::size_t write_outcomes() {
        // Gathered first: finish() removes flights.
        const std::vector<Outcome> decided = flights.decided();
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
        std::optional<PendingRef> ref = flights.settle(o.id);
        if (!ref) {
            return;
        }
        DispatchEvent e{DispatchEvent::Kind::delivered, o.id, o.attempts, 0, o.error};
        {
            std::lock_guard lock(mutex);
            switch (o.kind) {
                case Outcome::Kind::delivered:
                    ++stats.delivered;
                    if (!o.error.empty()) {
                        ++stats.unrouted;
                    }
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
        suspect.settled(o);
        if (o.kind == Outcome::Kind::retry) {
            // The record (and its key's later records) wait; it lies before the cursor, so it
            // comes back through the queue's due list.
            if (ref->key) {
                queue.release(*ref->key);
            }
            ref->attempts = o.attempts;
            ref->next_attempt_at = o.next_attempt_at;
            queue.wait_for(*ref, o.next_attempt_at);
        } else if (ref->key) {
            queue.free(*ref->key);  // the key's next record may go
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
            queue.reset();
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
                queue.note_arrivals();
                next_expiry_known = false;
                if (r != requeues) {
                    requeues = r;
                    queue.reset();
                }
            }
            if (!next_expiry_known) {
                next_expiry = store.next_expiry();
                next_expiry_known = true;
            }
            if (next_expiry && *next_expiry <= wall) {
                for (std::int64_t id : store.expire_due(wall, flights.ids())) {
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
                queue.note_arrivals();
                next_expiry_known = false;  // they may carry a ttl
            }
            if (rescan_flag) {
                rescan_flag = false;
                queue.reset();  // requeued records lie before the cursor
            }
        }
        std::size_t work = 0;
        bool failed = false;
        try {
            keep_lease();
            if (!lease.held()) {
                // Answers to publishes given up with the lease: nothing to do with them.
                std::lock_guard lock(mutex);
                inbox.discard();
                return 0;
            }
            const bool connected = ensure_connected();
            work += collect(connected);
            housekeeping();
            // Publish first, then write: the broker works on the next publishes while the
            // outcomes of the last ones go to disk. Decided records stay in the flight table
            // until written, so the queue cannot pick them again meanwhile.
            if (connected) {
                work += publish_due();
            }
            work += write_outcomes();
            if (flights.sent() == 0 && flights.empty() &&
                (!queue.has_more(clock.wall_ms()) || !connected) && !store.has_pending()) {
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
            stats.in_flight = flights.sent();
        }
        drain_cv.notify_all();
        return work;
    }

    // The earliest moment the loop has something to do without being woken.
    Clock::time_point next_deadline() const {
        const auto now = clock.now();
        if (!lease.held()) {
            return lease.next_heartbeat();  // nothing else happens without the lease
        }
        auto t = std::min(next_poll, lease.next_heartbeat());
        if (!was_connected) {
            t = std::min(t, next_connect);
        } else if (flights.sent() < opt.window && queue.has_more(clock.wall_ms()) &&
                   !suspect.blocks(flights)) {
            t = now;  // the dispatch queue has more, and the window has room
        }
        if (const auto f = flights.next_deadline(now, retry_pause())) {
            t = std::min(t, *f);
        }
        if (const auto due = queue.next_due()) {
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
                cv.wait_for(lock, wait,
                            [this] { return stop_flag || wake_flag || inbox.due() || conn_event; });
            }
            conn_event = false;
        }
    }

    // Stopping: no new publishes; wait for what is in flight, up to the deadline. The deadline
    // is real time (steady_clock), whatever clock drives the dispatcher's schedule.
    void finish_up(std::chrono::steady_clock::time_point deadline) {
        using std::chrono::steady_clock;
        try {
            while (flights.sent() > 0 && steady_clock::now() < deadline && broker.connected()) {
                {
                    std::unique_lock lock(mutex);
                    cv.wait_until(lock, std::min(deadline, steady_clock::now() + 50ms),
                                  [this] { return !inbox.empty(); });
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
        queue.clear_busy();
        suspect.forget_held();  // found again (and held again) by the next start's pass
        was_connected = false;
        lease.release();
        std::lock_guard lock(mutex);
        inbox.forget_outstanding();
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
    if (!s.lease.held()) {
        s.lease.take();  // throws LeaseHeld to the caller: a second dispatcher must know
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
    if (s.lease.held() || s.was_connected || !s.flights.empty()) {
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
    if (!s.lease.ever()) {
        s.lease.take();
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

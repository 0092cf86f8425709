// Fault suite: the independent oracle and the one line every scenario prints.
//
// A scenario's app writes each event as a business row (table `app_events`) and an outbox
// message in ONE transaction (add_event). What was committed is then read back from the file by
// plain SQLite (the sqlite3 C API, read-only: never outpost's code); what arrived is what a
// `mosquitto_sub` subscriber logged (tests/support/subscriber.hpp). judge() compares the two:
//
//   committed      events in app_events
//   lost           committed, never arrived, and no longer in outpost_records in any state
//   rolled-back    arrived, but not committed (a rolled-back or invented message was sent)
//   duplicated     arrivals beyond the first of an event (at-least-once: bounded per fault)
//   reordered      first arrivals of a key whose seq is below one that arrived before it
//   stuck          committed, never arrived, still in outpost_records (pending at the end)
//
// The payload of each message is "uid key seq": uid is 16 random hex digits (never reused, so a
// rolled-back event and a later committed one with the same key and seq are told apart), seq is
// 1 + the highest committed seq of the key, taken inside the transaction (SQLite's write lock
// makes it the commit order).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace SQLite {
class Database;
}
namespace outpost {
class Outbox;
}

namespace outpost::faults {

// The size the suite runs at: "ci" (default) or "long" (meson -Dfault_size=long, passed to each
// test as OUTPOST_FAULT_SIZE).
bool long_size();
// ci when !long_size(), else long_.
template <class T>
T sized(T ci, T long_) {
    return long_size() ? long_ : ci;
}

// The seed of a random scenario: OUTPOST_FAULT_SEED when set (a replay), else fresh. Printed as
// "scenario NAME: seed S (replay with OUTPOST_FAULT_SEED=S)".
std::uint64_t scenario_seed(const std::string& name);

struct Event {
    std::string uid;
    std::string key;
    std::int64_t seq = 0;
    friend bool operator==(const Event&, const Event&) = default;
};

// The business table, created by the app (not by outpost) on its own connection.
inline constexpr const char* kAppSchema =
    "CREATE TABLE IF NOT EXISTS app_events (uid TEXT PRIMARY KEY NOT NULL, key TEXT NOT NULL, "
    "seq INTEGER NOT NULL); "
    "CREATE INDEX IF NOT EXISTS app_events_key ON app_events (key, seq)";
inline constexpr const char* kTopicPrefix = "faults/";  // topic = faults/<key>

// In one SQLite transaction on `db`: the business row, then outbox.add() of its message; commits
// unless `roll_back`. Returns the event (committed or rolled back). Throws what SQLite or the
// outbox throws; the transaction is then rolled back.
Event add_event(SQLite::Database& db, Outbox& outbox, const std::string& key, bool roll_back,
                std::mt19937_64& rng);

std::string payload_of(const Event& e);
std::optional<Event> parse_payload(std::string_view payload);

// Plain SQLite, read-only, on `path` (the app's file):
std::vector<Event> committed_events(const std::string& path);
// uid -> state of each record in outpost_records whose payload parses (any state).
std::map<std::string, int> outbox_states(const std::string& path);
// PRAGMA integrity_check's first row ("ok" when sound), or the error that opening gave.
std::string integrity_check(const std::string& path);

struct Tally {
    std::size_t committed = 0;
    std::size_t lost = 0;
    std::size_t rolled_back_sent = 0;
    std::size_t duplicated = 0;
    std::size_t reordered = 0;
    std::size_t stuck = 0;
    std::vector<std::string> examples;  // the first few violations, for the failure message

    bool sound() const {
        return lost == 0 && rolled_back_sent == 0 && reordered == 0 && stuck == 0;
    }
    // "scenario NAME: committed N, lost 0, rolled-back sent 0, duplicated D, reordered 0, stuck 0"
    std::string line(const std::string& name) const;
};

// `arrived`: the payloads the subscriber logged, in arrival order. `in_outbox`: outbox_states()
// of the file at the end.
Tally judge(const std::vector<Event>& committed, const std::vector<std::string>& arrived,
            const std::map<std::string, int>& in_outbox);

// Prints tally.line(name) on stdout (flushed) and returns it.
std::string report(const std::string& name, const Tally& tally);

}  // namespace outpost::faults

#include "oracle.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <outpost/outbox.hpp>

namespace outpost::faults {

bool long_size() {
    const char* size = std::getenv("OUTPOST_FAULT_SIZE");
    return size != nullptr && std::string_view(size) == "long";
}

std::uint64_t scenario_seed(const std::string& name) {
    std::uint64_t seed = 0;
    if (const char* s = std::getenv("OUTPOST_FAULT_SEED"); s != nullptr && *s != '\0') {
        seed = std::strtoull(s, nullptr, 10);
    } else {
        seed = std::random_device{}();
        seed = (seed << 32) ^ std::random_device{}();
    }
    std::cout << "scenario " << name << ": seed " << seed
              << " (replay with OUTPOST_FAULT_SEED=" << seed << ")" << std::endl;
    return seed;
}

std::string payload_of(const Event& e) {
    return e.uid + " " + e.key + " " + std::to_string(e.seq);
}

std::optional<Event> parse_payload(std::string_view payload) {
    const auto a = payload.find(' ');
    const auto b = a == std::string_view::npos ? a : payload.find(' ', a + 1);
    if (b == std::string_view::npos || a != 16) {
        return std::nullopt;
    }
    Event e;
    e.uid = std::string(payload.substr(0, a));
    e.key = std::string(payload.substr(a + 1, b - a - 1));
    const std::string seq(payload.substr(b + 1));
    char* end = nullptr;
    e.seq = std::strtoll(seq.c_str(), &end, 10);
    if (seq.empty() || *end != '\0') {
        return std::nullopt;
    }
    return e;
}

Event add_event(SQLite::Database& db, Outbox& outbox, const std::string& key, bool roll_back,
                std::mt19937_64& rng) {
    char uid[17];
    std::snprintf(uid, sizeof uid, "%016llx", static_cast<unsigned long long>(rng()));
    // IMMEDIATE: the seq read and the inserts under one write lock, taken with the busy timeout
    // (a deferred transaction that reads first fails at once with SQLITE_BUSY_SNAPSHOT when a
    // dispatcher commits in between).
    SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement next(db, "SELECT coalesce(max(seq), 0) + 1 FROM app_events WHERE key = ?");
    next.bind(1, key);
    next.executeStep();
    Event e{uid, key, next.getColumn(0).getInt64()};
    // Reset before the writes: a statement left active until the commit makes every checkpoint
    // on this connection fail with SQLITE_LOCKED, and the WAL never starts over.
    next.reset();
    SQLite::Statement row(db, "INSERT INTO app_events (uid, key, seq) VALUES (?, ?, ?)");
    row.bind(1, e.uid);
    row.bind(2, e.key);
    row.bind(3, e.seq);
    row.exec();
    Message m = Message::text(kTopicPrefix + key, payload_of(e));
    m.key = key;
    outbox.add(m);
    if (!roll_back) {
        tx.commit();
    }
    return e;
}

namespace {

// A read-only plain-SQLite connection; throws std::runtime_error with SQLite's message.
class Plain {
  public:
    explicit Plain(const std::string& path) {
        const int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr);
        if (rc != SQLITE_OK) {
            const std::string what = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
            sqlite3_close(db_);
            throw std::runtime_error("open " + path + ": " + what);
        }
        sqlite3_busy_timeout(db_, 10000);
    }
    ~Plain() { sqlite3_close(db_); }
    Plain(const Plain&) = delete;
    Plain& operator=(const Plain&) = delete;

    template <class Row>
    void each(const char* sql, Row row) {
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) {
            throw std::runtime_error(std::string(sql) + ": " + sqlite3_errmsg(db_));
        }
        int rc = SQLITE_ROW;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            row(st);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
            throw std::runtime_error(std::string(sql) + ": " + sqlite3_errmsg(db_));
        }
    }

  private:
    sqlite3* db_ = nullptr;
};

std::string text(sqlite3_stmt* st, int col) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(st, col))) : "";
}

}  // namespace

std::vector<Event> committed_events(const std::string& path) {
    Plain db(path);
    std::vector<Event> out;
    db.each("SELECT uid, key, seq FROM app_events ORDER BY key, seq", [&](sqlite3_stmt* st) {
        out.push_back({text(st, 0), text(st, 1), sqlite3_column_int64(st, 2)});
    });
    return out;
}

std::map<std::string, int> outbox_states(const std::string& path) {
    Plain db(path);
    std::map<std::string, int> out;
    db.each("SELECT payload, state FROM outpost_records", [&](sqlite3_stmt* st) {
        if (auto e = parse_payload(text(st, 0))) {
            out[e->uid] = sqlite3_column_int(st, 1);
        }
    });
    return out;
}

std::string integrity_check(const std::string& path) {
    try {
        Plain db(path);
        std::string first;
        db.each("PRAGMA integrity_check", [&](sqlite3_stmt* st) {
            if (first.empty()) {
                first = text(st, 0);
            }
        });
        return first;
    } catch (const std::exception& e) {
        return e.what();
    }
}

std::string Tally::line(const std::string& name) const {
    std::ostringstream s;
    s << "scenario " << name << ": committed " << committed << ", lost " << lost
      << ", rolled-back sent " << rolled_back_sent << ", duplicated " << duplicated
      << ", reordered " << reordered << ", stuck " << stuck;
    return s.str();
}

Tally judge(const std::vector<Event>& committed, const std::vector<std::string>& arrived,
            const std::map<std::string, int>& in_outbox) {
    Tally t;
    t.committed = committed.size();
    auto note = [&](const std::string& what) {
        if (t.examples.size() < 10) {
            t.examples.push_back(what);
        }
    };
    std::map<std::string, const Event*> by_uid;
    for (const Event& e : committed) {
        by_uid[e.uid] = &e;
    }
    std::set<std::string> seen;
    std::map<std::string, std::int64_t> last_seq;  // key -> highest seq first-arrived so far
    for (const std::string& p : arrived) {
        const auto e = parse_payload(p);
        if (!e) {
            continue;  // not a scenario message (a readiness probe)
        }
        const auto it = by_uid.find(e->uid);
        if (it == by_uid.end() || !(*it->second == *e)) {
            ++t.rolled_back_sent;
            note("sent but not committed: " + p);
            continue;
        }
        if (!seen.insert(e->uid).second) {
            ++t.duplicated;
            continue;
        }
        auto& last = last_seq[e->key];
        if (e->seq < last) {
            ++t.reordered;
            note("reordered: " + p + " after seq " + std::to_string(last));
        }
        last = std::max(last, e->seq);
    }
    for (const Event& e : committed) {
        if (seen.count(e.uid) != 0) {
            continue;
        }
        if (in_outbox.count(e.uid) != 0) {
            ++t.stuck;
            note("stuck in state " + std::to_string(in_outbox.at(e.uid)) + ": " + payload_of(e));
        } else {
            ++t.lost;
            note("lost: " + payload_of(e));
        }
    }
    return t;
}

std::string report(const std::string& name, const Tally& tally) {
    std::string line = tally.line(name);
    std::cout << line << std::endl;
    for (const std::string& ex : tally.examples) {
        std::cout << "  " << ex << std::endl;
    }
    return line;
}

}  // namespace outpost::faults

#include "outpost/sqlite_store.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <signal.h>
#include <sqlite3.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <limits>

#include "liveness.hpp"
#include "outpost/error.hpp"
#include "outpost/outbox.hpp"
#include "outpost/process.hpp"
#include "queries.hpp"
#include "record_codec.hpp"
#include "schema.hpp"
#include "space.hpp"
#include "sqlite_error.hpp"
#include "transaction.hpp"
#include "wake_registry.hpp"

namespace outpost {

namespace {

// A row limit as SQLite takes it: a size_t beyond int64 (SIZE_MAX, "all") would wrap negative.
std::int64_t sql_limit(std::size_t limit) {
    return static_cast<std::int64_t>(std::min<std::size_t>(
        limit, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

const std::string kSelect = detail::sql::kPendingRefs;

// With the busy timeout from the start: the schema check that follows is a read, and a read
// without one fails at once with SQLITE_BUSY_RECOVERY while another process rebuilds the WAL
// index of a file whose last user was killed.
SQLite::Database open_existing(const std::string& path, const SqliteStoreOptions& o) {
    try {
        return SQLite::Database(
            path, SQLite::OPEN_READWRITE,
            static_cast<int>(std::min<std::int64_t>(o.busy_timeout.count(), INT32_MAX)));
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "opening the outbox database '" + path + "'");
    }
}

}  // namespace

struct SqliteStore::Impl {
    // First: installed on `db` before its first statement, and destroyed after it.
    detail::PatientBusyHandler busy;
    SQLite::Database db;
    std::string path;
    SQLite::Statement scan_first, scan_same_priority, scan_lower_priority;
    SQLite::Statement del, mark_delivered, mark_retry, mark_dead, mark_expired;
    SQLite::Statement load, exists_pending, data_version, freelist_count;
    SQLite::Statement head_of_key, arrivals, newest_id, requeues;
    std::uint64_t waker = 0;
    // Disk space (space.hpp). Without a known file system size none of it applies.
    bool space_rules = false;
    bool incremental_vacuum = false;  // the file has auto_vacuum = INCREMENTAL
    int busy_ms = 5000;
    int page_size = 4096;
    int wal_limit = 1000;
    std::uint64_t wal_limit_bytes = 0;
    std::string reserve;
    std::uint64_t reserve_size = 0;
    bool have_reserve = false;
    bool space_short = false;  // the last look found space short: look after every write
    std::chrono::steady_clock::time_point next_space_check{};
    std::uint64_t fs_total = 0;

    Impl(const std::string& p, const SqliteStoreOptions& o)
        : db(open_existing(p, o)),
          path(p),
          scan_first(db, prepare_after_checks(o, kSelect + "ORDER BY priority DESC, id LIMIT ?1")),
          scan_same_priority(db, kSelect + "AND priority = ?1 AND id > ?2 ORDER BY id LIMIT ?3"),
          scan_lower_priority(db,
                              kSelect + "AND priority < ?1 ORDER BY priority DESC, id LIMIT ?2"),
          del(db, "DELETE FROM outpost_records WHERE id = ?"),
          mark_delivered(db, detail::sql::kMarkDelivered),
          mark_retry(db, detail::sql::kMarkRetry),
          mark_dead(db, detail::sql::kMarkDead),
          mark_expired(db, detail::sql::kMarkExpired),
          load(db, std::string("SELECT ") + detail::kRecordColumns +
                       " FROM outpost_records WHERE id = ? AND " +
                       std::string(detail::sql::kIsPending.view())),
          exists_pending(db, detail::sql::kExistsPending),
          data_version(db, "PRAGMA data_version"),
          freelist_count(db, "PRAGMA freelist_count"),
          head_of_key(db, detail::sql::kKeyHead),
          arrivals(db, detail::sql::kArrivals),
          newest_id(db, "SELECT seq FROM sqlite_sequence WHERE name = 'outpost_records'"),
          requeues(db, "SELECT value FROM outpost_meta WHERE name = 'requeues'") {
        try {
            setup_space(o);
        } catch (const SQLite::Exception& e) {
            detail::rethrow_sqlite(e, "configuring the store's connection");
        }
    }

    // A damaged records table is refused (StorageError, SQLITE_CORRUPT) before this connection
    // writes anything (a migration, the WAL switch, a vacuum, the lease, marks): outpost never
    // writes into a damaged file. One pass over the table's rows that decodes each record's
    // header up to `state` (max(), not count(*): SQLite answers count(*) of a NOT NULL column
    // from the b-tree alone, without decoding a cell, and a damaged cell passed). `state` is
    // stored before the payload, so no overflow page of a large payload is read. Cost: one
    // read of the table at open, about 33 MB per 100,000 records of 200 B.
    void refuse_damaged() {
        SQLite::Statement q(db, "SELECT max(state) FROM outpost_records");
        q.executeStep();
    }

    // Disk space rules (space.hpp): in the constructor's body, once every member exists.
    void setup_space(const SqliteStoreOptions& o) {
        busy_ms = static_cast<int>(std::min<std::int64_t>(o.busy_timeout.count(), INT32_MAX));
        const detail::DiskSpace space = detail::disk_space(path);
        if (space.known) {
            space_rules = true;
            fs_total = space.total;
            page_size = std::stoi(detail::pragma_value(db, "page_size"));
            wal_limit = detail::wal_limit_pages(space.total, page_size);
            wal_limit_bytes = static_cast<std::uint64_t>(wal_limit) * page_size;
            sqlite3_wal_autocheckpoint(db.getHandle(), wal_limit);
            db.exec("PRAGMA journal_size_limit = " + std::to_string(wal_limit_bytes));
            incremental_vacuum = detail::pragma_value(db, "auto_vacuum") == "2";
            reserve = detail::reserve_path(path);
            reserve_size = detail::reserve_bytes(wal_limit_bytes);
            std::error_code ec;
            have_reserve = std::filesystem::file_size(reserve, ec) >= reserve_size && !ec;
            maintain_space();
        }
    }

    // Runs in the member-initialiser list before the first statement that names outpost tables
    // is prepared, so a file without them gets a SchemaError, not "no such table".
    std::string prepare_after_checks(const SqliteStoreOptions& o, std::string sql) {
        busy.install(db.getHandle(), o.busy_timeout);
        const int version = detail::check_schema(db);
        if (version == 0) {
            throw SchemaError("'" + path +
                              "' holds no outpost tables (an Outbox creates them on first use)");
        }
        try {
            refuse_damaged();
        } catch (const SQLite::Exception& e) {
            detail::rethrow_sqlite(e, "reading the outbox records before writing to the file");
        }
        if (version < kSchemaVersion) {
            detail::migrate(db);
        }
        try {
            db.exec("PRAGMA synchronous = " + o.synchronous);
            detail::switch_to_wal(db, o.busy_timeout);
        } catch (const SQLite::Exception& e) {
            detail::rethrow_sqlite(e, "configuring the store's connection");
        }
        return sql;
    }

    static bool disk_full(const SQLite::Exception& e) {
        const int code = e.getExtendedErrorCode() > 0 ? e.getExtendedErrorCode() : e.getErrorCode();
        return (code & 0xff) == SQLITE_FULL;
    }

    // Runs the write `f`. When it fails for want of space: frees the reserve, checkpoints (so
    // the WAL can start over from its beginning instead of growing) and runs `f` once more; a
    // second failure propagates. `f` must leave nothing behind when it throws (an
    // ImmediateTransaction rolls back, statements are reset).
    template <class F>
    auto with_room(F&& f) -> decltype(f()) {
        try {
            return f();
        } catch (const SQLite::Exception& e) {
            if (!space_rules || !disk_full(e)) {
                throw;
            }
        }
        if (have_reserve) {
            ::unlink(reserve.c_str());
            have_reserve = false;
        }
        sqlite3_wal_checkpoint_v2(db.getHandle(), "main", SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                  nullptr);
        space_short = true;
        return f();
    }

    // After a successful write: while space is short (under a quarter of the file system free),
    // or an eighth of the file system lies in free pages inside the file, gives freed pages back
    // to the file system and truncates the WAL; makes the reserve again
    // once there is room for it. Looks at statvfs once a second while space is plentiful (and
    // then writes nothing more than before), after every write while it is short.
    // Never throws: a failure here only postpones it.
    void maintain_space() noexcept {
        if (!space_rules) {
            return;
        }
        const auto now = std::chrono::steady_clock::now();
        if (have_reserve && !space_short && now < next_space_check && !much_unused()) {
            return;
        }
        next_space_check = now + std::chrono::seconds(1);
        try {
            detail::DiskSpace d = detail::disk_space(path);
            if (!d.known) {
                return;
            }
            // Short: under a quarter of the file system free, or not enough for the reserve and
            // two WALs. Then freed pages go back to the file system as they come.
            const std::uint64_t room = reserve_size + 2 * wal_limit_bytes;
            space_short = d.free < d.total / 4 || d.free < room;
            // Chunk after chunk while pages can go back (each chunk's WAL must fit in what is
            // free, so the chunks grow as space comes back), within a bound. Also when space is
            // not short but an eighth of the file system lies unused inside the file (after a
            // long backlog drained).
            auto wanted = [&] { return space_short || much_unused(); };
            for (int round = 0; round < 32 && wanted() && give_back_space(d.free); ++round) {
                d = detail::disk_space(path);
                space_short = d.free < d.total / 4 || d.free < room;
            }
            if (!have_reserve && d.free >= room) {
                have_reserve = detail::make_reserve(reserve, reserve_size);
            }
        } catch (...) {
        }
    }

    // True when an eighth of the file system (by its size when the store opened) lies in free
    // pages inside the file and they can go back. One read of the header page.
    bool much_unused() {
        if (!incremental_vacuum) {
            return false;
        }
        freelist_count.executeStep();
        const auto pages = static_cast<std::uint64_t>(freelist_count.getColumn(0).getInt64());
        freelist_count.reset();
        return pages * static_cast<std::uint64_t>(page_size) >= fs_total / 8;
    }

    // Returns free pages at the end of the file to the file system (incremental vacuum, when the
    // file allows it: a chunk that fits in the space left, so the WAL it writes fits too), then
    // checkpoints with TRUNCATE, which shrinks both the main file and the WAL. Waits at most
    // 100 ms for the app's writes: the next write tries again. True when free pages remain and
    // this chunk went back (another chunk may follow).
    bool give_back_space(std::uint64_t free_bytes) {
        bool more = false;
        if (incremental_vacuum) {
            const auto freelist = std::stoll(detail::pragma_value(db, "freelist_count"));
            if (freelist > 0) {
                const std::int64_t chunk = std::max<std::int64_t>(
                    wal_limit, static_cast<std::int64_t>(free_bytes / 4 / page_size));
                try {
                    db.exec("PRAGMA incremental_vacuum(" +
                            std::to_string(std::min<std::int64_t>(freelist, chunk)) + ")");
                    more = freelist > chunk;
                } catch (const SQLite::Exception&) {
                    // busy or full: the next write tries again
                }
            }
        }
        busy.set_timeout(std::chrono::milliseconds(100));
        const int rc = sqlite3_wal_checkpoint_v2(db.getHandle(), "main", SQLITE_CHECKPOINT_TRUNCATE,
                                                 nullptr, nullptr);
        busy.set_timeout(std::chrono::milliseconds(busy_ms));
        return more && rc == SQLITE_OK;
    }

    // Steps `q` (OUTPOST_PENDING_REF_COLUMNS, in order) to the end, appending rows; resets it.
    void collect(SQLite::Statement& q, std::vector<PendingRef>& out) {
        while (q.executeStep()) {
            PendingRef& r = out.emplace_back();
            r.id = q.getColumn(0).getInt64();
            r.priority = q.getColumn(1).getInt();
            if (!q.getColumn(2).isNull()) {
                r.key = q.getColumn(2).getString();
            }
            r.next_attempt_at = q.getColumn(3).getInt64();
            if (!q.getColumn(4).isNull()) {
                r.expires_at = q.getColumn(4).getInt64();
            }
            r.attempts = static_cast<std::uint32_t>(q.getColumn(5).getInt64());
        }
        q.reset();
    }
};

SqliteStore::SqliteStore(const std::string& path, SqliteStoreOptions options) {
    static const char* const kModes[] = {"NORMAL", "FULL", "EXTRA"};
    if (options.synchronous == "OFF") {
        throw InvalidConfig(
            "SqliteStoreOptions::synchronous = OFF is refused: the store's connection also "
            "checkpoints the WAL, and a checkpoint without fsync followed by a WAL reset can "
            "lose the app's synchronous=FULL commits at a power cut; use NORMAL (the default)",
            "synchronous");
    }
    if (std::find(std::begin(kModes), std::end(kModes), options.synchronous) == std::end(kModes)) {
        throw InvalidConfig("SqliteStoreOptions::synchronous is '" + options.synchronous +
                                "'; use NORMAL, FULL or EXTRA",
                            "synchronous");
    }
    try {
        impl_ = std::make_unique<Impl>(path, options);
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "opening the outbox store '" + path + "'");
    }
}

SqliteStore::~SqliteStore() {
    if (impl_->waker != 0) {
        detail::unregister_waker(impl_->waker);
    }
}

std::vector<PendingRef> SqliteStore::scan_pending(const DispatchCursor& after, std::size_t limit) {
    std::vector<PendingRef> out;
    // The dispatcher asks for at most its window (<= 65535); a caller may ask for "all".
    out.reserve(std::min<std::size_t>(limit, 1024));
    Impl& s = *impl_;
    const std::int64_t n = sql_limit(limit);
    try {
        if (after.at_start) {
            s.scan_first.bind(1, n);
            s.collect(s.scan_first, out);
            return out;
        }
        // Two index seeks instead of one OR: the rest of the cursor's priority, then the lower
        // priorities. Each starts right at the cursor whatever lies before it.
        s.scan_same_priority.bind(1, after.priority);
        s.scan_same_priority.bind(2, after.id);
        s.scan_same_priority.bind(3, n);
        s.collect(s.scan_same_priority, out);
        if (out.size() < limit) {
            s.scan_lower_priority.bind(1, after.priority);
            s.scan_lower_priority.bind(2, static_cast<std::int64_t>(limit - out.size()));
            s.collect(s.scan_lower_priority, out);
        }
    } catch (const SQLite::Exception& e) {
        // tryReset(), not reset(), in every handler here: sqlite3_reset() returns the failed
        // step's error again, and reset() would throw it out of the handler untranslated.
        (void)s.scan_first.tryReset();
        (void)s.scan_same_priority.tryReset();
        (void)s.scan_lower_priority.tryReset();
        detail::rethrow_sqlite(e, "reading pending records");
    }
    return out;
}

std::optional<PendingRef> SqliteStore::key_head(const std::string& key) {
    Impl& s = *impl_;
    std::vector<PendingRef> out;
    try {
        s.head_of_key.bind(1, key);
        s.collect(s.head_of_key, out);
    } catch (const SQLite::Exception& e) {
        (void)s.head_of_key.tryReset();
        detail::rethrow_sqlite(e, "reading the next record of key '" + key + "'");
    }
    if (out.empty()) {
        return std::nullopt;
    }
    return out.front();
}

std::vector<PendingRef> SqliteStore::scan_arrivals(std::int64_t after_id, std::int64_t upto_id,
                                                   int above_priority, std::size_t limit) {
    Impl& s = *impl_;
    std::vector<PendingRef> out;
    try {
        s.arrivals.bind(1, after_id);
        s.arrivals.bind(2, upto_id);
        s.arrivals.bind(3, above_priority);
        s.arrivals.bind(4, sql_limit(limit));
        s.collect(s.arrivals, out);
    } catch (const SQLite::Exception& e) {
        (void)s.arrivals.tryReset();
        detail::rethrow_sqlite(e, "reading newly added records");
    }
    return out;
}

namespace {

// Runs a one-value query; `fallback` when it returns no row.
std::int64_t single_value(SQLite::Statement& q, std::int64_t fallback, const char* what) {
    try {
        const std::int64_t v = q.executeStep() ? q.getColumn(0).getInt64() : fallback;
        q.reset();
        return v;
    } catch (const SQLite::Exception& e) {
        (void)q.tryReset();
        detail::rethrow_sqlite(e, what);
    }
}

}  // namespace

std::int64_t SqliteStore::last_id() {
    return single_value(impl_->newest_id, 0, "reading the newest record id");
}

std::int64_t SqliteStore::requeue_count() {
    return single_value(impl_->requeues, 0, "reading the requeue count");
}

LoadedRecords SqliteStore::load_pending(const std::vector<std::int64_t>& ids) {
    Impl& s = *impl_;
    LoadedRecords out;
    out.records.reserve(ids.size());
    try {
        // One read transaction for the batch: each statement outside a transaction would take
        // and drop the WAL read lock (fcntl calls) on its own.
        s.db.exec("BEGIN");
        for (std::int64_t id : ids) {
            s.load.bind(1, id);
            if (s.load.executeStep()) {
                try {
                    out.records.push_back(detail::read_record(s.load));
                } catch (const SQLite::Exception&) {
                    throw;  // the storage failed, not the record
                } catch (const std::exception& e) {
                    // The row is there but does not decode: say so, and load the others.
                    out.unreadable.push_back({id, std::string("the stored record cannot be "
                                                              "read: ") +
                                                      e.what()});
                }
            }
            s.load.reset();
        }
        s.db.exec("COMMIT");
    } catch (const SQLite::Exception& e) {
        (void)s.load.tryReset();
        try {
            s.db.exec("ROLLBACK");
        } catch (const SQLite::Exception&) {
        }
        detail::rethrow_sqlite(e, "loading pending records");
    }
    return out;
}

void SqliteStore::apply(const std::vector<Outcome>& outcomes, bool keep_delivered) {
    if (outcomes.empty()) {
        return;
    }
    Impl& s = *impl_;
    auto write = [&] {
        try {
            detail::ImmediateTransaction tx(s.db);
            for (const Outcome& o : outcomes) {
                SQLite::Statement* q = nullptr;
                switch (o.kind) {
                    case Outcome::Kind::delivered:
                        if (keep_delivered) {
                            q = &s.mark_delivered;
                            q->bind(2, o.at);
                        } else {
                            q = &s.del;
                        }
                        break;
                    case Outcome::Kind::retry:
                        q = &s.mark_retry;
                        q->bind(2, static_cast<std::int64_t>(o.attempts));
                        q->bind(3, o.next_attempt_at);
                        q->bind(4, o.error);
                        break;
                    case Outcome::Kind::dead:
                        q = &s.mark_dead;
                        q->bind(2, static_cast<std::int64_t>(o.attempts));
                        q->bind(3, o.error);
                        q->bind(4, o.at);
                        break;
                    case Outcome::Kind::expired:
                        q = &s.mark_expired;
                        q->bind(2, o.error);
                        q->bind(3, o.at);
                        break;
                }
                q->bind(1, o.id);
                q->exec();
                q->reset();
            }
            tx.commit();
        } catch (const SQLite::Exception&) {
            for (SQLite::Statement* q :
                 {&s.del, &s.mark_delivered, &s.mark_retry, &s.mark_dead, &s.mark_expired}) {
                (void)q->tryReset();
            }
            throw;
        }
    };
    try {
        s.with_room(write);
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "writing dispatch outcomes");
    }
    s.maintain_space();
}

bool SqliteStore::has_pending() {
    Impl& s = *impl_;
    try {
        s.exists_pending.executeStep();
        const bool any = s.exists_pending.getColumn(0).getInt() != 0;
        s.exists_pending.reset();
        return any;
    } catch (const SQLite::Exception& e) {
        (void)s.exists_pending.tryReset();
        detail::rethrow_sqlite(e, "looking for pending records");
    }
}

std::optional<std::int64_t> SqliteStore::next_expiry() {
    try {
        // min() over the partial expiry index: one index seek.
        SQLite::Statement q(impl_->db, detail::sql::kNextExpiry);
        if (q.executeStep() && !q.getColumn(0).isNull()) {
            return q.getColumn(0).getInt64();
        }
        return std::nullopt;
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "looking for the next expiry");
    }
}

std::vector<std::int64_t> SqliteStore::expire_due(std::int64_t now_ms,
                                                  const std::vector<std::int64_t>& in_flight) {
    Impl& s = *impl_;
    std::vector<std::int64_t> ids;
    try {
        // The ids in flight as a JSON array: a window can pass SQLite's parameter limit.
        std::string except = "[";
        for (std::int64_t id : in_flight) {
            except += std::to_string(id);
            except += ',';
        }
        if (except.size() > 1) {
            except.pop_back();
        }
        except += ']';
        s.with_room([&] {
            ids.clear();
            SQLite::Statement q(s.db, detail::sql::kExpireDue);
            q.bind(1, now_ms);
            q.bind(2, except);
            detail::ImmediateTransaction tx(s.db);
            while (q.executeStep()) {
                ids.push_back(q.getColumn(0).getInt64());
            }
            q.reset();
            tx.commit();
        });
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "expiring records");
    }
    s.maintain_space();
    return ids;
}

std::size_t SqliteStore::clamp_retry_times(std::int64_t now_ms, std::int64_t horizon_ms) {
    try {
        return impl_->with_room([&] {
            SQLite::Statement q(impl_->db, detail::sql::kClampRetryTimes);
            q.bind(1, now_ms);
            q.bind(2, horizon_ms);
            return static_cast<std::size_t>(q.exec());
        });
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "correcting retry times after a clock step");
    }
}

std::size_t SqliteStore::purge_delivered(std::int64_t before_ms) {
    try {
        // Through the partial index on done records (queries.hpp): a seek, not a scan of the
        // whole table under the write lock.
        const std::size_t n = impl_->with_room([&] {
            SQLite::Statement q(impl_->db, detail::sql::kPurgeDelivered);
            q.bind(1, before_ms);
            return static_cast<std::size_t>(q.exec());
        });
        impl_->maintain_space();
        return n;
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "purging delivered records");
    }
}

std::int64_t SqliteStore::data_version() {
    Impl& s = *impl_;
    try {
        s.data_version.executeStep();
        const std::int64_t v = s.data_version.getColumn(0).getInt64();
        s.data_version.reset();
        return v;
    } catch (const SQLite::Exception& e) {
        (void)s.data_version.tryReset();
        detail::rethrow_sqlite(e, "reading PRAGMA data_version");
    }
}

void SqliteStore::acquire_lease(const LeaseInfo& mine) {
    try {
        impl_->with_room([&] {
            detail::ImmediateTransaction tx(impl_->db);
            SQLite::Statement q(impl_->db,
                                "SELECT owner, host, pid, started_at, heartbeat_at, expires_at, "
                                "boot_id FROM outpost_lease WHERE slot = 1");
            if (q.executeStep()) {
                LeaseInfo held{q.getColumn(0).getString(), q.getColumn(1).getString(),
                               q.getColumn(2).getInt64(),  q.getColumn(3).getInt64(),
                               q.getColumn(4).getInt64(),  q.getColumn(5).getInt64()};
                const bool ours = held.owner == mine.owner;
                const bool lapsed = held.expires_at <= mine.heartbeat_at;
                // A holder on this host whose process (or boot) is gone crashed: no need to wait
                // for expiry.
                const bool crashed = !ours && detail::lease_holder_gone(held.host, held.pid,
                                                                        q.getColumn(6).getString(),
                                                                        mine.host, mine.pid);
                if (!ours && !lapsed && !crashed) {
                    throw LeaseHeld(
                        "another dispatcher holds the outbox '" + impl_->path + "': pid " +
                        std::to_string(held.pid) + " on " + held.host + ", last heartbeat " +
                        std::to_string((mine.heartbeat_at - held.heartbeat_at) / 1000) +
                        " s ago; its lease lapses in " +
                        std::to_string((held.expires_at - mine.heartbeat_at + 999) / 1000) +
                        " s unless renewed");
                }
            }
            q.reset();
            SQLite::Statement put(
                impl_->db,
                "INSERT OR REPLACE INTO outpost_lease (slot, owner, host, pid, "
                "started_at, heartbeat_at, expires_at, boot_id) VALUES (1, ?, ?, ?, ?, ?, ?, ?)");
            put.bind(1, mine.owner);
            put.bind(2, mine.host);
            put.bind(3, mine.pid);
            put.bind(4, mine.started_at);
            put.bind(5, mine.heartbeat_at);
            put.bind(6, mine.expires_at);
            put.bind(7, this_process().boot_id);
            put.exec();
            tx.commit();
        });
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "taking the dispatcher lease");
    }
}

bool SqliteStore::renew_lease(const std::string& owner, std::int64_t heartbeat_at,
                              std::int64_t expires_at) {
    try {
        return impl_->with_room([&] {
            SQLite::Statement q(impl_->db,
                                "UPDATE outpost_lease SET heartbeat_at = ?, expires_at = ? "
                                "WHERE slot = 1 AND owner = ?");
            q.bind(1, heartbeat_at);
            q.bind(2, expires_at);
            q.bind(3, owner);
            return q.exec() == 1;
        });
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "renewing the dispatcher lease");
    }
}

void SqliteStore::release_lease(const std::string& owner) noexcept {
    try {
        SQLite::Statement q(impl_->db, "DELETE FROM outpost_lease WHERE slot = 1 AND owner = ?");
        q.bind(1, owner);
        q.exec();
    } catch (...) {
        // The lease lapses on its own.
    }
}

void SqliteStore::set_wake_handler(std::function<void(bool rescan)> wake) {
    if (impl_->waker != 0) {
        detail::unregister_waker(impl_->waker);
        impl_->waker = 0;
    }
    if (wake) {
        const char* file = sqlite3_db_filename(impl_->db.getHandle(), "main");
        impl_->waker =
            detail::register_waker(file != nullptr ? file : impl_->path, std::move(wake));
    }
}

StoreCounts SqliteStore::counts() {
    return detail::count_records(impl_->db);
}

}  // namespace outpost

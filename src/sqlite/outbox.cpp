#include "outpost/outbox.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <random>

#include "outpost/error.hpp"
#include "queries.hpp"
#include "record_codec.hpp"
#include "schema.hpp"
#include "space.hpp"
#include "sqlite_error.hpp"
#include "transaction.hpp"
#include "wake_registry.hpp"

namespace outpost {

namespace {

constexpr int kAutoCheckpointPages = 1000;  // SQLite's default, which our WAL hook replaces

const char* const kInsertSql =
    "INSERT INTO outpost_records (uid, topic, payload, msg_key, qos, retain, priority, headers, "
    "content_type, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

// A UUID version 7: 48 bits of Unix milliseconds then random bits. Time-ordered, so consumers'
// indexes on it stay compact; unique without coordination between processes.
// Writes the 36 characters and a NUL into `out`. On the hot path: no allocation, no printf.
void make_uid(std::int64_t wall_ms, std::mt19937_64& rng, char (&out)[37]) {
    std::array<unsigned char, 16> b{};
    const auto ms = static_cast<std::uint64_t>(wall_ms);
    for (std::size_t i = 0; i < 6; ++i) {
        b[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
    }
    const std::uint64_t r1 = rng(), r2 = rng();
    for (std::size_t i = 0; i < 5; ++i) {
        b[6 + i] = static_cast<unsigned char>(r1 >> (8 * i));
        b[11 + i] = static_cast<unsigned char>(r2 >> (8 * i));
    }
    b[6] = static_cast<unsigned char>(0x70 | (b[6] & 0x0F));  // version 7
    b[8] = static_cast<unsigned char>(0x80 | (b[8] & 0x3F));  // RFC 4122 variant
    static constexpr char kHex[] = "0123456789abcdef";
    std::size_t o = 0;
    for (std::size_t i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = kHex[b[i] >> 4];
        out[o++] = kHex[b[i] & 0x0F];
    }
    out[o] = '\0';
}

std::mt19937_64 seeded_rng() {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
}

}  // namespace

struct Outbox::Impl {
    SQLite::Database& db;
    OutboxOptions options;
    const Clock& clock;
    std::string path;
    std::unique_ptr<SQLite::Statement> insert;
    std::mt19937_64 rng = seeded_rng();
    std::vector<unsigned char> header_buf;
    char uid[37] = {};
    // Set by add(), cleared by the WAL hook after the commit that carried the record.
    bool dirty = false;
    bool requeued = false;  // ... and some of them were dead records moved back to pending
    // Quota bookkeeping (only with a quota): the last exact totals plus this process's adds.
    std::uint64_t pending_estimate = 0;
    std::uint64_t pending_bytes_estimate = 0;
    Clock::time_point quota_checked_at{};
    bool quota_known = false;
    // Disk space (space.hpp): checkpoint every `wal_limit` pages; `disk_full` is set when a
    // checkpoint failed for want of space, and add() then refuses until space is back.
    int wal_limit = kAutoCheckpointPages;
    std::uint64_t wal_limit_bytes = 0;
    bool disk_full = false;
    bool watch_space = false;  // see on_wal_commit
    // WhenFull::drop_oldest, prepared on first use.
    std::unique_ptr<SQLite::Statement> lowest_priority, drop, count_dropped;

    Impl(SQLite::Database& d, OutboxOptions o, const Clock& c)
        : db(d), options(std::move(o)), clock(c) {}

    // The WAL hook: runs after every commit on the app's connection, outside the write lock.
    static int on_wal_commit(void* arg, sqlite3* handle, const char* schema, int pages) {
        auto* self = static_cast<Impl*>(arg);
        if (pages >= self->wal_limit) {
            // What sqlite3_wal_autocheckpoint() would have done, at a limit sized to the file
            // system; a busy checkpoint is fine. Before the wake-up below: a dispatcher woken
            // first would read during the checkpoint, which then stops at the frame that reader
            // started from, and the WAL, never fully checkpointed, could not start over and grew
            // with every commit. One that cannot grow the database file means the disk is full:
            // add() then refuses new messages (before writing anything) so what space is left
            // stays for the dispatcher, which frees it.
            //
            // A WAL four times over the limit could not start over (a reader that began before
            // a checkpoint finished still used it when the next write came): then a TRUNCATE
            // checkpoint waits (the busy timeout, in practice the length of one short read) for
            // the readers to move to the main file, and cuts the WAL to nothing.
            const int mode = pages >= 4 * self->wal_limit ? SQLITE_CHECKPOINT_TRUNCATE
                                                          : SQLITE_CHECKPOINT_PASSIVE;
            const int rc = sqlite3_wal_checkpoint_v2(handle, schema, mode, nullptr, nullptr);
            if ((rc & 0xff) == SQLITE_FULL) {
                self->disk_full = true;
            }
            // While the partition has less room than two WALs, add() watches the free space (see
            // refuse_while_disk_full). A commit that fails for want of space is the app's, which
            // the Outbox never hears of: refusing add() first keeps that room for the
            // dispatcher, which frees space. Before, on a partition filled by records (the
            // checkpoints still found room), the app's commits failed with SQLITE_FULL while
            // add() went on accepting. Looked at here, once per checkpoint attempt: between two
            // of them the files grow by at most about one WAL.
            const detail::DiskSpace d = detail::disk_space(self->path);
            self->watch_space = d.known && d.free < 2 * self->wal_limit_bytes;
        }
        if (self->dirty) {
            self->dirty = false;
            detail::notify_wakers(self->path, self->requeued);
            self->requeued = false;
        }
        return SQLITE_OK;
    }

    // While the disk is full (see on_wal_commit): refuses, unless statvfs says there is room
    // for a WAL's worth of pages again (the dispatcher delivered and returned space, or someone
    // deleted files). While `watch_space`, looks on every add() whether the partition's free
    // space plus the pages free inside the file (a file without auto_vacuum keeps the pages of
    // delivered records, and new records reuse them) is under two WALs, and refuses then.
    void refuse_while_disk_full() {
        if (!disk_full && !watch_space) {
            return;
        }
        const detail::DiskSpace d = detail::disk_space(path);
        if (disk_full && d.known && d.free >= 2 * wal_limit_bytes) {
            disk_full = false;
        }
        std::uint64_t room = d.free;
        if (!disk_full) {
            if (!d.known || d.free >= 2 * wal_limit_bytes) {
                return;
            }
            room += free_pages_bytes();
            if (room >= 2 * wal_limit_bytes) {
                return;
            }
        }
        throw StorageError("adding a message to the outbox: the disk is full (" +
                               std::to_string(room) + " bytes free, under the " +
                               std::to_string(2 * wal_limit_bytes) +
                               " kept for the WAL's checkpoint); nothing was stored, and "
                               "the dispatcher can still deliver and free space",
                           true, SQLITE_FULL);
    }

    // The bytes of the pages free inside the file (header reads on the app's connection).
    std::uint64_t free_pages_bytes() {
        try {
            return std::stoull(detail::pragma_value(db, "freelist_count")) *
                   std::stoull(detail::pragma_value(db, "page_size"));
        } catch (const std::exception&) {
            return 0;  // unknown: the partition's free space alone decides
        }
    }

    // What must go before an add() fits: records and payload bytes (0 and 0 while it fits).
    struct Excess {
        std::uint64_t records = 0;
        std::uint64_t bytes = 0;
        bool any() const { return records != 0 || bytes != 0; }
    };

    bool has_quota() const { return options.max_pending != 0 || options.max_pending_bytes != 0; }

    // Whether adding `payload` bytes passes a limit, by the estimates.
    bool over_quota(std::uint64_t payload) const {
        return (options.max_pending != 0 && pending_estimate + 1 > options.max_pending) ||
               (options.max_pending_bytes != 0 &&
                pending_bytes_estimate + payload > options.max_pending_bytes);
    }

    void count_pending() {
        if (options.max_pending_bytes != 0) {
            SQLite::Statement q(db, detail::sql::kCountPendingAndBytes);
            q.executeStep();
            pending_estimate = static_cast<std::uint64_t>(q.getColumn(0).getInt64());
            pending_bytes_estimate = static_cast<std::uint64_t>(q.getColumn(1).getDouble());
        } else {
            SQLite::Statement q(db, detail::sql::kCountPending);
            q.executeStep();
            pending_estimate = static_cast<std::uint64_t>(q.getColumn(0).getInt64());
        }
    }

    // A payload larger than the whole byte quota can never fit: refused before anything else.
    void refuse_oversized(std::uint64_t payload) const {
        if (options.max_pending_bytes != 0 && payload > options.max_pending_bytes) {
            throw OutboxFull("the payload (" + std::to_string(payload) +
                             " bytes) is larger than the whole quota (max_pending_bytes = " +
                             std::to_string(options.max_pending_bytes) + "); nothing was stored");
        }
    }

    // Whether this add() counts the pending records: when the estimates (the last count plus
    // this process's adds since) say a limit is reached, or every quota_refresh.
    bool count_due(std::uint64_t payload, Clock::time_point now) const {
        return !quota_known || now - quota_checked_at >= options.quota_refresh ||
               over_quota(payload);
    }

    // Counts the pending records right after this add()'s own insert (so the count never reads
    // before the app's transaction has written: see add()) and sets the estimates to the totals
    // before it.
    void count_after_insert(std::uint64_t payload, Clock::time_point now) {
        count_pending();
        pending_estimate -= std::min<std::uint64_t>(1, pending_estimate);
        pending_bytes_estimate -= std::min(payload, pending_bytes_estimate);
        quota_checked_at = now;
        quota_known = true;
    }

    std::string refusal(std::uint64_t payload) const {
        const bool by_records =
            options.max_pending != 0 && pending_estimate + 1 > options.max_pending;
        return by_records ? "the outbox holds " + std::to_string(pending_estimate) +
                                " pending records, the configured maximum (max_pending = " +
                                std::to_string(options.max_pending) + "); nothing was stored"
                          : "the outbox holds " + std::to_string(pending_bytes_estimate) +
                                " bytes of pending payload; this one (" + std::to_string(payload) +
                                " bytes) would pass max_pending_bytes = " +
                                std::to_string(options.max_pending_bytes) + "; nothing was stored";
    }

    // What drop_oldest must remove so that an add of `payload` fits: down to 1% below each
    // limit that is passed, so the adds after this one need no count.
    Excess excess(std::uint64_t payload) const {
        Excess e;
        if (options.max_pending != 0 && pending_estimate + 1 > options.max_pending) {
            const std::uint64_t step = std::max<std::uint64_t>(1, options.max_pending / 100);
            e.records = pending_estimate + step - options.max_pending;
        }
        if (options.max_pending_bytes != 0 &&
            pending_bytes_estimate + payload > options.max_pending_bytes) {
            e.bytes = pending_bytes_estimate + payload + options.max_pending_bytes / 100 -
                      options.max_pending_bytes;
        }
        return e;
    }

    // Removes pending records older than `added` (the record this add() just inserted), lowest
    // priority first, oldest first within it, until `e.records` records and `e.bytes` payload
    // bytes are gone (or nothing else is pending), and adds them to the dropped count. The
    // caller holds a savepoint around the insert and this.
    void drop_oldest(const Excess& e, std::int64_t added) {
        if (!drop) {
            lowest_priority =
                std::make_unique<SQLite::Statement>(db, detail::sql::kLowestPendingPriority);
            drop = std::make_unique<SQLite::Statement>(db, detail::sql::kDropOldest);
            count_dropped = std::make_unique<SQLite::Statement>(
                db,
                "INSERT INTO outpost_meta (name, value) VALUES ('dropped', ?1) "
                "ON CONFLICT (name) DO UPDATE "
                "SET value = CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)");
        }
        std::uint64_t records = 0, bytes = 0;
        lowest_priority->bind(1, added);
        drop->bind(3, added);
        while (records < e.records || bytes < e.bytes) {
            const bool any = lowest_priority->executeStep() && !lowest_priority->isColumnNull(0);
            const int priority = any ? lowest_priority->getColumn(0).getInt() : 0;
            lowest_priority->reset();
            if (!any) {
                break;  // nothing pending (delivered meanwhile by the dispatcher)
            }
            // As many as the record count still needs, or as the byte count needs at the
            // average payload size, whichever is more.
            std::uint64_t rows = records < e.records ? e.records - records : 1;
            if (bytes < e.bytes && pending_estimate != 0) {
                const std::uint64_t average =
                    std::max<std::uint64_t>(1, pending_bytes_estimate / pending_estimate);
                rows = std::max(rows, (e.bytes - bytes + average - 1) / average);
            }
            drop->bind(1, priority);
            drop->bind(2, static_cast<std::int64_t>(rows));
            std::uint64_t removed = 0;
            while (drop->executeStep()) {
                ++removed;
                bytes += static_cast<std::uint64_t>(drop->getColumn(0).getInt64());
            }
            drop->reset();
            if (removed == 0) {
                break;
            }
            records += removed;
        }
        if (records != 0) {
            count_dropped->bind(1, static_cast<std::int64_t>(records));
            count_dropped->exec();
            count_dropped->reset();
        }
        pending_estimate -= std::min(records, pending_estimate);
        pending_bytes_estimate -= std::min(bytes, pending_bytes_estimate);
    }

    // Resets the cached statements after a failure, so the next add() starts clean.
    void reset_statements() noexcept {
        for (auto* q : {insert.get(), lowest_priority.get(), drop.get(), count_dropped.get()}) {
            if (q != nullptr) {
                try {
                    q->reset();
                } catch (...) {
                }
            }
        }
    }
};

Outbox::Outbox(SQLite::Database& db, OutboxOptions options, const Clock& clock)
    : impl_(std::make_unique<Impl>(db, std::move(options), clock)) {
    impl_->options.validate();
    // A busy wait before the first read (a setting of the connection, not a write to the file):
    // without one that read fails at once with SQLITE_BUSY_RECOVERY while another process
    // rebuilds the WAL index of a file whose last user was killed. The connection keeps a busy
    // timeout (the app's own, else options.busy_timeout); while this constructor sets the file
    // up it waits with the patient handler instead, which does not starve next to other
    // processes' writers that commit back to back.
    std::chrono::milliseconds timeout = impl_->options.busy_timeout;
    try {
        const int apps = std::stoi(detail::pragma_value(db, "busy_timeout"));
        if (apps > 0) {
            timeout = std::chrono::milliseconds(apps);
        }
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "configuring the app's connection");
    }
    struct SetupWait {
        sqlite3* handle;
        int timeout_ms;
        detail::PatientBusyHandler patient;
        ~SetupWait() { sqlite3_busy_timeout(handle, timeout_ms); }
    } setup_wait{
        db.getHandle(), static_cast<int>(std::min<std::int64_t>(timeout.count(), INT32_MAX)), {}};
    setup_wait.patient.install(db.getHandle(), timeout);
    // Reads first: a file that is not SQLite, or holds a newer schema, is refused before any
    // write (journal mode, tables) touches it.
    detail::check_schema(db);
    const char* file = sqlite3_db_filename(db.getHandle(), "main");
    impl_->path = file != nullptr ? file : "";
    try {
        // A brand-new file (no page yet, so nothing of the app's): incremental auto-vacuum, so
        // the store can give the space of delivered records back to a partition that ran
        // short. It must be chosen before the first table is created.
        if (detail::pragma_value(db, "page_count") == "0" &&
            detail::pragma_value(db, "auto_vacuum") == "0") {
            db.exec("PRAGMA auto_vacuum = INCREMENTAL");
        }
        detail::switch_to_wal(db, timeout);
        const detail::DiskSpace space = detail::disk_space(impl_->path);
        if (!impl_->path.empty() && space.known) {
            const int page = std::stoi(detail::pragma_value(db, "page_size"));
            impl_->wal_limit = detail::wal_limit_pages(space.total, page);
            impl_->wal_limit_bytes = static_cast<std::uint64_t>(impl_->wal_limit) * page;
            // A WAL that grew past the limit (a long reader held checkpoints back) is cut back
            // to it after its next reset, unless the app chose a limit of its own.
            if (detail::pragma_value(db, "journal_size_limit") == "-1") {
                db.exec("PRAGMA journal_size_limit = " + std::to_string(impl_->wal_limit_bytes));
            }
        }
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "configuring the app's connection");
    }
    detail::migrate(db);
    try {
        impl_->insert = std::make_unique<SQLite::Statement>(db, kInsertSql);
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "preparing the outbox insert");
    }
    sqlite3_wal_hook(db.getHandle(), &Impl::on_wal_commit, impl_.get());
}

Outbox::~Outbox() {
    // Give the connection SQLite's own auto-checkpoint back.
    sqlite3_wal_autocheckpoint(impl_->db.getHandle(), kAutoCheckpointPages);
}

std::int64_t Outbox::add(const Message& m) {
    validate(m, impl_->options);
    Impl& s = *impl_;
    s.refuse_while_disk_full();
    const std::uint64_t payload = m.payload.size();
    // With a quota, an add() that counts writes first and counts after, under a savepoint that
    // undoes its insert (and any removals) when the count says no. Counting first would make a
    // deferred transaction a reader before its first write: a commit by another connection in
    // between (the dispatcher's lease renewal) would then fail the insert at once with
    // SQLITE_BUSY_SNAPSHOT, which no busy timeout can help, and spoil the app's transaction.
    // After the insert the transaction holds the write lock, so the count is exact.
    bool counting = false;
    Clock::time_point checked{};
    if (s.has_quota()) {
        s.refuse_oversized(payload);
        checked = s.clock.now();
        counting = s.count_due(payload, checked);
    }
    bool savepoint = false;
    try {
        if (counting) {
            // The insert and what the count decides stand or fall together, also in autocommit.
            s.db.exec("SAVEPOINT outpost_add");
            savepoint = true;
        }
        const std::int64_t now = s.clock.wall_ms();
        make_uid(now, s.rng, s.uid);
        SQLite::Statement& q = *s.insert;
        q.bindNoCopy(1, s.uid);
        q.bindNoCopy(2, m.topic);
        if (m.payload.empty()) {
            // An empty vector's data() may be null, which SQLite would bind as NULL.
            q.bindNoCopy(3, static_cast<const void*>(""), 0);
        } else {
            q.bindNoCopy(3, m.payload.data(), static_cast<int>(m.payload.size()));
        }
        if (m.key) {
            q.bindNoCopy(4, *m.key);
        } else {
            q.bind(4);
        }
        q.bind(5, m.qos);
        q.bind(6, m.retain ? 1 : 0);
        q.bind(7, m.priority);
        if (m.headers.empty()) {
            q.bind(8);
        } else {
            s.header_buf = detail::encode_headers(m.headers);
            q.bindNoCopy(8, s.header_buf.data(), static_cast<int>(s.header_buf.size()));
        }
        if (m.content_type) {
            q.bindNoCopy(9, *m.content_type);
        } else {
            q.bind(9);
        }
        q.bind(10, now);
        if (m.ttl) {
            q.bind(11, now + m.ttl->count());
        } else {
            q.bind(11);
        }
        // Before the step: without an open transaction the step itself commits, and the WAL
        // hook that wakes the dispatcher runs inside it. (A failed or refused insert leaves the
        // flag set: one spurious wake-up, harmless.)
        s.dirty = true;
        const int rc = q.tryExecuteStep();
        q.reset();
        if (rc != SQLITE_DONE) {
            throw SQLite::Exception(s.db.getHandle(), rc);
        }
        const std::int64_t id = s.db.getLastInsertRowid();
        if (counting) {
            s.count_after_insert(payload, checked);
            if (s.over_quota(payload)) {
                if (s.options.when_full == WhenFull::refuse) {
                    std::string why = s.refusal(payload);
                    s.db.exec("ROLLBACK TO outpost_add");
                    s.db.exec("RELEASE outpost_add");
                    throw OutboxFull(why);
                }
                s.drop_oldest(s.excess(payload), id);
            }
            s.db.exec("RELEASE outpost_add");
        }
        ++s.pending_estimate;
        s.pending_bytes_estimate += payload;
        return id;
    } catch (const SQLite::Exception& e) {
        s.reset_statements();
        if (savepoint) {
            try {
                s.db.exec("ROLLBACK TO outpost_add");
                s.db.exec("RELEASE outpost_add");
            } catch (const SQLite::Exception&) {
            }
            s.quota_known = false;  // the insert and removals were undone: count again next time
        }
        detail::rethrow_sqlite(e, "adding a message to the outbox");
    }
}

void Outbox::requeue(std::int64_t id) {
    try {
        SQLite::Statement q(impl_->db, detail::sql::kRequeue);
        q.bind(1, id);
        impl_->dirty = true;  // before: an autocommit exec runs the WAL hook (see add())
        impl_->requeued = true;
        if (q.exec() == 0) {
            throw NotFound("record " + std::to_string(id) + " does not exist or is not dead");
        }
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "requeueing record " + std::to_string(id));
    }
}

std::size_t Outbox::requeue_all_dead() {
    try {
        impl_->dirty = true;  // before: an autocommit exec runs the WAL hook (see add())
        impl_->requeued = true;
        const int n = impl_->db.exec(detail::sql::kRequeueAllDead);
        return static_cast<std::size_t>(n);
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "requeueing dead records");
    }
}

StoreCounts Outbox::counts() {
    return detail::count_records(impl_->db);
}

}  // namespace outpost

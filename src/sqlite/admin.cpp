// Admin: the library side of the `outpost` command: opening a file, counts, stats, the lease,
// listing, adding, requeueing and purging records. Reads in short transactions so a tool run
// next to a live app never pins a WAL snapshot (which would stop checkpoints and grow the -wal
// file) and never holds the write lock for longer than one small batch. The --skip-unreadable
// salvage is in salvage.cpp, the file check in file_check.cpp.
#include "outpost/admin.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <filesystem>

#include "admin_internal.hpp"
#include "liveness.hpp"
#include "outpost/error.hpp"
#include "outpost/outbox.hpp"
#include "outpost/process.hpp"
#include "record_codec.hpp"
#include "record_state_sql.hpp"
#include "schema.hpp"
#include "sqlite_error.hpp"
#include "transaction.hpp"

namespace outpost {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kPurgeBatch = 1000;

constexpr auto kTopTopicsText = "SELECT topic, count(*), sum(" + detail::sql::kIsPending +
                                "), "
                                "coalesce(sum(length(payload)), 0) FROM outpost_records "
                                "GROUP BY topic ORDER BY count(*) DESC, topic LIMIT ?";
constexpr const char* kTopTopics = kTopTopicsText.c_str();

std::int64_t now_ms() {
    return SystemClock::instance().wall_ms();
}

// Throws StorageError unless `path` names an existing regular file. SQLite would create a missing
// file (with OPEN_CREATE) or give a vague "unable to open database file" (without it).
void require_file(const std::string& path) {
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (ec || !fs::exists(st)) {
        throw StorageError(path + ": no such file", false, SQLITE_CANTOPEN);
    }
    if (fs::is_directory(st)) {
        throw StorageError(path + ": is a directory, not a database file", false, SQLITE_CANTOPEN);
    }
}

std::string uri_escape(const std::string& path) {
    static const char* const kHex = "0123456789ABCDEF";
    std::string out;
    for (const char c : path) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '%' || c == '?' || c == '#' || u < 0x20 || u >= 0x7f) {
            out += '%';
            out += kHex[u >> 4];
            out += kHex[u & 0xf];
        } else {
            out += c;
        }
    }
    return out;
}

// Forces SQLite to read the file header and the schema: a file that is not SQLite fails here.
void probe(SQLite::Database& db) {
    db.exec("SELECT count(*) FROM sqlite_master");
}

// A file shorter than its header says (truncated) is refused by SQLite at its first read, so
// nothing of it could be rescued. With writable_schema SQLite takes the file's real size
// instead and reads the pages that are left (those past the end are reported corrupt when a
// read reaches them). Only on a read-only connection: there the pragma cannot write anything.
bool readable_when_lenient(SQLite::Database& db) {
    try {
        db.exec("PRAGMA writable_schema = ON");
        probe(db);
        return true;
    } catch (const SQLite::Exception&) {
        return false;
    }
}

// The largest record id, 0 for an empty table. Ids only grow (AUTOINCREMENT, assigned under the
// write lock), so every record committed after this read has a larger id: a loop bounded by it
// visits the records present when it started and ends, however fast the app adds.
std::int64_t last_record_id(SQLite::Database& db) {
    SQLite::Statement q(db, "SELECT max(id) FROM outpost_records");
    q.executeStep();
    return q.getColumn(0).isNull() ? 0 : q.getColumn(0).getInt64();
}

}  // namespace

namespace detail {

// Opens `path` without ever creating it. Read-only connections of a WAL database need the -shm
// file: when the directory is not writable and no process has the database open (no -wal file),
// SQLite cannot create it and refuses with SQLITE_READONLY/CANTOPEN. No writer can be active then
// (a WAL writer would have created the -wal file), so the file is reopened with immutable=1,
// which reads without locks or -shm. A writer that starts during that read may make it fail; it
// can never make it write.
std::unique_ptr<SQLite::Database> open_database(const std::string& path, bool read_only,
                                                std::chrono::milliseconds busy_timeout,
                                                bool lenient) {
    require_file(path);
    const int busy_ms = static_cast<int>(std::min<std::int64_t>(busy_timeout.count(), INT_MAX));
    try {
        auto db = std::make_unique<SQLite::Database>(
            path, read_only ? SQLite::OPEN_READONLY : SQLite::OPEN_READWRITE, busy_ms);
        try {
            probe(*db);
            return db;
        } catch (const SQLite::Exception& e) {
            const int primary = detail::sqlite_error_code(e) & 0xff;
            if (lenient && read_only && primary == SQLITE_CORRUPT && readable_when_lenient(*db)) {
                return db;
            }
            std::error_code ec;
            const bool fallback = read_only &&
                                  (primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN) &&
                                  !fs::exists(path + "-wal", ec);
            if (!fallback) {
                throw;
            }
        }
        auto immutable =
            std::make_unique<SQLite::Database>("file:" + uri_escape(path) + "?immutable=1",
                                               SQLite::OPEN_READONLY | SQLite::OPEN_URI, busy_ms);
        probe(*immutable);
        return immutable;
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "opening " + path);
    }
}

// The query of for_each(): a page after :after up to :last, or (`by_id`) the single record :id.
std::string filter_sql(const RecordFilter& f, bool by_id) {
    std::string sql = std::string("SELECT ") + detail::kRecordColumns +
                      " FROM outpost_records WHERE " +
                      (by_id ? "id = :id" : "id > :after AND id <= :last");
    if (f.state) {
        sql += " AND state = :state";
    }
    if (f.topic_prefix) {
        sql += " AND substr(topic, 1, length(:prefix)) = :prefix";
    }
    if (f.key) {
        sql += " AND msg_key = :key";
    }
    if (!by_id) {
        sql += " ORDER BY id LIMIT :limit";
    }
    return sql;
}

void bind_filter(SQLite::Statement& q, const RecordFilter& f) {
    if (f.state) {
        q.bind(":state", detail::stored_state(*f.state));
    }
    if (f.topic_prefix) {
        q.bind(":prefix", *f.topic_prefix);
    }
    if (f.key) {
        q.bind(":key", *f.key);
    }
}

}  // namespace detail

void Admin::Impl::require_writable(const char* what) {
    if (options.read_only) {
        throw StorageError(std::string(what) + ": " + path + " was opened read-only", false,
                           SQLITE_READONLY);
    }
    if (sqlite3_db_readonly(db->getHandle(), "main") == 1) {
        throw StorageError(std::string(what) + ": " + path +
                               " is read-only (no write permission, or an immutable file)",
                           false, SQLITE_READONLY);
    }
}

Outbox& Admin::Impl::writer(const char* what) {
    require_writable(what);
    if (!outbox) {
        outbox = std::make_unique<Outbox>(*db);
    }
    return *outbox;
}

Admin::Admin(const std::string& path, AdminOptions options) : impl_(std::make_unique<Impl>()) {
    if (options.page_size == 0) {
        throw InvalidConfig("AdminOptions::page_size must be at least 1", "page_size");
    }
    impl_->path = path;
    impl_->options = options;
    impl_->db =
        detail::open_database(path, options.read_only, options.busy_timeout, options.lenient);
    impl_->version = detail::check_schema(*impl_->db);
    if (impl_->version == 0) {
        throw SchemaError(path + " holds no outpost tables: not an outbox database");
    }
}

Admin::~Admin() = default;

const std::string& Admin::path() const noexcept {
    return impl_->path;
}
int Admin::schema_version() const noexcept {
    return impl_->version;
}

StoreCounts Admin::counts() {
    return stats(0).counts;
}

std::uint64_t Admin::count(RecordState state) {
    // Literal conditions, not bound values: SQLite only picks a partial index (WHERE state = 0,
    // WHERE state <> 0) when the query's WHERE visibly implies the index's.
    const std::string sql =
        "SELECT count(*) FROM outpost_records WHERE " + detail::sql::in_state(state);
    try {
        SQLite::Statement q(*impl_->db, sql);
        q.executeStep();
        return static_cast<std::uint64_t>(q.getColumn(0).getInt64());
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "counting records in " + impl_->path);
    }
}

std::optional<LeaseStatus> Admin::lease() {
    try {
        SQLite::Statement q(*impl_->db,
                            "SELECT owner, host, pid, started_at, heartbeat_at, expires_at, "
                            "boot_id FROM outpost_lease WHERE slot = 1");
        if (!q.executeStep()) {
            return std::nullopt;
        }
        LeaseStatus l;
        l.holder.owner = q.getColumn(0).getString();
        l.holder.host = q.getColumn(1).getString();
        l.holder.pid = q.getColumn(2).getInt64();
        l.holder.started_at = q.getColumn(3).getInt64();
        l.holder.heartbeat_at = q.getColumn(4).getInt64();
        l.holder.expires_at = q.getColumn(5).getInt64();
        l.expired = l.holder.expires_at <= now_ms();
        // The asker's own pid never counts as the holder's: `outpost` is not a dispatcher.
        l.holder_dead = detail::lease_holder_gone(
            l.holder.host, l.holder.pid, q.getColumn(6).getString(), this_process().host, -1);
        return l;
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "reading the lease of " + impl_->path);
    }
}

AdminStats Admin::stats(std::size_t top_topics) {
    AdminStats s;
    s.now_ms = now_ms();
    s.schema_version = impl_->version;
    try {
        s.counts = detail::count_records(*impl_->db);  // one statement, ended before the next

        if (top_topics > 0) {
            SQLite::Statement t(*impl_->db, kTopTopics);
            t.bind(1, static_cast<std::int64_t>(std::min<std::size_t>(top_topics, INT64_MAX)));
            while (t.executeStep()) {
                TopicCount c;
                c.topic = t.getColumn(0).getString();
                c.records = static_cast<std::uint64_t>(t.getColumn(1).getInt64());
                c.pending = static_cast<std::uint64_t>(t.getColumn(2).getInt64());
                c.bytes = static_cast<std::uint64_t>(t.getColumn(3).getInt64());
                s.top_topics.push_back(std::move(c));
            }
        }

        SQLite::Statement j(*impl_->db, "PRAGMA journal_mode");
        if (j.executeStep()) {
            s.journal_mode = j.getColumn(0).getString();
        }
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "reading statistics of " + impl_->path);
    }
    s.lease = lease();
    std::error_code ec;
    const auto file = fs::file_size(impl_->path, ec);
    s.file_bytes = ec ? 0 : file;
    const auto wal = fs::file_size(impl_->path + "-wal", ec);
    s.wal_bytes = ec ? 0 : wal;
    return s;
}

std::optional<Record> Admin::get(std::int64_t id) {
    try {
        SQLite::Statement q(*impl_->db, std::string("SELECT ") + detail::kRecordColumns +
                                            " FROM outpost_records WHERE id = ?");
        q.bind(1, id);
        if (!q.executeStep()) {
            return std::nullopt;
        }
        return detail::read_record(q);
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(e, "reading record " + std::to_string(id) + " of " + impl_->path);
    }
}

std::size_t Admin::for_each(const RecordFilter& filter,
                            const std::function<bool(const Record&)>& visit,
                            std::size_t* unreadable) {
    const std::string sql = detail::filter_sql(filter, false);
    std::int64_t after = filter.after_id;
    std::size_t visited = 0;
    if (unreadable != nullptr) {
        *unreadable = 0;
    }
    // Only the records present now: paging in id order after a writer that commits faster than
    // the pages are read would never end (seen with export next to a busy app under ASan).
    std::int64_t last = INT64_MAX;  // unknown: a corrupt table end, left to salvage()
    try {
        last = last_record_id(*impl_->db);
    } catch (const SQLite::Exception& e) {
        if (!(filter.skip_unreadable && detail::is_corrupt(e))) {
            detail::rethrow_sqlite(e, "reading records of " + impl_->path);
        }
    }
    for (;;) {
        std::size_t want = impl_->options.page_size;
        if (filter.limit != 0) {
            want = std::min(want, filter.limit - visited);
        }
        if (want == 0) {
            return visited;
        }
        std::vector<Record> page;
        try {
            // One statement per page: its read transaction ends when it is destroyed, before
            // the caller sees any record.
            SQLite::Statement q(*impl_->db, sql);
            q.bind(":after", after);
            q.bind(":last", last);
            detail::bind_filter(q, filter);
            q.bind(":limit", static_cast<std::int64_t>(want));
            while (q.executeStep()) {
                page.push_back(detail::read_record(q));
            }
        } catch (const SQLite::Exception& e) {
            if (filter.skip_unreadable && detail::is_corrupt(e)) {
                return visited + salvage(filter, after, last, visited, visit, unreadable);
            }
            detail::rethrow_sqlite(e, "reading records of " + impl_->path);
        } catch (const StorageError&) {
            if (filter.skip_unreadable) {  // a record with malformed headers
                return visited + salvage(filter, after, last, visited, visit, unreadable);
            }
            throw;
        }
        for (const Record& r : page) {
            ++visited;
            if (!visit(r)) {
                return visited;
            }
        }
        if (page.size() < want) {
            return visited;
        }
        after = page.back().id;
    }
}

std::vector<Record> Admin::list(const RecordFilter& filter) {
    std::vector<Record> out;
    for_each(filter, [&](const Record& r) {
        out.push_back(r);
        return true;
    });
    return out;
}

std::int64_t Admin::add(const Message& message) {
    return impl_->writer("add").add(message);
}

void Admin::requeue(std::int64_t id) {
    impl_->writer("requeue").requeue(id);
}

std::size_t Admin::requeue_all_dead() {
    return impl_->writer("requeue").requeue_all_dead();
}

std::size_t Admin::purge(RecordState state, std::optional<std::chrono::milliseconds> older_than,
                         bool dry_run) {
    if (state == RecordState::pending) {
        throw InvalidConfig("purge never removes pending records", "state");
    }
    if (older_than && older_than->count() < 0) {
        throw InvalidConfig("purge: older_than must not be negative", "older_than");
    }
    if (!dry_run) {
        impl_->require_writable("purge");
    }
    // "state <> 0" repeats the partial index's condition so SQLite may use outpost_records_done.
    std::string where = detail::sql::in_state(state) + " AND id <= :last";
    if (older_than) {
        where += " AND coalesce(done_at, created_at) < :cutoff";
    }
    // Fixed once, so records that age past the cutoff during the purge do not extend it.
    const std::int64_t cutoff = now_ms() - (older_than ? older_than->count() : 0);
    try {
        // Only the records present now: a dispatcher that keeps delivering (with retention)
        // faster than the batches delete would keep the loop going for ever.
        const std::int64_t last = last_record_id(*impl_->db);
        if (dry_run) {
            SQLite::Statement q(*impl_->db, "SELECT count(*) FROM outpost_records WHERE " + where);
            q.bind(":last", last);
            if (older_than) {
                q.bind(":cutoff", cutoff);
            }
            q.executeStep();
            return static_cast<std::size_t>(q.getColumn(0).getInt64());
        }
        const std::string sql =
            "DELETE FROM outpost_records WHERE id IN (SELECT id FROM outpost_records WHERE " +
            where + " LIMIT " + std::to_string(kPurgeBatch) + ")";
        std::size_t total = 0;
        for (;;) {
            // Short write transactions: the app and the dispatcher wait for one batch at most.
            detail::ImmediateTransaction tx(*impl_->db);
            SQLite::Statement del(*impl_->db, sql);
            del.bind(":last", last);
            if (older_than) {
                del.bind(":cutoff", cutoff);
            }
            const auto n = static_cast<std::size_t>(del.exec());
            tx.commit();
            total += n;
            if (n < kPurgeBatch) {
                return total;
            }
        }
    } catch (const SQLite::Exception& e) {
        detail::rethrow_sqlite(
            e, "purging " + std::string(to_string(state)) + " records of " + impl_->path);
    }
}

}  // namespace outpost

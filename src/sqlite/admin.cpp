// Admin: the library side of the `outpost` command. Reads in short transactions so a tool run
// next to a live app never pins a WAL snapshot (which would stop checkpoints and grow the -wal
// file) and never holds the write lock for longer than one small batch.
#include "outpost/admin.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <filesystem>
#include <set>
#include <sstream>

#include "liveness.hpp"
#include "outpost/error.hpp"
#include "outpost/outbox.hpp"
#include "schema.hpp"

namespace outpost {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kPurgeBatch = 1000;

// The tables, indexes and columns schema version kSchemaVersion defines; check() looks for them.
const char* const kTables[] = {"outpost_meta", "outpost_records", "outpost_lease"};
const char* const kIndexes[] = {"outpost_records_dispatch", "outpost_records_expiry",
                                "outpost_records_done", "outpost_records_key"};

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

int error_code_of(const SQLite::Exception& e) {
    return e.getExtendedErrorCode() > 0 ? e.getExtendedErrorCode() : e.getErrorCode();
}

// Forces SQLite to read the file header and the schema: a file that is not SQLite fails here.
void probe(SQLite::Database& db) {
    db.exec("SELECT count(*) FROM sqlite_master");
}

// Opens `path` without ever creating it. Read-only connections of a WAL database need the -shm
// file: when the directory is not writable and no process has the database open (no -wal file),
// SQLite cannot create it and refuses with SQLITE_READONLY/CANTOPEN. No writer can be active then
// (a WAL writer would have created the -wal file), so the file is reopened with immutable=1,
// which reads without locks or -shm. A writer that starts during that read may make it fail; it
// can never make it write.
std::unique_ptr<SQLite::Database> open_database(const std::string& path, bool read_only,
                                                std::chrono::milliseconds busy_timeout) {
    require_file(path);
    const int busy_ms = static_cast<int>(std::min<std::int64_t>(busy_timeout.count(), INT_MAX));
    try {
        auto db = std::make_unique<SQLite::Database>(
            path, read_only ? SQLite::OPEN_READONLY : SQLite::OPEN_READWRITE, busy_ms);
        try {
            probe(*db);
            return db;
        } catch (const SQLite::Exception& e) {
            const int primary = error_code_of(e) & 0xff;
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

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) {
        return {};
    }
    return buf;
}

// The largest record id, 0 for an empty table. Ids only grow (AUTOINCREMENT, assigned under the
// write lock), so every record committed after this read has a larger id: a loop bounded by it
// visits the records present when it started and ends, however fast the app adds.
std::int64_t last_record_id(SQLite::Database& db) {
    SQLite::Statement q(db, "SELECT max(id) FROM outpost_records");
    q.executeStep();
    return q.getColumn(0).isNull() ? 0 : q.getColumn(0).getInt64();
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
        q.bind(":state", static_cast<int>(*f.state));
    }
    if (f.topic_prefix) {
        q.bind(":prefix", *f.topic_prefix);
    }
    if (f.key) {
        q.bind(":key", *f.key);
    }
}

bool is_corrupt(const SQLite::Exception& e) {
    const int primary = error_code_of(e) & 0xff;
    return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

}  // namespace

struct Admin::Impl {
    std::string path;
    AdminOptions options;
    std::unique_ptr<SQLite::Database> db;
    std::unique_ptr<Outbox> outbox;  // made on the first add/requeue
    int version = 0;

    void require_writable(const char* what) {
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

    Outbox& writer(const char* what) {
        require_writable(what);
        if (!outbox) {
            outbox = std::make_unique<Outbox>(*db);
        }
        return *outbox;
    }
};

Admin::Admin(const std::string& path, AdminOptions options) : impl_(std::make_unique<Impl>()) {
    if (options.page_size == 0) {
        throw InvalidConfig("AdminOptions::page_size must be at least 1", "page_size");
    }
    impl_->path = path;
    impl_->options = options;
    impl_->db = open_database(path, options.read_only, options.busy_timeout);
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
    const int s = static_cast<int>(state);
    const std::string sql = state == RecordState::pending
                                ? "SELECT count(*) FROM outpost_records WHERE state = 0"
                                : "SELECT count(*) FROM outpost_records WHERE state <> 0 AND "
                                  "state = " +
                                      std::to_string(s);
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
        l.holder_dead = detail::lease_holder_gone(l.holder.host, l.holder.pid,
                                                  q.getColumn(6).getString(), host_name(), -1);
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
            SQLite::Statement t(*impl_->db,
                                "SELECT topic, count(*), sum(state = 0), "
                                "coalesce(sum(length(payload)), 0) FROM outpost_records "
                                "GROUP BY topic ORDER BY count(*) DESC, topic LIMIT ?");
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
    const std::string sql = filter_sql(filter, false);
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
        if (!(filter.skip_unreadable && is_corrupt(e))) {
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
            bind_filter(q, filter);
            q.bind(":limit", static_cast<std::int64_t>(want));
            while (q.executeStep()) {
                page.push_back(detail::read_record(q));
            }
        } catch (const SQLite::Exception& e) {
            if (filter.skip_unreadable && is_corrupt(e)) {
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

std::size_t Admin::salvage(const RecordFilter& filter, std::int64_t after, std::int64_t last,
                           std::size_t visited_before,
                           const std::function<bool(const Record&)>& visit,
                           std::size_t* unreadable) {
    // Point lookups descend the b-tree to one leaf each: a damaged page costs only the ids on
    // it. The largest id comes from the table's rightmost path, or, when that is damaged, from
    // the two partial indexes, which together cover every record (state = 0, state <> 0) and
    // hold the ids in pages of their own.
    static const char* const kMaxQueries[] = {
        "SELECT max(id) FROM outpost_records",
        "SELECT max(id) FROM outpost_records INDEXED BY outpost_records_dispatch WHERE state = 0",
        "SELECT max(id) FROM outpost_records INDEXED BY outpost_records_done WHERE state <> 0",
    };
    std::int64_t max_id = 0;
    bool found = false;
    bool table_max_ok = false;
    std::string failure;
    for (const char* sql : kMaxQueries) {
        try {
            SQLite::Statement m(*impl_->db, sql);
            m.executeStep();
            max_id = std::max(max_id, m.getColumn(0).getInt64());
            found = true;
            table_max_ok = table_max_ok || sql == kMaxQueries[0];
        } catch (const SQLite::Exception& e) {
            failure = e.what();
        }
    }
    if (!found) {
        throw StorageError("finding the largest record id of " + impl_->path +
                               " (needed to skip unreadable records) failed: " + failure,
                           false, SQLITE_CORRUPT);
    }
    // Without the table's own max(id), records may lie beyond the largest id the indexes know:
    // walk on until a run of ids that are cleanly absent, or give up after a long run of
    // failures (a damaged rightmost leaf fails every lookup past its first id).
    constexpr int kCleanRun = 1000;
    constexpr std::int64_t kFailedRun = 100'000;
    int clean_run = 0;
    std::int64_t failed_run = 0;
    std::size_t visited = 0;
    std::size_t skipped = 0;
    SQLite::Statement q(*impl_->db, filter_sql(filter, true));
    for (std::int64_t id = after + 1; id > after && id <= last; ++id) {
        if (id > max_id && (table_max_ok || clean_run >= kCleanRun || failed_run >= kFailedRun)) {
            break;
        }
        if (filter.limit != 0 && visited_before + visited >= filter.limit) {
            break;
        }
        std::optional<Record> r;
        bool failed = false;
        try {
            q.reset();
            q.clearBindings();
            q.bind(":id", id);
            bind_filter(q, filter);
            if (q.executeStep()) {
                r = detail::read_record(q);
            }
            q.reset();
        } catch (const SQLite::Exception&) {
            failed = true;
        } catch (const StorageError&) {  // malformed headers
            failed = true;
        }
        if (failed) {
            q.tryReset();
            clean_run = 0;
            if (id <= max_id) {
                ++skipped;
            } else {
                ++failed_run;
            }
            continue;
        }
        failed_run = 0;
        clean_run = r ? 0 : clean_run + 1;
        if (r) {
            ++visited;
            if (!visit(*r)) {
                break;
            }
        }
    }
    if (!table_max_ok) {
        ++skipped;  // the end of the table could not be read: more records may lie there
    }
    if (unreadable != nullptr) {
        *unreadable += skipped;
    }
    return visited;
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
    std::string where =
        "state <> 0 AND state = " + std::to_string(static_cast<int>(state)) + " AND id <= :last";
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

CheckReport Admin::check(const std::string& path, bool quick) {
    CheckReport report;
    std::unique_ptr<SQLite::Database> db;
    try {
        db = open_database(path, true, std::chrono::milliseconds(5000));
    } catch (const SchemaError& e) {
        report.problems.push_back(e.what());
        return report;
    } catch (const StorageError& e) {
        if (e.code() == SQLITE_CANTOPEN && !fs::exists(path)) {
            throw;  // a missing file is an error of the caller, not a finding
        }
        report.problems.push_back(e.what());
        return report;
    }
    report.sqlite_ok = true;

    try {
        SQLite::Statement q(*db, quick ? "PRAGMA quick_check" : "PRAGMA integrity_check");
        std::vector<std::string> rows;
        while (q.executeStep()) {
            rows.push_back(q.getColumn(0).getString());
        }
        if (rows.size() == 1 && rows[0] == "ok") {
            report.integrity_ok = true;
        } else {
            for (const std::string& r : rows) {
                report.problems.push_back(std::string(quick ? "quick_check" : "integrity_check") +
                                          ": " + r);
            }
        }
    } catch (const SQLite::Exception& e) {
        report.problems.push_back(std::string(quick ? "quick_check" : "integrity_check") +
                                  " failed: " + e.what());
    }

    try {
        report.schema_version = detail::stored_schema_version(*db);
    } catch (const Error& e) {
        report.problems.push_back(e.what());
        return report;
    }
    if (report.schema_version == 0) {
        report.problems.push_back("no outpost tables: not an outbox database");
        return report;
    }
    if (report.schema_version > kSchemaVersion) {
        report.problems.push_back("outpost schema version " +
                                  std::to_string(report.schema_version) + " is newer than the " +
                                  std::to_string(kSchemaVersion) +
                                  " this outpost understands; upgrade outpost to check it further");
        return report;
    }
    if (report.schema_version < kSchemaVersion) {
        report.notes.push_back("outpost schema version " + std::to_string(report.schema_version) +
                               " is older than " + std::to_string(kSchemaVersion) +
                               "; the app's next Outbox migrates it");
        return report;  // the expected objects below are those of the current version
    }

    try {
        std::set<std::string> tables, indexes;
        SQLite::Statement m(*db, "SELECT type, name FROM sqlite_master WHERE name LIKE 'outpost%'");
        while (m.executeStep()) {
            (m.getColumn(0).getString() == "table" ? tables : indexes)
                .insert(m.getColumn(1).getString());
        }
        for (const char* t : kTables) {
            if (!tables.count(t)) {
                report.problems.push_back(std::string("table ") + t + " is missing");
            }
        }
        for (const char* i : kIndexes) {
            if (!indexes.count(i)) {
                report.problems.push_back(std::string("index ") + i + " is missing");
            }
        }
        if (tables.count("outpost_records")) {
            std::set<std::string> columns;
            SQLite::Statement c(*db, "PRAGMA table_info(outpost_records)");
            while (c.executeStep()) {
                columns.insert(c.getColumn(1).getString());
            }
            std::istringstream wanted(detail::kRecordColumns);
            for (std::string col; std::getline(wanted, col, ',');) {
                col.erase(0, col.find_first_not_of(' '));
                if (!columns.count(col)) {
                    report.problems.push_back("column outpost_records." + col + " is missing");
                }
            }
            if (report.problems.empty()) {
                SQLite::Statement bad(*db,
                                      "SELECT sum(state NOT IN (0, 1, 2, 3)), "
                                      "sum(qos NOT IN (0, 1, 2)) FROM outpost_records");
                bad.executeStep();
                if (const auto n = bad.getColumn(0).getInt64(); n > 0) {
                    report.problems.push_back(std::to_string(n) + " records have an unknown state");
                }
                if (const auto n = bad.getColumn(1).getInt64(); n > 0) {
                    report.problems.push_back(std::to_string(n) + " records have an invalid qos");
                }
            }
        }
        SQLite::Statement j(*db, "PRAGMA journal_mode");
        if (j.executeStep() && j.getColumn(0).getString() != "wal") {
            report.notes.push_back("journal_mode is " + j.getColumn(0).getString() +
                                   ", not wal: the app's Outbox switches it on its next start");
        }
    } catch (const SQLite::Exception& e) {
        report.problems.push_back(std::string("reading the outpost schema failed: ") + e.what());
    }
    return report;
}

}  // namespace outpost

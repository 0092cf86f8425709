#include "schema.hpp"

#include <sqlite3.h>

#include <cstring>
#include <string>

#include "outpost/error.hpp"
#include "outpost/outbox.hpp"

namespace outpost::detail {

const char* const kRecordColumns =
    "id, uid, state, topic, payload, msg_key, qos, retain, priority, headers, content_type, "
    "created_at, expires_at, attempts, next_attempt_at, last_error, done_at";

namespace {

// Migration N brings the schema from version N-1 to N. Append only.
const char* const kMigrations[] = {
    // 1: the first schema.
    R"sql(
CREATE TABLE IF NOT EXISTS outpost_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE outpost_records (
    -- AUTOINCREMENT: an id is never reused after its record is deleted, so an id seen in a log
    -- or an event always names the same message.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    uid             TEXT    NOT NULL,
    state           INTEGER NOT NULL DEFAULT 0,
    topic           TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    msg_key         TEXT,
    qos             INTEGER NOT NULL,
    retain          INTEGER NOT NULL,
    priority        INTEGER NOT NULL,
    headers         BLOB,
    content_type    TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    done_at         INTEGER
);
-- Dispatch order over pending records only: the claim stays O(window) whatever the backlog.
CREATE INDEX outpost_records_dispatch ON outpost_records (priority DESC, id) WHERE state = 0;
CREATE INDEX outpost_records_expiry ON outpost_records (expires_at)
    WHERE state = 0 AND expires_at IS NOT NULL;
CREATE INDEX outpost_records_done ON outpost_records (state, done_at) WHERE state <> 0;
CREATE TABLE outpost_lease (
    slot         INTEGER PRIMARY KEY CHECK (slot = 1),
    owner        TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
)sql",
    // 2: the key index and the requeue count, so that a key waiting for a retry costs the
    // dispatcher O(1) whatever its backlog, and a requeue by any process is noticed without a
    // full scan.
    R"sql(
CREATE INDEX outpost_records_key ON outpost_records (msg_key, priority DESC, id)
    WHERE state = 0 AND msg_key IS NOT NULL;
CREATE TRIGGER outpost_records_requeued AFTER UPDATE OF state ON outpost_records
    WHEN OLD.state <> 0 AND NEW.state = 0
BEGIN
    INSERT INTO outpost_meta (name, value) VALUES ('requeues', 1)
        ON CONFLICT (name) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
END;
)sql",
    // 3: the boot the lease holder ran in, so that a holder from before a reboot is known gone
    // at once even when the new boot gave its pid to another process.
    R"sql(
ALTER TABLE outpost_lease ADD COLUMN boot_id TEXT NOT NULL DEFAULT '';
)sql",
};

static_assert(std::size(kMigrations) == kSchemaVersion, "one migration per schema version");

bool table_exists(SQLite::Database& db, const char* name) {
    SQLite::Statement q(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?");
    q.bind(1, name);
    return q.executeStep();
}

}  // namespace

bool is_busy(int code) noexcept {
    const int primary = code & 0xff;
    return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

void rethrow_sqlite(const SQLite::Exception& e, const std::string& context) {
    const int code = e.getExtendedErrorCode() > 0 ? e.getExtendedErrorCode() : e.getErrorCode();
    const int primary = code & 0xff;
    if (primary == SQLITE_NOTADB) {
        throw SchemaError(context + ": the file is not a SQLite database (" + e.what() + ")", code);
    }
    if (primary == SQLITE_CORRUPT) {
        throw StorageError(context + ": the database file is corrupt (" + e.what() + ")", false,
                           code);
    }
    if (primary == SQLITE_FULL) {
        throw StorageError(context + ": the disk is full (" + e.what() + ")", true, code);
    }
    if (primary == SQLITE_READONLY) {
        throw StorageError(context + ": the database is read-only (" + e.what() + ")", false, code);
    }
    throw StorageError(context + ": " + e.what(), is_busy(code), code);
}

std::string pragma_value(SQLite::Database& db, const std::string& name) {
    SQLite::Statement q(db, "PRAGMA " + name);
    return q.executeStep() ? q.getColumn(0).getString() : std::string();
}

int stored_schema_version(SQLite::Database& db) {
    try {
        if (!table_exists(db, "outpost_meta")) {
            return 0;
        }
        SQLite::Statement q(db, "SELECT value FROM outpost_meta WHERE name = 'schema_version'");
        if (!q.executeStep()) {
            return 0;
        }
        const std::string text = q.getColumn(0).getString();
        try {
            return std::stoi(text);
        } catch (const std::exception&) {
            throw SchemaError("outpost_meta holds an unreadable schema_version '" + text + "'");
        }
    } catch (const SQLite::Exception& e) {
        rethrow_sqlite(e, "reading the outpost schema version");
    }
}

int check_schema(SQLite::Database& db) {
    const int version = stored_schema_version(db);
    if (version > kSchemaVersion) {
        throw SchemaError("the database holds outpost schema version " + std::to_string(version) +
                          ", newer than the " + std::to_string(kSchemaVersion) +
                          " this library understands; upgrade outpost (the file was not modified)");
    }
    return version;
}

void migrate(SQLite::Database& db) {
    if (check_schema(db) == kSchemaVersion) {
        return;  // the common case: no write at all
    }
    try {
        ImmediateTransaction tx(db);
        // Read again under the write lock: another process may have migrated meanwhile.
        int version = check_schema(db);
        for (; version < kSchemaVersion; ++version) {
            db.exec(kMigrations[version]);
        }
        SQLite::Statement set(db,
                              "INSERT INTO outpost_meta (name, value) VALUES ('schema_version', ?) "
                              "ON CONFLICT (name) DO UPDATE SET value = excluded.value");
        set.bind(1, std::to_string(kSchemaVersion));
        set.exec();
        tx.commit();
    } catch (const SQLite::Exception& e) {
        rethrow_sqlite(e, "creating the outpost tables");
    }
}

StoreCounts count_records(SQLite::Database& db) {
    StoreCounts c;
    try {
        {  // finalized before the next statement: no read transaction spans both
            SQLite::Statement q(db,
                                "SELECT state, count(*), total(length(payload)), min(created_at) "
                                "FROM outpost_records GROUP BY state");
            while (q.executeStep()) {
                const auto n = static_cast<std::uint64_t>(q.getColumn(1).getInt64());
                const auto bytes = static_cast<std::uint64_t>(q.getColumn(2).getDouble());
                switch (static_cast<RecordState>(q.getColumn(0).getInt())) {
                    case RecordState::pending:
                        c.pending = n;
                        c.pending_bytes = bytes;
                        c.oldest_pending_at = q.getColumn(3).getInt64();
                        break;
                    case RecordState::delivered:
                        c.delivered = n;
                        c.delivered_bytes = bytes;
                        break;
                    case RecordState::dead:
                        c.dead = n;
                        c.dead_bytes = bytes;
                        break;
                    case RecordState::expired:
                        c.expired = n;
                        c.expired_bytes = bytes;
                        break;
                }
            }
        }
        SQLite::Statement dropped(
            db, "SELECT CAST(value AS INTEGER) FROM outpost_meta WHERE name = 'dropped'");
        if (dropped.executeStep()) {
            c.dropped = static_cast<std::uint64_t>(dropped.getColumn(0).getInt64());
        }
    } catch (const SQLite::Exception& e) {
        rethrow_sqlite(e, "counting outbox records");
    }
    return c;
}

Record read_record(SQLite::Statement& row) {
    Record r;
    r.id = row.getColumn(0).getInt64();
    r.uid = row.getColumn(1).getString();
    r.state = static_cast<RecordState>(row.getColumn(2).getInt());
    r.message.topic = row.getColumn(3).getString();
    {
        const SQLite::Column c = row.getColumn(4);
        const auto* p = static_cast<const std::byte*>(c.getBlob());
        r.message.payload.assign(p, p + c.getBytes());
    }
    if (!row.getColumn(5).isNull()) {
        r.message.key = row.getColumn(5).getString();
    }
    r.message.qos = row.getColumn(6).getInt();
    r.message.retain = row.getColumn(7).getInt() != 0;
    r.message.priority = row.getColumn(8).getInt();
    if (!row.getColumn(9).isNull()) {
        const SQLite::Column c = row.getColumn(9);
        r.message.headers = decode_headers(c.getBlob(), static_cast<std::size_t>(c.getBytes()));
    }
    if (!row.getColumn(10).isNull()) {
        r.message.content_type = row.getColumn(10).getString();
    }
    r.created_at = row.getColumn(11).getInt64();
    if (!row.getColumn(12).isNull()) {
        r.expires_at = row.getColumn(12).getInt64();
        r.message.ttl = std::chrono::milliseconds(*r.expires_at - r.created_at);
    }
    r.attempts = static_cast<std::uint32_t>(row.getColumn(13).getInt64());
    r.next_attempt_at = row.getColumn(14).getInt64();
    if (!row.getColumn(15).isNull()) {
        r.last_error = row.getColumn(15).getString();
    }
    if (!row.getColumn(16).isNull()) {
        r.done_at = row.getColumn(16).getInt64();
    }
    return r;
}

namespace {
void put_u32(std::vector<unsigned char>& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) {
        out.push_back(static_cast<unsigned char>(v >> (8 * i)));
    }
}
}  // namespace

std::vector<unsigned char> encode_headers(const std::vector<Header>& headers) {
    std::vector<unsigned char> out;
    for (const Header& h : headers) {
        for (const std::string* s : {&h.name, &h.value}) {
            put_u32(out, static_cast<std::uint32_t>(s->size()));
            out.insert(out.end(), s->begin(), s->end());
        }
    }
    return out;
}

std::vector<Header> decode_headers(const void* data, std::size_t size) {
    std::vector<Header> out;
    const auto* p = static_cast<const unsigned char*>(data);
    std::size_t pos = 0;
    auto take = [&](std::string& s) {
        if (size - pos < 4) {
            throw StorageError("a stored record has malformed headers", false, 0);
        }
        std::uint32_t n = 0;
        for (int i = 0; i < 4; ++i) {
            n |= static_cast<std::uint32_t>(p[pos + i]) << (8 * i);
        }
        pos += 4;
        if (size - pos < n) {
            throw StorageError("a stored record has malformed headers", false, 0);
        }
        s.assign(reinterpret_cast<const char*>(p + pos), n);
        pos += n;
    };
    while (pos < size) {
        Header h;
        take(h.name);
        take(h.value);
        out.push_back(std::move(h));
    }
    return out;
}

ImmediateTransaction::ImmediateTransaction(SQLite::Database& db) : db_(db) {
    db_.exec("BEGIN IMMEDIATE");
}

ImmediateTransaction::~ImmediateTransaction() {
    if (!done_) {
        try {
            db_.exec("ROLLBACK");
        } catch (...) {
            // Never throw from a destructor; SQLite rolls back by itself on some errors.
        }
    }
}

void ImmediateTransaction::commit() {
    db_.exec("COMMIT");
    done_ = true;
}

}  // namespace outpost::detail

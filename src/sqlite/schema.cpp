// The outpost schema: the numbered, append-only migrations that create the outpost_* tables,
// the version check that refuses a file from a newer outpost, and the record column list.
#include "schema.hpp"

#include <SQLiteCpp/Statement.h>

#include <iterator>
#include <string>
#include <string_view>

#include "outpost/error.hpp"
#include "outpost/outbox.hpp"
#include "record_state_sql.hpp"
#include "sqlite_error.hpp"
#include "transaction.hpp"

namespace outpost::detail {

// The list every SELECT of whole records has always used.
static_assert(
    std::string_view(kRecordColumns) ==
    "id, uid, state, topic, payload, msg_key, qos, retain, priority, headers, "
    "content_type, created_at, expires_at, attempts, next_attempt_at, last_error, done_at");

namespace {

// Migration N brings the schema from version N-1 to N. Append only.
constexpr const char* kMigrations[] = {
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

// The shipped migrations keep their literal text; these tie each state condition in them to
// the constant the queries use (record_state_sql.hpp), so neither can change alone.
template <std::size_t N>
constexpr bool migration_has(int number, const sql::Text<N>& text) {
    return std::string_view(kMigrations[number - 1]).find(text.view()) != std::string_view::npos;
}
using S = RecordState;
static_assert(migration_has(1, "    state           INTEGER NOT NULL DEFAULT " +
                                   sql::state_value<S::pending>() + ",\n"));
static_assert(migration_has(1, "ON outpost_records (priority DESC, id) WHERE " +
                                   sql::kDispatchIndexWhere + ";\n"));
static_assert(migration_has(1, "ON outpost_records (expires_at)\n    WHERE " +
                                   sql::kExpiryIndexWhere + ";\n"));
static_assert(migration_has(1, "ON outpost_records (state, done_at) WHERE " + sql::kDoneIndexWhere +
                                   ";\n"));
static_assert(migration_has(2, "ON outpost_records (msg_key, priority DESC, id)\n    WHERE " +
                                   sql::kKeyIndexWhere + ";\n"));
static_assert(migration_has(2, "    WHEN " + sql::kRequeuedWhen + "\nBEGIN"));

bool table_exists(SQLite::Database& db, const char* name) {
    SQLite::Statement q(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?");
    q.bind(1, name);
    return q.executeStep();
}

}  // namespace

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

}  // namespace outpost::detail

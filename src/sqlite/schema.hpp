// Private: the outpost_* tables: their migrations, the schema version checks, and the names of
// the tables, indexes and record columns they define. SQLite error mapping is in sqlite_error.hpp,
// the row codec in record_codec.hpp, the transaction helper in transaction.hpp.
#pragma once

#include <SQLiteCpp/Database.h>

#include <array>
#include <cstddef>
#include <string_view>

#include "sql_text.hpp"

namespace outpost::detail {

// The tables and indexes the migrations create, at schema version kSchemaVersion
// (Admin::check() reports each one missing).
inline constexpr std::array<const char*, 3> kSchemaTables = {"outpost_meta", "outpost_records",
                                                             "outpost_lease"};
inline constexpr std::array<const char*, 4> kSchemaIndexes = {
    "outpost_records_dispatch", "outpost_records_expiry", "outpost_records_done",
    "outpost_records_key"};

// The columns of outpost_records in the order read_record() reads them.
inline constexpr std::array<std::string_view, 17> kRecordColumnNames = {
    "id",         "uid",      "state",           "topic",      "payload",      "msg_key",
    "qos",        "retain",   "priority",        "headers",    "content_type", "created_at",
    "expires_at", "attempts", "next_attempt_at", "last_error", "done_at"};

namespace schema_text {
constexpr std::size_t record_columns_size() {
    std::size_t n = 0;
    for (const std::string_view c : kRecordColumnNames) {
        n += c.size() + 2;
    }
    return n - 2 + 1;  // no ", " after the last, and the NUL
}
constexpr sql::Text<record_columns_size()> record_columns() {
    sql::Text<record_columns_size()> out;
    std::size_t at = 0;
    for (const std::string_view c : kRecordColumnNames) {
        if (at != 0) {
            out.chars[at++] = ',';
            out.chars[at++] = ' ';
        }
        for (const char ch : c) {
            out.chars[at++] = ch;
        }
    }
    return out;
}
inline constexpr auto kRecordColumns = record_columns();
}  // namespace schema_text

// kRecordColumnNames as one list, for "SELECT <kRecordColumns> FROM outpost_records":
// "id, uid, state, ...".
inline constexpr const char* kRecordColumns = schema_text::kRecordColumns.c_str();

// The outpost schema version stored in the file: 0 when it has no outpost tables.
// Throws SchemaError when the file is not a SQLite database.
int stored_schema_version(SQLite::Database& db);

// Checks the file can be used by this library: a SQLite database whose outpost schema is not
// newer than kSchemaVersion. Reads only. Returns the stored version.
int check_schema(SQLite::Database& db);

// Creates or migrates the outpost tables to kSchemaVersion in one BEGIN IMMEDIATE transaction.
// Migrations are numbered and append-only: never edit one that shipped.
void migrate(SQLite::Database& db);

}  // namespace outpost::detail

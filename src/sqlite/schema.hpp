// Private: the outpost_* tables: their migrations, the schema version checks, and the record
// column list. SQLite error mapping is in sqlite_error.hpp, the row codec in record_codec.hpp,
// the transaction helper in transaction.hpp.
#pragma once

#include <SQLiteCpp/Database.h>

namespace outpost::detail {

// The columns read_record() expects, in order, for "SELECT <kRecordColumns> FROM outpost_records".
extern const char* const kRecordColumns;

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

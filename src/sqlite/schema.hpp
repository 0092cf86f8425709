// Private: the outpost_* tables, their migrations, and the mapping of SQLite errors.
#pragma once

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include <cstdint>
#include <string>
#include <vector>

#include "outpost/message.hpp"
#include "outpost/store.hpp"

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

// Translates a SQLite::Exception into outpost's errors, with `context` naming what was done.
[[noreturn]] void rethrow_sqlite(const SQLite::Exception& e, const std::string& context);

// True for SQLITE_BUSY / SQLITE_LOCKED (retrying later can succeed).
bool is_busy(int code) noexcept;

// The value of `PRAGMA name` as text (the statement is finished before this returns, so no read
// transaction stays open).
std::string pragma_value(SQLite::Database& db, const std::string& name);

// Counts records by state, with payload bytes and the oldest pending record's age.
StoreCounts count_records(SQLite::Database& db);

// Reads a row selected with kRecordColumns.
Record read_record(SQLite::Statement& row);

// Header list <-> the `headers` column (length-prefixed name/value pairs).
std::vector<unsigned char> encode_headers(const std::vector<Header>& headers);
std::vector<Header> decode_headers(const void* data, std::size_t size);

// RAII BEGIN IMMEDIATE ... COMMIT; rolls back in the destructor unless committed.
class ImmediateTransaction {
  public:
    explicit ImmediateTransaction(SQLite::Database& db);
    ~ImmediateTransaction();
    ImmediateTransaction(const ImmediateTransaction&) = delete;
    ImmediateTransaction& operator=(const ImmediateTransaction&) = delete;
    void commit();

  private:
    SQLite::Database& db_;
    bool done_ = false;
};

}  // namespace outpost::detail

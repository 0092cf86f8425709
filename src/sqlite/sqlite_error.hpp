// Private: SQLite errors -> outpost's typed errors (SchemaError, StorageError), keeping the
// extended code and saying whether a retry later can succeed.
#pragma once

#include <SQLiteCpp/Exception.h>

#include <string>

namespace outpost::detail {

// The extended error code of `e` when SQLite gave one, else its primary code.
int sqlite_error_code(const SQLite::Exception& e) noexcept;

// Translates a SQLite::Exception into outpost's errors, with `context` naming what was done.
[[noreturn]] void rethrow_sqlite(const SQLite::Exception& e, const std::string& context);

// True for SQLITE_BUSY / SQLITE_LOCKED (retrying later can succeed).
bool is_busy(int code) noexcept;

// True for SQLITE_CORRUPT / SQLITE_NOTADB: the file (or a page of it) cannot be read.
bool is_corrupt(const SQLite::Exception& e) noexcept;

}  // namespace outpost::detail

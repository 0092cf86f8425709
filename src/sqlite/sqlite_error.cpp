// SQLite errors -> outpost's typed errors: the one place that decides which SQLite codes are
// transient (busy, locked, disk full) and which are permanent (corrupt, not a database,
// read-only).
#include "sqlite_error.hpp"

#include <sqlite3.h>

#include "outpost/error.hpp"

namespace outpost::detail {

int sqlite_error_code(const SQLite::Exception& e) noexcept {
    return e.getExtendedErrorCode() > 0 ? e.getExtendedErrorCode() : e.getErrorCode();
}

bool is_busy(int code) noexcept {
    const int primary = code & 0xff;
    return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

bool is_corrupt(const SQLite::Exception& e) noexcept {
    const int primary = sqlite_error_code(e) & 0xff;
    return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

void rethrow_sqlite(const SQLite::Exception& e, const std::string& context) {
    const int code = sqlite_error_code(e);
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

}  // namespace outpost::detail

// Private to admin.cpp (queries), salvage.cpp (--skip-unreadable) and file_check.cpp: Admin's
// state, and the helpers more than one of them needs.
#pragma once

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include <chrono>
#include <memory>
#include <string>

#include "outpost/admin.hpp"
#include "outpost/outbox.hpp"

namespace outpost {

struct Admin::Impl {
    std::string path;
    AdminOptions options;
    std::unique_ptr<SQLite::Database> db;
    std::unique_ptr<Outbox> outbox;  // made on the first add/requeue
    int version = 0;

    // Throws StorageError when the connection or the file cannot be written.
    void require_writable(const char* what);
    // The Outbox that adds and requeues, made on first use.
    Outbox& writer(const char* what);
};

namespace detail {

// Opens `path` without ever creating it; read-only connections fall back to immutable=1 when
// SQLite cannot make the -shm file (admin.cpp says when that is safe). `lenient`
// (AdminOptions::lenient): a read-only open of a file SQLite calls corrupt goes on with
// writable_schema, for a rescue only. Throws as rethrow_sqlite.
std::unique_ptr<SQLite::Database> open_database(const std::string& path, bool read_only,
                                                std::chrono::milliseconds busy_timeout,
                                                bool lenient);

// The query of Admin::for_each(): a page after :after up to :last, or (`by_id`) the single
// record :id; bind_filter() binds the filter's own parameters.
std::string filter_sql(const RecordFilter& f, bool by_id);
void bind_filter(SQLite::Statement& q, const RecordFilter& f);

}  // namespace detail
}  // namespace outpost

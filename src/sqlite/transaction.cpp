// Transaction discipline: BEGIN IMMEDIATE takes the write lock up front, so a writer waits in
// the busy handler at BEGIN instead of failing with SQLITE_BUSY at its first write (which no
// busy timeout can retry inside a deferred transaction).
#include "transaction.hpp"

#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <algorithm>
#include <thread>

namespace outpost::detail {

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

std::string pragma_value(SQLite::Database& db, const std::string& name) {
    SQLite::Statement q(db, "PRAGMA " + name);
    return q.executeStep() ? q.getColumn(0).getString() : std::string();
}

void switch_to_wal(SQLite::Database& db, std::chrono::milliseconds patience) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    constexpr std::chrono::milliseconds kLongestPause{50};
    for (std::chrono::milliseconds pause{1};; pause = std::min(2 * pause, kLongestPause)) {
        // Read again each time: the connection that was in the way may have switched it.
        if (pragma_value(db, "journal_mode") != "delete") {
            return;
        }
        try {
            db.exec("PRAGMA journal_mode = WAL");
            return;
        } catch (const SQLite::Exception& e) {
            if ((e.getErrorCode() & 0xff) != SQLITE_BUSY ||
                std::chrono::steady_clock::now() + pause > deadline) {
                throw;
            }
        }
        // The busy handler's job, which SQLite does not do for this upgrade.
        std::this_thread::sleep_for(pause);
    }
}

void PatientBusyHandler::install(sqlite3* db, std::chrono::milliseconds timeout) {
    timeout_ = timeout;
    sqlite3_busy_handler(db, &PatientBusyHandler::on_busy, this);
}

int PatientBusyHandler::on_busy(void* self, int count) {
    auto& h = *static_cast<PatientBusyHandler*>(self);
    const auto now = std::chrono::steady_clock::now();
    if (count == 0) {
        h.since_ = now;  // SQLite counts from 0 for each new wait
    }
    if (now - h.since_ >= h.timeout_) {
        return 0;
    }
    // The first looks sooner: most waits are for one short transaction.
    std::this_thread::sleep_for(count < 10 ? std::chrono::microseconds(100 * (count + 1))
                                           : std::chrono::microseconds(1000));
    return 1;
}

}  // namespace outpost::detail

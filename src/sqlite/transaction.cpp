// Transaction discipline: BEGIN IMMEDIATE takes the write lock up front, so a writer waits in
// the busy handler at BEGIN instead of failing with SQLITE_BUSY at its first write (which no
// busy timeout can retry inside a deferred transaction).
#include "transaction.hpp"

#include <SQLiteCpp/Statement.h>

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

}  // namespace outpost::detail

// Private: transaction discipline on one SQLite connection: the RAII write transaction, and the
// PRAGMA read that leaves no read transaction open behind it.
#pragma once

#include <SQLiteCpp/Database.h>

#include <chrono>
#include <string>

namespace outpost::detail {

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

// The value of `PRAGMA name` as text (the statement is finished before this returns, so no read
// transaction stays open).
std::string pragma_value(SQLite::Database& db, const std::string& name);

// Switches a rollback-journal ("delete") database to WAL; nothing in any other mode. Tries again
// for up to `patience` while the switch is busy: it reads page 1 and then upgrades to a write,
// and SQLite refuses that upgrade at once, without the busy handler, while another connection
// writes (several processes opening a new file together do so: they all switch it).
void switch_to_wal(SQLite::Database& db, std::chrono::milliseconds patience);

}  // namespace outpost::detail

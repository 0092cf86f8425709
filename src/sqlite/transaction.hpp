// Private: transaction discipline on one SQLite connection: the RAII write transaction, and the
// PRAGMA read that leaves no read transaction open behind it.
#pragma once

#include <SQLiteCpp/Database.h>
#include <sqlite3.h>

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

// A busy handler that waits up to `timeout` like sqlite3_busy_timeout, but looks at the lock
// every millisecond, where SQLite's own handler sleeps up to 100 ms between looks: next to
// writers that commit back to back (other processes of the app), those long sleeps can miss
// every moment the lock is free for the whole timeout, and the wait ends in SQLITE_BUSY.
// install() makes it the connection's handler; it must outlive that use (a later
// sqlite3_busy_timeout() or busy_handler() on the connection replaces it).
class PatientBusyHandler {
  public:
    void install(sqlite3* db, std::chrono::milliseconds timeout);
    void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  private:
    static int on_busy(void* self, int count);
    std::chrono::milliseconds timeout_{0};
    std::chrono::steady_clock::time_point since_{};
};

}  // namespace outpost::detail

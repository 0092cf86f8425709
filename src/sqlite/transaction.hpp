// Private: transaction discipline on one SQLite connection: the RAII write transaction, and the
// PRAGMA read that leaves no read transaction open behind it.
#pragma once

#include <SQLiteCpp/Database.h>

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

}  // namespace outpost::detail

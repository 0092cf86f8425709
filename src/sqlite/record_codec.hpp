// Private: outpost_records rows <-> values: a selected row -> Record, the header list <-> the
// `headers` blob, and the per-state counts read back into StoreCounts.
#pragma once

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include <cstddef>
#include <vector>

#include "outpost/message.hpp"
#include "outpost/store.hpp"

namespace outpost::detail {

// Reads a row selected with kRecordColumns (schema.hpp), in that order.
Record read_record(SQLite::Statement& row);

// Header list <-> the `headers` column (length-prefixed name/value pairs).
std::vector<unsigned char> encode_headers(const std::vector<Header>& headers);
std::vector<Header> decode_headers(const void* data, std::size_t size);

// Counts records by state, with payload bytes and the oldest pending record's age.
StoreCounts count_records(SQLite::Database& db);

}  // namespace outpost::detail

// Private: the statements that select records by state, in one place so that
// tests/unit/query_plan_test.cpp can check each one's plan against the schema's indexes.
//
// SQLite uses a partial index only when the query's WHERE visibly implies the index's own:
// outpost_records_dispatch and outpost_records_expiry are WHERE state = 0, outpost_records_done
// is WHERE state <> 0. A query for delivered, dead or expired records therefore repeats the
// literal "state <> 0" before its "state = N"; without it, SQLite scans the whole table (under
// the write lock, for a DELETE or UPDATE).
#pragma once

namespace outpost::detail::sql {

// SqliteStore
inline constexpr const char* kPurgeDelivered =
    "DELETE FROM outpost_records WHERE state <> 0 AND state = 1 AND done_at < ?1";
inline constexpr const char* kExpireDue =
    "UPDATE outpost_records SET state = 3, done_at = ?1, "
    "last_error = 'ttl passed before delivery' "
    "WHERE state = 0 AND expires_at IS NOT NULL AND expires_at <= ?1 "
    "AND id NOT IN (SELECT value FROM json_each(?2)) RETURNING id";  // ?2: ids in flight
inline constexpr const char* kNextExpiry =
    "SELECT min(expires_at) FROM outpost_records WHERE state = 0 AND expires_at IS NOT NULL";
inline constexpr const char* kExistsPending =
    "SELECT EXISTS (SELECT 1 FROM outpost_records WHERE state = 0)";
// The dispatcher's queue: a key's head by one seek on outpost_records_key, and what arrived
// since an id by a rowid range (NOT INDEXED: never a walk of the dispatch index).
// The columns SqliteStore reads into a PendingRef, in its order (a macro: literals concatenate).
#define OUTPOST_PENDING_REF_COLUMNS "id, priority, msg_key, next_attempt_at, expires_at, attempts"
inline constexpr const char* kKeyHead = "SELECT " OUTPOST_PENDING_REF_COLUMNS
                                        " FROM outpost_records WHERE state = 0 AND msg_key = ?1 "
                                        "ORDER BY priority DESC, id LIMIT 1";
inline constexpr const char* kArrivals =
    "SELECT " OUTPOST_PENDING_REF_COLUMNS
    " FROM outpost_records NOT INDEXED WHERE id > ?1 AND id <= ?2 AND state = 0 "
    "AND priority > ?3 ORDER BY id LIMIT ?4";
// The forward pass's statements start with this.
inline constexpr const char* kPendingRefs =
    "SELECT " OUTPOST_PENDING_REF_COLUMNS " FROM outpost_records WHERE state = 0 ";
// Reads every pending record's index entry (no index on next_attempt_at): it runs only after
// the wall clock stepped backwards.
inline constexpr const char* kClampRetryTimes =
    "UPDATE outpost_records SET next_attempt_at = ?1 "
    "WHERE state = 0 AND next_attempt_at > ?1 + ?2";

// Outbox
inline constexpr const char* kCountPending = "SELECT count(*) FROM outpost_records WHERE state = 0";
// Reads every pending record (for the payload length): documented with max_pending_bytes.
inline constexpr const char* kCountPendingAndBytes =
    "SELECT count(*), total(length(payload)) FROM outpost_records WHERE state = 0";
inline constexpr const char* kLowestPendingPriority =
    "SELECT min(priority) FROM outpost_records WHERE state = 0 AND id < ?1";
inline constexpr const char* kDropOldest =
    "DELETE FROM outpost_records WHERE id IN (SELECT id FROM outpost_records "
    "WHERE state = 0 AND priority = ?1 AND id < ?3 ORDER BY id LIMIT ?2) "
    "RETURNING length(payload)";
inline constexpr const char* kRequeue =
    "UPDATE outpost_records SET state = 0, attempts = 0, next_attempt_at = 0, done_at = NULL "
    "WHERE id = ?1 AND state = 2";
inline constexpr const char* kRequeueAllDead =
    "UPDATE outpost_records SET state = 0, attempts = 0, next_attempt_at = 0, done_at = NULL "
    "WHERE state <> 0 AND state = 2";

}  // namespace outpost::detail::sql

// Private: the statements that select records by state, in one place so that
// tests/unit/query_plan_test.cpp can check each one's plan against the schema's indexes.
//
// SQLite uses a partial index only when the query's WHERE visibly implies the index's own:
// outpost_records_dispatch and outpost_records_expiry are WHERE state = 0, outpost_records_done
// is WHERE state <> 0. A query for delivered, dead or expired records therefore repeats the
// literal "state <> 0" before its "state = N" (kInState, record_state_sql.hpp); without it,
// SQLite scans the whole table (under the write lock, for a DELETE or UPDATE).
//
// Each statement is built at compile time (its text in namespace `text`) and named here as a
// plain `const char*`.
#pragma once

#include "record_state_sql.hpp"

namespace outpost::detail::sql {

namespace text {

using S = RecordState;

// SqliteStore
inline constexpr auto kPurgeDelivered =
    "DELETE FROM outpost_records WHERE " + kInState<S::delivered> + " AND done_at < ?1";
inline constexpr auto kExpireDue =
    "UPDATE outpost_records SET " + kSetState<S::expired> +
    ", done_at = ?1, "
    "last_error = 'ttl passed before delivery' "
    "WHERE " +
    kExpiryIndexWhere + " AND expires_at <= ?1 " +
    "AND id NOT IN (SELECT value FROM json_each(?2)) RETURNING id";  // ?2: ids in flight
inline constexpr auto kNextExpiry =
    "SELECT min(expires_at) FROM outpost_records WHERE " + kExpiryIndexWhere;
inline constexpr auto kExistsPending =
    "SELECT EXISTS (SELECT 1 FROM outpost_records WHERE " + kIsPending + ")";
// The dispatcher's queue: a key's head by one seek on outpost_records_key, and what arrived
// since an id by a rowid range (NOT INDEXED: never a walk of the dispatch index).
// The columns SqliteStore reads into a PendingRef, in its order (a macro: literals concatenate).
#define OUTPOST_PENDING_REF_COLUMNS "id, priority, msg_key, next_attempt_at, expires_at, attempts"
inline constexpr auto kKeyHead =
    "SELECT " OUTPOST_PENDING_REF_COLUMNS " FROM outpost_records WHERE " + kIsPending +
    " AND msg_key = ?1 "
    "ORDER BY priority DESC, id LIMIT 1";
inline constexpr auto kArrivals =
    "SELECT " OUTPOST_PENDING_REF_COLUMNS
    " FROM outpost_records NOT INDEXED WHERE id > ?1 AND id <= ?2 AND " +
    kIsPending + " AND priority > ?3 ORDER BY id LIMIT ?4";
// The forward pass's statements start with this.
inline constexpr auto kPendingRefs =
    "SELECT " OUTPOST_PENDING_REF_COLUMNS " FROM outpost_records WHERE " + kIsPending + " ";
// Reads every pending record's index entry (no index on next_attempt_at): it runs only after
// the wall clock stepped backwards.
inline constexpr auto kClampRetryTimes =
    "UPDATE outpost_records SET next_attempt_at = ?1 "
    "WHERE " +
    kIsPending + " AND next_attempt_at > ?1 + ?2";
// The per-record writes of the dispatcher (SqliteStore::Impl's prepared statements).
inline constexpr auto kMarkDelivered =
    "UPDATE outpost_records SET " + kSetState<S::delivered> + ", done_at = ?2 WHERE id = ?1";
inline constexpr auto kMarkRetry =
    "UPDATE outpost_records SET attempts = ?2, next_attempt_at = ?3, "
    "last_error = ?4 WHERE id = ?1 AND " +
    kIsPending;
inline constexpr auto kMarkDead = "UPDATE outpost_records SET " + kSetState<S::dead> +
                                  ", attempts = ?2, last_error = ?3, "
                                  "done_at = ?4 WHERE id = ?1 AND " +
                                  kIsPending;
inline constexpr auto kMarkExpired = "UPDATE outpost_records SET " + kSetState<S::expired> +
                                     ", last_error = ?2, done_at = ?3 "
                                     "WHERE id = ?1 AND " +
                                     kIsPending;

// Outbox
inline constexpr auto kCountPending = "SELECT count(*) FROM outpost_records WHERE " + kIsPending;
// Reads every pending record (for the payload length): documented with max_pending_bytes.
inline constexpr auto kCountPendingAndBytes =
    "SELECT count(*), total(length(payload)) FROM outpost_records WHERE " + kIsPending;
inline constexpr auto kLowestPendingPriority =
    "SELECT min(priority) FROM outpost_records WHERE " + kIsPending + " AND id < ?1";
inline constexpr auto kDropOldest =
    "DELETE FROM outpost_records WHERE id IN (SELECT id FROM outpost_records "
    "WHERE " +
    kIsPending +
    " AND priority = ?1 AND id < ?3 ORDER BY id LIMIT ?2) "
    "RETURNING length(payload)";
inline constexpr auto kRequeue = "UPDATE outpost_records SET " + kSetState<S::pending> +
                                 ", attempts = 0, next_attempt_at = 0, done_at = NULL "
                                 "WHERE id = ?1 AND " +
                                 kStateIs<S::dead>;
inline constexpr auto kRequeueAllDead = "UPDATE outpost_records SET " + kSetState<S::pending> +
                                        ", attempts = 0, next_attempt_at = 0, done_at = NULL "
                                        "WHERE " +
                                        kInState<S::dead>;

}  // namespace text

inline constexpr const char* kPurgeDelivered = text::kPurgeDelivered.c_str();
inline constexpr const char* kExpireDue = text::kExpireDue.c_str();
inline constexpr const char* kNextExpiry = text::kNextExpiry.c_str();
inline constexpr const char* kExistsPending = text::kExistsPending.c_str();
inline constexpr const char* kKeyHead = text::kKeyHead.c_str();
inline constexpr const char* kArrivals = text::kArrivals.c_str();
inline constexpr const char* kPendingRefs = text::kPendingRefs.c_str();
inline constexpr const char* kClampRetryTimes = text::kClampRetryTimes.c_str();
inline constexpr const char* kMarkDelivered = text::kMarkDelivered.c_str();
inline constexpr const char* kMarkRetry = text::kMarkRetry.c_str();
inline constexpr const char* kMarkDead = text::kMarkDead.c_str();
inline constexpr const char* kMarkExpired = text::kMarkExpired.c_str();
inline constexpr const char* kCountPending = text::kCountPending.c_str();
inline constexpr const char* kCountPendingAndBytes = text::kCountPendingAndBytes.c_str();
inline constexpr const char* kLowestPendingPriority = text::kLowestPendingPriority.c_str();
inline constexpr const char* kDropOldest = text::kDropOldest.c_str();
inline constexpr const char* kRequeue = text::kRequeue.c_str();
inline constexpr const char* kRequeueAllDead = text::kRequeueAllDead.c_str();

}  // namespace outpost::detail::sql

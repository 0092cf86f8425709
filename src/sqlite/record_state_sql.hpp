// Private: the one place that says which integer outpost_records.state stores for each
// RecordState, and the SQL conditions on the state column, built at compile time from it.
//
// Every statement that selects or sets a state uses these constants, never a digit of its own.
// The partial indexes' WHERE clauses are these same texts: SQLite uses a partial index only when
// the query's WHERE visibly contains the index's condition, so the query text and the index text
// must not drift apart. The shipped migrations (schema.cpp) keep their literal text (they are
// append-only); static_asserts there check that each one still spells these conditions, and
// tests/unit/record_state_sql_test.cpp checks the text of each against the shipped literal.
#pragma once

#include <string>

#include "outpost/message.hpp"
#include "sql_text.hpp"

namespace outpost::detail {

// The value stored in outpost_records.state for `state`. Stored values never change: files
// written by earlier versions hold them.
constexpr int stored_state(RecordState state) noexcept {
    switch (state) {
        case RecordState::pending:
            return 0;
        case RecordState::delivered:
            return 1;
        case RecordState::dead:
            return 2;
        case RecordState::expired:
            return 3;
    }
    return static_cast<int>(state);  // not a RecordState: kept as is (Admin::check reports it)
}

// The RecordState a stored value means. A value no RecordState stores is kept as is.
constexpr RecordState state_from_stored(int value) noexcept {
    return static_cast<RecordState>(value);
}

static_assert(state_from_stored(stored_state(RecordState::pending)) == RecordState::pending);
static_assert(state_from_stored(stored_state(RecordState::delivered)) == RecordState::delivered);
static_assert(state_from_stored(stored_state(RecordState::dead)) == RecordState::dead);
static_assert(state_from_stored(stored_state(RecordState::expired)) == RecordState::expired);

namespace sql {

// The stored value of S as SQL text ("0" for pending).
template <RecordState S>
constexpr Text<2> state_value() {
    constexpr int v = stored_state(S);
    static_assert(v >= 0 && v <= 9, "a stored state is one digit");
    Text<2> out;
    out.chars[0] = static_cast<char>('0' + v);
    return out;
}

// "state = 1": the plain comparison with state S (for a record chosen by id), and the
// assignment that moves a record to S (after SET).
template <RecordState S>
inline constexpr auto kStateIs = "state = " + state_value<S>();
template <RecordState S>
inline constexpr auto kSetState = kStateIs<S>;

// "state = 0": the condition of the partial indexes on pending records.
inline constexpr auto kIsPending = kStateIs<RecordState::pending>;
// "state <> 0": the condition of outpost_records_done, the partial index on done records.
inline constexpr auto kIsDone = "state <> " + state_value<RecordState::pending>();

// The condition that selects every record in state S. For a done state it repeats kIsDone
// first, so SQLite may use outpost_records_done: "state <> 0 AND state = 1".
template <RecordState S>
inline constexpr auto kInState = kIsDone + " AND " + kStateIs<S>;
template <>
inline constexpr auto kInState<RecordState::pending> = kIsPending;

// True for a stored value no RecordState has: "state NOT IN (0, 1, 2, 3)".
inline constexpr auto kUnknownState = "state NOT IN (" + state_value<RecordState::pending>() +
                                      ", " + state_value<RecordState::delivered>() + ", " +
                                      state_value<RecordState::dead>() + ", " +
                                      state_value<RecordState::expired>() + ")";

// The WHERE clauses of the partial indexes (migrations 1 and 2) and the WHEN of the requeue
// trigger (migration 2), exactly as those migrations spell them.
inline constexpr auto kDispatchIndexWhere = kIsPending;
inline constexpr auto kExpiryIndexWhere = kIsPending + " AND expires_at IS NOT NULL";
inline constexpr auto kDoneIndexWhere = kIsDone;
inline constexpr auto kKeyIndexWhere = kIsPending + " AND msg_key IS NOT NULL";
inline constexpr auto kRequeuedWhen = "OLD." + kIsDone + " AND NEW." + kIsPending;

// kInState for a state known only at run time (Admin's count and purge).
inline std::string in_state(RecordState state) {
    switch (state) {
        case RecordState::pending:
            return std::string(kInState<RecordState::pending>.view());
        case RecordState::delivered:
            return std::string(kInState<RecordState::delivered>.view());
        case RecordState::dead:
            return std::string(kInState<RecordState::dead>.view());
        case RecordState::expired:
            return std::string(kInState<RecordState::expired>.view());
    }
    // Not a RecordState: the same shape, with the value as given.
    return std::string(kIsDone.view()) + " AND state = " + std::to_string(stored_state(state));
}

}  // namespace sql
}  // namespace outpost::detail

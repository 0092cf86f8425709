// The --skip-unreadable salvage: when a page of outpost_records cannot be read, Admin::for_each
// falls back to salvage(), which visits the rest of the records by point lookups, each id on its
// own, and counts the ids it could not read instead of failing the whole export.
#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>

#include "admin_internal.hpp"
#include "outpost/admin.hpp"
#include "outpost/error.hpp"
#include "record_codec.hpp"
#include "record_state_sql.hpp"

namespace outpost {

namespace {

// The largest id through each partial index that, together, cover every record.
constexpr auto kMaxIdPendingText =
    "SELECT max(id) FROM outpost_records INDEXED BY outpost_records_dispatch WHERE " +
    detail::sql::kDispatchIndexWhere;
constexpr auto kMaxIdDoneText =
    "SELECT max(id) FROM outpost_records INDEXED BY outpost_records_done WHERE " +
    detail::sql::kDoneIndexWhere;
constexpr const char* kMaxIdPending = kMaxIdPendingText.c_str();
constexpr const char* kMaxIdDone = kMaxIdDoneText.c_str();

}  // namespace

std::size_t Admin::salvage(const RecordFilter& filter, std::int64_t after, std::int64_t last,
                           std::size_t visited_before,
                           const std::function<bool(const Record&)>& visit,
                           std::size_t* unreadable) {
    // Point lookups descend the b-tree to one leaf each: a damaged page costs only the ids on
    // it. The largest id comes from the table's rightmost path, or, when that is damaged, from
    // the two partial indexes, which together cover every record (state = 0, state <> 0) and
    // hold the ids in pages of their own.
    static const char* const kMaxQueries[] = {
        "SELECT max(id) FROM outpost_records",
        kMaxIdPending,
        kMaxIdDone,
    };
    std::int64_t max_id = 0;
    bool found = false;
    bool table_max_ok = false;
    std::string failure;
    for (const char* sql : kMaxQueries) {
        try {
            SQLite::Statement m(*impl_->db, sql);
            m.executeStep();
            max_id = std::max(max_id, m.getColumn(0).getInt64());
            found = true;
            table_max_ok = table_max_ok || sql == kMaxQueries[0];
        } catch (const SQLite::Exception& e) {
            failure = e.what();
        }
    }
    if (!found) {
        throw StorageError("finding the largest record id of " + impl_->path +
                               " (needed to skip unreadable records) failed: " + failure,
                           false, SQLITE_CORRUPT);
    }
    // Without the table's own max(id), records may lie beyond the largest id the indexes know:
    // walk on until a run of ids that are cleanly absent, or give up after a long run of
    // failures (a damaged rightmost leaf fails every lookup past its first id).
    constexpr int kCleanRun = 1000;
    constexpr std::int64_t kFailedRun = 100'000;
    int clean_run = 0;
    std::int64_t failed_run = 0;
    std::size_t visited = 0;
    std::size_t skipped = 0;
    SQLite::Statement q(*impl_->db, detail::filter_sql(filter, true));
    // The next id stored after one that is cleanly absent: a gap in the ids costs one seek, not
    // a lookup per missing id (a damaged or hand-edited file may hold id 10^12 after a few
    // hundred records, and the walk up to it would never end).
    SQLite::Statement next(*impl_->db,
                           "SELECT id FROM outpost_records WHERE id > ? ORDER BY id LIMIT 1");
    // The step never overflows: after the largest id there is (a damaged file can hold it) the
    // walk ends, by stepping back to `after`.
    constexpr std::int64_t kLargestId = std::numeric_limits<std::int64_t>::max();
    for (std::int64_t id = after + 1; id > after && id <= last;
         id = id == kLargestId ? after : id + 1) {
        if (id > max_id && (table_max_ok || clean_run >= kCleanRun || failed_run >= kFailedRun)) {
            break;
        }
        if (filter.limit != 0 && visited_before + visited >= filter.limit) {
            break;
        }
        std::optional<Record> r;
        bool failed = false;
        try {
            q.reset();
            q.clearBindings();
            q.bind(":id", id);
            detail::bind_filter(q, filter);
            if (q.executeStep()) {
                r = detail::read_record(q);
            }
            q.reset();
        } catch (const SQLite::Exception&) {
            failed = true;
        } catch (const StorageError&) {  // malformed headers
            failed = true;
        }
        if (failed) {
            q.tryReset();
            clean_run = 0;
            if (id <= max_id) {
                ++skipped;
            } else {
                ++failed_run;
            }
            continue;
        }
        failed_run = 0;
        clean_run = r ? 0 : clean_run + 1;
        if (r) {
            ++visited;
            if (!visit(*r)) {
                break;
            }
            continue;
        }
        try {
            next.reset();
            next.bind(1, id);
            if (next.executeStep()) {
                id = std::max(id, next.getColumn(0).getInt64() - 1);  // ++id lands on it
            } else if (table_max_ok) {
                break;  // nothing stored beyond: the rest of the walk finds nothing
            }
            next.reset();
        } catch (const SQLite::Exception&) {
            (void)next.tryReset();  // a damaged page on the way: go on id by id
        }
    }
    if (!table_max_ok) {
        ++skipped;  // the end of the table could not be read: more records may lie there
    }
    if (unreadable != nullptr) {
        *unreadable += skipped;
    }
    return visited;
}

}  // namespace outpost

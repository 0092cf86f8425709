// The file check (`outpost check`): Admin::check() opens the file on a read-only connection of
// its own and reports what is wrong with it: not SQLite, integrity_check findings, an unknown
// schema version, missing tables, indexes or columns (the names come from schema.hpp), records
// with a state or qos no outpost writes. It never writes.
#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "admin_internal.hpp"
#include "outpost/admin.hpp"
#include "outpost/error.hpp"
#include "outpost/outbox.hpp"
#include "record_state_sql.hpp"
#include "schema.hpp"
#include "sqlite_error.hpp"

namespace outpost {

namespace fs = std::filesystem;

namespace {

constexpr auto kBadValuesText = "SELECT sum(" + detail::sql::kUnknownState +
                                "), "
                                "sum(qos NOT IN (0, 1, 2)) FROM outpost_records";
constexpr const char* kBadValues = kBadValuesText.c_str();

// What SQLite says of a damaged file, as opposed to one it could not read at all.
bool damage(int code) {
    const int primary = code & 0xff;
    return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

}  // namespace

CheckReport Admin::check(const std::string& path, bool quick) {
    CheckReport report;
    std::unique_ptr<SQLite::Database> db;
    try {
        db = detail::open_database(path, true, std::chrono::milliseconds(5000), /*lenient=*/false);
    } catch (const SchemaError& e) {
        report.problems.push_back(e.what());
        return report;
    } catch (const StorageError& e) {
        if (!damage(e.code())) {
            // The check could not run (no such file, a directory, busy, no permission, an I/O
            // error): an error of the run, exit 1, not a finding about the file (exit 5).
            throw;
        }
        report.problems.push_back(e.what());
        return report;
    }
    report.sqlite_ok = true;

    try {
        SQLite::Statement q(*db, quick ? "PRAGMA quick_check" : "PRAGMA integrity_check");
        std::vector<std::string> rows;
        while (q.executeStep()) {
            rows.push_back(q.getColumn(0).getString());
        }
        if (rows.size() == 1 && rows[0] == "ok") {
            report.integrity_ok = true;
        } else {
            for (const std::string& r : rows) {
                report.problems.push_back(std::string(quick ? "quick_check" : "integrity_check") +
                                          ": " + r);
            }
        }
    } catch (const SQLite::Exception& e) {
        if (!damage(detail::sqlite_error_code(e))) {
            detail::rethrow_sqlite(e, quick ? "running quick_check" : "running integrity_check");
        }
        report.problems.push_back(std::string(quick ? "quick_check" : "integrity_check") +
                                  " failed: " + e.what());
    }

    try {
        report.schema_version = detail::stored_schema_version(*db);
    } catch (const Error& e) {
        report.problems.push_back(e.what());
        return report;
    }
    if (report.schema_version == 0) {
        report.problems.push_back("no outpost tables: not an outbox database");
        return report;
    }
    if (report.schema_version > kSchemaVersion) {
        report.problems.push_back("outpost schema version " +
                                  std::to_string(report.schema_version) + " is newer than the " +
                                  std::to_string(kSchemaVersion) +
                                  " this outpost understands; upgrade outpost to check it further");
        return report;
    }
    if (report.schema_version < kSchemaVersion) {
        report.notes.push_back("outpost schema version " + std::to_string(report.schema_version) +
                               " is older than " + std::to_string(kSchemaVersion) +
                               "; the app's next Outbox migrates it");
        return report;  // the expected objects below are those of the current version
    }

    try {
        std::set<std::string> tables, indexes;
        SQLite::Statement m(*db, "SELECT type, name FROM sqlite_master WHERE name LIKE 'outpost%'");
        while (m.executeStep()) {
            (m.getColumn(0).getString() == "table" ? tables : indexes)
                .insert(m.getColumn(1).getString());
        }
        for (const char* t : detail::kSchemaTables) {
            if (!tables.count(t)) {
                report.problems.push_back(std::string("table ") + t + " is missing");
            }
        }
        for (const char* i : detail::kSchemaIndexes) {
            if (!indexes.count(i)) {
                report.problems.push_back(std::string("index ") + i + " is missing");
            }
        }
        if (tables.count("outpost_records")) {
            std::set<std::string> columns;
            SQLite::Statement c(*db, "PRAGMA table_info(outpost_records)");
            while (c.executeStep()) {
                columns.insert(c.getColumn(1).getString());
            }
            for (const std::string_view col : detail::kRecordColumnNames) {
                if (!columns.count(std::string(col))) {
                    report.problems.push_back("column outpost_records." + std::string(col) +
                                              " is missing");
                }
            }
            if (report.problems.empty()) {
                SQLite::Statement bad(*db, kBadValues);
                bad.executeStep();
                if (const auto n = bad.getColumn(0).getInt64(); n > 0) {
                    report.problems.push_back(std::to_string(n) + " records have an unknown state");
                }
                if (const auto n = bad.getColumn(1).getInt64(); n > 0) {
                    report.problems.push_back(std::to_string(n) + " records have an invalid qos");
                }
            }
        }
        SQLite::Statement j(*db, "PRAGMA journal_mode");
        if (j.executeStep() && j.getColumn(0).getString() != "wal") {
            report.notes.push_back("journal_mode is " + j.getColumn(0).getString() +
                                   ", not wal: the app's Outbox switches it on its next start");
        }
    } catch (const SQLite::Exception& e) {
        report.problems.push_back(std::string("reading the outpost schema failed: ") + e.what());
    }
    return report;
}

}  // namespace outpost

// `outpost check`: integrity and schema check, read-only.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "outpost/admin.hpp"
#include "record_json.hpp"
#include "text.hpp"

namespace outpost::cli {

namespace {

using json = nlohmann::json;

struct CheckArgs {
    bool quick = false;
};

int run_check(const Common& common, const CheckArgs& args) {
    const CheckReport report = Admin::check(common.db, args.quick);
    if (common.json) {
        std::cout << dump(json{{"db", common.db},
                               {"clean", report.clean()},
                               {"sqlite", report.sqlite_ok},
                               {"integrity", report.integrity_ok},
                               {"schema_version", report.schema_version},
                               {"problems", report.problems},
                               {"notes", report.notes}},
                          2)
                  << '\n';
    } else {
        std::cout << "database        " << one_line(common.db) << '\n'
                  << "sqlite          " << (report.sqlite_ok ? "ok" : "FAILED") << '\n'
                  << (args.quick ? "quick_check     " : "integrity_check ")
                  << (!report.sqlite_ok     ? "not run"
                      : report.integrity_ok ? "ok"
                                            : "FAILED")
                  << '\n'
                  << "schema version  " << report.schema_version << '\n';
        for (const std::string& n : report.notes) {
            std::cout << "note: " << one_line(n) << '\n';
        }
        for (const std::string& p : report.problems) {
            std::cout << "problem: " << one_line(p) << '\n';
        }
        std::cout << (report.clean() ? "clean" : "NOT CLEAN") << '\n';
    }
    if (!report.clean()) {
        std::cerr << "outpost: error: check found " << report.problems.size() << " problem"
                  << (report.problems.size() == 1 ? "" : "s") << " in " << one_line(common.db)
                  << ": " << one_line(report.problems.front()) << '\n';
        return kExitCheckFoundProblems;
    }
    return kExitOk;
}

Run setup_check(CLI::App& cmd, const Common& common) {
    auto args = std::make_shared<CheckArgs>();
    cmd.add_flag("--quick", args->quick,
                 "PRAGMA quick_check instead of integrity_check (skips index contents)");
    cmd.footer(
        "Checks that the file is a SQLite database, that PRAGMA integrity_check is clean, that\n"
        "its outpost schema is one this version understands, that the outpost tables, columns\n"
        "and indexes exist, and that every record has a valid state and qos. Exits 0 only when\n"
        "clean, 5 when it found problems (they are listed), 1 when it could not check (no such\n"
        "file). Opens the file read-only: never modifies it. The check reads the whole file in\n"
        "one read transaction.\n"
        "Example: outpost check --db app.db && echo clean");
    return [&common, args] { return run_check(common, *args); };
}

}  // namespace

extern const Command kCheckCommand{"check", "Integrity and schema check; exit 0 only when clean",
                                   setup_check};

}  // namespace outpost::cli

// footprint: stripped sizes of the library and of a minimal app linking it.
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "bench.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::bench {

namespace {

// Size in bytes of `file` after `strip_args`, on a copy; -1 when it cannot be measured.
double stripped_size(const std::string& file, const std::string& strip_args) {
    testing::TempDir dir;
    const std::string copy = dir.file("copy");
    std::error_code ec;
    std::filesystem::copy_file(file, copy, ec);
    if (ec) {
        return -1;
    }
    const std::string cmd = "strip " + strip_args + " '" + copy + "' 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) {
        return -1;
    }
    return static_cast<double>(std::filesystem::file_size(copy));
}

}  // namespace

void footprint_scenario(const Config& c, std::vector<Result>& out) {
    const bool archive = c.footprint_library.size() > 2 &&
                         c.footprint_library.compare(c.footprint_library.size() - 2, 2, ".a") == 0;
    const struct {
        const char* name;
        std::string file;
        std::string args;
        std::string note;
    } items[] = {
        {"footprint-library", c.footprint_library, archive ? "--strip-debug" : "--strip-unneeded",
         std::filesystem::path(c.footprint_library).filename().string() +
             (archive ? " (static archive, debug info stripped)" : " (stripped)")},
        {"footprint-app", c.footprint_app, "",
         "minimal app (Outbox + Dispatcher + MqttBroker), stripped; SQLiteCpp static, paho and "
         "sqlite3 shared"},
    };
    for (const auto& item : items) {
        Result r;
        r.scenario = item.name;
        r.outpost = stripped_size(item.file, item.args) / 1024.0;
        r.unit = "KiB";
        r.goal = "reported";
        r.note = item.note + " of this build";
        out.push_back(r);
    }
}

}  // namespace outpost::bench

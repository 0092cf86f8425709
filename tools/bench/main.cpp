// outpost-bench: outpost against raw baselines, on the same machine, in the same run.
//
//   outpost-bench [--quick] [--json] [--only NAME[,NAME...]] [--fleet-processes N]
//                 [--fleet-outage SECONDS]
//
// Starts its own mosquitto on a free loopback port. Prints a table (or, with --json, one JSON
// object per line). Exit status 0 when every scenario ran, whatever the figures: goals are
// reported, not asserted.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "bench.hpp"
#include "testkit/mosquitto.hpp"

using namespace outpost::bench;

namespace {

std::string number(double v) {
    char buf[64];
    if (std::fabs(v) >= 100) {
        std::snprintf(buf, sizeof buf, "%.0f", v);
    } else {
        std::snprintf(buf, sizeof buf, "%.2f", v);
    }
    return buf;
}

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char ch : s) {
        switch (ch) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            default:
                if (static_cast<unsigned char>(ch) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", ch);
                    out += buf;
                } else {
                    out += ch;
                }
        }
    }
    return out + "\"";
}

std::string json_number(double v) {
    if (!std::isfinite(v)) {
        return "null";
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

void print_json(const Result& r) {
    std::ostringstream o;
    o << "{\"scenario\":" << json_string(r.scenario) << ",\"outpost\":" << json_number(r.outpost)
      << ",\"baseline\":" << (r.baseline ? json_number(*r.baseline) : "null")
      << ",\"ratio\":" << (r.ratio ? json_number(*r.ratio) : "null")
      << ",\"unit\":" << json_string(r.unit) << ",\"goal\":" << json_string(r.goal)
      << ",\"met\":" << (r.met ? (*r.met ? "true" : "false") : "null")
      << ",\"note\":" << json_string(r.note) << "}";
    std::cout << o.str() << std::endl;
}

void print_table(const std::vector<Result>& rs) {
    std::printf("| %-18s | %10s | %10s | %7s | %-13s | %-32s | %-4s |\n", "scenario", "outpost",
                "baseline", "ratio", "unit", "goal", "met");
    std::printf("|%s|%s|%s|%s|%s|%s|%s|\n", std::string(20, '-').c_str(),
                std::string(12, '-').c_str(), std::string(12, '-').c_str(),
                std::string(9, '-').c_str(), std::string(15, '-').c_str(),
                std::string(34, '-').c_str(), std::string(6, '-').c_str());
    for (const Result& r : rs) {
        std::printf("| %-18s | %10s | %10s | %7s | %-13s | %-32s | %-4s |\n", r.scenario.c_str(),
                    number(r.outpost).c_str(), r.baseline ? number(*r.baseline).c_str() : "-",
                    r.ratio ? number(*r.ratio).c_str() : "-", r.unit.c_str(), r.goal.c_str(),
                    r.met ? (*r.met ? "yes" : "NO") : "-");
    }
    std::printf("\nNotes:\n");
    for (const Result& r : rs) {
        std::printf("  %-18s %s\n", r.scenario.c_str(), r.note.c_str());
    }
}

}  // namespace

int main(int argc, char** argv) {
    // Child and profiling modes: drain an existing backlog, or make one.
    if ((argc == 5 || argc == 6) && std::strcmp(argv[1], "--drain-child") == 0) {
        return drain_child(argv[2], argv[3], std::stoull(argv[4]), argc == 6 ? argv[5] : "");
    }
    if (argc == 8 && std::strcmp(argv[1], "--fleet-child") == 0) {
        return fleet_child(argv[2], argv[3], std::stoi(argv[4]), std::stod(argv[5]),
                           std::stoi(argv[6]), std::chrono::milliseconds(std::stoll(argv[7])));
    }
    if (argc == 4 && std::strcmp(argv[1], "--prefill") == 0) {
        prefill(argv[2], std::stoull(argv[3]));
        return 0;
    }
    Config c;
    bool json = false;
    std::set<std::string> only;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--quick") {
            c.quick = true;
        } else if (a == "--fleet-processes" && i + 1 < argc) {
            c.fleet_processes = std::stoi(argv[++i]);
            if (c.fleet_processes < 1 || 200 % c.fleet_processes != 0) {
                std::fprintf(stderr, "outpost-bench: --fleet-processes must divide 200\n");
                return 2;
            }
        } else if (a == "--fleet-outage" && i + 1 < argc) {
            c.fleet_outage_ms = std::lround(std::stod(argv[++i]) * 1000.0);
        } else if (a == "--json") {
            json = true;
        } else if (a == "--only" && i + 1 < argc) {
            std::stringstream s(argv[++i]);
            for (std::string name; std::getline(s, name, ',');) {
                only.insert(name);
            }
        } else if (a == "--help" || a == "-h") {
            std::printf(
                "usage: outpost-bench [--quick] [--json] [--only GROUP[,GROUP...]] "
                "[--fleet-processes N] [--fleet-outage S]\n\n"
                "Measures outpost against raw baselines on this machine, in one run, with its "
                "own mosquitto\non a free loopback port. Groups: enqueue, drain, latency, "
                "backlog, idle, flash, footprint, fleet.\n--quick runs every group small (under a "
                "minute in all, plus 45 s for\nfleet); --json prints one JSON object per result "
                "line (scenario, outpost, baseline,\nratio, unit, goal, met, note). ratio is "
                "outpost/baseline for rates\n"
                "and baseline/outpost for times and memory: higher is better.\n\n"
                "For profiling: --prefill DB N makes a backlog of N records; --drain-child DB "
                "URI N [ID]\ndrains it with the dispatcher and prints '<msg/s> <peak RSS KiB>' "
                "(ID: the id property's\nname, default none).\n\nThe fleet group: "
                "--fleet-processes N spreads its 200 devices over N processes\n(default 200: "
                "one each; N divides 200); --fleet-outage S sets the broker outage in\nseconds "
                "(default 20, 10 with --quick).\n");
            return 0;
        } else {
            std::fprintf(stderr, "outpost-bench: unknown argument '%s' (try --help)\n", a.c_str());
            return 2;
        }
    }
    c.self_exe = std::filesystem::read_symlink("/proc/self/exe").string();
    c.footprint_library = OUTPOST_BENCH_LIBRARY;
    c.footprint_app = OUTPOST_BENCH_MINIMAL_APP;

    try {
        outpost::testing::MosquittoOptions mo;
        // No receive maximum, so paho's and outpost's windows are what limits both sides; no
        // Nagle on the broker's side, whose PUBACKs otherwise wait for TCP acknowledgements
        // (a bursty publisher then drains in 40 ms steps: 2,000 msg/s instead of 30,000).
        mo.extra_config = "max_inflight_messages 0\nmax_queued_messages 0\nset_tcp_nodelay true\n";
        outpost::testing::Mosquitto broker(mo);
        c.broker_uri = broker.uri();
        c.broker_port = broker.port();
        c.stop_broker = [&] { broker.stop(); };
        c.start_broker = [&] { broker.start(); };

        const std::vector<std::pair<std::string, std::function<void(std::vector<Result>&)>>>
            groups = {
                {"enqueue", [&](auto& out) { enqueue_scenarios(c, out); }},
                {"drain", [&](auto& out) { drain_scenarios(c, out); }},
                {"latency", [&](auto& out) { latency_scenario(c, out); }},
                {"backlog", [&](auto& out) { backlog_scenario(c, out); }},
                {"idle", [&](auto& out) { idle_scenario(c, out); }},
                {"flash", [&](auto& out) { flash_scenarios(c, out); }},
                {"footprint", [&](auto& out) { footprint_scenario(c, out); }},
                {"fleet", [&](auto& out) { fleet_scenarios(c, out); }},
            };
        std::vector<Result> all;
        for (const auto& [name, run] : groups) {
            if (!only.empty() && only.count(name) == 0) {
                continue;
            }
            std::vector<Result> got;
            const auto t0 = Clock::now();
            run(got);
            std::fprintf(stderr, "outpost-bench: %s done in %.1f s\n", name.c_str(),
                         seconds_since(t0));
            for (const Result& r : got) {
                if (json) {
                    print_json(r);
                }
                all.push_back(r);
            }
        }
        if (!json) {
            print_table(all);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "outpost-bench: %s\n", e.what());
        return 1;
    }
    return 0;
}

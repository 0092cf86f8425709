// outpost: the command-line tool for an outbox file on a live device.
//
// Parsing and help live here; each command's work is in commands.cpp / sync.cpp. Exit codes:
// 0 ok, 1 failure, 2 usage error, 3 `sync` timed out with records pending, 4 `sync` left nothing
// pending but records went dead or expired during it.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "commands.hpp"
#include "duration.hpp"
#include "outpost/error.hpp"
#include "text.hpp"

namespace {

using namespace outpost::cli;

// One line, whatever the message holds.
std::string flatten(const std::string& text) {
    std::string out;
    for (const char c : text) {
        if (c == '\n') {
            if (!out.empty() && out.back() != ' ') {
                out += "; ";
            }
        } else {
            out += c;
        }
    }
    while (!out.empty() && (out.back() == ' ' || out.back() == ';')) {
        out.pop_back();
    }
    return one_line(out);
}

const CLI::Validator& duration_validator() {
    static const CLI::Validator v(
        [](std::string& text) -> std::string {
            try {
                parse_duration(text);
                return {};
            } catch (const std::exception& e) {
                return e.what();
            }
        },
        "DURATION", "duration");
    return v;
}

void add_common(CLI::App& cmd, Common& common) {
    cmd.add_option("--db", common.db, "The outbox database file (never created by this tool)")
        ->required()
        ->envname("OUTPOST_DB")
        ->type_name("FILE");
    cmd.add_flag("--json", common.json,
                 "Machine-readable output: one JSON document (JSON Lines for export and sync)");
    cmd.add_option("--busy-timeout", common.busy_timeout,
                   "How long to wait for a lock held by the app or the dispatcher")
        ->check(duration_validator())
        ->type_name("DURATION")
        ->capture_default_str();
}

const char* const kStates = "pending|delivered|dead|expired|all";

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "outpost: inspect and maintain an outpost outbox (a SQLite file shared with a running "
        "app),\n"
        "and deliver its pending records to an MQTT broker.\n"
        "Safe next to the running app and its dispatcher: reads are short, writes are small\n"
        "BEGIN IMMEDIATE transactions with a busy timeout, and read commands never modify the "
        "file.",
        "outpost"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("outpost ") + OUTPOST_CLI_VERSION);
    app.allow_config_extras(false);  // a misspelt key in a config file is an error, not ignored
    app.set_config("--config", "",
                   "Read options from a TOML or INI file; options of a command go in a section "
                   "named after it, e.g. [sync] broker=\"mqtts://host:8883\"")
        ->type_name("FILE");
    app.fallthrough();  // `outpost sync --config FILE ...` works too
    app.footer(
        "Durations: a number and a unit, ms s m h d w, summed: 30s, 5m, 2h, 7d, 1h30m.\n"
        "Exit codes: 0 ok, 1 failure (one line on stderr names it), 2 usage error,\n"
        "3 sync timed out with records still pending, 4 sync left nothing pending but\n"
        "records went dead or expired during it.\n"
        "Times in JSON are milliseconds since the Unix epoch (UTC).\n"
        "Run 'outpost COMMAND --help' for a command's options.");

    Common common;

    StatsArgs stats_args;
    CLI::App* stats =
        app.add_subcommand("stats", "Counts, bytes, oldest pending age, top topics, lease holder");
    add_common(*stats, common);
    stats->add_option("--top", stats_args.top, "How many topics to list (0 = none)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    stats->footer(
        "Counts and payload bytes by state, age of the oldest pending record, the topics with the\n"
        "most records, outpost schema version, file and WAL size, and who holds the dispatcher\n"
        "lease (active, expired, or held by a process that is gone). Each figure is read in its\n"
        "own short read, so figures may differ by what committed in between.\n"
        "Example: outpost stats --db /var/lib/app/app.db");

    ListArgs list_args;
    CLI::App* list = app.add_subcommand("list", "List records (without payloads) in commit order");
    add_common(*list, common);
    list->add_option("--state", list_args.state, "Which records")
        ->check(CLI::IsMember({"pending", "delivered", "dead", "expired", "all"}))
        ->type_name(kStates)
        ->capture_default_str();
    list->add_option_function<std::string>(
            "--topic", [&](const std::string& v) { list_args.topic = v; },
            "Only topics starting with PREFIX (plain text, no MQTT wildcards)")
        ->type_name("PREFIX");
    list->add_option_function<std::string>(
            "--key", [&](const std::string& v) { list_args.key = v; }, "Only this ordering key")
        ->type_name("K");
    list->add_option("--limit", list_args.limit, "At most N records (0 = no limit)")
        ->check(CLI::NonNegativeNumber)
        ->type_name("N")
        ->capture_default_str();
    list->add_option("--after", list_args.after,
                     "Only records with an id above ID (to page: pass the last id shown)")
        ->type_name("ID");
    list->footer(
        "Records come in commit (id) order, read in short pages. Only the records present when\n"
        "the command starts are listed (up to the largest id then): it ends even while the app\n"
        "adds records faster than it reads. The table shows no payloads (see show and export);\n"
        "--json writes one JSON array of record objects.\n"
        "Examples:\n"
        "  outpost list --db app.db --state dead\n"
        "  outpost list --db app.db --topic sensors/ --key pump-7 --limit 20 --json");

    ShowArgs show_args;
    CLI::App* show = app.add_subcommand("show", "Show one record, all fields and payload");
    add_common(*show, common);
    show->add_option("id", show_args.id, "Record id (see list)")->required()->type_name("ID");
    show->footer(
        "The payload is printed as text when it is printable UTF-8, otherwise as a hex dump.\n"
        "With --json: the record's fields, payload_encoding \"utf-8\" or \"hex\", and payload.\n"
        "A missing id exits 1.\n"
        "Example: outpost show --db app.db 42");

    AddArgs add_args;
    CLI::App* add = app.add_subcommand("add", "Enqueue a message by hand; prints its id");
    add_common(*add, common);
    add->add_option("--topic", add_args.topic, "MQTT topic (no wildcards)")
        ->required()
        ->type_name("T");
    CLI::Option* payload = add->add_option_function<std::string>(
        "--payload", [&](const std::string& v) { add_args.payload = v; }, "Payload text");
    payload->type_name("TEXT");
    CLI::Option* payload_file = add->add_option_function<std::string>(
        "--payload-file", [&](const std::string& v) { add_args.payload_file = v; },
        "Read the payload (any bytes) from file F, or from stdin when F is -");
    payload_file->type_name("F");
    payload->excludes(payload_file);
    add->add_option_function<std::string>(
           "--key", [&](const std::string& v) { add_args.key = v; },
           "Ordering key: same key = delivered in commit order")
        ->type_name("K");
    add->add_option("--qos", add_args.qos, "MQTT QoS")
        ->check(CLI::Range(0, 2))
        ->type_name("N")
        ->capture_default_str();
    add->add_option("--priority", add_args.priority, "Higher is sent first")
        ->type_name("N")
        ->capture_default_str();
    add->add_flag("--retain", add_args.retain, "Set the MQTT retain flag");
    add->add_option_function<std::string>(
           "--ttl", [&](const std::string& v) { add_args.ttl = v; },
           "Expire the message if not delivered within this time")
        ->check(duration_validator())
        ->type_name("DURATION");
    add->add_option("--header", add_args.headers,
                    "MQTT 5 user property; repeat for more (dropped on MQTT 3.1.1)")
        ->type_name("NAME=VALUE")
        ->allow_extra_args(false);
    add->add_option_function<std::string>(
           "--content-type", [&](const std::string& v) { add_args.content_type = v; },
           "MQTT 5 content type")
        ->type_name("TYPE");
    add->footer(
        "The message is checked and stored as the app's Outbox::add would (same validation;\n"
        "the app's quota is its own setting and not applied here). Prints the new record's\n"
        "id (--json: {\"id\": N}).\n"
        "Without --payload or --payload-file the payload is empty.\n"
        "Examples:\n"
        "  outpost add --db app.db --topic sensors/pump-7 --payload '{\"rpm\":1200}' --key pump-7\n"
        "  outpost add --db app.db --topic fw/blob --payload-file image.bin --qos 2 --ttl 7d\n"
        "  echo hello | outpost add --db app.db --topic t --payload-file - --header origin=manual");

    RetryArgs retry_args;
    CLI::App* retry = app.add_subcommand("retry", "Requeue dead records with attempts reset");
    add_common(*retry, common);
    CLI::Option* retry_ids =
        retry->add_option("ids", retry_args.ids, "Ids of dead records")->type_name("ID...");
    CLI::Option* all_dead =
        retry->add_flag("--all-dead", retry_args.all_dead, "Requeue every dead record");
    retry_ids->excludes(all_dead);
    retry->footer(
        "A requeued record is pending again with attempts 0 and is sent at once.\n"
        "Give ids or --all-dead. An id that is not a dead record is reported and the others are\n"
        "still requeued (exit code 1).\n"
        "Example: outpost retry --db app.db 17 18   |   outpost retry --db app.db --all-dead");

    PurgeArgs purge_args;
    CLI::App* purge =
        app.add_subcommand("purge", "Delete delivered, dead or expired records (never pending)");
    add_common(*purge, common);
    purge->add_option("--state", purge_args.state, "Which records")
        ->required()
        ->check(CLI::IsMember({"delivered", "dead", "expired"}))
        ->type_name("delivered|dead|expired");
    purge
        ->add_option_function<std::string>(
            "--older-than", [&](const std::string& v) { purge_args.older_than = v; },
            "Only records that reached their state longer ago than this")
        ->check(duration_validator())
        ->type_name("DURATION");
    purge->add_flag("--dry-run", purge_args.dry_run, "Only count what would be deleted");
    purge->footer(
        "Ages count from when the record became delivered, dead or expired. Deletes in batches\n"
        "of short transactions, so the app is never blocked for long. Pending records are never\n"
        "touched. Only records present when it starts (up to the largest id then) are deleted,\n"
        "so it ends even while the dispatcher keeps delivering.\n"
        "Example: outpost purge --db app.db --state dead --older-than 7d --dry-run");

    ExportArgs export_args;
    CLI::App* exp = app.add_subcommand("export", "Write records as JSON Lines, payload in base64");
    add_common(*exp, common);
    exp->add_option("--state", export_args.state, "Which records")
        ->check(CLI::IsMember({"pending", "delivered", "dead", "expired", "all"}))
        ->type_name(kStates)
        ->capture_default_str();
    exp->add_flag("--skip-unreadable", export_args.skip_unreadable,
                  "On a corrupt file, skip the records that cannot be read and export the rest "
                  "(slow: one lookup per id); exits 1 if any were skipped");
    exp->footer(
        "One JSON object a line, per record: every field (as in list --json) and \"payload\"\n"
        "in base64. Reads in short pages: safe on a live, large outbox. Exports the records\n"
        "present when it starts (up to the largest id then), so it ends even while the app adds\n"
        "records faster than it reads; later ones are left for the next export.\n"
        "Example: outpost export --db app.db --state dead > dead.jsonl");

    CheckArgs check_args;
    CLI::App* check =
        app.add_subcommand("check", "Integrity and schema check; exit 0 only when clean");
    add_common(*check, common);
    check->add_flag("--quick", check_args.quick,
                    "PRAGMA quick_check instead of integrity_check (skips index contents)");
    check->footer(
        "Checks that the file is a SQLite database, that PRAGMA integrity_check is clean, that\n"
        "its outpost schema is one this version understands, that the outpost tables, columns\n"
        "and indexes exist, and that every record has a valid state and qos. Exits 0 only when\n"
        "clean, 1 otherwise (the problems are listed). Opens the file read-only: never modifies\n"
        "it. The check reads the whole file in one read transaction.\n"
        "Example: outpost check --db app.db && echo clean");

    SyncArgs sync_args;
    CLI::App* sync = app.add_subcommand("sync",
#ifdef OUTPOST_CLI_HAVE_MQTT
                                        "Deliver the pending records to an MQTT broker, then exit"
#else
                                        "Unavailable: this outpost was built without MQTT support "
                                        "(paho-mqtt-cpp)."
#endif
    );
    add_common(*sync, common);
    sync->add_option("--broker", sync_args.brokers,
                     "Broker URI: mqtt://host:1883, mqtts://host:8883, ssl://, tcp://, ws://, "
                     "wss://; repeat for failover")
        ->required()
        ->type_name("URI")
        ->allow_extra_args(false);
    sync->add_option("--client-id", sync_args.client_id,
                     "MQTT client id (default: outpost-sync-HOST-PID); never reuse the app's")
        ->type_name("ID");
    sync->add_option_function<std::string>(
            "--username", [&](const std::string& v) { sync_args.username = v; }, "MQTT username")
        ->type_name("U");
    sync->add_option_function<std::string>(
            "--password-file", [&](const std::string& v) { sync_args.password_file = v; },
            "Read the MQTT password from file F (its first line); never printed")
        ->type_name("F");
    sync->add_option_function<std::string>(
            "--ca-file", [&](const std::string& v) { sync_args.ca_file = v; },
            "CA certificates (PEM) to verify the broker; default: the system's")
        ->type_name("F");
    sync->add_option_function<std::string>(
            "--cert-file", [&](const std::string& v) { sync_args.cert_file = v; },
            "Client certificate (PEM) for TLS client authentication")
        ->type_name("F");
    sync->add_option_function<std::string>(
            "--key-file", [&](const std::string& v) { sync_args.key_file = v; },
            "Private key (PEM) of the client certificate")
        ->type_name("F");
    sync->add_option("--mqtt-version", sync_args.mqtt_version, "MQTT protocol: 3 (3.1.1) or 5")
        ->check(CLI::IsMember({3, 5}))
        ->type_name("3|5")
        ->capture_default_str();
    sync->add_option("--timeout", sync_args.timeout,
                     "Give up after this long with records pending (exit 3)")
        ->check(duration_validator())
        ->type_name("DURATION")
        ->capture_default_str();
    sync->add_option("--window", sync_args.window, "Publishes in flight at once")
        ->check(CLI::Range(1, 65535))
        ->type_name("N")
        ->capture_default_str();
    sync->add_option("--progress", sync_args.progress,
                     "auto: a bar on a terminal, plain lines otherwise")
        ->check(CLI::IsMember({"auto", "bar", "lines", "none"}))
        ->type_name("auto|bar|lines|none")
        ->capture_default_str();
    sync->footer(
        "The catch-up of a device that was offline. Exit codes:\n"
        "  0  every record pending at the start was delivered (acknowledged by the broker)\n"
        "  4  nothing is left pending, but records went dead (the retry cap: the broker rejected\n"
        "     them) or expired (their ttl) during the sync; stderr says how many and the\n"
        "     command to list them (outpost list --db FILE --state dead)\n"
        "  3  --timeout passed with records still pending (also when some went dead)\n"
        "  1  error: broker refused for good, lease held by another dispatcher, interrupted\n"
        "Refuses while another dispatcher (the app's) holds the lease. Shows a progress bar\n"
        "(count, rate, ETA) on a terminal, plain lines on stderr otherwise; --json writes JSON\n"
        "Lines to stdout: progress, then {\"event\":\"done\",\"result\":...} with result drained "
        "(0),\n"
        "drained_with_failures (4), timeout (3), interrupted or lease_lost (1).\n"
        "Broker options may come from --config FILE, section [sync]:\n"
        "  [sync]\n"
        "  broker = \"mqtts://broker.example:8883\"\n"
        "  username = \"device-42\"\n"
        "  password-file = \"/etc/app/mqtt.pass\"\n"
        "Example: outpost --config /etc/app/outpost.toml sync --db app.db --timeout 30m");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) {
            return app.exit(e);  // --help, --version
        }
        std::string where = "outpost";
        for (const CLI::App* sub : app.get_subcommands()) {
            where += " " + sub->get_name();
        }
        std::cerr << "outpost: usage error: " << flatten(e.what()) << " (see '" << where
                  << " --help')\n";
        return kExitUsage;
    }

    try {
        if (stats->parsed())
            return run_stats(common, stats_args);
        if (list->parsed())
            return run_list(common, list_args);
        if (show->parsed())
            return run_show(common, show_args);
        if (add->parsed())
            return run_add(common, add_args);
        if (retry->parsed()) {
            if (retry_args.ids.empty() && !retry_args.all_dead) {
                throw UsageError("retry: give record ids or --all-dead");
            }
            return run_retry(common, retry_args);
        }
        if (purge->parsed())
            return run_purge(common, purge_args);
        if (exp->parsed())
            return run_export(common, export_args);
        if (check->parsed())
            return run_check(common, check_args);
        if (sync->parsed()) {
#ifdef OUTPOST_CLI_HAVE_MQTT
            return run_sync(common, sync_args);
#else
            std::cerr << "outpost: error: sync is unavailable: this outpost was built without MQTT "
                         "support (paho-mqtt-cpp)\n";
            return kExitFailure;
#endif
        }
    } catch (const UsageError& e) {
        std::cerr << "outpost: usage error: " << flatten(e.what()) << '\n';
        return kExitUsage;
    } catch (const outpost::Error& e) {
        std::cerr << "outpost: error: " << flatten(e.what()) << '\n';
        return kExitFailure;
    } catch (const std::exception& e) {
        std::cerr << "outpost: error: " << flatten(e.what()) << '\n';
        return kExitFailure;
    }
    return kExitFailure;  // unreachable: require_subcommand(1)
}

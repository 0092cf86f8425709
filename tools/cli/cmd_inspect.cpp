// The read commands: stats, list, show. Thin layers over outpost::Admin, read-only.
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "command.hpp"
#include "duration.hpp"
#include "outpost/admin.hpp"
#include "outpost/clock.hpp"
#include "outpost/error.hpp"
#include "record_json.hpp"
#include "table.hpp"
#include "text.hpp"

namespace outpost::cli {

namespace {

using json = nlohmann::json;

struct StatsArgs {
    std::size_t top = 10;
};

struct ListArgs {
    std::string state = "all";
    std::optional<std::string> topic;
    std::optional<std::string> key;
    std::size_t limit = 100;
    std::int64_t after = 0;
};

struct ShowArgs {
    std::int64_t id = 0;
};

std::string age(std::int64_t since_ms, std::int64_t now_ms) {
    return format_duration(std::chrono::milliseconds(now_ms - since_ms));
}

std::string truncate(const std::string& s, std::size_t max) {
    if (display_width(s) <= max) {
        return s;
    }
    std::string out;
    std::size_t width = 0;
    for (const char c : s) {
        const bool starts = (static_cast<unsigned char>(c) & 0xC0) != 0x80;
        if (starts && ++width > max - 1) {
            break;
        }
        out += c;
    }
    return out + "…";
}

int run_stats(const Common& common, const StatsArgs& args) {
    Admin admin = open_admin(common, true);
    const AdminStats s = admin.stats(args.top);
    const std::optional<std::int64_t> oldest_age =
        s.counts.oldest_pending_at
            ? std::optional<std::int64_t>(s.now_ms - *s.counts.oldest_pending_at)
            : std::nullopt;
    if (common.json) {
        json topics = json::array();
        for (const TopicCount& t : s.top_topics) {
            topics.push_back({{"topic", t.topic},
                              {"records", t.records},
                              {"pending", t.pending},
                              {"bytes", t.bytes}});
        }
        json lease = nullptr;
        if (s.lease) {
            const LeaseInfo& h = s.lease->holder;
            lease = {{"host", h.host},
                     {"pid", h.pid},
                     {"started_at", h.started_at},
                     {"heartbeat_at", h.heartbeat_at},
                     {"expires_at", h.expires_at},
                     {"expired", s.lease->expired},
                     {"holder_dead", s.lease->holder_dead},
                     {"active", s.lease->blocks_new_dispatcher()}};
        }
        const json out = {
            {"db", admin.path()},
            {"schema_version", s.schema_version},
            {"file_bytes", s.file_bytes},
            {"wal_bytes", s.wal_bytes},
            {"journal_mode", s.journal_mode},
            {"counts",
             {{"pending", s.counts.pending},
              {"delivered", s.counts.delivered},
              {"dead", s.counts.dead},
              {"expired", s.counts.expired}}},
            {"bytes",
             {{"pending", s.counts.pending_bytes},
              {"delivered", s.counts.delivered_bytes},
              {"dead", s.counts.dead_bytes},
              {"expired", s.counts.expired_bytes}}},
            {"dropped", s.counts.dropped},
            {"oldest_pending_at", optional_json(s.counts.oldest_pending_at)},
            {"oldest_pending_age_ms", optional_json(oldest_age)},
            {"top_topics", topics},
            {"lease", lease},
            {"now", s.now_ms},
        };
        std::cout << dump(out, 2) << '\n';
        return kExitOk;
    }

    std::cout << "database        " << one_line(admin.path()) << '\n'
              << "schema          " << s.schema_version << '\n'
              << "file size       " << format_bytes(s.file_bytes) << " (WAL "
              << format_bytes(s.wal_bytes) << ", journal_mode " << s.journal_mode << ")\n"
              << "oldest pending  "
              << (oldest_age ? format_duration(std::chrono::milliseconds(*oldest_age)) + " ago (" +
                                   format_time(*s.counts.oldest_pending_at) + ")"
                             : std::string("none"))
              << '\n'
              << "dropped         " << s.counts.dropped
              << " pending records removed by the quota (drop_oldest)\n"
              << "lease           ";
    if (!s.lease) {
        std::cout << "none\n";
    } else {
        const LeaseInfo& h = s.lease->holder;
        std::cout << "pid " << h.pid << " on " << one_line(h.host) << ", since "
                  << format_time(h.started_at) << ", heartbeat " << age(h.heartbeat_at, s.now_ms)
                  << " ago"
                  << (s.lease->expired       ? " (expired: free to take over)"
                      : s.lease->holder_dead ? " (holder process is gone: free to take over)"
                                             : " (active)")
                  << '\n';
    }
    std::cout << '\n';
    Table states({{"STATE"}, {"RECORDS", true}, {"BYTES", true}});
    states.add({"pending", std::to_string(s.counts.pending), format_bytes(s.counts.pending_bytes)});
    states.add(
        {"delivered", std::to_string(s.counts.delivered), format_bytes(s.counts.delivered_bytes)});
    states.add({"dead", std::to_string(s.counts.dead), format_bytes(s.counts.dead_bytes)});
    states.add({"expired", std::to_string(s.counts.expired), format_bytes(s.counts.expired_bytes)});
    states.print(std::cout);
    if (!s.top_topics.empty()) {
        std::cout << '\n';
        Table topics({{"TOPIC"}, {"RECORDS", true}, {"PENDING", true}, {"BYTES", true}});
        for (const TopicCount& t : s.top_topics) {
            topics.add({one_line(t.topic), std::to_string(t.records), std::to_string(t.pending),
                        format_bytes(t.bytes)});
        }
        topics.print(std::cout);
    }
    return kExitOk;
}

int run_list(const Common& common, const ListArgs& args) {
    Admin admin = open_admin(common, true);
    RecordFilter filter;
    filter.state = state_filter(args.state);
    filter.topic_prefix = args.topic;
    filter.key = args.key;
    filter.limit = args.limit;
    filter.after_id = args.after;
    if (common.json) {
        // A JSON array written record by record: no list of every record is built in memory.
        std::cout << '[';
        bool first = true;
        admin.for_each(filter, [&](const Record& r) {
            std::cout << (first ? "\n" : ",\n") << dump(record_json(r));
            first = false;
            return true;
        });
        std::cout << (first ? "]\n" : "\n]\n");
        return kExitOk;
    }
    const std::int64_t now = SystemClock::instance().wall_ms();
    Table table({{"ID", true},
                 {"STATE"},
                 {"TOPIC"},
                 {"KEY"},
                 {"PRIO", true},
                 {"QOS", true},
                 {"BYTES", true},
                 {"TRIES", true},
                 {"AGE", true},
                 {"LAST ERROR"}});
    std::int64_t last_id = 0;
    admin.for_each(filter, [&](const Record& r) {
        last_id = r.id;
        table.add({std::to_string(r.id), to_string(r.state),
                   truncate(one_line(r.message.topic), 48),
                   r.message.key ? truncate(one_line(*r.message.key), 24) : "-",
                   std::to_string(r.message.priority), std::to_string(r.message.qos),
                   std::to_string(r.message.payload.size()), std::to_string(r.attempts),
                   age(r.created_at, now), truncate(one_line(r.last_error), 60)});
        return true;
    });
    if (table.empty()) {
        std::cout << "no records\n";
        return kExitOk;
    }
    table.print(std::cout);
    if (args.limit != 0 && table.size() == args.limit) {
        std::cout << "(" << args.limit << " records shown, there may be more: --after " << last_id
                  << " for the next ones, --limit 0 for all)\n";
    }
    return kExitOk;
}

int run_show(const Common& common, const ShowArgs& args) {
    Admin admin = open_admin(common, true);
    const std::optional<Record> found = admin.get(args.id);
    if (!found) {
        throw NotFound("no record with id " + std::to_string(args.id) + " in " + common.db);
    }
    const Record& r = *found;
    const bool text = is_printable_utf8(payload_of(r));
    if (common.json) {
        json out = record_json(r);
        out["payload_encoding"] = text ? "utf-8" : "hex";
        out["payload"] = text ? std::string(r.message.payload_view()) : hex(payload_of(r));
        std::cout << dump(out, 2) << '\n';
        return kExitOk;
    }
    const std::int64_t now = SystemClock::instance().wall_ms();
    auto when = [&](std::int64_t t) {
        return format_time(t) + " (" + (t <= now ? age(t, now) + " ago" : "in " + age(now, t)) +
               ")";
    };
    std::cout << "id              " << r.id << '\n'
              << "uid             " << r.uid << '\n'
              << "state           " << to_string(r.state) << '\n'
              << "topic           " << one_line(r.message.topic) << '\n'
              << "key             " << (r.message.key ? one_line(*r.message.key) : "-") << '\n'
              << "qos             " << r.message.qos << '\n'
              << "retain          " << (r.message.retain ? "yes" : "no") << '\n'
              << "priority        " << r.message.priority << '\n'
              << "content type    "
              << (r.message.content_type ? one_line(*r.message.content_type) : "-") << '\n'
              << "created         " << when(r.created_at) << '\n'
              << "expires         " << (r.expires_at ? when(*r.expires_at) : "never") << '\n'
              << "attempts        " << r.attempts << '\n'
              << "next attempt    "
              << (r.next_attempt_at == 0 ? "at once" : when(r.next_attempt_at)) << '\n'
              << "done            " << (r.done_at ? when(*r.done_at) : "-") << '\n'
              << "last error      " << (r.last_error.empty() ? "-" : one_line(r.last_error))
              << '\n';
    for (const Header& h : r.message.headers) {
        std::cout << "header          " << one_line(h.name) << '=' << one_line(h.value) << '\n';
    }
    std::cout << "payload         " << r.message.payload.size() << " bytes, "
              << (text ? "UTF-8 text" : "binary (hex)") << "\n\n";
    if (text) {
        std::cout << r.message.payload_view();
        if (!r.message.payload.empty() && r.message.payload_view().back() != '\n') {
            std::cout << '\n';
        }
    } else {
        std::cout << hex_dump(payload_of(r));
    }
    return kExitOk;
}

Run setup_stats(CLI::App& cmd, const Common& common) {
    auto args = std::make_shared<StatsArgs>();
    cmd.add_option("--top", args->top, "How many topics to list (0 = none)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cmd.footer(
        "Counts and payload bytes by state, age of the oldest pending record, the topics with the\n"
        "most records, outpost schema version, file and WAL size, and who holds the dispatcher\n"
        "lease (active, expired, or held by a process that is gone). Each figure is read in its\n"
        "own short read, so figures may differ by what committed in between.\n"
        "Example: outpost stats --db /var/lib/app/app.db");
    return [&common, args] { return run_stats(common, *args); };
}

Run setup_list(CLI::App& cmd, const Common& common) {
    auto args = std::make_shared<ListArgs>();
    add_state_option(cmd, args->state, StateChoice::any)->capture_default_str();
    cmd.add_option_function<std::string>(
           "--topic", [args](const std::string& v) { args->topic = v; },
           "Only topics starting with PREFIX (plain text, no MQTT wildcards)")
        ->type_name("PREFIX");
    cmd.add_option_function<std::string>(
           "--key", [args](const std::string& v) { args->key = v; }, "Only this ordering key")
        ->type_name("K");
    cmd.add_option("--limit", args->limit, "At most N records (0 = no limit)")
        ->check(CLI::NonNegativeNumber)
        ->type_name("N")
        ->capture_default_str();
    cmd.add_option("--after", args->after,
                   "Only records with an id above ID (to page: pass the last id shown)")
        ->type_name("ID");
    cmd.footer(
        "Records come in commit (id) order, read in short pages. Only the records present when\n"
        "the command starts are listed (up to the largest id then): it ends even while the app\n"
        "adds records faster than it reads. The table shows no payloads (see show and export);\n"
        "--json writes one JSON array of record objects.\n"
        "Examples:\n"
        "  outpost list --db app.db --state dead\n"
        "  outpost list --db app.db --topic sensors/ --key pump-7 --limit 20 --json");
    return [&common, args] { return run_list(common, *args); };
}

Run setup_show(CLI::App& cmd, const Common& common) {
    auto args = std::make_shared<ShowArgs>();
    cmd.add_option("id", args->id, "Record id (see list)")->required()->type_name("ID");
    cmd.footer(
        "The payload is printed as text when it is printable UTF-8, otherwise as a hex dump.\n"
        "With --json: the record's fields, payload_encoding \"utf-8\" or \"hex\", and payload.\n"
        "A missing id exits 1.\n"
        "Example: outpost show --db app.db 42");
    return [&common, args] { return run_show(common, *args); };
}

}  // namespace

extern const Command kStatsCommand{
    "stats", "Counts, bytes, oldest pending age, top topics, lease holder", setup_stats};
extern const Command kListCommand{"list", "List records (without payloads) in commit order",
                                  setup_list};
extern const Command kShowCommand{"show", "Show one record, all fields and payload", setup_show};

}  // namespace outpost::cli

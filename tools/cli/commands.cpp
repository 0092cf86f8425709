// The read and maintenance commands: thin layers over outpost::Admin.
#include "commands.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <stdexcept>

#include "duration.hpp"
#include "outpost/admin.hpp"
#include "outpost/clock.hpp"
#include "outpost/error.hpp"
#include "table.hpp"
#include "text.hpp"

namespace outpost::cli {

namespace {

using json = nlohmann::json;

// Invalid UTF-8 in a stored string (a last_error from a broker, say) must not abort the output.
std::string dump(const json& j, int indent = -1) {
    return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

Admin open_admin(const Common& common, bool read_only) {
    return Admin(common.db, admin_options(common, read_only));
}

std::optional<RecordState> state_filter(const std::string& name) {
    if (name == "all") {
        return std::nullopt;
    }
    if (auto s = parse_record_state(name)) {
        return s;
    }
    throw UsageError("unknown state '" + name + "'");
}

json optional_json(const std::optional<std::int64_t>& v) {
    return v ? json(*v) : json(nullptr);
}

// Every field of a record except the payload itself.
json record_json(const Record& r) {
    json headers = json::array();
    for (const Header& h : r.message.headers) {
        headers.push_back({{"name", h.name}, {"value", h.value}});
    }
    return {
        {"id", r.id},
        {"uid", r.uid},
        {"state", to_string(r.state)},
        {"topic", r.message.topic},
        {"key", r.message.key ? json(*r.message.key) : json(nullptr)},
        {"qos", r.message.qos},
        {"retain", r.message.retain},
        {"priority", r.message.priority},
        {"headers", headers},
        {"content_type", r.message.content_type ? json(*r.message.content_type) : json(nullptr)},
        {"payload_bytes", r.message.payload.size()},
        {"created_at", r.created_at},
        {"expires_at", optional_json(r.expires_at)},
        {"attempts", r.attempts},
        {"next_attempt_at", r.next_attempt_at},
        {"done_at", optional_json(r.done_at)},
        {"last_error", r.last_error.empty() ? json(nullptr) : json(r.last_error)},
    };
}

std::span<const std::byte> payload_of(const Record& r) {
    return r.message.payload;
}

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

std::string read_payload_file(const std::string& path) {
    if (path == "-") {
        std::ostringstream all;
        all << std::cin.rdbuf();
        if (std::cin.bad()) {
            throw std::runtime_error("reading the payload from stdin failed");
        }
        return all.str();
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot open payload file " + path);
    }
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) {
        throw std::runtime_error("reading payload file " + path + " failed");
    }
    return data;
}

}  // namespace

AdminOptions admin_options(const Common& common, bool read_only) {
    AdminOptions options;
    options.read_only = read_only;
    options.busy_timeout = parse_duration(common.busy_timeout);
    return options;
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

int run_add(const Common& common, const AddArgs& args) {
    Message m;
    m.topic = args.topic;
    std::string payload;
    if (args.payload) {
        payload = *args.payload;
    } else if (args.payload_file) {
        payload = read_payload_file(*args.payload_file);
    }
    const auto* p = reinterpret_cast<const std::byte*>(payload.data());
    m.payload.assign(p, p + payload.size());
    m.key = args.key;
    m.qos = args.qos;
    m.priority = args.priority;
    m.retain = args.retain;
    m.content_type = args.content_type;
    if (args.ttl) {
        m.ttl = parse_duration(*args.ttl);
    }
    for (const std::string& h : args.headers) {
        const std::size_t eq = h.find('=');
        if (eq == std::string::npos || eq == 0) {
            throw UsageError("--header '" + h + "' is not NAME=VALUE");
        }
        m.headers.push_back({h.substr(0, eq), h.substr(eq + 1)});
    }
    Admin admin = open_admin(common, false);
    const std::int64_t id = admin.add(m);
    if (common.json) {
        std::cout << dump(json{{"id", id}}) << '\n';
    } else {
        std::cout << id << '\n';
    }
    return kExitOk;
}

int run_retry(const Common& common, const RetryArgs& args) {
    Admin admin = open_admin(common, false);
    if (args.all_dead) {
        const std::size_t n = admin.requeue_all_dead();
        if (common.json) {
            std::cout << dump(json{{"requeued", n}}) << '\n';
        } else {
            std::cout << "requeued " << n << " dead record" << (n == 1 ? "" : "s") << '\n';
        }
        return kExitOk;
    }
    json requeued = json::array();
    json failed = json::array();
    for (const std::int64_t id : args.ids) {
        try {
            admin.requeue(id);
            requeued.push_back(id);
            if (!common.json) {
                std::cout << "requeued " << id << '\n';
            }
        } catch (const NotFound& e) {
            // Keep going: one wrong id must not stop the others; the exit code reports it.
            failed.push_back({{"id", id}, {"error", e.what()}});
            std::cerr << "outpost: error: " << one_line(e.what()) << '\n';
        }
    }
    if (common.json) {
        std::cout << dump(json{{"requeued", requeued}, {"failed", failed}}) << '\n';
    }
    return failed.empty() ? kExitOk : kExitFailure;
}

int run_purge(const Common& common, const PurgeArgs& args) {
    const std::optional<RecordState> state = parse_record_state(args.state);
    if (!state || *state == RecordState::pending) {
        throw UsageError(
            "purge: --state must be delivered, dead or expired (pending records are never purged)");
    }
    std::optional<std::chrono::milliseconds> older;
    if (args.older_than) {
        older = parse_duration(*args.older_than);
    }
    Admin admin = open_admin(common, args.dry_run);
    const std::size_t n = admin.purge(*state, older, args.dry_run);
    if (common.json) {
        std::cout << dump(json{{"state", args.state},
                               {"older_than_ms", older ? json(older->count()) : json(nullptr)},
                               {"dry_run", args.dry_run},
                               {args.dry_run ? "would_delete" : "deleted", n}})
                  << '\n';
    } else {
        std::cout << (args.dry_run ? "would delete " : "deleted ") << n << ' ' << args.state
                  << " record" << (n == 1 ? "" : "s")
                  << (older ? " older than " + format_duration(*older) : std::string()) << '\n';
    }
    return kExitOk;
}

int run_export(const Common& common, const ExportArgs& args) {
    Admin admin = open_admin(common, true);
    RecordFilter filter;
    filter.state = state_filter(args.state);
    filter.skip_unreadable = args.skip_unreadable;
    std::size_t unreadable = 0;
    admin.for_each(
        filter,
        [&](const Record& r) {
            json line = record_json(r);
            line["payload"] = base64_encode(payload_of(r));
            std::cout << dump(line) << '\n';
            return static_cast<bool>(std::cout);
        },
        &unreadable);
    std::cout.flush();
    if (!std::cout) {
        throw std::runtime_error("writing the export to stdout failed");
    }
    if (unreadable > 0) {
        throw StorageError("export skipped " + std::to_string(unreadable) +
                               " unreadable record ids or regions: " + common.db +
                               " is corrupt (everything readable was written; see outpost check)",
                           false, 0);
    }
    return kExitOk;
}

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
        return kExitFailure;
    }
    return kExitOk;
}

}  // namespace outpost::cli

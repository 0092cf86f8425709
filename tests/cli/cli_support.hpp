// Test support for the outpost command: runs the real binary (path in $OUTPOST_BIN) as a child
// process and builds outbox files with the library.
#pragma once

#include <SQLiteCpp/SQLiteCpp.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/admin.hpp"
#include "outpost/outpost.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::testing {

struct RunResult {
    int exit_code = -1;  // -1: killed by a signal or timed out
    std::string out;
    std::string err;
    bool timed_out = false;
};

struct RunOptions {
    std::string stdin_data;
    // Run as this user id (and group), e.g. 65534 = nobody; only possible as root.
    std::optional<uid_t> uid;
    std::chrono::milliseconds timeout{std::chrono::seconds(60)};
    std::vector<std::string> env;  // extra NAME=VALUE entries
    // Set to the child's pid once it runs (to signal it from another thread).
    std::atomic<pid_t>* pid = nullptr;
    // Called on the calling thread once the child runs (with 0) and after each read from its
    // stdout (with the bytes read so far; one read takes at most 64 KiB). While it runs, the
    // child's output is not drained: a child that writes more than the pipe holds waits for it.
    std::function<void(std::size_t)> on_stdout;
};

inline std::string outpost_binary() {
    const char* bin = std::getenv("OUTPOST_BIN");
    if (bin == nullptr || *bin == '\0') {
        throw std::runtime_error("OUTPOST_BIN is not set (run the tests through meson test)");
    }
    return bin;
}

// Runs `outpost args...` and collects its exit code, stdout and stderr.
inline RunResult run_outpost(const std::vector<std::string>& args, const RunOptions& o = {}) {
    const std::string bin = outpost_binary();
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
        ::pipe2(err, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe failed");
    }
    // Everything the child needs is prepared before fork(): a child of a multithreaded process
    // must not allocate (another thread may have held the allocator's lock at the fork; seen as
    // a hung child under AddressSanitizer).
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(bin.c_str()));
    for (const std::string& a : args) {
        argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    // o.env ("NAME=VALUE") replaces same-named variables of this process, like putenv().
    std::vector<char*> envp;
    for (const std::string& e : o.env) {
        envp.push_back(const_cast<char*>(e.c_str()));
    }
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string_view entry(*e);
        const std::string_view name = entry.substr(0, entry.find('='));
        const bool replaced = std::any_of(o.env.begin(), o.env.end(), [&](const std::string& x) {
            return std::string_view(x).substr(0, x.find('=')) == name;
        });
        if (!replaced) {
            envp.push_back(*e);
        }
    }
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        if (o.uid) {
            if (::setgid(*o.uid) != 0 || ::setuid(*o.uid) != 0) {
                ::_exit(126);
            }
        }
        ::execve(bin.c_str(), argv.data(), envp.data());
        ::_exit(127);
    }
    if (o.pid != nullptr) {
        o.pid->store(pid);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    // The input is small (a payload): write it all, then close so the child sees EOF.
    std::size_t written = 0;
    while (written < o.stdin_data.size()) {
        const ssize_t n =
            ::write(in[1], o.stdin_data.data() + written, o.stdin_data.size() - written);
        if (n <= 0) {
            break;
        }
        written += static_cast<std::size_t>(n);
    }
    ::close(in[1]);

    RunResult r;
    if (o.on_stdout) {
        o.on_stdout(0);
    }
    const auto deadline = std::chrono::steady_clock::now() + o.timeout;
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    std::string* sinks[2] = {&r.out, &r.err};
    int open_fds = 2;
    while (open_fds > 0) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            ::kill(pid, SIGKILL);
            r.timed_out = true;
            break;
        }
        if (::poll(fds, 2, static_cast<int>(left.count())) < 0) {
            continue;
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                char buf[65536];
                const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
                if (n > 0) {
                    sinks[i]->append(buf, static_cast<std::size_t>(n));
                    if (i == 0 && o.on_stdout) {
                        o.on_stdout(r.out.size());
                    }
                } else {
                    ::close(fds[i].fd);
                    fds[i].fd = -1;
                    --open_fds;
                }
            }
        }
    }
    for (const pollfd& f : fds) {
        if (f.fd >= 0) {
            ::close(f.fd);
        }
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    r.exit_code = WIFEXITED(status) && !r.timed_out ? WEXITSTATUS(status) : -1;
    return r;
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
    if (!out) {
        throw std::runtime_error("cannot write " + path);
    }
}

inline std::size_t count_lines(const std::string& s) {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

// An error as the command must print it: exactly one line on stderr, starting "outpost: ".
inline ::testing::AssertionResult one_error_line(const RunResult& r, const std::string& needle) {
    if (count_lines(r.err) != 1 || r.err.rfind("outpost: ", 0) != 0) {
        return ::testing::AssertionFailure() << "stderr is not one 'outpost: ' line: " << r.err;
    }
    if (r.err.find(needle) == std::string::npos) {
        return ::testing::AssertionFailure() << "stderr lacks '" << needle << "': " << r.err;
    }
    return ::testing::AssertionSuccess();
}

// A fresh outbox file in a temp dir, filled with the library.
class CliTest : public ::testing::Test {
  protected:
    CliTest() : path_(dir_.file("app.db")) {}

    const std::string& db() const { return path_; }

    // Creates the outbox tables (an Outbox on a new file) and closes the connection.
    void create_outbox() {
        SQLite::Database db(path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        Outbox outbox(db);
    }

    // Adds messages in one transaction; returns their ids.
    std::vector<std::int64_t> add(const std::vector<Message>& messages) {
        SQLite::Database db(path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        Outbox outbox(db);
        SQLite::Transaction tx(db);
        std::vector<std::int64_t> ids;
        for (const Message& m : messages) {
            ids.push_back(outbox.add(m));
        }
        tx.commit();
        return ids;
    }

    std::int64_t add_text(const std::string& topic, const std::string& payload,
                          std::optional<std::string> key = std::nullopt) {
        Message m = Message::text(topic, payload);
        m.key = std::move(key);
        return add({m}).front();
    }

    // Moves pending records to another state as the dispatcher would, `ago` before now.
    void apply(Outcome::Kind kind, const std::vector<std::int64_t>& ids,
               std::chrono::milliseconds ago = std::chrono::milliseconds(0)) {
        SqliteStore store(path_);
        std::vector<Outcome> outcomes;
        const std::int64_t at = SystemClock::instance().wall_ms() - ago.count();
        for (const std::int64_t id : ids) {
            Outcome o;
            o.kind = kind;
            o.id = id;
            o.attempts = kind == Outcome::Kind::dead ? 10 : 0;
            o.error = kind == Outcome::Kind::dead ? "PUBACK reason 0x87 not authorized" : "";
            o.at = at;
            outcomes.push_back(o);
        }
        store.apply(outcomes, /*keep_delivered=*/true);
    }

    // Runs one SQL statement on the file (for damage no API would do: tests only).
    void exec_sql(const std::string& sql) {
        SQLite::Database db(path_, SQLite::OPEN_READWRITE);
        db.exec(sql);
    }

    Record record(std::int64_t id) {
        Admin admin(path_);
        auto r = admin.get(id);
        if (!r) {
            throw std::runtime_error("no record " + std::to_string(id));
        }
        return *r;
    }

    StoreCounts counts() { return Admin(path_).counts(); }

    static nlohmann::json parse_json(const std::string& text) {
        return nlohmann::json::parse(text);
    }

    static std::vector<nlohmann::json> parse_lines(const std::string& text) {
        std::vector<nlohmann::json> out;
        std::size_t pos = 0;
        while (pos < text.size()) {
            const std::size_t nl = text.find('\n', pos);
            out.push_back(nlohmann::json::parse(text.substr(pos, nl - pos)));
            pos = nl == std::string::npos ? text.size() : nl + 1;
        }
        return out;
    }

    TempDir dir_;
    std::string path_;
};

// Every command with the arguments it needs, against `db`.
inline std::vector<std::vector<std::string>> every_command(const std::string& db) {
    return {
        {"stats", "--db", db},
        {"list", "--db", db},
        {"show", "--db", db, "1"},
        {"add", "--db", db, "--topic", "t", "--payload", "x"},
        {"retry", "--db", db, "--all-dead"},
        {"retry", "--db", db, "1"},
        {"purge", "--db", db, "--state", "dead"},
        {"purge", "--db", db, "--state", "dead", "--dry-run"},
        {"export", "--db", db},
        {"check", "--db", db},
#ifdef OUTPOST_CLI_HAVE_MQTT
        {"sync", "--db", db, "--broker", "tcp://127.0.0.1:1", "--timeout", "1s"},
#endif
    };
}

inline std::string joined(const std::vector<std::string>& args) {
    std::string out;
    for (const auto& a : args)
        out += a + " ";
    return out;
}

// The fixture of most command tests: six records, one of them binary, in every state.
class CliCommands : public CliTest {
  protected:
    void SetUp() override {
        Message binary;
        binary.topic = "fw/blob";
        binary.payload = {std::byte{0x00}, std::byte{0xff}, std::byte{0x41}, std::byte{0x0a}};
        Message keyed = Message::text("sensors/pump-7", "{\"rpm\":1200}");
        keyed.key = "pump-7";
        keyed.headers = {{"origin", "test"}};
        keyed.priority = 3;
        ids_ = add({Message::text("sensors/temp", "21.5"), keyed, binary,
                    Message::text("sensors/temp", "21.7"), Message::text("logs/app", "boot"),
                    Message::text("logs/app", "ready")});
        apply(Outcome::Kind::dead, {ids_[3]});
        apply(Outcome::Kind::delivered, {ids_[4]}, std::chrono::hours(48));
        apply(Outcome::Kind::expired, {ids_[5]}, std::chrono::hours(1));
    }
    std::vector<std::int64_t> ids_;
};

}  // namespace outpost::testing

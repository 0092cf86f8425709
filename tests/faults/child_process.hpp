// Fault suite, process scenarios: a child process (fault-app, the outpost CLI) with its stdout
// and stderr appended to a log file, to be SIGKILLed or waited for with a deadline. The child
// dies with the test (PR_SET_PDEATHSIG), so a failed test leaves no app behind.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace outpost::faults {

// The path of a binary the build passes in the environment (FAULT_APP, OUTPOST_BIN).
inline std::string binary_from_env(const char* name) {
    const char* p = std::getenv(name);
    if (p == nullptr || *p == '\0') {
        throw std::runtime_error(std::string(name) + " is not set (run the tests with meson test)");
    }
    return p;
}

inline std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class Child {
  public:
    Child(const std::vector<std::string>& argv, const std::string& log_path) : log_path_(log_path) {
        // Everything is prepared before fork(): the test process has threads (the subscriber's
        // reader), so the child may only call async-signal-safe functions before exec.
        std::vector<char*> args;
        for (const std::string& a : argv) {
            args.push_back(const_cast<char*>(a.c_str()));
        }
        args.push_back(nullptr);
        const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (log < 0 || null < 0) {
            throw std::runtime_error("cannot open " + log_path);
        }
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0) {
            throw std::runtime_error("fork failed");
        }
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) {
                ::_exit(126);
            }
            ::dup2(null, 0);
            ::dup2(log, 1);
            ::dup2(log, 2);
            ::execv(args[0], args.data());
            ::_exit(127);
        }
        ::close(log);
        ::close(null);
    }
    ~Child() {
        if (running()) {
            kill9();
        }
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    pid_t pid() const { return pid_; }
    bool running() const { return !status_; }
    const std::string& log_path() const { return log_path_; }
    std::string log() const { return read_text(log_path_); }

    void signal(int sig) const {
        if (running()) {
            ::kill(pid_, sig);
        }
    }
    // SIGKILL, then reaps it.
    void kill9() {
        signal(SIGKILL);
        wait_for(std::chrono::seconds(30));
    }

    // The exit code (or 128 + signal) once it ended within `timeout`; nullopt if it still runs.
    std::optional<int> wait_for(std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (running()) {
            int st = 0;
            const pid_t r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                break;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                return std::nullopt;
            }
            // No pidfd in glibc 2.36's headers: a short poll is the portable wait with a deadline.
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return status_;
    }

  private:
    std::string log_path_;
    pid_t pid_ = -1;
    std::optional<int> status_;
};

// The pid in the file's lease row (table outpost_lease), read by plain SQLite; nullopt when there
// is no row (or the file has no lease table yet).
inline std::optional<std::int64_t> lease_pid(const std::string& path) {
    sqlite3* db = nullptr;
    std::optional<std::int64_t> pid;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(db, "SELECT pid FROM outpost_lease WHERE slot = 1", -1, &st,
                               nullptr) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            pid = sqlite3_column_int64(st, 0);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return pid;
}

}  // namespace outpost::faults

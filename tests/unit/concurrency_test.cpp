// Writers racing the dispatcher: threads of this process, other processes, and a dispatcher
// process killed while its publishes are in flight.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "fixture.hpp"

using namespace std::chrono_literals;
using namespace outpost;
using outpost::testing::OutboxTest;

namespace {

// Runs in a forked child: adds `n` messages in transactions of up to 7, each with a business row.
// Returns the process exit code: 0, or 1 if any call failed (SQLITE_BUSY included).
int add_from_child(const std::string& path, const std::string& tag, int n) {
    try {
        SQLite::Database db(path, SQLite::OPEN_READWRITE);
        Outbox box(db);
        for (int i = 0; i < n;) {
            SQLite::Transaction tx(db);
            for (int k = 0; k < 7 && i < n; ++k, ++i) {
                db.exec("INSERT INTO readings (tag) VALUES ('" + tag + "')");
                box.add(Message::text(tag, std::to_string(i)));
            }
            tx.commit();
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "child %s: %s\n", tag.c_str(), e.what());
        return 1;
    }
}

}  // namespace

class ConcurrencyTest : public OutboxTest {
  protected:
    ConcurrencyTest() { db_.exec("CREATE TABLE readings (id INTEGER PRIMARY KEY, tag TEXT)"); }
};

TEST_F(ConcurrencyTest, AnAppThreadAddsWhileTheDispatcherRuns) {
    DispatcherOptions o;
    o.window = 16;
    Dispatcher d(store(), broker_, o);
    d.start();
    std::atomic<int> failures{0};
    std::thread app([&] {
        try {
            SQLite::Database db(path_, SQLite::OPEN_READWRITE);
            Outbox box(db);
            for (int i = 0; i < 2000;) {
                SQLite::Transaction tx(db);
                for (int k = 0; k < 1 + i % 10 && i < 2000; ++k, ++i) {
                    db.exec("INSERT INTO readings (tag) VALUES ('thread')");
                    box.add(Message::text("thread", std::to_string(i)));
                }
                tx.commit();
            }
        } catch (const std::exception& e) {
            ADD_FAILURE() << e.what();
            ++failures;
        }
    });
    app.join();
    ASSERT_EQ(failures, 0);
    EXPECT_TRUE(d.drain(30s));
    d.stop();
    // Each record exactly once (the fake never loses an ack), in commit order.
    const auto log = broker_.log();
    ASSERT_EQ(log.size(), 2000u);
    for (std::size_t i = 0; i < log.size(); ++i) {
        EXPECT_EQ(log[i].message.payload_view(), std::to_string(i));
    }
    EXPECT_EQ(count(), 0);
}

TEST_F(ConcurrencyTest, TwoProcessesAddToTheSameFileWithoutBusyErrors) {
    constexpr int kPerChild = 1500;
    std::vector<pid_t> children;
    for (const char* tag : {"p1", "p2"}) {
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::_exit(add_from_child(path_, tag, kPerChild));
        }
        children.push_back(pid);
    }
    // The dispatcher runs while the children write: it must pick their records up by polling.
    DispatcherOptions o;
    o.poll_interval = 20ms;
    Dispatcher d(store(), broker_, o);
    d.start();
    for (pid_t pid : children) {
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a child failed";
    }
    EXPECT_TRUE(d.drain(60s));
    d.stop();
    EXPECT_EQ(broker_.published(), 2u * kPerChild);
    EXPECT_EQ(db_.execAndGet("SELECT count(*) FROM readings").getInt(), 2 * kPerChild);
    // Per writer, commit order is kept.
    std::map<std::string, int> next;
    for (const Record& r : broker_.log()) {
        EXPECT_EQ(r.message.payload_view(), std::to_string(next[r.message.topic]++));
    }
}

TEST_F(ConcurrencyTest, ADispatcherProcessKilledMidFlightLosesNothing) {
    for (int i = 0; i < 200; ++i) {
        add("t", std::nullopt);
    }
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        // Publishes into a broker that never answers, then waits to be killed.
        outpost::testing::FakeBroker silent;
        silent.set_auto_ack(false);
        SqliteStore s(path_);
        DispatcherOptions o;
        o.window = 50;
        Dispatcher d(s, silent, o);
        d.run_once();
        const char c = silent.held() == 50 ? 'y' : 'n';
        (void)::write(ready[1], &c, 1);
        ::pause();
        ::_exit(0);
    }
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    EXPECT_EQ(c, 'y');
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    EXPECT_EQ(count("state = 0 AND attempts = 0"), 200);  // in flight was memory only

    // The crashed holder's lease is taken over at once; every record is delivered.
    Dispatcher d(store(), broker_);
    d.start();
    EXPECT_TRUE(d.drain(30s));
    d.stop();
    EXPECT_EQ(broker_.published(), 200u);
    EXPECT_EQ(count(), 0);
    ::close(ready[0]);
    ::close(ready[1]);
}

// The Store contract (include/outpost/store.hpp), one typed suite run against every
// implementation: FakeStore, which dispatcher unit tests can trust, and SqliteStore on a real
// file. When the fake drifts from the real thing, this suite says where.
//
// Each side is a harness: it gives the suite the Store under test and the means to set up and
// read back its world without going through that Store (for SqliteStore, plain SQL on a
// connection of its own: an independent oracle).
//   store()                  the Store under test
//   add(message, now_ms)     the app commits a pending record (this process); returns its id
//   in_one_commit(f)         runs f (a series of add) as one commit
//   requeue(id)              the app moves dead record `id` back to pending
//   commit_elsewhere()       another connection commits something that is no record
//   make_unreadable(id)      damages the stored form of record `id`
//   read(id)                 the record as stored, nullopt when gone
//   lease()                  the lease as stored, nullopt when free
//   crashed_holder(host)     a LeaseInfo of a process on `host` that is gone
// and declares what it can do (capabilities), so a test of something one side does not model
// says so instead of being left out by hand:
//   kSeesReboots             a holder on this host from an earlier boot is known gone
//                            (then from_earlier_boot() marks the stored lease so)
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "fake_broker.hpp"
#include "fake_store.hpp"
#include "outpost/outpost.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost {
namespace {

using namespace std::chrono_literals;
using testing::FakeStore;
using testing::TempDir;

constexpr std::int64_t kNow = 1'700'000'000'000;
// A pid no process has: above the kernel's PID_MAX_LIMIT (2^22), below INT_MAX.
constexpr std::int64_t kGonePid = 2'147'483'000;
const char* const kExpiredError = "ttl passed before delivery";

// What a harness reads back about a record.
struct Stored {
    RecordState state = RecordState::pending;
    std::uint32_t attempts = 0;
    std::int64_t next_attempt_at = 0;
    std::optional<std::int64_t> expires_at;
    std::optional<std::int64_t> done_at;
    std::string last_error;
};

class SqliteHarness {
  public:
    static constexpr const char* kName = "SqliteStore";
    static constexpr bool kSeesReboots = true;

    SqliteHarness()
        : path_(dir_.file("contract.db")),
          app_(path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE),
          outbox_(app_, {}, clock_),
          store_(path_),
          oracle_(path_, SQLite::OPEN_READONLY) {}

    Store& store() { return store_; }
    std::int64_t add(const Message& m, std::int64_t now_ms) {
        clock_.set_wall(now_ms);
        return outbox_.add(m);
    }
    template <typename F>
    void in_one_commit(F f) {
        SQLite::Transaction tx(app_);
        f();
        tx.commit();
    }
    void requeue(std::int64_t id) { outbox_.requeue(id); }
    void commit_elsewhere() {
        app_.exec("CREATE TABLE IF NOT EXISTS app_state (v INTEGER)");
        app_.exec("INSERT INTO app_state VALUES (1)");
    }
    // A headers blob that announces a 5-byte name and ends: decode_headers() refuses it.
    void make_unreadable(std::int64_t id) {
        SQLite::Statement q(app_, "UPDATE outpost_records SET headers = x'05000000' WHERE id = ?");
        q.bind(1, id);
        ASSERT_EQ(q.exec(), 1);
    }
    std::optional<Stored> read(std::int64_t id) {
        SQLite::Statement q(oracle_,
                            "SELECT state, attempts, next_attempt_at, expires_at, done_at, "
                            "last_error FROM outpost_records WHERE id = ?");
        q.bind(1, id);
        if (!q.executeStep()) {
            return std::nullopt;
        }
        Stored s;
        s.state = static_cast<RecordState>(q.getColumn(0).getInt());
        s.attempts = static_cast<std::uint32_t>(q.getColumn(1).getInt64());
        s.next_attempt_at = q.getColumn(2).getInt64();
        if (!q.getColumn(3).isNull()) {
            s.expires_at = q.getColumn(3).getInt64();
        }
        if (!q.getColumn(4).isNull()) {
            s.done_at = q.getColumn(4).getInt64();
        }
        s.last_error = q.getColumn(5).getString();  // "" for NULL
        return s;
    }
    std::optional<LeaseInfo> lease() {
        SQLite::Statement q(oracle_,
                            "SELECT owner, host, pid, started_at, heartbeat_at, expires_at "
                            "FROM outpost_lease WHERE slot = 1");
        if (!q.executeStep()) {
            return std::nullopt;
        }
        return LeaseInfo{q.getColumn(0).getString(), q.getColumn(1).getString(),
                         q.getColumn(2).getInt64(),  q.getColumn(3).getInt64(),
                         q.getColumn(4).getInt64(),  q.getColumn(5).getInt64()};
    }
    LeaseInfo crashed_holder(const std::string& host) {
        EXPECT_NE(::kill(static_cast<pid_t>(kGonePid), 0), 0) << "a process has pid " << kGonePid;
        return LeaseInfo{"crashed-holder", host,        kGonePid,
                         kNow - 60'000,    kNow - 1000, kNow + 30'000};
    }
    // False when this machine has no boot id (then the rule cannot apply).
    bool from_earlier_boot() {
        std::ifstream in("/proc/sys/kernel/random/boot_id");
        std::string id;
        std::getline(in, id);
        if (id.empty()) {
            return false;
        }
        app_.exec("UPDATE outpost_lease SET boot_id = 'an-earlier-boot'");
        return true;
    }

  private:
    TempDir dir_;
    std::string path_;
    ManualClock clock_;
    SQLite::Database app_;
    Outbox outbox_;
    SqliteStore store_;
    SQLite::Database oracle_;
};

class FakeHarness {
  public:
    static constexpr const char* kName = "FakeStore";
    // No boot id: a holder from before a reboot waits for its lease to lapse.
    static constexpr bool kSeesReboots = false;

    Store& store() { return fake_; }
    std::int64_t add(const Message& m, std::int64_t now_ms) { return fake_.add(m, now_ms); }
    template <typename F>
    void in_one_commit(F f) {
        f();
    }
    void requeue(std::int64_t id) { fake_.requeue(id); }
    void commit_elsewhere() { fake_.commit_elsewhere(); }
    void make_unreadable(std::int64_t id) { fake_.mark_unreadable(id); }
    std::optional<Stored> read(std::int64_t id) {
        const std::optional<Record> r = fake_.record(id);
        if (!r) {
            return std::nullopt;
        }
        return Stored{r->state,      r->attempts, r->next_attempt_at,
                      r->expires_at, r->done_at,  r->last_error};
    }
    std::optional<LeaseInfo> lease() { return fake_.lease(); }
    LeaseInfo crashed_holder(const std::string& host) {
        fake_.end_process(host, kGonePid);
        return LeaseInfo{"crashed-holder", host,        kGonePid,
                         kNow - 60'000,    kNow - 1000, kNow + 30'000};
    }

  private:
    FakeStore fake_;
};

Message message(const std::string& topic, int priority = 0,
                std::optional<std::string> key = std::nullopt,
                std::optional<std::chrono::milliseconds> ttl = std::nullopt) {
    Message m = Message::text(topic, "payload of " + topic);
    m.priority = priority;
    m.key = std::move(key);
    m.ttl = ttl;
    return m;
}

std::vector<std::int64_t> ids_of(const std::vector<PendingRef>& refs) {
    std::vector<std::int64_t> out;
    for (const PendingRef& r : refs) {
        out.push_back(r.id);
    }
    return out;
}

std::vector<std::int64_t> ids_of(const std::vector<Record>& records) {
    std::vector<std::int64_t> out;
    for (const Record& r : records) {
        out.push_back(r.id);
    }
    return out;
}

DispatchCursor after(const PendingRef& r) {
    return DispatchCursor{r.priority, r.id, false};
}

Outcome delivered(std::int64_t id, std::int64_t at) {
    return Outcome{Outcome::Kind::delivered, id, 0, 0, "", at};
}
Outcome retry(std::int64_t id, std::uint32_t attempts, std::int64_t next, std::string error) {
    return Outcome{Outcome::Kind::retry, id, attempts, next, std::move(error), kNow};
}
Outcome dead(std::int64_t id, std::uint32_t attempts, std::string error, std::int64_t at) {
    return Outcome{Outcome::Kind::dead, id, attempts, 0, std::move(error), at};
}
Outcome expired(std::int64_t id, std::string error, std::int64_t at) {
    return Outcome{Outcome::Kind::expired, id, 0, 0, std::move(error), at};
}

LeaseInfo lease(const std::string& owner, const std::string& host, std::int64_t pid,
                std::int64_t now, std::int64_t ttl_ms = 30'000) {
    return LeaseInfo{owner, host, pid, now, now, now + ttl_ms};
}

template <typename Harness>
class StoreContract : public ::testing::Test {
  protected:
    Store& store() { return h_.store(); }
    std::int64_t add(int priority = 0, std::optional<std::string> key = std::nullopt,
                     std::optional<std::chrono::milliseconds> ttl = std::nullopt,
                     std::int64_t now = kNow) {
        return h_.add(message("t/" + std::to_string(++n_), priority, std::move(key), ttl), now);
    }
    RecordState state_of(std::int64_t id) {
        auto s = h_.read(id);
        EXPECT_TRUE(s) << "record " << id << " is gone";
        return s ? s->state : RecordState::pending;
    }
    std::vector<std::int64_t> scan_all() { return ids_of(store().scan_pending({}, 1000)); }

    Harness h_;
    int n_ = 0;
};

using Harnesses = ::testing::Types<FakeHarness, SqliteHarness>;
class HarnessNames {
  public:
    template <typename T>
    static std::string GetName(int) {
        return T::kName;
    }
};
TYPED_TEST_SUITE(StoreContract, Harnesses, HarnessNames);

// ---- scan_pending: dispatch order, cursor, limits ----

TYPED_TEST(StoreContract, ScanPendingGoesByPriorityThenId) {
    const auto a = this->add(0), b = this->add(5), c = this->add(0), d = this->add(5),
               e = this->add(-1), f = this->add(10);
    EXPECT_EQ(this->scan_all(), (std::vector<std::int64_t>{f, b, d, a, c, e}));
}

TYPED_TEST(StoreContract, ScanPendingListsOnlyPendingRecordsWhateverTheirTimes) {
    const auto waiting = this->add(), gone = this->add(), refused = this->add(),
               stale = this->add(0, std::nullopt, 1ms, kNow - 60'000), kept = this->add(),
               lapsed = this->add();
    this->store().apply({retry(waiting, 1, kNow + 3'600'000, "later"), delivered(gone, kNow),
                         dead(refused, 3, "no", kNow), expired(lapsed, "ttl", kNow)},
                        false);
    this->store().apply({delivered(kept, kNow)}, true);
    // A retry an hour ahead and a ttl long past: still listed, the dispatcher decides.
    EXPECT_EQ(this->scan_all(), (std::vector<std::int64_t>{waiting, stale}));
}

TYPED_TEST(StoreContract, APendingRefCarriesWhatTheDispatcherDecidesOn) {
    const auto id = this->add(7, "valve-7", 10s, kNow);
    this->store().apply({retry(id, 2, kNow + 5000, "broker said no")}, true);
    const auto refs = this->store().scan_pending({}, 10);
    ASSERT_EQ(refs.size(), 1u);
    const PendingRef& r = refs[0];
    EXPECT_EQ(r.id, id);
    EXPECT_EQ(r.priority, 7);
    EXPECT_EQ(r.key, std::optional<std::string>("valve-7"));
    EXPECT_EQ(r.next_attempt_at, kNow + 5000);
    EXPECT_EQ(r.expires_at, std::optional<std::int64_t>(kNow + 10'000));
    EXPECT_EQ(r.attempts, 2u);
    const auto plain = this->add();
    const auto refs2 = this->store().scan_pending(after(r), 10);
    ASSERT_EQ(refs2.size(), 1u);
    EXPECT_EQ(refs2[0].id, plain);
    EXPECT_FALSE(refs2[0].key);
    EXPECT_FALSE(refs2[0].expires_at);
    EXPECT_EQ(refs2[0].next_attempt_at, 0);
    EXPECT_EQ(refs2[0].attempts, 0u);
}

TYPED_TEST(StoreContract, ACursorContinuesWithinItsPriorityThenBelow) {
    for (int p : {1, 3, 1, 3, 2, 1, 3}) {
        this->add(p);
    }
    const std::vector<std::int64_t> order{2, 4, 7, 5, 1, 3, 6};
    ASSERT_EQ(this->scan_all(), order);
    for (std::size_t limit : {1u, 2u, 3u, 7u}) {
        SCOPED_TRACE("limit " + std::to_string(limit));
        std::vector<std::int64_t> walked;
        DispatchCursor cursor;
        for (int i = 0; i < 20; ++i) {
            const auto page = this->store().scan_pending(cursor, limit);
            EXPECT_LE(page.size(), limit);
            if (page.empty()) {
                break;
            }
            for (const PendingRef& r : page) {
                walked.push_back(r.id);
            }
            cursor = after(page.back());
        }
        EXPECT_EQ(walked, order);
    }
}

TYPED_TEST(StoreContract, ACursorNeedNotNameAStoredRecord) {
    for (int p : {1, 3, 1, 3, 2, 1, 3}) {
        this->add(p);
    }
    // Record 4 (priority 3) went meanwhile: the cursor still says where to go on.
    this->store().apply({delivered(4, kNow)}, false);
    EXPECT_EQ(ids_of(this->store().scan_pending({3, 4, false}, 10)),
              (std::vector<std::int64_t>{7, 5, 1, 3, 6}));
    // A priority nobody has, an id beyond every record.
    EXPECT_EQ(ids_of(this->store().scan_pending({2, 100, false}, 10)),
              (std::vector<std::int64_t>{1, 3, 6}));
    EXPECT_EQ(ids_of(this->store().scan_pending({9, 0, false}, 10)),
              (std::vector<std::int64_t>{2, 7, 5, 1, 3, 6}));
    // at_start wins over the position it carries.
    EXPECT_EQ(ids_of(this->store().scan_pending({1, 6, true}, 1)), (std::vector<std::int64_t>{2}));
}

TYPED_TEST(StoreContract, ScanPendingLimitsAtOneAndAtTheEdge) {
    for (int p : {1, 3, 1, 3, 2, 1, 3}) {
        this->add(p);
    }
    Store& s = this->store();
    EXPECT_EQ(ids_of(s.scan_pending({}, 1)), (std::vector<std::int64_t>{2}));
    EXPECT_TRUE(s.scan_pending({}, 0).empty());
    EXPECT_EQ(s.scan_pending({}, 7).size(), 7u);
    EXPECT_EQ(s.scan_pending({}, 8).size(), 7u);
    // The rest of the cursor's priority fills the limit exactly, then one more crosses below.
    EXPECT_EQ(ids_of(s.scan_pending({3, 2, false}, 2)), (std::vector<std::int64_t>{4, 7}));
    EXPECT_EQ(ids_of(s.scan_pending({3, 2, false}, 3)), (std::vector<std::int64_t>{4, 7, 5}));
    EXPECT_EQ(ids_of(s.scan_pending({3, 7, false}, 1)), (std::vector<std::int64_t>{5}));
    EXPECT_TRUE(s.scan_pending({3, 2, false}, 0).empty());
    // After the last record: nothing.
    EXPECT_TRUE(s.scan_pending({1, 6, false}, 10).empty());
}

// "At most `limit`": a limit far above the backlog (no limit at all) returns what there is.
// SqliteStore::scan_pending() reserved `limit` entries up front: SIZE_MAX threw
// std::length_error (not a StorageError) and a large limit allocated limit * sizeof(PendingRef)
// whatever the backlog.
TYPED_TEST(StoreContract, ALimitFarAboveTheBacklogReturnsWhatThereIs) {
    this->add();
    this->add(1);
    const std::size_t none = std::numeric_limits<std::size_t>::max();
    EXPECT_EQ(ids_of(this->store().scan_pending({}, none)), (std::vector<std::int64_t>{2, 1}));
    EXPECT_EQ(ids_of(this->store().scan_pending({1, 2, false}, none)),
              (std::vector<std::int64_t>{1}));
    EXPECT_EQ(ids_of(this->store().scan_arrivals(0, 2, -1, none)),
              (std::vector<std::int64_t>{1, 2}));
}

TYPED_TEST(StoreContract, AnEmptyStoreScansEmpty) {
    EXPECT_TRUE(this->store().scan_pending({}, 10).empty());
    EXPECT_TRUE(this->store().scan_pending({0, 0, false}, 10).empty());
    EXPECT_FALSE(this->store().key_head("k"));
    EXPECT_TRUE(this->store().scan_arrivals(0, 100, -100, 10).empty());
    EXPECT_FALSE(this->store().has_pending());
    EXPECT_FALSE(this->store().next_expiry());
    EXPECT_EQ(this->store().last_id(), 0);
}

// ---- key_head ----

TYPED_TEST(StoreContract, KeyHeadIsTheKeysFirstPendingRecordInDispatchOrder) {
    std::int64_t first = 0, urgent = 0;
    this->h_.in_one_commit([&] {
        first = this->add(0, "k");
        for (int i = 0; i < 200; ++i) {
            this->add(0, i % 2 == 0 ? std::optional<std::string>("k") : std::nullopt);
            this->add(0, "other");
        }
        urgent = this->add(2, "k");  // added last, but a higher priority goes first
    });
    auto head = this->store().key_head("k");
    ASSERT_TRUE(head);
    EXPECT_EQ(head->id, urgent);
    EXPECT_EQ(head->priority, 2);
    EXPECT_EQ(head->key, std::optional<std::string>("k"));
    this->store().apply({delivered(urgent, kNow)}, false);
    head = this->store().key_head("k");
    ASSERT_TRUE(head);
    EXPECT_EQ(head->id, first);
    // A head waiting for its retry is still the head.
    this->store().apply({retry(first, 1, kNow + 60'000, "later")}, false);
    head = this->store().key_head("k");
    ASSERT_TRUE(head);
    EXPECT_EQ(head->id, first);
    EXPECT_EQ(head->next_attempt_at, kNow + 60'000);
    // Once it is dead the next of the key is.
    this->store().apply({dead(first, 3, "no", kNow)}, false);
    head = this->store().key_head("k");
    ASSERT_TRUE(head);
    EXPECT_EQ(head->id, first + 1);
}

TYPED_TEST(StoreContract, KeyHeadOfAKeyWithNothingPendingIsNone) {
    const auto a = this->add(0, "k"), b = this->add(0, "k");
    this->add(0, "kk");
    this->add();
    EXPECT_FALSE(this->store().key_head("none"));
    EXPECT_FALSE(this->store().key_head(""));
    EXPECT_FALSE(this->store().key_head("K"));
    this->store().apply({dead(a, 3, "no", kNow), expired(b, "ttl", kNow)}, false);
    EXPECT_FALSE(this->store().key_head("k"));
    EXPECT_EQ(this->store().key_head("kk")->id, 3);
}

// ---- scan_arrivals ----

TYPED_TEST(StoreContract, ScanArrivalsKeepsItsBoundsAndGoesById) {
    for (int p : {1, 1, 0, 2, 1, 3, 1, 1}) {
        this->add(p);
    }
    Store& s = this->store();
    s.apply({dead(5, 3, "no", kNow)}, false);
    // after_id exclusive (2), upto_id inclusive (7, not 8), priority strictly above 0 (not 3),
    // pending only (not 5), in id order (4 before 6 although 6 goes first in dispatch order).
    EXPECT_EQ(ids_of(s.scan_arrivals(2, 7, 0, 100)), (std::vector<std::int64_t>{4, 6, 7}));
    EXPECT_EQ(ids_of(s.scan_arrivals(2, 7, 1, 100)), (std::vector<std::int64_t>{4, 6}));
    EXPECT_EQ(ids_of(s.scan_arrivals(2, 7, 0, 2)), (std::vector<std::int64_t>{4, 6}));
    EXPECT_EQ(ids_of(s.scan_arrivals(2, 7, 0, 1)), (std::vector<std::int64_t>{4}));
    EXPECT_TRUE(s.scan_arrivals(2, 7, 0, 0).empty());
    EXPECT_TRUE(s.scan_arrivals(7, 7, 0, 100).empty());
    EXPECT_TRUE(s.scan_arrivals(7, 2, 0, 100).empty());
    EXPECT_TRUE(s.scan_arrivals(2, 7, 3, 100).empty());
    EXPECT_EQ(ids_of(s.scan_arrivals(0, 100, -1, 100)),
              (std::vector<std::int64_t>{1, 2, 3, 4, 6, 7, 8}));
    EXPECT_EQ(ids_of(s.scan_arrivals(6, 7, 0, 100)), (std::vector<std::int64_t>{7}));
}

// ---- last_id, requeue_count ----

TYPED_TEST(StoreContract, LastIdGrowsAndNeverComesBack) {
    EXPECT_EQ(this->store().last_id(), 0);
    this->add();
    this->add();
    const auto third = this->add();
    EXPECT_EQ(this->store().last_id(), third);
    this->store().apply({delivered(third, kNow)}, false);  // deleted
    EXPECT_EQ(this->store().last_id(), third);
    const auto fourth = this->add();
    EXPECT_GT(fourth, third);
    EXPECT_EQ(this->store().last_id(), fourth);
}

TYPED_TEST(StoreContract, RequeueCountMovesOnEveryRequeueAndOnlyThen) {
    const auto a = this->add(), b = this->add();
    const std::int64_t before = this->store().requeue_count();
    this->add();
    this->store().apply({retry(a, 1, kNow + 1000, "later"), dead(b, 3, "no", kNow)}, true);
    EXPECT_EQ(this->store().requeue_count(), before);
    this->h_.requeue(b);
    const std::int64_t once = this->store().requeue_count();
    EXPECT_NE(once, before);
    EXPECT_EQ(this->store().requeue_count(), once) << "reading it moves nothing";
    EXPECT_EQ(this->state_of(b), RecordState::pending);
    this->store().apply({dead(b, 3, "no again", kNow)}, true);
    EXPECT_EQ(this->store().requeue_count(), once);
    this->h_.requeue(b);
    EXPECT_NE(this->store().requeue_count(), once);
}

TYPED_TEST(StoreContract, ARequeuedRecordStartsOverAndKeepsItsLastError) {
    const auto id = this->add();
    this->store().apply({retry(id, 1, kNow + 1000, "first")}, true);
    this->store().apply({dead(id, 3, "refused", kNow + 2000)}, true);
    this->h_.requeue(id);
    const auto s = this->h_.read(id);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->state, RecordState::pending);
    EXPECT_EQ(s->attempts, 0u);
    EXPECT_EQ(s->next_attempt_at, 0);
    EXPECT_FALSE(s->done_at);
    EXPECT_EQ(s->last_error, "refused");
    EXPECT_EQ(this->scan_all(), std::vector<std::int64_t>{id});
}

// ---- load_pending ----

TYPED_TEST(StoreContract, LoadPendingKeepsTheAskedOrderAndDropsWhatIsNotPending) {
    const auto a = this->add(), b = this->add(), c = this->add(), d = this->add();
    this->store().apply({delivered(b, kNow), dead(d, 3, "no", kNow)}, true);
    const LoadedRecords got = this->store().load_pending({c, 999, b, a, d});
    EXPECT_EQ(ids_of(got.records), (std::vector<std::int64_t>{c, a}));
    EXPECT_TRUE(got.unreadable.empty());
    EXPECT_TRUE(this->store().load_pending({}).records.empty());
}

TYPED_TEST(StoreContract, LoadPendingReturnsTheWholeRecord) {
    Message m = Message::text("site/3/valve/7", R"({"open":true})");
    m.key = "valve-7";
    m.qos = 2;
    m.retain = true;
    m.priority = 4;
    m.ttl = 90s;
    m.headers = {{"unit", "bar"}, {"empty", ""}};
    m.content_type = "application/json";
    const auto id = this->h_.add(m, kNow);
    this->store().apply({retry(id, 2, kNow + 7000, "timeout")}, true);
    const LoadedRecords got = this->store().load_pending({id});
    ASSERT_EQ(got.records.size(), 1u);
    const Record& r = got.records[0];
    EXPECT_EQ(r.id, id);
    EXPECT_FALSE(r.uid.empty());
    EXPECT_EQ(r.state, RecordState::pending);
    EXPECT_EQ(r.message, m);
    EXPECT_EQ(r.attempts, 2u);
    EXPECT_EQ(r.created_at, kNow);
    EXPECT_EQ(r.next_attempt_at, kNow + 7000);
    EXPECT_EQ(r.expires_at, std::optional<std::int64_t>(kNow + 90'000));
    EXPECT_FALSE(r.done_at);
    EXPECT_EQ(r.last_error, "timeout");
    // Another record gets another uid.
    const auto other = this->add();
    EXPECT_NE(this->store().load_pending({other}).records.at(0).uid, r.uid);
}

TYPED_TEST(StoreContract, AnUnreadableRecordIsListedAndNeverStopsTheOthers) {
    const auto a = this->add(), b = this->add(), c = this->add(), gone = this->add();
    this->h_.make_unreadable(b);
    this->h_.make_unreadable(gone);
    this->store().apply({dead(gone, 3, "no", kNow)}, true);
    const LoadedRecords got = this->store().load_pending({a, b, c, gone});
    EXPECT_EQ(ids_of(got.records), (std::vector<std::int64_t>{a, c}));
    ASSERT_EQ(got.unreadable.size(), 1u) << "a non-pending record is not listed at all";
    EXPECT_EQ(got.unreadable[0].id, b);
    EXPECT_FALSE(got.unreadable[0].reason.empty());
    // Scans read no more than a PendingRef: the record is still there for the dispatcher.
    EXPECT_EQ(this->scan_all(), (std::vector<std::int64_t>{a, b, c}));
    // ... which can move it to dead.
    this->store().apply({dead(b, 0, got.unreadable[0].reason, kNow)}, true);
    EXPECT_EQ(this->state_of(b), RecordState::dead);
    EXPECT_EQ(this->h_.read(b)->last_error, got.unreadable[0].reason);
}

// ---- apply ----

TYPED_TEST(StoreContract, ADeliveredOutcomeDeletesWithoutKeepDelivered) {
    const auto a = this->add(), b = this->add();
    this->store().apply({delivered(a, kNow + 5)}, false);
    EXPECT_FALSE(this->h_.read(a));
    EXPECT_EQ(this->state_of(b), RecordState::pending);
    EXPECT_EQ(this->scan_all(), std::vector<std::int64_t>{b});
}

TYPED_TEST(StoreContract, ADeliveredOutcomeMarksWithKeepDelivered) {
    const auto a = this->add();
    this->store().apply({retry(a, 1, kNow + 1000, "timeout")}, true);
    this->store().apply({delivered(a, kNow + 5)}, true);
    const auto s = this->h_.read(a);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->state, RecordState::delivered);
    EXPECT_EQ(s->done_at, std::optional<std::int64_t>(kNow + 5));
    EXPECT_EQ(s->attempts, 1u);
    EXPECT_FALSE(this->store().has_pending());
}

// SqliteStore marks (or deletes) a delivered record whatever its state, unlike the other
// outcomes: the broker has it. Pinned so the fake follows.
TYPED_TEST(StoreContract, ADeliveredOutcomeIsWrittenWhateverTheState) {
    const auto a = this->add(), b = this->add();
    this->store().apply({dead(a, 3, "no", kNow), expired(b, "ttl", kNow)}, true);
    this->store().apply({delivered(a, kNow + 9)}, true);
    this->store().apply({delivered(b, kNow + 9)}, false);
    EXPECT_EQ(this->state_of(a), RecordState::delivered);
    EXPECT_EQ(this->h_.read(a)->done_at, std::optional<std::int64_t>(kNow + 9));
    EXPECT_FALSE(this->h_.read(b));
}

TYPED_TEST(StoreContract, ARetryOutcomeKeepsTheRecordPending) {
    const auto a = this->add(), b = this->add();
    this->store().apply({retry(a, 2, kNow + 4000, "PUBACK 0x97 quota exceeded")}, true);
    const auto s = this->h_.read(a);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->state, RecordState::pending);
    EXPECT_EQ(s->attempts, 2u);
    EXPECT_EQ(s->next_attempt_at, kNow + 4000);
    EXPECT_EQ(s->last_error, "PUBACK 0x97 quota exceeded");
    EXPECT_FALSE(s->done_at);
    const auto other = this->h_.read(b);
    EXPECT_EQ(other->attempts, 0u);
    EXPECT_EQ(other->last_error, "");
    EXPECT_EQ(this->scan_all(), (std::vector<std::int64_t>{a, b}));
}

TYPED_TEST(StoreContract, DeadAndExpiredOutcomesEndTheRecord) {
    const auto a = this->add(), b = this->add(0, std::nullopt, 1s);
    this->store().apply({retry(b, 1, kNow + 1000, "timeout")}, true);
    this->store().apply({dead(a, 5, "PUBACK 0x99 payload format invalid", kNow + 1),
                         expired(b, "ttl passed", kNow + 2)},
                        false);
    const auto sa = this->h_.read(a);
    ASSERT_TRUE(sa);
    EXPECT_EQ(sa->state, RecordState::dead);
    EXPECT_EQ(sa->attempts, 5u);
    EXPECT_EQ(sa->last_error, "PUBACK 0x99 payload format invalid");
    EXPECT_EQ(sa->done_at, std::optional<std::int64_t>(kNow + 1));
    const auto sb = this->h_.read(b);
    ASSERT_TRUE(sb);
    EXPECT_EQ(sb->state, RecordState::expired);
    EXPECT_EQ(sb->attempts, 1u) << "an expiry counts no attempt";
    EXPECT_EQ(sb->last_error, "ttl passed");
    EXPECT_EQ(sb->done_at, std::optional<std::int64_t>(kNow + 2));
    EXPECT_FALSE(this->store().has_pending());
}

TYPED_TEST(StoreContract, RetryDeadAndExpiredTouchOnlyPendingRecords) {
    const auto a = this->add(), b = this->add(), c = this->add();
    this->store().apply({dead(a, 3, "first", kNow), delivered(b, kNow), expired(c, "ttl", kNow)},
                        true);
    this->store().apply(
        {retry(a, 9, kNow + 1, "x"), dead(b, 9, "x", kNow + 1), expired(a, "x", kNow + 1),
         dead(c, 9, "x", kNow + 1), retry(12345, 1, 0, "no such record")},
        true);
    const auto sa = this->h_.read(a), sb = this->h_.read(b), sc = this->h_.read(c);
    EXPECT_EQ(sa->state, RecordState::dead);
    EXPECT_EQ(sa->attempts, 3u);
    EXPECT_EQ(sa->last_error, "first");
    EXPECT_EQ(sa->done_at, std::optional<std::int64_t>(kNow));
    EXPECT_EQ(sb->state, RecordState::delivered);
    EXPECT_EQ(sb->attempts, 0u);
    EXPECT_EQ(sc->state, RecordState::expired);
    EXPECT_EQ(sc->last_error, "ttl");
    EXPECT_FALSE(this->h_.read(12345));
}

TYPED_TEST(StoreContract, OneApplyWritesEveryOutcomeOfTheBatch) {
    std::vector<Outcome> batch;
    std::vector<std::int64_t> ids;
    this->h_.in_one_commit([&] {
        for (int i = 0; i < 40; ++i) {
            ids.push_back(this->add());
        }
    });
    for (std::size_t i = 0; i < ids.size(); ++i) {
        switch (i % 4) {
            case 0:
                batch.push_back(delivered(ids[i], kNow));
                break;
            case 1:
                batch.push_back(retry(ids[i], 1, kNow + 1, "r"));
                break;
            case 2:
                batch.push_back(dead(ids[i], 3, "d", kNow));
                break;
            default:
                batch.push_back(expired(ids[i], "e", kNow));
                break;
        }
    }
    this->store().apply(batch, false);
    this->store().apply({}, false);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto s = this->h_.read(ids[i]);
        switch (i % 4) {
            case 0:
                EXPECT_FALSE(s);
                break;
            case 1:
                EXPECT_EQ(s->state, RecordState::pending);
                break;
            case 2:
                EXPECT_EQ(s->state, RecordState::dead);
                break;
            default:
                EXPECT_EQ(s->state, RecordState::expired);
                break;
        }
    }
    EXPECT_EQ(this->store().scan_pending({}, 100).size(), 10u);
}

// ---- has_pending, next_expiry, expire_due ----

TYPED_TEST(StoreContract, HasPendingFollowsTheStates) {
    EXPECT_FALSE(this->store().has_pending());
    const auto a = this->add();
    EXPECT_TRUE(this->store().has_pending());
    this->store().apply({retry(a, 1, kNow + 3'600'000, "later")}, true);
    EXPECT_TRUE(this->store().has_pending()) << "a record waiting for its retry is pending";
    this->store().apply({dead(a, 3, "no", kNow)}, true);
    EXPECT_FALSE(this->store().has_pending());
    this->h_.requeue(a);
    EXPECT_TRUE(this->store().has_pending());
}

TYPED_TEST(StoreContract, NextExpiryIsTheEarliestTtlOfAPendingRecord) {
    this->add();
    EXPECT_FALSE(this->store().next_expiry());
    const auto soon = this->add(0, std::nullopt, 5s);
    this->add(0, std::nullopt, 9s);
    const auto sooner_dead = this->add(0, std::nullopt, 1s);
    this->store().apply({dead(sooner_dead, 3, "no", kNow)}, true);
    EXPECT_EQ(this->store().next_expiry(), std::optional<std::int64_t>(kNow + 5000));
    this->store().apply({delivered(soon, kNow)}, false);
    EXPECT_EQ(this->store().next_expiry(), std::optional<std::int64_t>(kNow + 9000));
}

TYPED_TEST(StoreContract, ExpireDueSkipsRecordsInFlight) {
    const auto a = this->add(0, std::nullopt, 1s), flying = this->add(0, std::nullopt, 1s),
               later = this->add(0, std::nullopt, 2s), never = this->add(),
               dead_one = this->add(0, std::nullopt, 500ms);
    this->store().apply({dead(dead_one, 3, "no", kNow)}, true);
    // expires_at == now is due.
    EXPECT_EQ(this->store().expire_due(kNow + 1000, {flying, never, 777}),
              std::vector<std::int64_t>{a});
    const auto sa = this->h_.read(a);
    EXPECT_EQ(sa->state, RecordState::expired);
    EXPECT_EQ(sa->done_at, std::optional<std::int64_t>(kNow + 1000));
    EXPECT_EQ(sa->last_error, kExpiredError);
    EXPECT_EQ(this->state_of(flying), RecordState::pending);
    EXPECT_EQ(this->state_of(later), RecordState::pending);
    EXPECT_EQ(this->h_.read(dead_one)->last_error, "no");
    EXPECT_TRUE(this->store().expire_due(kNow + 1000, {flying}).empty());
    auto rest = this->store().expire_due(kNow + 2000, {});
    std::sort(rest.begin(), rest.end());  // the order of the ids is not part of the contract
    EXPECT_EQ(rest, (std::vector<std::int64_t>{flying, later}));
    EXPECT_EQ(this->state_of(never), RecordState::pending);
    EXPECT_EQ(this->scan_all(), std::vector<std::int64_t>{never});
    EXPECT_FALSE(this->store().next_expiry());
}

// ---- clamp_retry_times, purge_delivered ----

TYPED_TEST(StoreContract, ClampRetryTimesPullsBackOnlyWhatLiesPastTheHorizon) {
    const std::int64_t now = kNow, horizon = 60'000;
    const auto far = this->add(), edge = this->add(), near = this->add(), fresh = this->add(),
               dead_far = this->add();
    this->store().apply(
        {retry(far, 1, now + horizon + 1, "a"), retry(edge, 1, now + horizon, "b"),
         retry(near, 1, now + 10, "c"), retry(dead_far, 1, now + 10 * horizon, "d")},
        true);
    this->store().apply({dead(dead_far, 3, "no", now)}, true);
    EXPECT_EQ(this->store().clamp_retry_times(now, horizon), 1u);
    EXPECT_EQ(this->h_.read(far)->next_attempt_at, now);
    EXPECT_EQ(this->h_.read(far)->attempts, 1u);
    EXPECT_EQ(this->h_.read(edge)->next_attempt_at, now + horizon);
    EXPECT_EQ(this->h_.read(near)->next_attempt_at, now + 10);
    EXPECT_EQ(this->h_.read(fresh)->next_attempt_at, 0);
    EXPECT_EQ(this->h_.read(dead_far)->next_attempt_at, now + 10 * horizon);
    EXPECT_EQ(this->store().clamp_retry_times(now, horizon), 0u);
    EXPECT_EQ(this->store().clamp_retry_times(now - horizon, 0), 3u);
}

TYPED_TEST(StoreContract, PurgeDeliveredDeletesOnlyDeliveredRecordsDoneBefore) {
    const auto old = this->add(), edge = this->add(), young = this->add(), dead_old = this->add(),
               waiting = this->add();
    this->store().apply({delivered(old, 100), delivered(edge, 200), delivered(young, 300),
                         dead(dead_old, 3, "no", 50)},
                        true);
    EXPECT_EQ(this->store().purge_delivered(200), 1u);
    EXPECT_FALSE(this->h_.read(old));
    EXPECT_TRUE(this->h_.read(edge)) << "done_at == before stays";
    EXPECT_EQ(this->store().purge_delivered(200), 0u);
    EXPECT_EQ(this->store().purge_delivered(1'000'000), 2u);
    EXPECT_FALSE(this->h_.read(edge));
    EXPECT_FALSE(this->h_.read(young));
    EXPECT_EQ(this->state_of(dead_old), RecordState::dead);
    EXPECT_EQ(this->state_of(waiting), RecordState::pending);
}

// ---- data_version ----

TYPED_TEST(StoreContract, DataVersionMovesOnAnotherConnectionsCommitOnly) {
    Store& s = this->store();
    const auto a = this->add(), b = this->add();
    const std::int64_t v0 = s.data_version();
    s.scan_pending({}, 10);
    s.key_head("k");
    s.has_pending();
    s.load_pending({a, b});
    s.last_id();
    s.next_expiry();
    EXPECT_EQ(s.data_version(), v0) << "its own reads";
    s.apply({delivered(a, kNow), retry(b, 1, kNow + 1, "r")}, true);
    s.expire_due(kNow, {});
    s.purge_delivered(kNow + 1);
    s.acquire_lease(lease("me", "gw", 10, kNow));
    s.renew_lease("me", kNow + 1, kNow + 30'000);
    EXPECT_EQ(s.data_version(), v0) << "its own writes";
    this->h_.commit_elsewhere();
    const std::int64_t v1 = s.data_version();
    EXPECT_NE(v1, v0);
    EXPECT_EQ(s.data_version(), v1);
    this->add();  // the app's connection is another connection
    EXPECT_NE(s.data_version(), v1);
}

// ---- the lease ----

TYPED_TEST(StoreContract, AFreeLeaseIsTakenAndStoredAsGiven) {
    const LeaseInfo mine{"token-1", "gw", 4242, kNow - 5, kNow, kNow + 30'000};
    this->store().acquire_lease(mine);
    const auto held = this->h_.lease();
    ASSERT_TRUE(held);
    EXPECT_EQ(held->owner, mine.owner);
    EXPECT_EQ(held->host, mine.host);
    EXPECT_EQ(held->pid, mine.pid);
    EXPECT_EQ(held->started_at, mine.started_at);
    EXPECT_EQ(held->heartbeat_at, mine.heartbeat_at);
    EXPECT_EQ(held->expires_at, mine.expires_at);
    // Ours again (a restart with the same token): taken again.
    this->store().acquire_lease(lease("token-1", "gw", 4243, kNow + 10));
    EXPECT_EQ(this->h_.lease()->pid, 4243);
}

TYPED_TEST(StoreContract, ALiveHolderKeepsTheLease) {
    const std::int64_t me = ::getpid();
    this->store().acquire_lease(lease("holder", "gw", 1, kNow));  // pid 1 always lives
    for (const LeaseInfo& mine :
         {lease("me", "gw", me, kNow + 1000), lease("me", "other-host", me, kNow + 1000),
          lease("me", "gw", me, kNow + 29'999)}) {
        try {
            this->store().acquire_lease(mine);
            ADD_FAILURE() << "taken at " << mine.heartbeat_at << " from " << mine.host;
        } catch (const LeaseHeld& e) {
            EXPECT_EQ(e.kind(), ErrorKind::lease_held);
            EXPECT_TRUE(e.transient());
            EXPECT_NE(std::string(e.what()).find("gw"), std::string::npos)
                << "names the holder's host: " << e.what();
        }
    }
    EXPECT_EQ(this->h_.lease()->owner, "holder");
}

TYPED_TEST(StoreContract, ALapsedLeaseIsTakenOver) {
    this->store().acquire_lease(lease("holder", "far-away", 1, kNow, 30'000));
    EXPECT_THROW(this->store().acquire_lease(lease("me", "gw", 7, kNow + 29'999)), LeaseHeld);
    this->store().acquire_lease(lease("me", "gw", 7, kNow + 30'000));  // expires_at <= now
    EXPECT_EQ(this->h_.lease()->owner, "me");
    EXPECT_FALSE(this->store().renew_lease("holder", kNow + 30'001, kNow + 60'000))
        << "the old holder learns it lost the lease";
    EXPECT_EQ(this->h_.lease()->owner, "me");
    EXPECT_EQ(this->h_.lease()->expires_at, kNow + 60'000);
}

TYPED_TEST(StoreContract, AHolderOnThisHostWhoseProcessIsGoneIsTakenOverAtOnce) {
    this->store().acquire_lease(this->h_.crashed_holder("gw"));
    this->store().acquire_lease(lease("me", "gw", ::getpid(), kNow));
    EXPECT_EQ(this->h_.lease()->owner, "me");
}

TYPED_TEST(StoreContract, AGoneProcessOnAnotherHostCannotBeJudged) {
    this->store().acquire_lease(this->h_.crashed_holder("gw"));
    EXPECT_THROW(this->store().acquire_lease(lease("me", "other-host", ::getpid(), kNow)),
                 LeaseHeld);
    EXPECT_EQ(this->h_.lease()->owner, "crashed-holder");
}

TYPED_TEST(StoreContract, AnotherDispatcherOfThisProcessKeepsTheLease) {
    const std::int64_t me = ::getpid();
    this->store().acquire_lease(lease("first", "gw", me, kNow));
    EXPECT_THROW(this->store().acquire_lease(lease("second", "gw", me, kNow + 1)), LeaseHeld);
    EXPECT_EQ(this->h_.lease()->owner, "first");
}

TYPED_TEST(StoreContract, AHolderFromAnEarlierBootIsGoneEvenWithALivePid) {
    if constexpr (!TypeParam::kSeesReboots) {
        GTEST_SKIP() << TypeParam::kName << " does not model boots (capability kSeesReboots)";
    } else {
        this->store().acquire_lease(lease("holder", "gw", 1, kNow));
        if (!this->h_.from_earlier_boot()) {
            GTEST_SKIP() << "this machine has no boot id";
        }
        this->store().acquire_lease(lease("me", "gw", ::getpid(), kNow + 1));
        EXPECT_EQ(this->h_.lease()->owner, "me");
    }
}

TYPED_TEST(StoreContract, RenewExtendsOnlyOurLease) {
    Store& s = this->store();
    EXPECT_FALSE(s.renew_lease("me", kNow, kNow + 30'000)) << "nobody holds it";
    EXPECT_FALSE(this->h_.lease());
    s.acquire_lease(lease("me", "gw", 7, kNow));
    EXPECT_TRUE(s.renew_lease("me", kNow + 10'000, kNow + 40'000));
    auto held = this->h_.lease();
    EXPECT_EQ(held->heartbeat_at, kNow + 10'000);
    EXPECT_EQ(held->expires_at, kNow + 40'000);
    EXPECT_EQ(held->started_at, kNow);
    EXPECT_FALSE(s.renew_lease("someone-else", kNow + 11'000, kNow + 99'000));
    EXPECT_EQ(this->h_.lease()->expires_at, kNow + 40'000);
    // Lapsed but taken by nobody: still ours to renew.
    EXPECT_TRUE(s.renew_lease("me", kNow + 50'000, kNow + 80'000));
}

TYPED_TEST(StoreContract, ReleaseGivesUpOnlyOurLease) {
    Store& s = this->store();
    s.release_lease("me");  // nothing held: nothing happens
    s.acquire_lease(lease("holder", "gw", 1, kNow));
    s.release_lease("me");
    EXPECT_EQ(this->h_.lease()->owner, "holder");
    s.release_lease("holder");
    EXPECT_FALSE(this->h_.lease());
    EXPECT_FALSE(s.renew_lease("holder", kNow + 1, kNow + 30'000));
    s.acquire_lease(lease("me", "gw", 7, kNow + 1));
    EXPECT_EQ(this->h_.lease()->owner, "me");
}

// ---- the wake handler ----

TYPED_TEST(StoreContract, TheWakeHandlerHearsOfNewAndRequeuedRecords) {
    std::vector<bool> heard;
    this->store().set_wake_handler([&](bool rescan) { heard.push_back(rescan); });
    const auto a = this->add();
    EXPECT_EQ(heard, std::vector<bool>{false});
    this->store().apply({dead(a, 3, "no", kNow)}, true);
    EXPECT_EQ(heard, std::vector<bool>{false}) << "the store's own writes wake nobody";
    this->h_.requeue(a);
    EXPECT_EQ(heard, (std::vector<bool>{false, true}));
    this->store().set_wake_handler({});
    this->add();
    EXPECT_EQ(heard, (std::vector<bool>{false, true}));
}

// ---- FakeStore's own switches (not part of the contract) ----

using Op = FakeStore::Op;

TEST(FakeStore, AnArmedCallThrowsTheGivenErrorThenWorks) {
    FakeStore s;
    s.add(Message::text("t", "x"));
    s.fail(Op::scan_pending, 2);
    EXPECT_TRUE(s.armed());
    EXPECT_EQ(s.scan_pending({}, 10).size(), 1u);
    try {
        s.scan_pending({}, 10);
        ADD_FAILURE() << "the second call did not throw";
    } catch (const StorageError& e) {
        EXPECT_TRUE(e.transient());
        EXPECT_EQ(e.code(), FakeStore::kBusyCode);
    }
    EXPECT_EQ(s.scan_pending({}, 10).size(), 1u);
    // armed() turns false only at the call after the last failing one (FaultyStore's rule,
    // kept as it was).
    EXPECT_FALSE(s.armed());
    EXPECT_EQ(s.calls(Op::scan_pending), 3);
    EXPECT_EQ(s.rows_scanned(), 2u);
}

TEST(FakeStore, FailAlwaysHoldsUntilCleared) {
    FakeStore s;
    const auto id = s.add(Message::text("t", "x"));
    s.fail_always(Op::apply);
    for (int i = 0; i < 3; ++i) {
        try {
            s.apply({delivered(id, kNow)}, false);
            ADD_FAILURE() << "apply went through";
        } catch (const StorageError& e) {
            EXPECT_FALSE(e.transient()) << "an I/O error by default";
        }
    }
    EXPECT_EQ(s.state_of(id), RecordState::pending);
    s.clear();
    s.apply({delivered(id, kNow)}, false);
    EXPECT_FALSE(s.record(id));
}

TEST(FakeStore, AFullDiskRefusesWritesAndServesReads) {
    FakeStore s;
    const auto id = s.add(Message::text("t", "x"));
    s.set_disk_full(true);
    try {
        s.apply({delivered(id, kNow)}, true);
        ADD_FAILURE() << "apply went through";
    } catch (const StorageError& e) {
        EXPECT_TRUE(e.transient());
        EXPECT_EQ(e.code(), FakeStore::kFullCode);
    }
    EXPECT_THROW(s.expire_due(kNow, {}), StorageError);
    EXPECT_THROW(s.clamp_retry_times(kNow, 0), StorageError);
    EXPECT_THROW(s.purge_delivered(kNow), StorageError);
    EXPECT_THROW(s.acquire_lease(lease("me", "gw", 7, kNow)), StorageError);
    EXPECT_THROW(s.renew_lease("me", kNow, kNow + 1), StorageError);
    EXPECT_EQ(s.scan_pending({}, 10).size(), 1u);
    EXPECT_EQ(s.load_pending({id}).records.size(), 1u);
    EXPECT_TRUE(s.has_pending());
    s.add(Message::text("t", "the app's side still adds"));
    s.set_disk_full(false);
    s.apply({delivered(id, kNow)}, true);
    EXPECT_EQ(s.state_of(id), RecordState::delivered);
}

TEST(FakeStore, ALeaseTakenByAnotherOwnerIsLost) {
    FakeStore s;
    s.acquire_lease(lease("me", "gw", 7, kNow));
    EXPECT_TRUE(s.renew_lease("me", kNow + 1, kNow + 30'000));
    const std::int64_t v = s.data_version();
    s.take_lease(lease("usurper", "other-host", 8, kNow + 2));
    EXPECT_NE(s.data_version(), v);
    EXPECT_FALSE(s.renew_lease("me", kNow + 3, kNow + 30'000));
    EXPECT_THROW(s.acquire_lease(lease("me", "gw", 7, kNow + 3)), LeaseHeld);
    EXPECT_EQ(s.lease()->owner, "usurper");
}

TEST(FakeStore, AnotherProcessesCommitMovesDataVersionAndWakesNobody) {
    FakeStore s;
    int woken = 0;
    s.set_wake_handler([&](bool) { ++woken; });
    EXPECT_TRUE(s.has_wake_handler());
    const std::int64_t v = s.data_version();
    const auto id = s.add(Message::text("t", "x"), kNow, FakeStore::Writer::other_process);
    EXPECT_EQ(woken, 0);
    EXPECT_NE(s.data_version(), v);
    s.apply({dead(id, 3, "no", kNow)}, true);
    EXPECT_EQ(s.requeue_all_dead(FakeStore::Writer::other_process), 1u);
    EXPECT_EQ(woken, 0);
    EXPECT_EQ(s.state_of(id), RecordState::pending);
    s.set_wake_handler({});
    EXPECT_FALSE(s.has_wake_handler());
}

// The test thread adds while a dispatcher thread drains: nothing lost, nothing twice.
TEST(FakeStore, AddsFromAnotherThreadMeetTheDispatchersCalls) {
    FakeStore s;
    std::atomic<int> woken{0};
    s.set_wake_handler([&](bool) { ++woken; });
    constexpr int kTotal = 2000;
    std::thread app([&] {
        for (int i = 0; i < kTotal; ++i) {
            s.add(Message::text("t", std::to_string(i)), kNow + i);
        }
    });
    std::set<std::int64_t> seen;
    std::size_t delivered_twice = 0;
    for (bool app_done = false;;) {
        const bool last_round = app_done;
        for (const PendingRef& r : s.scan_pending({}, 64)) {
            delivered_twice += seen.insert(r.id).second ? 0 : 1;
            s.apply({delivered(r.id, kNow)}, false);
        }
        if (last_round && !s.has_pending()) {
            break;
        }
        if (!app_done && s.last_id() == kTotal) {
            app.join();
            app_done = true;
        }
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(kTotal));
    EXPECT_EQ(delivered_twice, 0u);
    EXPECT_EQ(woken.load(), kTotal);
    EXPECT_EQ(s.size(), 0u);
}

// What the fake is for: a Dispatcher runs on it as on SqliteStore.
TEST(FakeStore, CarriesADispatcher) {
    FakeStore s;
    testing::FakeBroker broker;
    ManualClock clock(kNow);
    DispatcherOptions o;
    o.retry.jitter = 0;
    o.retry.initial_backoff = 1s;
    o.retry.max_attempts = 3;
    o.window = 4;
    Dispatcher d(s, broker, o, clock);
    for (int i = 0; i < 30; ++i) {
        Message m = Message::text("t/" + std::to_string(i), "x");
        m.key = "k" + std::to_string(i % 3);
        m.priority = i % 2;
        s.add(m, clock.wall_ms());
    }
    broker.reject_next(1);  // the first publish is refused once: a retry
    for (int i = 0; i < 200 && s.size() != 0; ++i) {
        d.run_once();
        clock.advance(200ms);
    }
    EXPECT_EQ(s.size(), 0u);
    EXPECT_EQ(d.stats().delivered, 30u);
    EXPECT_EQ(d.stats().retries, 1u);
    ASSERT_TRUE(s.lease());
    EXPECT_EQ(s.calls(FakeStore::Op::acquire_lease), 1);
    // First deliveries keep id order within a key and a priority.
    std::map<std::pair<std::string, int>, std::int64_t> last;
    std::set<std::int64_t> seen;
    for (const Record& r : broker.log()) {
        if (!seen.insert(r.id).second) {
            continue;
        }
        auto& prev = last[{*r.message.key, r.message.priority}];
        EXPECT_GT(r.id, prev) << "key " << *r.message.key;
        prev = r.id;
    }
    EXPECT_EQ(seen.size(), 30u);
}

TEST(FakeStore, ADispatcherLearnsItsLeaseWasTaken) {
    FakeStore s;
    testing::FakeBroker broker;
    ManualClock clock(kNow);
    DispatcherOptions o;
    std::vector<DispatchEvent::Kind> events;
    o.on_event = [&](const DispatchEvent& e) { events.push_back(e.kind); };
    Dispatcher d(s, broker, o, clock);
    s.add(Message::text("t", "before"), clock.wall_ms());
    d.run_once();
    d.run_once();
    EXPECT_EQ(s.size(), 0u);
    s.take_lease(lease("usurper", "other-host", 8, clock.wall_ms(), 3'600'000));
    s.add(Message::text("t", "after"), clock.wall_ms());
    for (int i = 0; i < 10; ++i) {
        clock.advance(o.lease_ttl / 2);
        d.run_once();
    }
    EXPECT_NE(std::find(events.begin(), events.end(), DispatchEvent::Kind::lease_lost),
              events.end());
    EXPECT_EQ(s.size(), 1u) << "nothing sent once the lease is gone";
    EXPECT_EQ(s.lease()->owner, "usurper");
}

TEST(FakeStore, AddValidatesLikeTheOutboxAndRequeueWantsADeadRecord) {
    FakeStore s;
    EXPECT_THROW(s.add(Message::text("a/+/b", "x")), InvalidMessage);
    EXPECT_EQ(s.size(), 0u);
    const auto id = s.add(Message::text("t", "x"), kNow);
    EXPECT_THROW(s.requeue(id), NotFound);
    EXPECT_THROW(s.requeue(id + 1), NotFound);
    EXPECT_THROW(s.mark_unreadable(id + 1), NotFound);
    const StoreCounts c = s.counts();
    EXPECT_EQ(c.pending, 1u);
    EXPECT_EQ(c.pending_bytes, 1u);
    EXPECT_EQ(c.oldest_pending_at, std::optional<std::int64_t>(kNow));
    EXPECT_EQ(s.ids(RecordState::pending), std::vector<std::int64_t>{id});
}

}  // namespace
}  // namespace outpost

// Private: the ledger of publishes not yet completed, the part of the MessageBroker contract
// "done is called exactly once" that does not depend on the protocol or the client library (no
// paho include). MqttBroker uses it; a second broker implementation can use it the same way.
//
// Exactly once. Every publish is entered with its callback and gets a sequence number. Whoever
// takes an entry out (take() or take_all()) is the only one who may call its callback, and
// nobody else can take it again: an answer that comes late, or twice, or after the connection
// was declared lost, finds its number gone and is dropped. The ledger, not the client library,
// decides what is outstanding.
//
// Threads and locks. The ledger has no lock of its own: it is guarded by a mutex the owner
// holds around every call except complete() and complete_all() (MqttBroker: Impl::mutex), so
// that the owner can change the ledger and its own connection state in one step (a loss
// clears the ledger and marks the connection down together). The owner calls
// - add() from the thread that publishes (the dispatcher's, one at a time);
// - take(), qos_of() and mark_sent() from any thread: the client library's threads (an
//   acknowledgement, a failed send) or the publishing thread (a publish refused at once);
// - take_all() from the thread that sees the connection go (a library thread on a loss, the
//   caller's thread in disconnect());
// - complete() and complete_all() after releasing that mutex, on the thread that took the
//   entries: callbacks never run with a lock held (they may call back into the broker).
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>

#include "outpost/broker.hpp"

namespace outpost::detail {

class PublishLedger {
  public:
    struct Entry {
        PublishCallback done;
        int qos = 0;
        // Handed to the client library (false while the owner holds it back, e.g. for the
        // server's receive maximum).
        bool sent = false;
    };
    // Entries by sequence number, as take_all() hands them over.
    using Batch = std::unordered_map<std::uint64_t, Entry>;

    // Owner's lock held. Enters a publish; returns its sequence number (never 0, increasing).
    std::uint64_t add(PublishCallback done, int qos, bool sent);

    // Owner's lock held. Takes publish `seq` out, or nullopt when it is not outstanding (it was
    // completed already). The caller then calls complete() on it, without the lock.
    std::optional<Entry> take(std::uint64_t seq);

    // Owner's lock held. Takes every outstanding publish out (a lost connection, a disconnect).
    Batch take_all();

    // Owner's lock held. The qos of publish `seq` while it is outstanding, else nullopt.
    std::optional<int> qos_of(std::uint64_t seq) const;

    // Owner's lock held. Marks publish `seq` as handed to the client library; false when it is
    // not outstanding any more (completed meanwhile).
    bool mark_sent(std::uint64_t seq);

    // Owner's lock held.
    bool empty() const { return outstanding_.empty(); }

    // Without the owner's lock. Calls the entry's callback (if any) with `result`; what the
    // callback throws reaches the caller.
    static void complete(Entry& entry, const PublishResult& result);

    // Without the owner's lock. Completes everything in `batch` in publish order (sequence
    // numbers), so the dispatcher sees losses in the order it published. Never throws: a
    // throwing callback must not starve the others.
    static void complete_all(Batch& batch, const PublishResult& result) noexcept;

  private:
    Batch outstanding_;
    std::uint64_t next_seq_ = 0;
};

}  // namespace outpost::detail

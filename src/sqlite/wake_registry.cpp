#include "wake_registry.hpp"

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace outpost::detail {

namespace {

struct Entry {
    std::uint64_t token;
    std::string path;
    std::function<void(bool)> wake;
};

struct Registry {
    std::mutex mutex;
    std::vector<Entry> entries;
    std::uint64_t next = 1;
    // Lets notify() skip the lock in the common case of no dispatcher in this process.
    std::atomic<std::size_t> count{0};
};

Registry& registry() {
    static Registry r;
    return r;
}

}  // namespace

std::uint64_t register_waker(const std::string& path, std::function<void(bool)> wake) {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    const std::uint64_t token = r.next++;
    r.entries.push_back({token, path, std::move(wake)});
    r.count = r.entries.size();
    return token;
}

void unregister_waker(std::uint64_t token) noexcept {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    std::erase_if(r.entries, [token](const Entry& e) { return e.token == token; });
    r.count = r.entries.size();
}

void notify_wakers(const std::string& path, bool rescan) noexcept {
    Registry& r = registry();
    if (r.count.load(std::memory_order_relaxed) == 0) {
        return;
    }
    std::lock_guard lock(r.mutex);
    for (const Entry& e : r.entries) {
        if (e.path == path) {
            e.wake(rescan);  // Dispatcher::wake(): a flag and a condition variable, never throws
        }
    }
}

}  // namespace outpost::detail

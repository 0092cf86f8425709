// Private: tells this process's dispatchers that records were committed to a database file.
//
// The Outbox's WAL hook runs after each commit on the app's connection; it calls notify() with
// the file's path, and every SqliteStore registered for that path wakes its dispatcher. Writers in
// other processes are found by polling PRAGMA data_version instead.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace outpost::detail {

// Registers `wake` for `path`; returns a token for unregister().
std::uint64_t register_waker(const std::string& path, std::function<void(bool rescan)> wake);
void unregister_waker(std::uint64_t token) noexcept;
// Calls every waker registered for `path`. `rescan`: records may have become pending behind the
// dispatcher's scan position (a requeue), not only after it (new records). Cheap when none is
// registered.
void notify_wakers(const std::string& path, bool rescan) noexcept;

}  // namespace outpost::detail

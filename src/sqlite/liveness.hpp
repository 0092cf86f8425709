// Private: whether the holder of a lease row is gone, one rule for SqliteStore (takeover) and
// Admin (`outpost stats`). Who this process is comes from this_process() (outpost/process.hpp).
#pragma once

#include <cstdint>
#include <string>

namespace outpost::detail {

// A holder on this host is gone when it ran in an earlier boot (a rebooted device can give the
// new process the old pid: the pid alone would keep the lease "alive" until it expires), or when
// its pid no longer exists. A holder on another host cannot be judged: false. `my_pid` is the
// asker's: a holder with the asker's pid in the same boot is the asker's process.
bool lease_holder_gone(const std::string& host, std::int64_t pid, const std::string& boot,
                       const std::string& my_host, std::int64_t my_pid);

}  // namespace outpost::detail

// Who this process is, as a dispatcher lease records it and as the liveness rule judges it: one
// answer for the Dispatcher (the lease it writes), SqliteStore and Admin (whether a lease's
// holder is gone) and the `outpost` tool (its default MQTT client id).
#pragma once

#include <cstdint>
#include <string>

namespace outpost {

struct ProcessIdentity {
    std::string host;      // gethostname(); "unknown" when it fails
    std::int64_t pid = 0;  // getpid()
    std::string boot_id;   // this boot of the kernel (/proc/sys/kernel/random/boot_id); "" where
                           // there is none
};

// This process. The host and the boot id are read once; the pid is asked each time (a forked
// child is another process). Thread-safe.
ProcessIdentity this_process();

}  // namespace outpost

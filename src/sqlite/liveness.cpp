#include "liveness.hpp"

#include <signal.h>

#include <cerrno>
#include <climits>
#include <fstream>

namespace outpost::detail {

const std::string& boot_id() {
    static const std::string id = [] {
        std::ifstream in("/proc/sys/kernel/random/boot_id");
        std::string line;
        std::getline(in, line);
        return line;
    }();
    return id;
}

bool lease_holder_gone(const std::string& host, std::int64_t pid, const std::string& boot,
                       const std::string& my_host, std::int64_t my_pid) {
    if (host != my_host) {
        return false;
    }
    if (!boot.empty() && !boot_id().empty() && boot != boot_id()) {
        return true;  // written before this boot: whoever has that pid now is someone else
    }
    if (pid == my_pid || pid <= 0 || pid > INT_MAX) {
        return false;
    }
    // EPERM: it exists, owned by another user.
    return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace outpost::detail

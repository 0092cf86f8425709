#include "liveness.hpp"

#include <signal.h>

#include <cerrno>
#include <climits>

#include "outpost/process.hpp"

namespace outpost::detail {

bool lease_holder_gone(const std::string& host, std::int64_t pid, const std::string& boot,
                       const std::string& my_host, std::int64_t my_pid) {
    if (host != my_host) {
        return false;
    }
    const std::string mine = this_process().boot_id;
    if (!boot.empty() && !mine.empty() && boot != mine) {
        return true;  // written before this boot: whoever has that pid now is someone else
    }
    if (pid == my_pid || pid <= 0 || pid > INT_MAX) {
        return false;
    }
    // EPERM: it exists, owned by another user.
    return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace outpost::detail

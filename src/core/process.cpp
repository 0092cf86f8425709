#include "outpost/process.hpp"

#include <unistd.h>

#include <array>
#include <fstream>

namespace outpost {

namespace {

std::string read_host_name() {
    std::array<char, 256> buf{};
    if (::gethostname(buf.data(), buf.size() - 1) != 0) {
        return "unknown";
    }
    return buf.data();
}

std::string read_boot_id() {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string line;
    std::getline(in, line);
    return line;
}

}  // namespace

ProcessIdentity this_process() {
    static const std::string host = read_host_name();
    static const std::string boot = read_boot_id();
    return {host, static_cast<std::int64_t>(::getpid()), boot};
}

}  // namespace outpost

#include "space.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

namespace outpost::detail {

namespace {
constexpr std::uint64_t kMinWalPages = 16;
constexpr std::uint64_t kMaxWalPages = 1000;  // SQLite's default auto-checkpoint
constexpr std::uint64_t kReserveMargin = 64 * 1024;
}  // namespace

DiskSpace disk_space(const std::string& db_path) {
    DiskSpace d;
    std::filesystem::path dir = std::filesystem::path(db_path).parent_path();
    if (dir.empty()) {
        dir = ".";
    }
    struct statvfs st {};
    if (::statvfs(dir.c_str(), &st) != 0) {
        return d;
    }
    d.total = static_cast<std::uint64_t>(st.f_blocks) * st.f_frsize;
    d.free = static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
    d.known = d.total != 0;
    return d;
}

int wal_limit_pages(std::uint64_t total, int page_size) {
    if (total == 0 || page_size <= 0) {
        return static_cast<int>(kMaxWalPages);
    }
    const std::uint64_t pages = total / 32 / static_cast<std::uint64_t>(page_size);
    return static_cast<int>(std::clamp(pages, kMinWalPages, kMaxWalPages));
}

std::uint64_t reserve_bytes(std::uint64_t wal_limit_bytes) {
    return 2 * wal_limit_bytes + kReserveMargin;
}

std::string reserve_path(const std::string& db_path) {
    return db_path + "-outpost-reserve";
}

bool make_reserve(const std::string& path, std::uint64_t bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return false;
    }
    // posix_fallocate allocates the blocks (where the file system cannot, glibc writes them),
    // so the space is really taken and really comes back when the file is deleted.
    const bool ok = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)) == 0 && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
        ::unlink(path.c_str());
    }
    return ok;
}

}  // namespace outpost::detail

// Testkit: a size-limited tmpfs on a fresh directory, for tests of a full partition. Mounting
// needs root (CI runs the suites as root); without it, or when the mount fails, mounted() is
// false and error() says why. Unmounted (lazily, so a file still open cannot keep it mounted)
// when the object goes, whatever happened in between.
#pragma once

#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "temp_dir.hpp"

namespace outpost::testing {

class Tmpfs {
  public:
    explicit Tmpfs(std::uint64_t bytes) : dir_(base_.file("mnt")) {
        if (::geteuid() != 0) {
            error_ = "mounting a tmpfs needs root (CI runs the suites as root)";
            return;
        }
        std::filesystem::create_directory(dir_);
        const std::string opts = "size=" + std::to_string(bytes) + ",mode=0700";
        if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
            error_ = "mount -t tmpfs -o " + opts + " " + dir_ + ": " + std::strerror(errno);
            return;
        }
        mounted_ = true;
    }
    ~Tmpfs() {
        if (mounted_) {
            ::umount2(dir_.c_str(), MNT_DETACH);
        }
    }
    Tmpfs(const Tmpfs&) = delete;
    Tmpfs& operator=(const Tmpfs&) = delete;

    bool mounted() const { return mounted_; }
    const std::string& error() const { return error_; }
    std::string file(const std::string& name) const { return dir_ + "/" + name; }
    // Bytes free on the partition, as statvfs says (0 when it cannot tell).
    std::uint64_t free_bytes() const {
        struct statvfs st {};
        return ::statvfs(dir_.c_str(), &st) == 0
                   ? static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize
                   : 0;
    }
    // What the directory holds, for failure messages.
    std::string listing() const {
        std::string out;
        for (const auto& e : std::filesystem::directory_iterator(dir_)) {
            out += e.path().filename().string() + " " + std::to_string(e.file_size()) + " B; ";
        }
        return out + "free " + std::to_string(free_bytes()) + " B";
    }

  private:
    TempDir base_;
    std::string dir_;
    bool mounted_ = false;
    std::string error_;
};

}  // namespace outpost::testing

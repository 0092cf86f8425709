// What the fuzz targets (fuzz_*.cpp) share: a reader that turns the fuzzer's bytes into values,
// the check that stops a run when a property breaks, and a private scratch directory.
//
// Each target is one LLVMFuzzerTestOneInput, built twice: with clang and libFuzzer
// (-Dfuzz=true, tools/run-fuzz.sh) to search, and with the normal GCC build into the replay
// test (replay_test.cpp), which feeds it every kept input. The properties a target checks are
// plain code (require), not only the sanitizers, so a kept crasher still fails under GCC.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace outpost::fuzz {

// Prints what broke and aborts: libFuzzer keeps the input, the replay test dies with it.
[[noreturn]] inline void fail(std::string_view what) {
    std::fprintf(stderr, "fuzz property broken: %.*s\n", static_cast<int>(what.size()),
                 what.data());
    std::abort();
}

inline void require(bool ok, std::string_view what) {
    if (!ok) {
        fail(what);
    }
}

// Reads values off the front of the input. Past its end every read gives zeros or empty
// strings, so any input is a valid one and a short input means small values.
class Bytes {
  public:
    Bytes(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}

    bool empty() const noexcept { return pos_ >= n_; }
    std::size_t left() const noexcept { return n_ - pos_; }

    std::uint8_t byte() noexcept { return pos_ < n_ ? p_[pos_++] : 0; }

    std::uint64_t u64(int bytes = 8) noexcept {
        std::uint64_t v = 0;
        for (int i = 0; i < bytes; ++i) {
            v |= static_cast<std::uint64_t>(byte()) << (8 * i);
        }
        return v;
    }
    std::int64_t i64() noexcept { return static_cast<std::int64_t>(u64()); }
    std::int32_t i32() noexcept { return static_cast<std::int32_t>(u64(4)); }

    // A string of up to 254 bytes (one length byte), or longer after a length byte of 255 (two
    // more length bytes): short strings cost the mutator one byte to resize.
    std::string str() {
        std::size_t len = byte();
        if (len == 255) {
            len = static_cast<std::size_t>(u64(2));
        }
        return take(len);
    }

    std::string take(std::size_t len) {
        len = len < left() ? len : left();
        std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
        pos_ += len;
        return s;
    }
    std::string rest() { return take(left()); }

  private:
    const std::uint8_t* p_;
    std::size_t n_;
    std::size_t pos_ = 0;
};

// A directory of this process's own under the temp directory (TMPDIR), made on first use and
// removed at exit (not after a crash: what it holds then is part of the story). The targets
// reuse their file names in it run after run.
inline const std::filesystem::path& scratch_dir() {
    struct Dir {
        std::filesystem::path path;
        Dir()
            : path(std::filesystem::temp_directory_path() /
                   ("outpost-fuzz-" + std::to_string(::getpid()))) {
            std::filesystem::create_directories(path);
        }
        ~Dir() {
            std::error_code ec;
            std::filesystem::remove_all(path, ec);
        }
    };
    static const Dir dir;
    return dir.path;
}

}  // namespace outpost::fuzz

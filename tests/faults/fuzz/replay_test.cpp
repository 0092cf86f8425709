// The replay of a fuzz target in the normal build: every input kept under seeds/TARGET/ and
// regressions/TARGET/ (the crashers found, fixed in the library, and a few inputs that reach
// far) is fed to the target's LLVMFuzzerTestOneInput, linked in from fuzz_TARGET.cpp. A broken
// property aborts the test binary (fuzz_support.hpp), so a fix undone fails here without clang.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> kept_inputs() {
    std::vector<fs::path> files;
    for (const char* kind : {"seeds", "regressions"}) {
        const fs::path dir = fs::path(OUTPOST_FUZZ_DIR) / kind / OUTPOST_FUZZ_TARGET;
        if (!fs::is_directory(dir)) {
            continue;
        }
        for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
            if (e.is_regular_file() && e.path().filename().string().front() != '.') {
                files.push_back(e.path());
            }
        }
    }
    std::sort(files.begin(), files.end());
    return files;
}

TEST(FuzzReplay, EveryKeptInput) {
    const std::vector<fs::path> files = kept_inputs();
    ASSERT_FALSE(files.empty()) << "no kept inputs for fuzz target " << OUTPOST_FUZZ_TARGET
                                << " under " << OUTPOST_FUZZ_DIR;
    for (const fs::path& f : files) {
        SCOPED_TRACE(f.string());
        std::ifstream in(f, std::ios::binary);
        ASSERT_TRUE(in) << "cannot read " << f;
        const std::string bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
        // A broken property aborts: the last line printed names the file.
        std::fprintf(stderr, "replaying %s (%zu bytes)\n", f.c_str(), bytes.size());
        EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                         bytes.size()),
                  0);
    }
    std::printf("fuzz %s: replayed %zu kept inputs\n", OUTPOST_FUZZ_TARGET, files.size());
}

}  // namespace

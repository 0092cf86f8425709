// Duration parsing and formatting of the outpost command.
#include "duration.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace outpost::cli {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, SingleUnits) {
    EXPECT_EQ(parse_duration("0s"), milliseconds(0));
    EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
    EXPECT_EQ(parse_duration("30s"), milliseconds(30'000));
    EXPECT_EQ(parse_duration("5m"), milliseconds(300'000));
    EXPECT_EQ(parse_duration("2h"), milliseconds(7'200'000));
    EXPECT_EQ(parse_duration("7d"), milliseconds(604'800'000));
    EXPECT_EQ(parse_duration("2w"), milliseconds(1'209'600'000));
}

TEST(ParseDuration, CompoundSums) {
    EXPECT_EQ(parse_duration("1h30m"), milliseconds(5'400'000));
    EXPECT_EQ(parse_duration("1d2h3m4s5ms"),
              milliseconds(86'400'000 + 7'200'000 + 180'000 + 4'000 + 5));
    EXPECT_EQ(parse_duration("1m1ms"), milliseconds(60'001));  // "ms" is not "m" + junk
}

TEST(ParseDuration, RejectsWithAMessage) {
    for (const char* bad :
         {"", "5", "s", "5x", "-5s", "+5s", "1.5h", " 5s", "5s ", "5 s", "5S", "5sec", "h1", "1h-",
          "99999999999999999999s", "9223372036854775807d", "9223372036854775807ms1ms"}) {
        SCOPED_TRACE(bad);
        try {
            parse_duration(bad);
            ADD_FAILURE() << "accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("invalid duration"), std::string::npos);
        }
    }
}

TEST(ParseDuration, LargestValueFits) {
    EXPECT_EQ(parse_duration("9223372036854775807ms").count(), 9223372036854775807LL);
}

TEST(FormatDuration, TwoLargestUnits) {
    EXPECT_EQ(format_duration(milliseconds(0)), "0s");
    EXPECT_EQ(format_duration(milliseconds(350)), "350ms");
    EXPECT_EQ(format_duration(milliseconds(45'000)), "45s");
    EXPECT_EQ(format_duration(milliseconds(45'900)), "45s");
    EXPECT_EQ(format_duration(milliseconds(7'500'000)), "2h 5m");
    EXPECT_EQ(format_duration(milliseconds(7'200'000)), "2h");
    EXPECT_EQ(format_duration(milliseconds(86'400'000 + 4'000)), "1d");
    EXPECT_EQ(format_duration(milliseconds(3 * 86'400'000LL + 4 * 3'600'000)), "3d 4h");
    EXPECT_EQ(format_duration(milliseconds(-90'000)), "-1m 30s");
}

TEST(FormatDuration, RoundTripsWholeUnits) {
    for (const char* text : {"30s", "5m", "2h", "7d"}) {
        EXPECT_EQ(format_duration(parse_duration(text)), text);
    }
}

}  // namespace
}  // namespace outpost::cli

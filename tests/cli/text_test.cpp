// Text helpers of the outpost command: payload rendering, base64, sizes, times, tables.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "table.hpp"
#include "text.hpp"

namespace outpost::cli {
namespace {

std::vector<std::byte> bytes(std::string_view s) {  // s may hold NULs: pass std::string
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    return {p, p + s.size()};
}

TEST(Printable, TextAndControls) {
    EXPECT_TRUE(is_printable_utf8(bytes("")));
    EXPECT_TRUE(is_printable_utf8(bytes("{\"t\": 21.5}\n\ttab\r\n")));
    EXPECT_TRUE(is_printable_utf8(bytes("Grüße, 温度, 🌡")));
    EXPECT_FALSE(is_printable_utf8(bytes(std::string("a\0b", 3))));
    EXPECT_FALSE(is_printable_utf8(bytes("bell\a")));
    EXPECT_FALSE(is_printable_utf8(bytes("del\x7f")));
    EXPECT_FALSE(is_printable_utf8(bytes("\xc2\x85")));          // C1 control U+0085
    EXPECT_FALSE(is_printable_utf8(bytes("\xff\xfe")));          // not UTF-8
    EXPECT_FALSE(is_printable_utf8(bytes("\xc0\xaf")));          // overlong
    EXPECT_FALSE(is_printable_utf8(bytes("\xed\xa0\x80")));      // surrogate
    EXPECT_FALSE(is_printable_utf8(bytes("\xe2\x82")));          // truncated
    EXPECT_FALSE(is_printable_utf8(bytes("\xf4\x90\x80\x80")));  // above U+10FFFF
}

TEST(Base64, Rfc4648Vectors) {
    EXPECT_EQ(base64_encode(bytes("")), "");
    EXPECT_EQ(base64_encode(bytes("f")), "Zg==");
    EXPECT_EQ(base64_encode(bytes("fo")), "Zm8=");
    EXPECT_EQ(base64_encode(bytes("foo")), "Zm9v");
    EXPECT_EQ(base64_encode(bytes("foob")), "Zm9vYg==");
    EXPECT_EQ(base64_encode(bytes("fooba")), "Zm9vYmE=");
    EXPECT_EQ(base64_encode(bytes("foobar")), "Zm9vYmFy");
    EXPECT_EQ(base64_encode(bytes(std::string("\xff\xfe\x00", 3))), "//4A");
}

TEST(Hex, PlainAndDump) {
    EXPECT_EQ(hex(bytes(std::string("\x00\x01\xab\xff", 4))), "0001abff");
    const std::string dump = hex_dump(bytes("0123456789abcdefXY\x01"));
    EXPECT_EQ(dump,
              "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n"
              "00000010  58 59 01                                          |XY.|\n");
}

TEST(FormatBytes, Units) {
    EXPECT_EQ(format_bytes(0), "0 B");
    EXPECT_EQ(format_bytes(1023), "1023 B");
    EXPECT_EQ(format_bytes(1536), "1.5 KiB");
    EXPECT_EQ(format_bytes(5ull << 20), "5.0 MiB");
}

TEST(FormatTime, Utc) {
    EXPECT_EQ(format_time(0), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(format_time(1'700'000'000'123), "2023-11-14T22:13:20.123Z");
    EXPECT_EQ(format_time(951'782'400'000), "2000-02-29T00:00:00.000Z");
    EXPECT_EQ(format_time(-1), "1969-12-31T23:59:59.999Z");
    EXPECT_EQ(format_time(4'102'444'800'000), "2100-01-01T00:00:00.000Z");  // past 2038
}

TEST(RedactUri, DropsUserInfo) {
    EXPECT_EQ(redact_uri("mqtts://user:secret@broker:8883"), "mqtts://broker:8883");
    EXPECT_EQ(redact_uri("tcp://broker:1883/path@x"), "tcp://broker:1883/path@x");
    EXPECT_EQ(redact_uri("u:p@host"), "host");
    EXPECT_EQ(redact_uri("mqtt://host"), "mqtt://host");
}

TEST(OneLine, ReplacesControls) {
    EXPECT_EQ(one_line("a\nb\tc\x1b"), "a?b?c?");
}

TEST(ShellWord, QuotesOnlyWhatAShellWouldSplitOrExpand) {
    EXPECT_EQ(shell_word("/var/lib/app/app.db"), "/var/lib/app/app.db");
    EXPECT_EQ(shell_word("d\xc3\xa4ta/app-1_2.db"), "d\xc3\xa4ta/app-1_2.db");
    EXPECT_EQ(shell_word("my app.db"), "'my app.db'");
    EXPECT_EQ(shell_word("it's.db"), "'it'\\''s.db'");
    EXPECT_EQ(shell_word("$HOME/*.db"), "'$HOME/*.db'");
    EXPECT_EQ(shell_word(""), "''");
    EXPECT_EQ(shell_word("a\nb"), "'a?b'");  // no control character reaches the terminal
}

TEST(Table, AlignsAndRightAlignsNumbers) {
    Table t({{"ID", true}, {"TOPIC"}, {"NOTE"}});
    t.add({"7", "a/ü", "x"});
    t.add({"12345", "long/topic", ""});
    std::ostringstream out;
    t.print(out);
    EXPECT_EQ(out.str(),
              "   ID  TOPIC       NOTE\n"
              "    7  a/ü         x\n"
              "12345  long/topic\n");
    EXPECT_THROW(t.add({"1", "2", "3", "4"}), std::invalid_argument);
}

}  // namespace
}  // namespace outpost::cli

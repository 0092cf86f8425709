// Text helpers of the `outpost` command: payload rendering, sizes, times.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace outpost::cli {

// True when `bytes` is valid UTF-8 without control characters other than tab, newline and
// carriage return (C0, DEL and C1 controls count as not printable).
bool is_printable_utf8(std::span<const std::byte> bytes) noexcept;

// Classic hex dump: offset, 16 bytes in hex, the printable ASCII beside them; one line each.
std::string hex_dump(std::span<const std::byte> bytes);
// Plain lower-case hex, no separators.
std::string hex(std::span<const std::byte> bytes);

// RFC 4648 base64 with padding.
std::string base64_encode(std::span<const std::byte> bytes);

// "512 B", "1.5 KiB", "3.2 MiB", "1.0 GiB".
std::string format_bytes(std::uint64_t bytes);

// ISO 8601 UTC with milliseconds, "2026-11-27T07:40:24.123Z", from wall milliseconds since the
// Unix epoch. Computed without time_t, which is 32-bit on some device ABIs.
std::string format_time(std::int64_t wall_ms);

// `text` made fit for one line of a table or an error message: control characters become '?'.
std::string one_line(std::string_view text);

// `word` as one word of a POSIX shell command line, for commands the tool suggests: as it is
// when it holds only characters no shell treats specially, otherwise in single quotes
// ('it'\''s'). Control characters become '?' (as in one_line()).
std::string shell_word(std::string_view word);

// `uri` with any user:password@ part removed ("mqtts://u:p@h:8883" -> "mqtts://h:8883").
std::string redact_uri(std::string_view uri);

}  // namespace outpost::cli

// Fuzz target: the stored-record and header decoders (src/sqlite/record_codec.*), what turns a
// row of a file that may be damaged or hand-edited into a Record.
//
// The first byte picks the decoder. Headers: the bytes are a `headers` blob; decode_headers()
// must either throw StorageError or give a list that encode_headers() turns back into exactly
// those bytes (the layout has one spelling per list). Rows: the bytes become the 17 values of a
// row (NULL, integer, real, text or blob each, as a damaged file may hold in any column),
// selected as `SELECT ?1, ..., ?17` from an in-memory database and read by read_record(), which
// must give a Record or a typed outpost::Error, and whose ttl must be expires_at - created_at.
#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "outpost/error.hpp"
#include "record_codec.hpp"

namespace {

using outpost::fuzz::require;

constexpr int kColumns = 17;  // kRecordColumns (schema.hpp)

void headers(const std::string& blob) {
    std::vector<outpost::Header> list;
    try {
        list = outpost::detail::decode_headers(blob.data(), blob.size());
    } catch (const outpost::StorageError&) {
        return;
    }
    const std::vector<unsigned char> again = outpost::detail::encode_headers(list);
    require(std::string(again.begin(), again.end()) == blob,
            "decode_headers() then encode_headers() changed the blob");
}

SQLite::Statement& row_statement() {
    static SQLite::Database db(":memory:");
    static SQLite::Statement q = [] {
        std::string sql = "SELECT ";
        for (int i = 1; i <= kColumns; ++i) {
            sql += (i > 1 ? ", ?" : "?") + std::to_string(i);
        }
        return SQLite::Statement(db, sql);
    }();
    return q;
}

void row(outpost::fuzz::Bytes& in) {
    SQLite::Statement& q = row_statement();
    q.reset();
    q.clearBindings();  // NULL in every column the input does not reach
    std::int64_t created_at = 0;
    std::optional<std::int64_t> expires_at;
    bool times_are_integers = true;
    for (int i = 1; i <= kColumns && !in.empty(); ++i) {
        const std::uint8_t type = in.byte() % 5;
        switch (type) {
            case 0:
                q.bind(i);
                break;
            case 1: {
                // Small integers mostly (states, qos, ids), the full range when asked.
                const std::uint8_t width = in.byte() % 9;
                std::int64_t v = static_cast<std::int64_t>(in.u64(width));
                if (width > 0 && width < 8 && (v >> (8 * width - 1)) != 0) {
                    v -= std::int64_t{1} << (8 * width);  // sign-extend
                }
                q.bind(i, static_cast<std::int64_t>(v));
                if (i == 12) {
                    created_at = v;
                } else if (i == 13) {
                    expires_at = v;
                }
                break;
            }
            case 2: {
                const std::int64_t bits = in.i64();
                double d;
                static_assert(sizeof d == sizeof bits);
                std::memcpy(&d, &bits, sizeof d);
                q.bind(i, d);
                times_are_integers = times_are_integers && i != 12 && i != 13;
                break;
            }
            case 3:
                q.bind(i, in.str());
                times_are_integers = times_are_integers && i != 12 && i != 13;
                break;
            case 4: {
                const std::string b = in.str();
                q.bind(i, b.data(), static_cast<int>(b.size()));
                times_are_integers = times_are_integers && i != 12 && i != 13;
                break;
            }
        }
    }
    require(q.executeStep(), "SELECT of bound values gives a row");
    outpost::Record r;
    try {
        r = outpost::detail::read_record(q);
    } catch (const outpost::Error&) {
        return;
    }
    if (times_are_integers) {
        require(r.created_at == created_at && r.expires_at == expires_at,
                "read_record() kept created_at and expires_at");
    }
    if (r.expires_at) {
        // Whatever the columns held, the Record agrees with itself.
        const __int128 ttl = static_cast<__int128>(*r.expires_at) - r.created_at;
        if (ttl >= INT64_MIN && ttl <= INT64_MAX) {
            require(r.message.ttl && r.message.ttl->count() == static_cast<std::int64_t>(ttl),
                    "read_record(): ttl is expires_at - created_at");
        } else {
            require(!r.message.ttl, "read_record(): no ttl when expires_at - created_at overflows");
        }
    } else {
        require(!r.message.ttl, "read_record(): no ttl without expires_at");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    outpost::fuzz::Bytes in(data, size);
    if (in.byte() % 2 == 0) {
        headers(in.rest());
    } else {
        row(in);
    }
    return 0;
}

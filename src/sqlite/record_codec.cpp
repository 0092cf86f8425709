// The outpost_records row codec: the column order a Record is read in, the header blob's byte
// layout (little-endian u32 length before each name and each value), and the state column read
// back into StoreCounts. A stored blob that does not parse is a StorageError, never a crash.
#include "record_codec.hpp"

#include <chrono>
#include <cstdint>
#include <string>

#include "outpost/error.hpp"
#include "record_state_sql.hpp"
#include "sqlite_error.hpp"

namespace outpost::detail {

StoreCounts count_records(SQLite::Database& db) {
    StoreCounts c;
    try {
        {  // finalized before the next statement: no read transaction spans both
            SQLite::Statement q(db,
                                "SELECT state, count(*), total(length(payload)), min(created_at) "
                                "FROM outpost_records GROUP BY state");
            while (q.executeStep()) {
                const auto n = static_cast<std::uint64_t>(q.getColumn(1).getInt64());
                const auto bytes = static_cast<std::uint64_t>(q.getColumn(2).getDouble());
                switch (state_from_stored(q.getColumn(0).getInt())) {
                    case RecordState::pending:
                        c.pending = n;
                        c.pending_bytes = bytes;
                        c.oldest_pending_at = q.getColumn(3).getInt64();
                        break;
                    case RecordState::delivered:
                        c.delivered = n;
                        c.delivered_bytes = bytes;
                        break;
                    case RecordState::dead:
                        c.dead = n;
                        c.dead_bytes = bytes;
                        break;
                    case RecordState::expired:
                        c.expired = n;
                        c.expired_bytes = bytes;
                        break;
                }
            }
        }
        SQLite::Statement dropped(
            db, "SELECT CAST(value AS INTEGER) FROM outpost_meta WHERE name = 'dropped'");
        if (dropped.executeStep()) {
            c.dropped = static_cast<std::uint64_t>(dropped.getColumn(0).getInt64());
        }
    } catch (const SQLite::Exception& e) {
        rethrow_sqlite(e, "counting outbox records");
    }
    return c;
}

Record read_record(SQLite::Statement& row) {
    Record r;
    r.id = row.getColumn(0).getInt64();
    r.uid = row.getColumn(1).getString();
    r.state = state_from_stored(row.getColumn(2).getInt());
    r.message.topic = row.getColumn(3).getString();
    {
        const SQLite::Column c = row.getColumn(4);
        const auto* p = static_cast<const std::byte*>(c.getBlob());
        r.message.payload.assign(p, p + c.getBytes());
    }
    if (!row.getColumn(5).isNull()) {
        r.message.key = row.getColumn(5).getString();
    }
    r.message.qos = row.getColumn(6).getInt();
    r.message.retain = row.getColumn(7).getInt() != 0;
    r.message.priority = row.getColumn(8).getInt();
    if (!row.getColumn(9).isNull()) {
        const SQLite::Column c = row.getColumn(9);
        r.message.headers = decode_headers(c.getBlob(), static_cast<std::size_t>(c.getBytes()));
    }
    if (!row.getColumn(10).isNull()) {
        r.message.content_type = row.getColumn(10).getString();
    }
    r.created_at = row.getColumn(11).getInt64();
    if (!row.getColumn(12).isNull()) {
        r.expires_at = row.getColumn(12).getInt64();
        // add() stores created_at + ttl, so the difference gives the ttl back; in a damaged or
        // hand-edited file it may not fit int64 (signed overflow): no ttl then, expires_at is
        // what expiry uses.
        std::int64_t ttl = 0;
        if (!__builtin_sub_overflow(*r.expires_at, r.created_at, &ttl)) {
            r.message.ttl = std::chrono::milliseconds(ttl);
        }
    }
    r.attempts = static_cast<std::uint32_t>(row.getColumn(13).getInt64());
    r.next_attempt_at = row.getColumn(14).getInt64();
    if (!row.getColumn(15).isNull()) {
        r.last_error = row.getColumn(15).getString();
    }
    if (!row.getColumn(16).isNull()) {
        r.done_at = row.getColumn(16).getInt64();
    }
    return r;
}

namespace {
void put_u32(std::vector<unsigned char>& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) {
        out.push_back(static_cast<unsigned char>(v >> (8 * i)));
    }
}
}  // namespace

std::vector<unsigned char> encode_headers(const std::vector<Header>& headers) {
    std::vector<unsigned char> out;
    for (const Header& h : headers) {
        for (const std::string* s : {&h.name, &h.value}) {
            put_u32(out, static_cast<std::uint32_t>(s->size()));
            out.insert(out.end(), s->begin(), s->end());
        }
    }
    return out;
}

std::vector<Header> decode_headers(const void* data, std::size_t size) {
    std::vector<Header> out;
    const auto* p = static_cast<const unsigned char*>(data);
    std::size_t pos = 0;
    auto take = [&](std::string& s) {
        if (size - pos < 4) {
            throw StorageError("a stored record has malformed headers", false, 0);
        }
        std::uint32_t n = 0;
        for (int i = 0; i < 4; ++i) {
            n |= static_cast<std::uint32_t>(p[pos + i]) << (8 * i);
        }
        pos += 4;
        if (size - pos < n) {
            throw StorageError("a stored record has malformed headers", false, 0);
        }
        s.assign(reinterpret_cast<const char*>(p + pos), n);
        pos += n;
    };
    while (pos < size) {
        Header h;
        take(h.name);
        take(h.value);
        out.push_back(std::move(h));
    }
    return out;
}

}  // namespace outpost::detail

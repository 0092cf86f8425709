#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <fstream>

#include "bench.hpp"
#include "outpost/outbox.hpp"

namespace outpost::bench {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

std::string payload_for(std::uint64_t i, std::size_t size) {
    std::string s = "{\"seq\":" + std::to_string(i) + ",\"pad\":\"";
    s.resize(size - 2, 'x');
    s += "\"}";
    return s;
}

void prefill(const std::string& path, std::uint64_t n, const std::string& topic) {
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA synchronous = OFF");  // set-up only; the scenarios choose their own
    Outbox outbox(db);
    const std::string body = payload_for(0);
    for (std::uint64_t done = 0; done < n;) {
        SQLite::Transaction tx(db);
        for (int k = 0; k < 10'000 && done < n; ++k, ++done) {
            outbox.add(Message::text(topic, body));
        }
        tx.commit();
    }
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

long peak_rss_kib() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmHWM:", 0) == 0) {
            return std::stol(line.substr(6));
        }
    }
    return -1;
}

}  // namespace outpost::bench

#include "poison_suspect.hpp"

namespace outpost::detail {

namespace {

using namespace std::chrono_literals;

// A publish lost with its connection within this time of being sent, with nothing sent after it
// acknowledged, is suspected of having made the broker drop the connection.
constexpr Clock::duration kSuspectWindow = 5s;

}  // namespace

void PoisonSuspect::note_lost(std::int64_t id, const Flight& f) {
    if (f.seq != 0 && (!first_loss_ || f.seq < first_loss_->flight.seq)) {
        first_loss_ = Lost{id, f};
    }
}

PoisonSuspect::Verdict PoisonSuspect::judge(Clock::time_point now, const FlightTable& flights) {
    Verdict v;
    std::optional<Lost> s;
    s.swap(first_loss_);
    if (!s || now - s->flight.sent_at > kSuspectWindow || flights.acked_seq() > s->flight.seq) {
        return v;  // not right after a publish
    }
    if (s->id != id_) {
        v.released = std::move(held_);
        held_.reset();
        id_ = s->id;
        proven_ = false;
        return v;
    }
    if (!s->flight.alone || !(s->flight.after_ack || proven_) || flights.contains(s->id)) {
        return v;  // suspected again, but no evidence yet
    }
    proven_ = true;
    v.proven = s->flight.ref;
    return v;
}

bool PoisonSuspect::blocks(const FlightTable& flights) const {
    if (id_ == 0) {
        return false;
    }
    const Flight* f = flights.find(id_);
    if (f != nullptr && f->alone && !f->outcome) {
        return true;
    }
    return held_ && (flights.acked_seq() > 0 || proven_) && flights.sent() > 0;
}

std::optional<PendingRef> PoisonSuspect::take_ready(const FlightTable& flights) {
    if (!held_ || !(flights.acked_seq() > 0 || proven_)) {
        return std::nullopt;
    }
    return take_held();
}

std::optional<PendingRef> PoisonSuspect::take_held() {
    std::optional<PendingRef> r;
    r.swap(held_);
    return r;
}

void PoisonSuspect::settled(const Outcome& o) {
    if (o.id == id_ && o.kind != Outcome::Kind::retry) {
        id_ = 0;
        proven_ = false;
    }
}

}  // namespace outpost::detail

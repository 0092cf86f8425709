// OutboxOptions: the capture side's settings and the message limits they give validate().
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "outpost/error.hpp"
#include "outpost/outbox.hpp"
#include "validation_support.hpp"

using outpost::InvalidMessage;
using outpost::Message;

using outpost::testing::error_of;
using outpost::testing::FieldAndText;
using outpost::testing::invalid_config_of;

namespace {

Message ok() {
    return Message::text("site/1/temp", "21.5");
}

}  // namespace

TEST(Validate, PayloadLimitFollowsTheOptions) {
    outpost::OutboxOptions o;
    o.max_payload_bytes = 10;
    Message m = ok();
    m.payload.resize(10);
    EXPECT_EQ(error_of(m, o), "");
    m.payload.resize(11);
    EXPECT_NE(error_of(m, o), "");
    o.max_payload_bytes = 268435456;  // beyond MQTT's limit
    EXPECT_THROW(o.validate(), outpost::InvalidConfig);
}

TEST(Validate, DropOldestNeedsAQuota) {
    outpost::OutboxOptions o;
    o.when_full = outpost::WhenFull::drop_oldest;
    try {
        o.validate();
        FAIL() << "drop_oldest without max_pending was accepted";
    } catch (const outpost::InvalidConfig& e) {
        EXPECT_NE(std::string(e.what()).find("when_full"), std::string::npos) << e.what();
    }
    o.max_pending = 100;
    EXPECT_NO_THROW(o.validate());
    o.max_pending = 0;
    o.max_pending_bytes = 1 << 20;
    EXPECT_NO_THROW(o.validate());
}

TEST(InvalidConfigField, OutboxOptionsNamesTheFieldAtFaultAndKeepsTheText) {
    outpost::OutboxOptions outbox;
    outbox.max_payload_bytes = 268435456;
    EXPECT_EQ(invalid_config_of(outbox),
              (FieldAndText{
                  "max_payload_bytes",
                  "OutboxOptions::max_payload_bytes is 268435456; MQTT carries at most 268435455 "
                  "bytes"}));
    outbox = {};
    outbox.when_full = outpost::WhenFull::drop_oldest;
    EXPECT_EQ(invalid_config_of(outbox).first, "when_full");
}

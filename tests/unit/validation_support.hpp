// Test support for the validation tests (core: validate_test.cpp; SQLite side:
// outbox_options_test.cpp): the error a message or an options struct is refused with.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "outpost/error.hpp"
#include "outpost/message.hpp"

namespace outpost::testing {

// The error text of validate(m, limits) (MessageLimits, or an Outbox's OutboxOptions), or ""
// when it passes.
template <typename Limits = MessageLimits>
std::string error_of(const Message& m, const Limits& limits = {}) {
    try {
        validate(m, limits);
        return "";
    } catch (const InvalidMessage& e) {
        return e.what();
    }
}

// The field() and the text an options struct's validate() is refused with.
using FieldAndText = std::pair<std::string, std::string>;
template <typename Options>
FieldAndText invalid_config_of(const Options& o) {
    try {
        o.validate();
    } catch (const InvalidConfig& e) {
        return {e.field(), e.what()};
    }
    ADD_FAILURE() << "validate() accepted the options";
    return {};
}

}  // namespace outpost::testing

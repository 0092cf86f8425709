// outpost: the whole public API.
#pragma once

#include "outpost/admin.hpp"
#include "outpost/broker.hpp"
#include "outpost/clock.hpp"
#include "outpost/dispatcher.hpp"
#include "outpost/error.hpp"
#include "outpost/message.hpp"
#include "outpost/outbox.hpp"
#include "outpost/process.hpp"
#include "outpost/retry_policy.hpp"
#include "outpost/sqlite_store.hpp"
#include "outpost/store.hpp"

// SPDX-License-Identifier: Apache-2.0
// nsimad's counters in the Prometheus text exposition format (0.0.4), from a `status` answer:
// what `nsimactl metrics` prints and what the opt-in loopback listener serves.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace nsima::control {

// Every family has HELP and TYPE, counters end in _total, per-hook / per-namespace / per-queue
// values are labelled.
std::string metrics_text(const nlohmann::json& status);

}  // namespace nsima::control

// SPDX-License-Identifier: Apache-2.0
// Control requests -> pipeline operations. Each handler validates its fields and answers with
// one sentence naming the bad field on error.
#pragma once

#include <functional>

#include <nlohmann/json.hpp>

#include "capture/bpf_maps.h"
#include "capture/event_source.h"
#include "control/connection.h"
#include "ns/pipeline.h"

namespace nsima::control {

struct DaemonContext {
  ns::Pipeline* pipeline = nullptr;
  capture::BpfMaps* maps = nullptr;
  capture::EventSource* events = nullptr;
  std::function<bool()> stopping;  // true once nsimad shuts down (ends streams)
};

void handle_request(DaemonContext& ctx, const nlohmann::json& req, Connection& conn);

}  // namespace nsima::control

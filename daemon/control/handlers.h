// SPDX-License-Identifier: Apache-2.0
// Control requests -> pipeline operations. handle_request() checks the request against its
// command's schema first (control/schema.h: an error names the field), so the handlers read
// fields of known types; operation errors are answered as one sentence with their place.
#pragma once

#include <functional>

#include <nlohmann/json.hpp>

#include "capture/bpf_maps.h"
#include "capture/event_source.h"
#include "capture/protect.h"
#include "control/connection.h"
#include "ns/pipeline.h"

namespace nsima::control {

struct DaemonContext {
  ns::Pipeline* pipeline = nullptr;
  capture::BpfMaps* maps = nullptr;
  capture::EventSource* events = nullptr;
  std::function<bool()> stopping;  // true once nsimad shuts down (ends streams)
  // The policy `ns_create` gives a namespace when the request names none ([container] policy,
  // else [container] builtin); both empty: such a namespace has no policy.
  std::string default_policy_file, default_builtin;
  // Self-protection's sets (null: not running, e.g. in tests): shown in `status`.
  capture::Protector* protector = nullptr;
  confine::Parser* parser = nullptr;  // the confined parser's pool (status: its counters)
};

void handle_request(DaemonContext& ctx, const nlohmann::json& req, Connection& conn);
// The `status` answer (counters, namespaces, warnings): also what the metrics listener renders.
Result<nlohmann::json> status_answer(DaemonContext& ctx);

}  // namespace nsima::control

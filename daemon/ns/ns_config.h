// SPDX-License-Identifier: Apache-2.0
// What nsimad keeps of a namespace across restarts: <state_dir>/ns/<name>/ns.json next to the
// namespace's measurement list. Written atomically (temp file + rename).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace nsima::ns {

// How long nsimad waits for an external model agent's verdict (ns create --model-agent-timeout):
// the default, and the most a namespace may ask (a verdict past it is the fail mode's).
inline constexpr uint32_t kDefaultAgentTimeoutMs = 2000;
inline constexpr uint32_t kMaxAgentTimeoutMs = 60000;

struct NsConfig {
  std::string name;    // "host" or the decimal id
  uint32_t id = 0;     // BPF ns_id
  std::string cgroup;  // absolute cgroup v2 directory
  bool vtpm = false;   // owns a vTPM (PCR 10 of its own swtpm)
  std::string policy_origin;  // "builtin:tcb", a file path, or "" (no policy)
  std::string policy_text;
  std::string boot_id;  // /proc/sys/kernel/random/boot_id when the list was started
  uint64_t drops_seen = 0;  // lost events (BPF ns_drops) already recorded as violations
  // host only: hook counters already recorded as host violations (they persist with the pins)
  uint64_t unresolved_seen = 0, unattributed_drops_seen = 0;
  std::string appraise = "enforce";  // ima_appraise= of this namespace: enforce | log | off
  std::string container = "";  // the OCI container id it was made for ("": none; common/container_id.h)
  // Workload model (daemon/model/): "" = not modeled, else learn | seal | enforce. Its points
  // are kept in <ns dir>/model (a model file, docs/model-encoding.md) next to ns.json.
  std::string model_mode{};
  // An external modeling agent (docs/model-agent-protocol.md) that decides instead of nsimad's
  // model: its socket ("" = none) and what a missing verdict means: closed | open.
  std::string model_agent{};
  std::string model_agent_fail{};
  // ms nsimad waits for each agent verdict (0: kDefaultAgentTimeoutMs); 1..kMaxAgentTimeoutMs
  uint32_t model_agent_timeout_ms = 0;
  uint32_t agent_timeout_ms() const {
    return model_agent_timeout_ms ? model_agent_timeout_ms : kDefaultAgentTimeoutMs;
  }
  // Events the model missed (ring buffer full), counted since the model began (learn from
  // nothing, or load): the model hooks' (BPF model_drops) and the file hooks' (ns_drops), and
  // the model_drops value already counted.
  uint64_t model_lost_events = 0, model_lost_file_events = 0, model_drops_seen = 0;
  // ima_template= and ima_hash= of this namespace's list, fixed at creation ("": nsimad's
  // --template / --hash, for namespaces made before these were kept).
  std::string template_name{}, hash{};
};

std::string ns_dir(const std::string& state_dir, const std::string& name);
Result<void> save_ns_config(const std::string& state_dir, const NsConfig& cfg);
// Every ns.json under <state_dir>/ns; unreadable ones are reported and skipped.
std::vector<NsConfig> load_ns_configs(const std::string& state_dir);
Result<void> remove_ns_config(const std::string& state_dir, const std::string& name);
// Moves <state_dir>/ns/<name> aside to <state_dir>/archive/<name>.<suffix> (a list that can no
// longer be continued: new boot, reset vTPM, deleted namespace). Returns the new path.
Result<std::string> archive_ns_dir(const std::string& state_dir, const std::string& name,
                                   const std::string& suffix);
std::string current_boot_id();

}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
// Model events from the BPF side (include/nsima/model_abi.h) into the model's terms: the
// process keys, the COE, and the CELL of docs/model-encoding.md (the sockaddr bytes become the
// family's address fields; task targets become their TASK_ID, which only nsimad knows). Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/result.h"
#include "model/coefficient.h"
#include "model/model.h"
#include "nsima/model_abi.h"

namespace nsima::model {

struct ModelEvent {
  uint32_t hook = 0;  // NSIMA_MHOOK_*
  uint32_t flags = 0;
  uint64_t ktime_ns = 0;
  uint32_t ns_id = 0;
  uint32_t pid = 0;
  ProcKey proc, parent, target;
  uint32_t target_ns = 0;
  Coe coe;
  std::string comm;
  nsima_model_event raw{};
};

// EINVAL for a record that is not one nsima_model_event or has an unknown hook.
Result<ModelEvent> decode_model_event(std::span<const uint8_t> record);

// The model event type of a hook; nullopt for lineage hooks (fork, exit), which have none.
std::optional<EventType> model_event_type(uint32_t hook);

// The CELL of a decoded event; `target_task_id` is the TASK_ID of ev.target (ptrace, kill).
Result<Cell> model_cell(const ModelEvent& ev, const Digest& target_task_id);

// socket_connect / socket_bind: the address part from the sockaddr bytes (family first).
SocketAddrCell sockaddr_cell(uint32_t socket_family, uint32_t type, uint32_t protocol,
                             std::span<const uint8_t> sockaddr);

ProcKey proc_key(const nsima_proc_key& k);
Coe coe_of(const nsima_model_cred& c);

}  // namespace nsima::model

// SPDX-License-Identifier: Apache-2.0
// The external modeling agent protocol, version 1 (docs/model-agent-protocol.md): JSON lines
// over a unix stream socket. Encoding and decoding of every message, shared by nsimad's client
// and the reference agent. Decoding errors name the message type and field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"
#include "model/coefficient.h"
#include "model/model.h"

namespace nsima::model::agent {

inline constexpr int kProtocolVersion = 1;
inline constexpr size_t kMaxLine = 65536;  // bytes, newline included

struct Hello {  // nsimad -> agent
  std::vector<int> protocols{kProtocolVersion};
  uint32_t ns = 0;
  Mode mode = Mode::kEnforce;
};
struct HelloReply {  // agent -> nsimad
  int protocol = kProtocolVersion;
  std::string agent;
  uint64_t points = 0;
  Digest state{};
};
struct Fork {
  uint64_t seq = 0;
  ProcKey parent, child;
};
struct Exit {
  uint64_t seq = 0;
  ProcKey proc;
};
// One event. For ptrace_access_check, ptrace_traceme and task_kill the wire carries the other
// task's process key (`target`); the Digest in `cell` is filled by whoever holds the TASK_IDs.
struct Event {
  uint64_t seq = 0;
  EventType type = EventType::kFileOpen;
  ProcKey proc;
  Coe coe;
  Cell cell;
  std::optional<ProcKey> target;
  std::optional<Digest> coefficient;  // the sender's computation, informational
  std::string description;
};
struct Verdict {
  uint64_t seq = 0;
  bool allow = true;
  bool known = false;
  bool untrusted = false;
  std::optional<Digest> coefficient;
  std::string reason;
};
struct ErrorMessage {
  std::optional<uint64_t> seq;
  std::string message;
};

using Message = std::variant<Hello, HelloReply, Fork, Exit, Event, Verdict, ErrorMessage>;

// One line, '\n' included.
std::string encode(const Message& m);
// EINVAL naming the message and the field ("event.cell.path: expected a string").
Result<Message> decode(std::string_view line);

// Whether the event's cell names another task (its `target` key is required on the wire).
bool has_task_target(EventType type);

}  // namespace nsima::model::agent

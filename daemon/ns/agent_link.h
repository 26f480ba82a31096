// SPDX-License-Identifier: Apache-2.0
// A modeled namespace that delegates to an external modeling agent (docs/model-agent-protocol.md,
// `ns create --model-agent SOCKET`): its own queue, thread and connection, so a slow or dead
// agent delays only this namespace's verdicts, never the pipeline thread or another namespace.
// Events and lineage are queued by the pipeline thread (never blocking: a full queue is a
// failure verdict); the worker sends them in order and hands each verdict back through
// `on_verdict` (called on the worker thread: the owner posts it to the pipeline thread). When
// the agent does not answer in time, is down or breaks the protocol, the namespace's fail mode
// decides (agent::failure_verdict): closed = the process is untrusted, open = allowed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "model/agent/agent.h"
#include "model/agent/protocol.h"

namespace nsima::ns {

struct AgentLinkOptions {
  std::string socket;
  model::agent::FailMode fail = model::agent::FailMode::kClosed;
  uint32_t ns_id = 0;
  model::Mode mode = model::Mode::kEnforce;
  uid_t agent_uid = 0;
  std::chrono::milliseconds timeout{2000};  // per verdict (hello: 5x)
  size_t queue_capacity = 4096;
};

class AgentLink {
 public:
  // proc, verdict (from the agent, or the fail mode's)
  using OnVerdict = std::function<void(const model::ProcKey&, const model::agent::Verdict&)>;
  AgentLink(AgentLinkOptions o, OnVerdict on_verdict);
  ~AgentLink();
  AgentLink(const AgentLink&) = delete;
  AgentLink& operator=(const AgentLink&) = delete;

  void submit(model::agent::Message m);  // Fork, Exit or Event; never blocks
  void set_mode(model::Mode m);

  struct Stats {
    uint64_t sent = 0, verdicts = 0, failures = 0, queue_full = 0, connects = 0;
    bool connected = false;
    std::string last_error;
  };
  Stats stats() const;

 private:
  void run();
  void fail(const model::agent::Message& m, const Error& e);

  AgentLinkOptions o_;
  OnVerdict on_verdict_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<model::agent::Message> q_;
  bool stop_ = false;
  Stats stats_;
  uint64_t seq_ = 0;
  std::thread thread_;
};

}  // namespace nsima::ns

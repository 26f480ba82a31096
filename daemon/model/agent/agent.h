// SPDX-License-Identifier: Apache-2.0
// The reference modeling agent (docs/model-agent-protocol.md) and nsimad's side of the
// connection.
//   ModelAgent   the agent's logic: protocol lines in, lines out, decisions by a Modeler over
//                a saved model (the same code as nsimad's built-in model); every decision is
//                logged as one JSON line.
//   serve_agent  one connection: SO_PEERCRED check, then lines until EOF or a protocol error.
//   AgentClient  nsimad's end: hello, lineage notifications, one verdict per event within a
//                deadline (non-blocking socket, poll), never blocking past it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "model/agent/protocol.h"
#include "model/model.h"

namespace nsima::model::agent {

using LogFn = std::function<void(std::string_view json_line)>;

class ModelAgent {
 public:
  explicit ModelAgent(Modeler modeler, std::string name = "nsima-model-agent", LogFn log = {});

  // One line received; returns the lines to send (hello reply, verdict, error). After an error
  // line, done() is true and the connection must be closed.
  std::vector<std::string> handle(std::string_view line);
  bool done() const { return done_; }
  // A new connection: hello again; the model and the lineage it learned stay.
  void new_session();

  const Modeler& modeler() const { return modeler_; }
  uint64_t mismatches() const { return mismatches_; }

 private:
  std::vector<std::string> fail(std::optional<uint64_t> seq, std::string message);
  std::vector<std::string> on_event(Event& e);
  Result<void> check_seq(uint64_t seq);

  Modeler modeler_;
  std::string name_;
  LogFn log_;
  bool hello_ = false;
  bool done_ = false;
  uint64_t last_seq_ = 0;
  uint64_t mismatches_ = 0;
};

// The peer's credentials; EPERM (naming uid and pid) unless its uid is `expected_uid`.
Result<void> check_peer(int fd, uid_t expected_uid, std::string_view who);

// Serves one connection until EOF (ok) or a protocol or I/O error (returned).
Result<void> serve_agent(int fd, ModelAgent& agent, uid_t allowed_uid);

enum class FailMode { kClosed, kOpen };
std::string_view fail_mode_name(FailMode mode);

// What nsimad decides when the agent does not answer (timeout, down, protocol error).
Verdict failure_verdict(FailMode mode, uint64_t seq, const Error& cause);

class AgentClient {
 public:
  static Result<AgentClient> connect(const std::string& path, uid_t agent_uid);
  // An already connected socket (socketpair in tests); checks the peer like connect().
  static Result<AgentClient> adopt(UniqueFd fd, uid_t agent_uid);

  Result<HelloReply> hello(const Hello& h, std::chrono::milliseconds timeout);
  Result<void> notify(const Message& fork_or_exit, std::chrono::milliseconds timeout);
  // ETIMEDOUT: no verdict in time (the connection stays; a late verdict is dropped later).
  // EPIPE: the agent is gone. EPROTO: it broke the protocol. After EPIPE/EPROTO every call
  // fails at once (EPIPE) without touching the socket.
  Result<Verdict> judge(const Event& e, std::chrono::milliseconds timeout);

  bool connected() const { return !broken_; }
  uint64_t late_verdicts() const { return late_; }

 private:
  explicit AgentClient(UniqueFd fd) : fd_(std::move(fd)) {}
  using Deadline = std::chrono::steady_clock::time_point;
  Result<void> send_line(const std::string& line, Deadline deadline);
  Result<Message> receive(Deadline deadline);
  tl::unexpected<Error> broken(int code, std::string message);

  UniqueFd fd_;
  std::string buf_;
  bool broken_ = false;
  uint64_t late_ = 0;
};

}  // namespace nsima::model::agent

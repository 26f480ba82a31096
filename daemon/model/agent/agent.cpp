// SPDX-License-Identifier: Apache-2.0
#include "model/agent/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/hex.h"

namespace nsima::model::agent {

// ---------------------------------------------------------------- ModelAgent

ModelAgent::ModelAgent(Modeler modeler, std::string name, LogFn log)
    : modeler_(std::move(modeler)), name_(std::move(name)), log_(std::move(log)) {}

void ModelAgent::new_session() {
  hello_ = false;
  done_ = false;
  last_seq_ = 0;
}

std::vector<std::string> ModelAgent::fail(std::optional<uint64_t> seq, std::string message) {
  done_ = true;
  if (log_) log_(nlohmann::json{{"error", message}}.dump());
  return {encode(ErrorMessage{seq, std::move(message)})};
}

Result<void> ModelAgent::check_seq(uint64_t seq) {
  if (seq <= last_seq_)
    return make_error(EPROTO, "seq " + std::to_string(seq) + " after " + std::to_string(last_seq_));
  last_seq_ = seq;
  return {};
}

std::vector<std::string> ModelAgent::on_event(Event& e) {
  if (has_task_target(e.type) && e.target) {
    Digest t = modeler_.task_id_of(*e.target);
    if (auto* p = std::get_if<PtraceCell>(&e.cell)) p->target = t;
    if (auto* p = std::get_if<TracemeCell>(&e.cell)) p->tracer = t;
    if (auto* p = std::get_if<KillCell>(&e.cell)) p->target = t;
  }
  Decision d;
  if (e.type == EventType::kBprmCommittedCreds) {
    auto* exe = std::get_if<FileCell>(&e.cell);
    if (!exe) return fail(e.seq, "an exec event needs the executable's file cell");
    d = modeler_.exec(e.proc, e.coe, *exe, e.description);
  } else {
    auto r = modeler_.event(e.proc, e.type, e.coe, e.cell, e.description);
    if (!r) return fail(e.seq, r.error().to_string());
    d = *r;
  }
  Verdict v{e.seq, !d.deny, d.known, d.untrusted, d.coefficient, {}};
  if (e.coefficient && *e.coefficient != d.coefficient) {
    ++mismatches_;
    v.reason = "coefficient mismatch (the sender computed " + to_hex(*e.coefficient) + ")";
  } else if (d.newly_untrusted) {
    v.reason = "unknown coefficient: the process is untrusted from here";
  } else if (d.forensic) {
    v.reason = "unknown coefficient (forensics)";
  }
  if (log_) {
    log_(nlohmann::json{{"seq", e.seq},
                        {"event", std::string(event_name(e.type))},
                        {"tgid", e.proc.tgid},
                        {"start", std::to_string(e.proc.start)},
                        {"coefficient", to_hex(d.coefficient)},
                        {"known", d.known},
                        {"verdict", v.allow ? "allow" : "deny"},
                        {"untrusted", d.untrusted},
                        {"description", e.description}}
             .dump());
  }
  return {encode(v)};
}

std::vector<std::string> ModelAgent::handle(std::string_view line) {
  if (done_) return {};
  auto m = decode(line);
  if (!m) return fail(std::nullopt, m.error().message);
  if (!hello_) {
    auto* h = std::get_if<Hello>(&*m);
    if (!h) return fail(std::nullopt, "expected hello first");
    bool v1 = false;
    for (int p : h->protocols) v1 = v1 || p == kProtocolVersion;
    if (!v1) return fail(std::nullopt, "no common protocol version (this agent speaks 1)");
    if (auto r = modeler_.model().set_mode(h->mode); !r)
      return fail(std::nullopt, "mode " + std::string(mode_name(h->mode)) + " refused: " +
                                    r.error().message);
    hello_ = true;
    const Model& model = modeler_.model();
    return {encode(HelloReply{kProtocolVersion, name_, model.known_count(), model.state()})};
  }
  return std::visit(
      [&](auto& msg) -> std::vector<std::string> {
        using M = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<M, Fork>) {
          if (auto r = check_seq(msg.seq); !r) return fail(msg.seq, r.error().message);
          modeler_.fork(msg.parent, msg.child);
          return {};
        } else if constexpr (std::is_same_v<M, Exit>) {
          if (auto r = check_seq(msg.seq); !r) return fail(msg.seq, r.error().message);
          modeler_.exit(msg.proc);
          return {};
        } else if constexpr (std::is_same_v<M, Event>) {
          if (auto r = check_seq(msg.seq); !r) return fail(msg.seq, r.error().message);
          return on_event(msg);
        } else if constexpr (std::is_same_v<M, ErrorMessage>) {
          done_ = true;
          return {};
        } else {
          return fail(std::nullopt, "unexpected message from nsimad");
        }
      },
      *m);
}

// ---------------------------------------------------------------- sockets

Result<void> check_peer(int fd, uid_t expected_uid, std::string_view who) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return make_error(errno, std::string("SO_PEERCRED: ") + std::strerror(errno), std::string(who));
  if (cred.uid != expected_uid)
    return make_error(EPERM,
                      "peer uid " + std::to_string(cred.uid) + " (pid " + std::to_string(cred.pid) +
                          "), expected " + std::to_string(expected_uid),
                      std::string(who));
  return {};
}

namespace {

Result<void> write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(errno, std::strerror(errno), "agent socket");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace

Result<void> serve_agent(int fd, ModelAgent& agent, uid_t allowed_uid) {
  if (auto r = check_peer(fd, allowed_uid, "nsimad peer"); !r) {
    (void)write_all(fd, encode(ErrorMessage{std::nullopt, r.error().message}));
    return r;
  }
  agent.new_session();
  std::string buf;
  char chunk[16384];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(errno, std::strerror(errno), "agent socket");
    if (n == 0) return {};  // nsimad closed
    buf.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      for (const auto& out : agent.handle(std::string_view(buf).substr(start, nl - start + 1)))
        if (auto w = write_all(fd, out); !w) return w;
      if (agent.done()) return make_error(EPROTO, "protocol error: connection closed");
    }
    buf.erase(0, start);
    if (buf.size() >= kMaxLine) {
      (void)write_all(fd, encode(ErrorMessage{std::nullopt, "line too long"}));
      return make_error(EPROTO, "line longer than " + std::to_string(kMaxLine) + " bytes");
    }
  }
}

std::string_view fail_mode_name(FailMode mode) {
  return mode == FailMode::kClosed ? "fail-closed" : "fail-open";
}

Verdict failure_verdict(FailMode mode, uint64_t seq, const Error& cause) {
  std::string why = cause.code == ETIMEDOUT ? "agent-timeout"
                    : cause.code == EPROTO  ? "agent-protocol"
                                            : "agent-down";
  Verdict v;
  v.seq = seq;
  v.allow = mode == FailMode::kOpen;
  v.untrusted = mode == FailMode::kClosed;
  v.reason = why + " (" + std::string(fail_mode_name(mode)) + "): " + cause.to_string();
  return v;
}

// ---------------------------------------------------------------- AgentClient

Result<AgentClient> AgentClient::adopt(UniqueFd fd, uid_t agent_uid) {
  if (auto r = check_peer(fd.get(), agent_uid, "model agent"); !r) return tl::unexpected(r.error());
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    return make_error(errno, "O_NONBLOCK", "model agent");
  return AgentClient(std::move(fd));
}

Result<AgentClient> AgentClient::connect(const std::string& path, uid_t agent_uid) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return make_error(ENAMETOOLONG, "socket path too long", path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return make_error(errno, std::strerror(errno), path);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return make_error(errno, std::string("connect: ") + std::strerror(errno), path);
  return adopt(std::move(fd), agent_uid);
}

tl::unexpected<Error> AgentClient::broken(int code, std::string message) {
  broken_ = true;
  fd_.reset();
  return make_error(code, std::move(message), "model agent");
}

Result<void> AgentClient::send_line(const std::string& line, Deadline deadline) {
  std::string_view data = line;
  while (!data.empty()) {
    ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return broken(EPIPE, std::string("send: ") + std::strerror(errno));
    auto left = std::chrono::ceil<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      // a partial line cannot be taken back: the stream is unusable
      return broken(EPIPE, "the agent does not read (send buffer full)");
    pollfd p{fd_.get(), POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  return {};
}

Result<Message> AgentClient::receive(Deadline deadline) {
  for (;;) {
    size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl + 1);
      buf_.erase(0, nl + 1);
      auto m = decode(line);
      if (!m) return broken(EPROTO, "agent sent a bad line: " + m.error().message);
      return m;
    }
    if (buf_.size() >= kMaxLine) return broken(EPROTO, "agent sent a line that is too long");
    auto left = std::chrono::ceil<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return make_error(ETIMEDOUT, "no answer in time", "model agent");
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) continue;  // the deadline check above ends it
    char chunk[16384];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n == 0) return broken(EPIPE, "the agent closed the connection");
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return broken(EPIPE, std::string("recv: ") + std::strerror(errno));
    }
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

Result<HelloReply> AgentClient::hello(const Hello& h, std::chrono::milliseconds timeout) {
  if (broken_) return make_error(EPIPE, "the agent is not connected", "model agent");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (auto s = send_line(encode(h), deadline); !s) return tl::unexpected(s.error());
  auto m = receive(deadline);
  if (!m) return tl::unexpected(m.error());
  if (auto* e = std::get_if<ErrorMessage>(&*m)) return broken(EPROTO, "agent: " + e->message);
  auto* r = std::get_if<HelloReply>(&*m);
  if (!r) return broken(EPROTO, "agent did not answer hello with hello");
  if (r->protocol != kProtocolVersion)
    return broken(EPROTO, "agent chose protocol " + std::to_string(r->protocol));
  return *r;
}

Result<void> AgentClient::notify(const Message& m, std::chrono::milliseconds timeout) {
  if (broken_) return make_error(EPIPE, "the agent is not connected", "model agent");
  return send_line(encode(m), std::chrono::steady_clock::now() + timeout);
}

Result<Verdict> AgentClient::judge(const Event& e, std::chrono::milliseconds timeout) {
  if (broken_) return make_error(EPIPE, "the agent is not connected", "model agent");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (auto s = send_line(encode(e), deadline); !s) return tl::unexpected(s.error());
  for (;;) {
    auto m = receive(deadline);
    if (!m) return tl::unexpected(m.error());
    if (auto* err = std::get_if<ErrorMessage>(&*m)) return broken(EPROTO, "agent: " + err->message);
    auto* v = std::get_if<Verdict>(&*m);
    if (!v) return broken(EPROTO, "agent sent something else than a verdict");
    if (v->seq < e.seq) {  // the answer to an event that already timed out
      ++late_;
      continue;
    }
    if (v->seq > e.seq)
      return broken(EPROTO, "verdict for seq " + std::to_string(v->seq) + " while waiting for " +
                                std::to_string(e.seq));
    return *v;
  }
}

}  // namespace nsima::model::agent

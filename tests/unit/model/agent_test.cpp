// SPDX-License-Identifier: Apache-2.0
// The external agent protocol and the reference agent, driven over a socketpair: every message
// round-trips; malformed lines are refused naming the field; the agent decides as the built-in
// model does for a learned workload and its deviations; a slow agent times out within the
// deadline (fail-closed: untrusted), its late verdict is dropped; a crashed agent fails at once
// (fail-open: allowed); a peer with another uid is refused on both sides.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "common/hex.h"
#include "model/agent/agent.h"
#include "model/model_file.h"

namespace nsima::model::agent {
namespace {

using namespace std::chrono_literals;

// The deadline of a call whose timeout is not what the test is about: generous, because the
// sanitizer trees run these on a loaded 2-core machine (a 1 s deadline timed out under ASan).
constexpr auto kCall = 30s;

Digest H(std::string_view s) {
  return sha256(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}
FileCell file(std::string path, std::string content, uint32_t flags = 0x8000) {
  return FileCell{flags, InodeCell{0, 0, 0100755, 0xEF53, {1, 2, 3}}, std::move(path), H(content)};
}
const Coe kRoot{0, 0, 0, 0, 0, 0, 0, 0, 0x1ffffffffffull};

Event mk(uint64_t seq, EventType type, ProcKey proc, Coe coe, Cell cell,
         std::optional<ProcKey> target = std::nullopt, std::optional<Digest> coeff = std::nullopt,
         std::string description = {}) {
  Event e;
  e.seq = seq;
  e.type = type;
  e.proc = proc;
  e.coe = coe;
  e.cell = std::move(cell);
  e.target = target;
  e.coefficient = coeff;
  e.description = std::move(description);
  return e;
}

std::pair<UniqueFd, UniqueFd> socket_pair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

TEST(AgentProtocolTest, EveryMessageRoundTrips) {
  const ProcKey p{101, 5031000000123456789ull}, t{102, 18446744073709551615ull};
  std::vector<Event> events;
  events.push_back(mk(1, EventType::kFileOpen, p, kRoot, file("/etc/passwd", "x"), std::nullopt, H("c"), "d"));
  events.push_back(mk(2, EventType::kBprmCommittedCreds, p, kRoot, file("/bin/sh", "sh", 0x8020)));
  events.push_back(mk(3, EventType::kMmapFile, p, kRoot, MmapCell{file("/lib/x", "x"), 5, 0x802}));
  events.push_back(mk(4, EventType::kMmapFile, p, kRoot, MmapCell{std::nullopt, 7, 0x22}));
  events.push_back(mk(5, EventType::kFileMprotect, p, kRoot, MprotectCell{InodeCell{1, 2, 3, 4, {}}, 5, 7}));
  events.push_back(mk(6, EventType::kPtraceAccessCheck, p, kRoot, PtraceCell{{}, 0x11}, t));
  events.push_back(mk(7, EventType::kPtraceTraceme, p, kRoot, TracemeCell{}, t));
  events.push_back(mk(8, EventType::kTaskKill, p, kRoot, KillCell{{}, 9, 1}, t));
  events.push_back(mk(9, EventType::kSocketCreate, p, kRoot, SocketCreateCell{2, 1, 6, 0}));
  events.push_back(mk(10, EventType::kSocketConnect, p, kRoot,
                    SocketAddrCell{kAfInet6, 1, 6, 443, {1, 2}, 7, 2, {}}));
  events.push_back(mk(11, EventType::kSocketBind, p, kRoot,
                    SocketAddrCell{kAfUnix, 1, 0, 0, {}, 0, 0, {0, 'a', 'b'}}));
  for (const auto& e : events) {
    std::string line = encode(e);
    ASSERT_EQ(line.back(), '\n');
    auto m = decode(line);
    ASSERT_TRUE(m) << line << m.error().to_string();
    const Event& d = std::get<Event>(*m);
    EXPECT_EQ(d.seq, e.seq);
    EXPECT_EQ(d.type, e.type);
    EXPECT_EQ(d.proc, e.proc);
    EXPECT_EQ(d.coe, e.coe);
    EXPECT_EQ(d.target, e.target);
    EXPECT_EQ(d.coefficient, e.coefficient);
    EXPECT_EQ(d.description, e.description);
    // same cell: same encoding (task cells' digests are filled by the receiver)
    EXPECT_EQ(*encode_cell(d.type, d.cell), *encode_cell(e.type, e.cell)) << line;
    EXPECT_EQ(encode(d), line);
  }
  for (const Message& m : std::vector<Message>{
           Hello{{1, 2}, 4, Mode::kSeal}, HelloReply{1, "a", 3, H("s")}, Fork{12, p, t},
           Exit{13, t}, Verdict{14, false, false, true, H("c"), "why"},
           ErrorMessage{15, "bad"}, ErrorMessage{std::nullopt, "bad"}}) {
    std::string line = encode(m);
    auto d = decode(line);
    ASSERT_TRUE(d) << line << d.error().to_string();
    EXPECT_EQ(d->index(), m.index());
    EXPECT_EQ(encode(*d), line);
  }
}

TEST(AgentProtocolTest, MalformedLinesNameTheField) {
  struct Case {
    std::string line, fragment;
  };
  std::string ok = encode(mk(1, EventType::kFileOpen, ProcKey{1, 2}, kRoot, file("/x", "x")));
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = ok;
    size_t i = s.find(from);
    EXPECT_NE(i, std::string::npos) << from;
    return s.replace(i, from.size(), to);
  };
  std::vector<Case> cases = {
      {"not json\n", "not JSON"},
      {"[1,2]\n", "message: expected an object"},
      {"{\"type\":\"nope\"}\n", "unknown message type 'nope'"},
      {with("\"file_open\"", "\"inode_create\""), "event.event: unknown event 'inode_create'"},
      {with("\"start\":\"2\"", "\"start\":2"), "event.proc.start: expected a decimal string"},
      {with("\"start\":\"2\"", "\"start\":\"2x\""), "event.proc.start"},
      {with("\"path\":\"/x\"", "\"path\":7"), "event.cell.path: expected a string"},
      {with("\"euid\":0", "\"euid\":-1"), "event.coe.euid: expected an unsigned 32-bit number"},
      {with("\"digest\":\"", "\"digest\":\"ab"), "event.cell.digest: expected 64 hex digits"},
      {"{\"type\":\"verdict\",\"seq\":1,\"verdict\":\"maybe\",\"known\":true,\"untrusted\":false}\n",
       "verdict.verdict: expected allow or deny"},
      {std::string(kMaxLine + 1, ' '), "at most 65536"},
  };
  for (const auto& c : cases) {
    auto r = decode(c.line);
    ASSERT_FALSE(r) << c.line;
    EXPECT_EQ(r.error().where, "agent protocol");
    EXPECT_NE(r.error().message.find(c.fragment), std::string::npos)
        << "want '" << c.fragment << "' in: " << r.error().message;
  }
}

// The workload: init execs a shell, which forks children that exec busybox and open files,
// send a signal, connect a socket.
struct Op {
  enum Kind { kFork, kExit, kEvent } kind;
  ProcKey a, b;  // fork: parent, child; exit: a; event: a = process, b = target
  Event ev;
};

std::vector<Op> workload(const std::string& busybox, const std::string& extra_file) {
  const ProcKey init{1, 10}, sh{2, 20}, c1{3, 30}, c2{4, 40};
  std::vector<Op> ops;
  auto ev = [&](ProcKey p, EventType t, Cell cell, std::optional<ProcKey> target = {}) {
    ops.push_back({Op::kEvent, p, target.value_or(ProcKey{}),
                   mk(0, t, p, kRoot, std::move(cell), target)});
  };
  ev(init, EventType::kBprmCommittedCreds, file("/init", "init", 0x8020));
  ops.push_back({Op::kFork, init, sh, {}});
  ev(sh, EventType::kBprmCommittedCreds, file("/bin/sh", "sh", 0x8020));
  for (ProcKey c : {c1, c2}) {
    ops.push_back({Op::kFork, sh, c, {}});
    ev(c, EventType::kBprmCommittedCreds, file("/bin/busybox", busybox, 0x8020));
    ev(c, EventType::kFileOpen, file(c == c1 ? "/etc/passwd" : "/etc/group", "data"));
  }
  ev(c1, EventType::kTaskKill, KillCell{{}, 15, 0}, c2);
  ev(c2, EventType::kSocketConnect, SocketAddrCell{kAfInet, 1, 6, 80, {10, 0, 0, 1}, 0, 0, {}});
  if (!extra_file.empty()) ev(c2, EventType::kFileOpen, file(extra_file, "secret"));
  ops.push_back({Op::kExit, c1, {}, {}});
  return ops;
}

// What the built-in model decides for each event of `ops` (the reference).
std::vector<Decision> builtin(Modeler& m, std::vector<Op> ops) {
  std::vector<Decision> out;
  for (auto& op : ops) {
    if (op.kind == Op::kFork) m.fork(op.a, op.b);
    if (op.kind == Op::kExit) m.exit(op.a);
    if (op.kind != Op::kEvent) continue;
    Event& e = op.ev;
    if (e.type == EventType::kBprmCommittedCreds) {
      out.push_back(m.exec(e.proc, e.coe, std::get<FileCell>(e.cell)));
      continue;
    }
    if (auto* k = std::get_if<KillCell>(&e.cell)) k->target = m.task_id_of(*e.target);
    out.push_back(*m.event(e.proc, e.type, e.coe, e.cell));
  }
  return out;
}

Model learned_model() {
  Modeler m{Model{H("base"), H("agg")}};
  builtin(m, workload("busybox", ""));
  // through a model file, as `nsimactl model save` / the agent's --model would
  auto f = parse_model(serialize_model(m.model()), "saved.model");
  EXPECT_TRUE(f);
  auto model = model_from_file(*f, Mode::kEnforce);
  EXPECT_TRUE(model);
  return *model;
}

class AgentConnection : public ::testing::Test {
 protected:
  // The fixture owns the agent: its server thread is joined in TearDown, after the test body
  // (which an ASSERT may leave early) has returned, so the agent must outlive that body.
  template <class... Args>
  ModelAgent& start(Args&&... args) {
    agent_ = std::make_unique<ModelAgent>(std::forward<Args>(args)...);
    auto [a, b] = socket_pair();
    agent_fd_ = std::move(b);
    server_ = std::thread([this] { served_ = serve_agent(agent_fd_.get(), *agent_, ::getuid()); });
    auto c = AgentClient::adopt(std::move(a), ::getuid());
    EXPECT_TRUE(c) << c.error().to_string();
    if (c) client_.emplace(std::move(*c));
    return *agent_;
  }
  void TearDown() override {
    client_.reset();  // closes our end: the server sees EOF
    if (server_.joinable()) server_.join();
  }
  std::vector<std::string> log_;  // before agent_: the agent's log callback writes here
  std::unique_ptr<ModelAgent> agent_;
  UniqueFd agent_fd_;
  std::thread server_;
  Result<void> served_;
  std::optional<AgentClient> client_;
};

TEST_F(AgentConnection, AgentDecidesAsTheBuiltInModel) {
  auto& agent = start(Modeler(learned_model()), "test-agent",
                      [this](std::string_view l) { log_.emplace_back(l); });
  ASSERT_TRUE(client_);
  auto hello = client_->hello(Hello{{1}, 2, Mode::kEnforce}, kCall);
  ASSERT_TRUE(hello) << hello.error().to_string();
  EXPECT_EQ(hello->agent, "test-agent");
  EXPECT_EQ(hello->state, learned_model().state());

  for (auto [busybox, extra] : {std::pair{"busybox", ""}, std::pair{"busybox changed", ""},
                                std::pair{"busybox", "/etc/shadow"}}) {
    // a fresh namespace run: distinct process keys per run, so offset them
    Modeler reference(learned_model());
    auto ops = workload(busybox, extra);
    auto want = builtin(reference, ops);
    size_t i = 0;
    static uint64_t seq = 0;
    static uint32_t run = 0;
    ++run;
    auto shift = [&](ProcKey k) { return k.tgid ? ProcKey{k.tgid + 1000 * run, k.start} : k; };
    for (auto& op : ops) {
      if (op.kind == Op::kFork) {
        ASSERT_TRUE(client_->notify(Fork{++seq, shift(op.a), shift(op.b)}, kCall));
      } else if (op.kind == Op::kExit) {
        ASSERT_TRUE(client_->notify(Exit{++seq, shift(op.a)}, kCall));
      } else {
        Event e = op.ev;
        e.seq = ++seq;
        e.proc = shift(e.proc);
        if (e.target) e.target = shift(*e.target);
        e.coefficient = want[i].coefficient;
        auto v = client_->judge(e, kCall);
        ASSERT_TRUE(v) << v.error().to_string();
        EXPECT_EQ(v->seq, e.seq);
        EXPECT_EQ(v->coefficient, want[i].coefficient) << busybox << " event " << i;
        EXPECT_EQ(v->known, want[i].known) << busybox << " event " << i;
        EXPECT_EQ(v->untrusted, want[i].untrusted) << busybox << " event " << i;
        EXPECT_EQ(v->allow, !want[i].deny) << busybox << " event " << i;
        EXPECT_EQ(v->reason.find("mismatch"), std::string::npos) << v->reason;
        ++i;
      }
    }
    EXPECT_EQ(i, want.size());
    bool deviates = std::string(busybox) != "busybox" || *extra;
    bool any_deny = std::any_of(want.begin(), want.end(), [](const Decision& d) { return d.deny; });
    EXPECT_EQ(any_deny, deviates) << busybox << " " << extra;
  }
  EXPECT_EQ(agent.mismatches(), 0u);
  // every decision was logged as one JSON line
  ASSERT_FALSE(log_.empty());
  EXPECT_NE(log_.back().find("\"verdict\""), std::string::npos) << log_.back();
}

TEST_F(AgentConnection, WrongCoefficientFromNsimadIsReported) {
  auto& agent = start(Modeler(learned_model()));
  ASSERT_TRUE(client_);
  ASSERT_TRUE(client_->hello(Hello{{1}, 2, Mode::kEnforce}, kCall));
  Event e = mk(1, EventType::kBprmCommittedCreds, {7, 7}, kRoot, file("/init", "init", 0x8020));
  e.coefficient = H("not it");
  auto v = client_->judge(e, kCall);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->known) << "judged by the agent's own computation";
  EXPECT_NE(v->reason.find("coefficient mismatch"), std::string::npos);
  EXPECT_EQ(agent.mismatches(), 1u);
}

TEST_F(AgentConnection, ProtocolErrorsCloseTheConnection) {
  start(Modeler(learned_model()));
  ASSERT_TRUE(client_);
  // an event before hello
  Event e = mk(1, EventType::kFileOpen, {7, 7}, kRoot, file("/x", "x"));
  auto v = client_->judge(e, kCall);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, EPROTO);
  EXPECT_NE(v.error().message.find("expected hello first"), std::string::npos) << v.error().message;
  EXPECT_FALSE(client_->connected());
  auto again = client_->judge(e, kCall);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EPIPE) << "no retry on a broken connection";
  server_.join();
  ASSERT_FALSE(served_);
  EXPECT_EQ(served_.error().code, EPROTO);
}

TEST_F(AgentConnection, SealedAgentRefusesToLearn) {
  start(Modeler(learned_model()));
  ASSERT_TRUE(client_);
  auto h = client_->hello(Hello{{1}, 2, Mode::kLearn}, kCall);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().message.find("mode learn refused"), std::string::npos) << h.error().message;
}

// A fake agent thread: answers hello, then each event after `delay`.
struct SlowAgent {
  UniqueFd fd;
  std::chrono::milliseconds delay;
  std::thread t;
  void run() {
    t = std::thread([this] {
      std::string buf;
      char c[4096];
      for (;;) {
        ssize_t n = ::read(fd.get(), c, sizeof c);
        if (n <= 0) return;
        buf.append(c, static_cast<size_t>(n));
        for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
          auto m = decode(buf.substr(0, nl + 1));
          buf.erase(0, nl + 1);
          if (!m) return;
          std::string out;
          if (std::holds_alternative<Hello>(*m)) out = encode(HelloReply{1, "slow", 0, {}});
          if (auto* e = std::get_if<Event>(&*m)) {
            std::this_thread::sleep_for(delay);
            out = encode(Verdict{e->seq, true, true, false, std::nullopt, ""});
          }
          if (!out.empty() && ::write(fd.get(), out.data(), out.size()) < 0) return;
        }
      }
    });
  }
  ~SlowAgent() {
    ::shutdown(fd.get(), SHUT_RDWR);
    if (t.joinable()) t.join();
  }
};

TEST(AgentFailureTest, SlowAgentTimesOutFailClosedAndLateVerdictIsDropped) {
  auto [a, b] = socket_pair();
  SlowAgent slow{std::move(b), 600ms, {}};
  slow.run();
  auto c = AgentClient::adopt(std::move(a), ::getuid());
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->hello(Hello{}, kCall));
  Event e = mk(1, EventType::kFileOpen, {7, 7}, kRoot, file("/x", "x"));
  auto t0 = std::chrono::steady_clock::now();
  auto v = c->judge(e, 50ms);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, ETIMEDOUT);
  EXPECT_GE(took, 50ms);
  EXPECT_LT(took, 450ms) << "the deadline bounds the wait, not the agent";
  Verdict f = failure_verdict(FailMode::kClosed, e.seq, v.error());
  EXPECT_FALSE(f.allow);
  EXPECT_TRUE(f.untrusted);
  EXPECT_EQ(f.reason.rfind("agent-timeout (fail-closed)", 0), 0u) << f.reason;
  EXPECT_TRUE(c->connected()) << "a timeout keeps the connection";
  // the next event: the late verdict for seq 1 arrives first and is dropped
  e.seq = 2;
  auto v2 = c->judge(e, 2s);
  ASSERT_TRUE(v2) << v2.error().to_string();
  EXPECT_EQ(v2->seq, 2u);
  EXPECT_EQ(c->late_verdicts(), 1u);
}

TEST(AgentFailureTest, CrashedAgentFailsAtOnceFailOpen) {
  auto [a, b] = socket_pair();
  auto c = AgentClient::adopt(std::move(a), ::getuid());
  ASSERT_TRUE(c);
  b.reset();  // the agent died
  Event e = mk(1, EventType::kFileOpen, {7, 7}, kRoot, file("/x", "x"));
  auto t0 = std::chrono::steady_clock::now();
  auto v = c->judge(e, 60s);
  ASSERT_FALSE(v);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "a dead agent is not waited for";
  EXPECT_EQ(v.error().code, EPIPE);
  Verdict f = failure_verdict(FailMode::kOpen, 1, v.error());
  EXPECT_TRUE(f.allow);
  EXPECT_FALSE(f.untrusted);
  EXPECT_EQ(f.reason.rfind("agent-down (fail-open)", 0), 0u) << f.reason;
}

TEST(AgentFailureTest, PeersWithAnotherUidAreRefused) {
  auto [a, b] = socket_pair();
  auto c = AgentClient::adopt(UniqueFd(::dup(a.get())), ::getuid() + 4242);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, EPERM);
  EXPECT_NE(c.error().message.find("peer uid " + std::to_string(::getuid())), std::string::npos)
      << c.error().message;
  EXPECT_EQ(c.error().where, "model agent");
  // and the agent refuses an nsimad with another uid, telling it why
  ModelAgent agent{Modeler(learned_model())};
  auto r = serve_agent(b.get(), agent, ::getuid() + 4242);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EPERM);
  char buf[512] = {};
  ASSERT_GT(::read(a.get(), buf, sizeof buf - 1), 0);
  auto m = decode(buf);
  ASSERT_TRUE(m);
  EXPECT_NE(std::get<ErrorMessage>(*m).message.find("expected"), std::string::npos);
}

TEST(AgentFailureTest, VerdictForAnotherSeqIsAProtocolError) {
  auto [a, b] = socket_pair();
  auto c = AgentClient::adopt(std::move(a), ::getuid());
  ASSERT_TRUE(c);
  std::string bogus = encode(Verdict{99, true, true, false, std::nullopt, ""});
  ASSERT_EQ(::write(b.get(), bogus.data(), bogus.size()), static_cast<ssize_t>(bogus.size()));
  auto v = c->judge(mk(1, EventType::kFileOpen, ProcKey{7, 7}, kRoot, file("/x", "x")), kCall);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, EPROTO);
  EXPECT_NE(v.error().message.find("seq 99"), std::string::npos);
  EXPECT_FALSE(c->connected());
}

}  // namespace
}  // namespace nsima::model::agent

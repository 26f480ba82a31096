// SPDX-License-Identifier: Apache-2.0
// Workload models in the pipeline (ns/pipeline_model.cpp), without BPF, against a real swtpm:
// file events of a modeled namespace are read for their digest and become coefficients; a
// learned model saved and loaded into an enforcing namespace knows the same workload, and an
// unknown file, a modified executable or a new one make the process untrusted and appear in
// forensics; the offline state of the saved file equals the live state; the state extended
// into the namespace's vTPM is in PCR 11 and in its quote; mode and model survive a restart.
#include <openssl/sha.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <thread>

#include "model/agent/agent.h"
#include "model/model_file.h"
#include "pipeline_fixture.h"

namespace nsima::ns {
namespace {

using pipetest::PipelineTest;
namespace fs = std::filesystem;

class PipelineModelTest : public PipelineTest {
 protected:
  // An event of process `tgid` (start time `start`) as the hooks report it.
  Event ev(Hook hook, const std::string& path, uint32_t ns_id, uint32_t tgid, uint64_t start) {
    Event e = read_event(path, ns_id);
    e.hook = hook;
    e.tgid = tgid;  // the file is still read through this test's root (RootCache by pid)
    e.start_boottime_ns = start;
    if (hook == Hook::kBprmCheck) {
      e.mask = NSIMA_MAY_EXEC;
      e.new_cred = e.cred;
      e.f_flags = 0x20;  // __FMODE_EXEC
    }
    return e;
  }
  // The workload: exec `bin`, read a and b.
  void workload(uint32_t ns_id, uint32_t tgid) {
    submit(ev(Hook::kBprmCheck, bin_, ns_id, tgid, 7));
    submit(ev(Hook::kFileOpen, a_, ns_id, tgid, 7));
    submit(ev(Hook::kFileOpen, b_, ns_id, tgid, 7));
  }
  uint32_t create(const std::string& name, const std::string& mode, const std::string& text,
                  bool vtpm = true) {
    Pipeline::CreateOptions o;
    o.vtpm = vtpm;
    o.model_mode = mode;
    o.model_text = text;
    o.model_origin = "test.model";
    auto id = p_->create_namespace(cgroup(name), o);
    EXPECT_TRUE(id) << id.error().to_string();
    return id ? *id : 0;
  }
  Pipeline::ModelInfo state(uint32_t id, bool extend = false) {
    auto s = p_->model_state(std::to_string(id), extend);
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? *s : Pipeline::ModelInfo{};
  }
  // The model of the workload (process getpid()), learned in a new namespace `name` without a
  // vTPM and saved; "" (and a failure) if any step fails.
  std::string learned(const std::string& name) {
    uint32_t id = create(name, "learn", "", false);
    if (id == 0) return "";
    workload(id, static_cast<uint32_t>(getpid()));
    auto text = p_->model_save(std::to_string(id));
    EXPECT_TRUE(text) << text.error().to_string();
    return text ? *text : "";
  }
  // The reference agent's logic enforcing saved model `text`; null (and a failure) if it does
  // not parse.
  std::unique_ptr<model::agent::ModelAgent> enforcing_agent(const std::string& text) {
    auto saved = model::parse_model(text, "saved.model");
    EXPECT_TRUE(saved) << saved.error().to_string();
    if (!saved) return nullptr;
    auto m = model::model_from_file(*saved, model::Mode::kEnforce);
    EXPECT_TRUE(m) << m.error().to_string();
    if (!m) return nullptr;
    return std::make_unique<model::agent::ModelAgent>(model::Modeler(std::move(*m)));
  }
  void SetUp() override {
    PipelineTest::SetUp();
    if (HasFatalFailure()) return;
    // The pipeline reads files through the root of the event's pid: make every pid ours.
    bin_ = file("bin", "#!/bin/sh\necho I am a binary\n");
    a_ = file("a", "alpha\n");
    b_ = file("b", "beta\n");
  }
  std::string bin_, a_, b_;
};

TEST_F(PipelineModelTest, LearnedModelEnforcedKnowsTheWorkloadAndCatchesDeviations) {
  start();
  const uint32_t tgid = static_cast<uint32_t>(getpid());
  uint32_t learn = create("learn", "learn", "");
  ASSERT_NE(learn, 0u);
  workload(learn, tgid);
  auto learned = state(learn);
  EXPECT_EQ(learned.mode, "learn");
  EXPECT_EQ(learned.known, 3u) << "exec + two opens";
  EXPECT_EQ(learned.forensic, 0u);
  workload(learn, tgid);  // a repeat adds nothing
  EXPECT_EQ(state(learn).state, learned.state);
  auto text = p_->model_save(std::to_string(learn));
  ASSERT_TRUE(text) << text.error().to_string();

  // offline: the saved file's state is the live state
  auto saved = model::parse_model(*text, "saved.model");
  ASSERT_TRUE(saved) << saved.error().to_string();
  EXPECT_EQ(to_hex(model::offline_values(*saved).state), learned.state);

  // enforce with the saved model: the same workload is known, state unchanged
  uint32_t enf = create("enforce", "enforce", *text);
  ASSERT_NE(enf, 0u);
  workload(enf, tgid);
  auto same = state(enf);
  EXPECT_EQ(same.mode, "enforce");
  EXPECT_EQ(same.forensic, 0u);
  EXPECT_EQ(same.untrusted, 0u);
  EXPECT_EQ(same.state, learned.state);

  // a known binary reading a new file: untrusted, in forensics
  std::string c = file("c", "never read while learning\n");
  submit(ev(Hook::kFileOpen, c, enf, tgid, 7));
  auto after_c = state(enf);
  EXPECT_EQ(after_c.forensic, 1u);
  EXPECT_EQ(after_c.untrusted, 1u);
  EXPECT_NE(after_c.state, learned.state);

  // a known binary with one byte changed, run by another process: its exec is unknown
  std::ofstream(bin_, std::ios::app) << "x";
  submit(ev(Hook::kBprmCheck, bin_, enf, tgid, 8));
  // a new binary, by a third process
  std::string nb = file("newbin", "#!/bin/sh\necho new\n");
  submit(ev(Hook::kBprmCheck, nb, enf, tgid, 9));
  auto after = state(enf);
  EXPECT_EQ(after.untrusted, 3u);
  EXPECT_EQ(after.forensic, 3u);
  auto f = p_->model_forensics(std::to_string(enf));
  ASSERT_TRUE(f) << f.error().to_string();
  std::string dump = f->dump();
  EXPECT_NE(dump.find(c), std::string::npos) << dump;
  EXPECT_NE(dump.find(nb), std::string::npos) << dump;
  EXPECT_NE(dump.find("bprm_committed_creds"), std::string::npos) << dump;

  // the state into PCR 11 of the namespace's vTPM: H(zeros || state), and the quote has it
  auto ext = state(enf, true);
  ASSERT_EQ(ext.pcr, Pipeline::kModelPcr);
  std::vector<uint8_t> buf(32, 0);
  auto sb = from_hex(ext.state);
  ASSERT_TRUE(sb);
  buf.insert(buf.end(), sb->begin(), sb->end());
  unsigned char md[32];
  SHA256(buf.data(), buf.size(), md);
  EXPECT_EQ(ext.pcr_sha256, to_hex(md, 32));
  auto q = p_->quote(std::to_string(enf), {1, 2, 3, 4});
  ASSERT_TRUE(q) << q.error().to_string();
  ASSERT_TRUE(q->values.count(tpm::Bank::kSha256));
  ASSERT_TRUE(q->values[tpm::Bank::kSha256].count(Pipeline::kModelPcr));
  EXPECT_EQ(to_hex(q->values[tpm::Bank::kSha256][Pipeline::kModelPcr]), ext.pcr_sha256);
}

// A file event's COE has the thread's own fsuid/fsgid (struct nsima_cred carries them): a known
// process reading a known file after setfsuid() to another id is a new coefficient.
TEST_F(PipelineModelTest, FsuidIsPartOfAFileEventsCoe) {
  start();
  const uint32_t tgid = static_cast<uint32_t>(getpid());
  std::string text = learned("fl");
  ASSERT_FALSE(text.empty());
  uint32_t seal = create("fs", "seal", text, false);
  ASSERT_NE(seal, 0u);
  workload(seal, tgid);
  EXPECT_EQ(state(seal).forensic, 0u) << "the learned workload, same fsuid";
  Event e = ev(Hook::kFileOpen, a_, seal, tgid, 7);
  ASSERT_EQ(e.cred.fsuid, e.cred.euid) << "the fixture's events are as the kernel reports them";
  e.cred.fsuid = e.cred.euid + 4321;
  submit(std::move(e));
  EXPECT_EQ(state(seal).forensic, 1u) << "another fsuid, same euid: another COE";
  e = ev(Hook::kFileOpen, b_, seal, tgid, 7);
  e.cred.fsgid = e.cred.egid + 8765;
  submit(std::move(e));
  EXPECT_EQ(state(seal).forensic, 2u) << "another fsgid, same egid: another COE";
}

TEST_F(PipelineModelTest, ModeAndModelSurviveARestart) {
  start();
  const uint32_t tgid = static_cast<uint32_t>(getpid());
  uint32_t id = create("r", "learn", "", false);
  ASSERT_NE(id, 0u);
  workload(id, tgid);
  auto before = state(id);
  restart();
  auto learned = state(id);
  EXPECT_EQ(learned.mode, "learn");
  EXPECT_EQ(learned.state, before.state);
  EXPECT_EQ(learned.known, 3u);
  auto m = p_->model_set_mode(std::to_string(id), "enforce");
  ASSERT_TRUE(m) << m.error().to_string();
  restart();
  auto enforcing = state(id);
  EXPECT_EQ(enforcing.mode, "enforce");
  EXPECT_EQ(enforcing.state, before.state);
  auto ns = p_->namespace_info(std::to_string(id));
  ASSERT_TRUE(ns);
  EXPECT_EQ(ns->model, "enforce");
}

// Polls the model state until `pred` holds (agent verdicts arrive asynchronously).
template <class P>
bool eventually(Pipeline& p, uint32_t id, P pred) {
  for (int i = 0; i < 200; ++i) {
    auto s = p.model_state(std::to_string(id), false);
    if (s && pred(*s)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// The reference agent's logic (ModelAgent) behind a listening socket, one connection, on its
// own thread; each event's verdict is held back `delay` (a slow agent). kill() ends the
// connection (the agent died); the destructor stops and joins whatever is left.
class TestAgent {
 public:
  TestAgent(std::string path, model::agent::ModelAgent& agent,
            std::chrono::milliseconds delay = std::chrono::milliseconds(0))
      : path_(std::move(path)) {
    lfd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    listening_ = lfd_ >= 0 &&
                 ::bind(lfd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                 ::listen(lfd_, 2) == 0;
    if (!listening_) return;
    server_ = std::thread([this, &agent, delay] {
      int c = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      conn_ = c;
      if (c < 0) return;
      if (delay.count() == 0) return (void)model::agent::serve_agent(c, agent, ::getuid());
      agent.new_session();
      std::string buf;
      char chunk[16384];
      for (ssize_t n; (n = ::read(c, chunk, sizeof chunk)) > 0;) {
        buf.append(chunk, static_cast<size_t>(n));
        for (size_t nl; (nl = buf.find('\n')) != std::string::npos; buf.erase(0, nl + 1)) {
          std::string line = buf.substr(0, nl + 1);
          if (line.find("\"type\":\"event\"") != std::string::npos)
            std::this_thread::sleep_for(delay);
          for (const auto& out : agent.handle(line))
            if (::write(c, out.data(), out.size()) != static_cast<ssize_t>(out.size())) return;
        }
      }
    });
  }
  ~TestAgent() {
    kill();
    if (lfd_ >= 0) ::close(lfd_);
  }
  bool listening() const { return listening_; }
  void kill() {
    if (lfd_ < 0) return;
    ::shutdown(conn_.load() >= 0 ? conn_.load() : lfd_, SHUT_RDWR);
    if (server_.joinable()) server_.join();
    if (conn_.load() >= 0) ::close(conn_.exchange(-1));
    ::unlink(path_.c_str());
  }

 private:
  std::string path_;
  int lfd_ = -1;
  bool listening_ = false;
  std::atomic<int> conn_{-1};
  std::thread server_;
};

TEST_F(PipelineModelTest, AgentDecidesAndTheNamespaceFailsClosedWhenItDies) {
  start();
  const uint32_t tgid = static_cast<uint32_t>(getpid());
  std::string text = learned("al");
  ASSERT_FALSE(text.empty());
  auto agent = enforcing_agent(text);
  ASSERT_TRUE(agent);
  std::string path = dir_ + "/agent.sock";
  TestAgent server(path, *agent);
  ASSERT_TRUE(server.listening()) << strerror(errno);
  Pipeline::CreateOptions o;
  o.model_mode = "enforce";
  o.model_text = text;
  o.model_agent = path;
  o.model_agent_fail = "closed";
  auto id = p_->create_namespace(cgroup("agent"), o);
  ASSERT_TRUE(id) << id.error().to_string();
  workload(*id, tgid);
  EXPECT_TRUE(eventually(*p_, *id, [](auto& s) { return s.agent_verdicts >= 3; }))
      << "the agent judged the workload";
  auto known = p_->model_state(std::to_string(*id), false);
  ASSERT_TRUE(known);
  EXPECT_EQ(known->untrusted, 0u);
  EXPECT_EQ(known->agent_failures, 0u);
  EXPECT_TRUE(known->agent_connected);
  EXPECT_EQ(known->agent_timeout_ms, kDefaultAgentTimeoutMs);
  // a new file: the agent's verdict makes the process untrusted
  std::string c = file("c2", "never read while learning\n");
  submit(ev(Hook::kFileOpen, c, *id, tgid, 7));
  EXPECT_TRUE(eventually(*p_, *id, [](auto& s) { return s.untrusted == 1; }))
      << "the agent's untrusted verdict";
  // the agent dies: the next (known) event fails closed, the namespace stays responsive
  server.kill();
  submit(ev(Hook::kFileOpen, a_, *id, tgid, 11));
  EXPECT_TRUE(eventually(*p_, *id, [](auto& s) { return s.agent_failures >= 1 && s.untrusted == 2; }))
      << "fail-closed after the agent died";
  auto after = p_->model_state(std::to_string(*id), false);
  ASSERT_TRUE(after);
  EXPECT_FALSE(after->agent_error.empty());
}

// The namespace's own timeout: an agent answering each event after 1 s is too slow for a
// 200 ms namespace (fail-closed: untrusted, reason agent-timeout) and in time for one on the
// default 2 s, side by side; out-of-range timeouts and one without an agent are refused.
TEST_F(PipelineModelTest, AgentTimeoutIsTheNamespaces) {
  start();
  const uint32_t tgid = static_cast<uint32_t>(getpid());
  std::string text = learned("tl");
  ASSERT_FALSE(text.empty());
  std::vector<std::unique_ptr<model::agent::ModelAgent>> agents;
  std::vector<std::unique_ptr<TestAgent>> servers;
  auto delegate = [&](const std::string& name, uint32_t timeout_ms) -> uint32_t {
    agents.push_back(enforcing_agent(text));
    if (!agents.back()) return 0;
    std::string path = dir_ + "/" + name + ".sock";
    servers.push_back(
        std::make_unique<TestAgent>(path, *agents.back(), std::chrono::milliseconds(1000)));
    EXPECT_TRUE(servers.back()->listening()) << strerror(errno);
    Pipeline::CreateOptions o;
    o.model_mode = "enforce";
    o.model_text = text;
    o.model_agent = path;
    o.model_agent_timeout_ms = timeout_ms;
    auto id = p_->create_namespace(cgroup(name), o);
    EXPECT_TRUE(id) << id.error().to_string();
    return id ? *id : 0;
  };
  uint32_t quick = delegate("quick", 200);
  uint32_t patient = delegate("patient", 0);
  ASSERT_NE(quick, 0u);
  ASSERT_NE(patient, 0u);
  workload(quick, tgid);
  workload(patient, tgid);
  EXPECT_TRUE(eventually(*p_, quick, [](auto& s) { return s.agent_failures >= 1; }))
      << "a 1 s verdict is past a 200 ms timeout";
  EXPECT_TRUE(eventually(*p_, patient, [](auto& s) { return s.agent_verdicts == 3; }))
      << "a 1 s verdict is within the default 2 s";
  auto q = state(quick);
  EXPECT_EQ(q.agent_timeout_ms, 200u);
  EXPECT_GE(q.untrusted, 1u) << "fail-closed";
  EXPECT_NE(q.agent_error.find("no answer in time"), std::string::npos) << q.agent_error;
  auto pa = state(patient);
  EXPECT_EQ(pa.agent_timeout_ms, kDefaultAgentTimeoutMs);
  EXPECT_EQ(pa.agent_failures, 0u);
  EXPECT_EQ(pa.untrusted, 0u);
  // the timeout survives a restart
  restart();
  EXPECT_EQ(state(quick).agent_timeout_ms, 200u);
  // refused: above the maximum, and without an agent
  Pipeline::CreateOptions big;
  big.model_mode = "enforce";
  big.model_text = text;
  big.model_agent = dir_ + "/none.sock";
  big.model_agent_timeout_ms = kMaxAgentTimeoutMs + 1;
  auto r = p_->create_namespace(cgroup("big"), big);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("above 60000"), std::string::npos) << r.error().message;
  Pipeline::CreateOptions lone;
  lone.model_mode = "learn";
  lone.model_agent_timeout_ms = 500;
  r = p_->create_namespace(cgroup("lone"), lone);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("needs a model agent"), std::string::npos)
      << r.error().message;
}

TEST_F(PipelineModelTest, BadRequestsAreRefusedNamingThePlace) {
  start();
  uint32_t plain = create("plain", "", "", false);
  ASSERT_NE(plain, 0u);
  auto seal = p_->model_set_mode(std::to_string(plain), "seal");
  ASSERT_FALSE(seal);
  EXPECT_NE(seal.error().message.find("learn first"), std::string::npos) << seal.error().message;
  auto bad = p_->model_load(std::to_string(plain), "nsima-model 1\ndigest md5\n", "bad.model",
                            "enforce");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().to_string().find("bad.model:2"), std::string::npos)
      << bad.error().to_string();
  auto learn = p_->model_set_mode(std::to_string(plain), "learn");
  ASSERT_TRUE(learn) << learn.error().to_string();
  ASSERT_TRUE(p_->model_set_mode(std::to_string(plain), "seal"));
  auto back = p_->model_set_mode(std::to_string(plain), "learn");
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code, EPERM);
  auto ext = p_->model_state(std::to_string(plain), true);
  ASSERT_FALSE(ext);
  EXPECT_NE(ext.error().message.find("vTPM"), std::string::npos) << ext.error().message;
  Pipeline::CreateOptions o;
  o.model_mode = "enforce";  // without a model file
  auto c = p_->create_namespace(cgroup("nomodel"), o);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("needs a model"), std::string::npos) << c.error().message;
}

}  // namespace
}  // namespace nsima::ns

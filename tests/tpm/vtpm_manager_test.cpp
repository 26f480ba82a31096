// SPDX-License-Identifier: Apache-2.0
// VtpmManager with real swtpm processes: start/stop with no process left (checked by pid), PCRs
// kept across stop/start, re-attaching after a manager (nsimad) restart, destroy, a hung swtpm
// killed within the timeouts, a crashed one cleaned up, and bad input. Each test uses its own
// state and run roots under /tmp and kills whatever it started, also when it fails.
#include "tpm/vtpm_manager.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <thread>

#include "swtpm_fixture.h"
#include "tpm/esys_tpm.h"
#include "tpm_test_util.h"

namespace nsima::tpm {
namespace {

namespace fs = std::filesystem;
using nsima::testing::bytes;
using nsima::testing::ossl_hash;
using nsima::testing::SwtpmProcess;

std::vector<BankDigest> event(const std::string& data) {
  std::vector<BankDigest> out;
  for (Bank b : {Bank::kSha1, Bank::kSha256, Bank::kSha384, Bank::kSha512}) {
    out.push_back({b, ossl_hash(b, bytes(data))});
  }
  return out;
}

// Waits (bounded) until no process has this pid any more — zombies included. The test process
// is a child subreaper (see SetUp), so an swtpm that died without VtpmManager (kill -9 in a test)
// is our zombie: reap it here, as nsimad's SIGCHLD handling would.
bool gone(pid_t pid, std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    ::waitpid(pid, &status, WNOHANG);
    if (!SwtpmProcess::process_exists(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return !SwtpmProcess::process_exists(pid);
}

std::string cmdline_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class VtpmManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Daemonized swtpms are re-parented to the nearest subreaper when their launcher exits. Being
    // that subreaper (as a supervisor like systemd is) lets the test see a stopped swtpm vanish at
    // once — reaped by VtpmManager::stop() — instead of lingering as a zombie until a lazy PID 1
    // (this sandbox's init reaps about once a second) gets to it.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    std::string templ = "/tmp/nsima-vtpm-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = templ;
    opts_.state_root = root_ / "state";
    opts_.run_root = root_ / "run";
    opts_.start_timeout = std::chrono::milliseconds(10000);
    opts_.stop_timeout = std::chrono::milliseconds(1000);
    opts_.ctrl_timeout = std::chrono::milliseconds(500);
    opts_.ek_cert = false;  // the lifecycle only; EK certificates are tested in attest_test
  }

  // Whatever happened in the test: no swtpm of ours survives it.
  void TearDown() override {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(opts_.run_root, ec)) {
      std::ifstream in(e.path() / "swtpm.pid");
      pid_t pid = -1;
      if (in >> pid) seen_.push_back(pid);
    }
    for (pid_t pid : seen_) {
      if (pid > 0 && cmdline_of(pid).find(root_.string()) != std::string::npos) {
        ::kill(pid, SIGCONT);
        ::kill(pid, SIGKILL);
        EXPECT_TRUE(gone(pid)) << "swtpm " << pid << " left behind";
        ADD_FAILURE() << "test left swtpm pid " << pid << " running";
      }
    }
    fs::remove_all(root_, ec);
  }

  VtpmInstance start(VtpmManager& m, const std::string& ns) {
    auto inst = m.start(ns);
    EXPECT_TRUE(inst) << inst.error().to_string();
    if (!inst) return {};
    seen_.push_back(inst->pid);
    return *inst;
  }

  fs::path root_;
  VtpmOptions opts_;
  std::vector<pid_t> seen_;
};

TEST_F(VtpmManagerTest, StartsServesAndStopsWithoutLeftovers) {
  VtpmManager m(opts_);
  const VtpmInstance inst = start(m, "c1");
  ASSERT_GT(inst.pid, 0);
  EXPECT_EQ(inst.origin, VtpmOrigin::kStarted);
  EXPECT_EQ(inst.pcr, 10);
  EXPECT_EQ(inst.pcr, kDefaultVtpmPcr);
  EXPECT_EQ(inst.tcti, "swtpm:path=" + (root_ / "run" / "c1" / "swtpm.sock").string());
  EXPECT_TRUE(SwtpmProcess::process_exists(inst.pid));
  EXPECT_EQ(fs::status(inst.state_dir).permissions(), fs::perms::owner_all);
  EXPECT_EQ(m.running(), std::vector<std::string>{"c1"});
  auto h = m.healthy("c1");
  ASSERT_TRUE(h);
  EXPECT_TRUE(*h);

  {
    auto tpm = EsysTpm::open(inst.tcti);
    ASSERT_TRUE(tpm) << tpm.error().to_string();
    ASSERT_TRUE((*tpm)->extend(inst.pcr, event("exec /bin/sh")));
    auto tools = nsima::testing::tpm2_pcrread(inst.tcti, "sha256:10");
    auto ours = (*tpm)->read_pcr(10, Bank::kSha256);
    ASSERT_TRUE(ours);
    EXPECT_EQ(tools["sha256"][10], *ours);
  }

  auto stopped = m.stop("c1");
  ASSERT_TRUE(stopped) << stopped.error().to_string();
  EXPECT_TRUE(stopped->was_running);
  EXPECT_TRUE(stopped->state_saved);
  EXPECT_FALSE(stopped->forced);
  EXPECT_TRUE(gone(inst.pid)) << "swtpm pid " << inst.pid << " still exists";
  EXPECT_FALSE(fs::exists(inst.run_dir / "swtpm.sock"));
  EXPECT_FALSE(fs::exists(inst.run_dir / "swtpm.sock.ctrl"));
  EXPECT_FALSE(fs::exists(inst.run_dir / "swtpm.pid"));
  EXPECT_TRUE(m.running().empty());
  h = m.healthy("c1");
  ASSERT_TRUE(h);
  EXPECT_FALSE(*h);

  // Stopping again is fine and says there was nothing to stop.
  auto again = m.stop("c1");
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->was_running);
}

TEST_F(VtpmManagerTest, PcrsAndKeySurviveStopAndStart) {
  VtpmManager m(opts_);
  VtpmInstance inst = start(m, "web");
  std::vector<uint8_t> pcr_before;
  std::string ak_before;
  {
    auto tpm = EsysTpm::open(inst.tcti);
    ASSERT_TRUE(tpm);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE((*tpm)->extend(10, event("f" + std::to_string(i))));
    pcr_before = *(*tpm)->read_pcr(10, Bank::kSha256);
    ak_before = *(*tpm)->attestation_key_pem();
  }
  ASSERT_TRUE(m.stop("web"));
  EXPECT_TRUE(gone(inst.pid));
  EXPECT_TRUE(fs::exists(inst.state_dir / "tpm2-00.volatilestate"));

  inst = start(m, "web");
  EXPECT_EQ(inst.origin, VtpmOrigin::kResumed);
  // The snapshot was handed over and deleted: a crash now must not rewind to it.
  EXPECT_FALSE(fs::exists(inst.state_dir / "tpm2-00.volatilestate"));
  {
    auto tpm = EsysTpm::open(inst.tcti);
    ASSERT_TRUE(tpm);
    EXPECT_EQ(to_hex(*(*tpm)->read_pcr(10, Bank::kSha256)), to_hex(pcr_before));
    EXPECT_EQ(*(*tpm)->attestation_key_pem(), ak_before);
  }

  // A crash loses the PCRs (there is no snapshot) but not the TPM's identity.
  ::kill(inst.pid, SIGKILL);
  ASSERT_TRUE(gone(inst.pid));
  inst = start(m, "web");
  EXPECT_EQ(inst.origin, VtpmOrigin::kStarted);
  {
    auto tpm = EsysTpm::open(inst.tcti);
    ASSERT_TRUE(tpm);
    EXPECT_EQ(*(*tpm)->read_pcr(10, Bank::kSha256), std::vector<uint8_t>(32, 0));
    EXPECT_EQ(*(*tpm)->attestation_key_pem(), ak_before);
  }
  ASSERT_TRUE(m.destroy("web"));
  EXPECT_TRUE(gone(inst.pid));
}

TEST_F(VtpmManagerTest, ANewManagerReattachesToRunningSwtpm) {
  std::vector<uint8_t> pcr;
  pid_t pid = -1;
  {
    VtpmManager first(opts_);  // "nsimad" before its restart
    VtpmInstance inst = start(first, "db");
    pid = inst.pid;
    auto tpm = EsysTpm::open(inst.tcti);
    ASSERT_TRUE(tpm);
    ASSERT_TRUE((*tpm)->extend(10, event("query")));
    pcr = *(*tpm)->read_pcr(10, Bank::kSha1);
  }
  // The manager is gone; its swtpm is not.
  EXPECT_TRUE(SwtpmProcess::process_exists(pid));

  VtpmManager second(opts_);
  auto all = second.attach_all();
  ASSERT_TRUE(all) << all.error().to_string();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].ns, "db");
  EXPECT_EQ((*all)[0].pid, pid);
  EXPECT_EQ((*all)[0].origin, VtpmOrigin::kAttached);

  VtpmManager third(opts_);
  VtpmInstance inst = start(third, "db");
  EXPECT_EQ(inst.origin, VtpmOrigin::kAttached);
  EXPECT_EQ(inst.pid, pid);
  auto tpm = EsysTpm::open(inst.tcti);
  ASSERT_TRUE(tpm);
  EXPECT_EQ(*(*tpm)->read_pcr(10, Bank::kSha1), pcr);

  // start() on a running namespace is idempotent.
  VtpmInstance same = start(third, "db");
  EXPECT_EQ(same.pid, pid);

  auto stopped = third.stop("db");
  ASSERT_TRUE(stopped);
  EXPECT_TRUE(stopped->was_running);
  EXPECT_TRUE(gone(pid));
}

TEST_F(VtpmManagerTest, EsysTpmFollowsItsVtpmThroughARestart) {
  VtpmManager m(opts_);
  VtpmInstance inst = start(m, "ns1");
  auto tpm = EsysTpm::open(inst.tcti);
  ASSERT_TRUE(tpm);
  ASSERT_TRUE((*tpm)->extend(10, event("a")));
  auto before = (*tpm)->read_pcr(10, Bank::kSha512);
  ASSERT_TRUE(before);
  ASSERT_TRUE(m.stop("ns1"));
  auto during = (*tpm)->read_pcr(10, Bank::kSha512);
  EXPECT_FALSE(during);  // a clear error while the vTPM is down
  inst = start(m, "ns1");
  auto after = (*tpm)->read_pcr(10, Bank::kSha512);  // reconnects by itself
  ASSERT_TRUE(after) << after.error().to_string();
  EXPECT_EQ(*after, *before);
  ASSERT_TRUE(m.stop("ns1"));
  EXPECT_TRUE(gone(inst.pid));
}

TEST_F(VtpmManagerTest, NamespacesHaveSeparateTpms) {
  VtpmManager m(opts_);
  VtpmInstance a = start(m, "a");
  VtpmInstance b = start(m, "b");
  ASSERT_NE(a.pid, b.pid);
  auto ta = EsysTpm::open(a.tcti);
  auto tb = EsysTpm::open(b.tcti);
  ASSERT_TRUE(ta && tb);
  ASSERT_TRUE((*ta)->extend(10, event("only in a")));
  EXPECT_NE(*(*ta)->read_pcr(10, Bank::kSha256), std::vector<uint8_t>(32, 0));
  EXPECT_EQ(*(*tb)->read_pcr(10, Bank::kSha256), std::vector<uint8_t>(32, 0));
  EXPECT_NE(*(*ta)->attestation_key_pem(), *(*tb)->attestation_key_pem());
  EXPECT_EQ(m.running().size(), 2u);
  ASSERT_TRUE(m.destroy("a"));
  ASSERT_TRUE(m.destroy("b"));
  EXPECT_TRUE(gone(a.pid));
  EXPECT_TRUE(gone(b.pid));
  EXPECT_FALSE(fs::exists(a.state_dir));
  EXPECT_FALSE(fs::exists(a.run_dir));
}

TEST_F(VtpmManagerTest, DestroyForgetsTheTpm) {
  VtpmManager m(opts_);
  VtpmInstance inst = start(m, "tmp");
  std::string ak;
  {
    auto tpm = EsysTpm::open(inst.tcti);
    ASSERT_TRUE(tpm);
    ak = *(*tpm)->attestation_key_pem();
  }
  auto d = m.destroy("tmp");
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->was_running);
  EXPECT_FALSE(d->state_saved);
  EXPECT_TRUE(gone(inst.pid));
  EXPECT_FALSE(fs::exists(inst.state_dir));
  inst = start(m, "tmp");
  auto tpm = EsysTpm::open(inst.tcti);
  ASSERT_TRUE(tpm);
  EXPECT_NE(*(*tpm)->attestation_key_pem(), ak);  // new seeds, new identity
  ASSERT_TRUE(m.destroy("tmp"));
  EXPECT_TRUE(gone(inst.pid));
}

TEST_F(VtpmManagerTest, HungSwtpmIsKilledWithinTheTimeouts) {
  VtpmManager m(opts_);
  VtpmInstance inst = start(m, "hung");
  ASSERT_EQ(::kill(inst.pid, SIGSTOP), 0);

  auto t0 = std::chrono::steady_clock::now();
  auto h = m.healthy("hung");
  ASSERT_TRUE(h);
  EXPECT_FALSE(*h);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2000));

  t0 = std::chrono::steady_clock::now();
  auto stopped = m.stop("hung");
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(stopped) << stopped.error().to_string();
  EXPECT_TRUE(stopped->was_running);
  EXPECT_FALSE(stopped->state_saved);
  EXPECT_TRUE(stopped->forced);
  EXPECT_TRUE(gone(inst.pid));
  // 2 control commands (0.5 s each) + SIGTERM wait (1 s) + SIGKILL, with slack for a busy host.
  EXPECT_LT(took, std::chrono::milliseconds(6000));
  EXPECT_FALSE(fs::exists(inst.state_dir / "tpm2-00.volatilestate"));
}

TEST_F(VtpmManagerTest, StartReplacesAHungSwtpm) {
  VtpmManager m(opts_);
  VtpmInstance hung = start(m, "x");
  ASSERT_EQ(::kill(hung.pid, SIGSTOP), 0);
  VtpmInstance fresh = start(m, "x");
  EXPECT_NE(fresh.pid, hung.pid);
  EXPECT_EQ(fresh.origin, VtpmOrigin::kStarted);
  EXPECT_TRUE(gone(hung.pid));
  ASSERT_TRUE(m.destroy("x"));
  EXPECT_TRUE(gone(fresh.pid));
}

TEST_F(VtpmManagerTest, CrashedSwtpmLeavesNothingBehind) {
  VtpmManager m(opts_);
  VtpmInstance inst = start(m, "crash");
  ::kill(inst.pid, SIGKILL);
  ASSERT_TRUE(gone(inst.pid));
  VtpmManager other(opts_);
  auto all = other.attach_all();  // finds the stale pid file, attaches nothing
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->empty());
  EXPECT_FALSE(fs::exists(inst.run_dir / "swtpm.pid"));
  auto s = m.stop("crash");
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->was_running);
}

TEST_F(VtpmManagerTest, RejectsBadNamesAndMissingBinary) {
  VtpmManager m(opts_);
  for (const std::string& bad :
       std::vector<std::string>{"", "../etc", "a/b", ".hidden", "sp ace", std::string(65, 'n')}) {
    auto r = m.start(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, EINVAL) << bad;
    EXPECT_FALSE(m.stop(bad));
  }
  EXPECT_TRUE(validate_vtpm_name("ctr-0123.abc_D"));

  VtpmOptions o = opts_;
  o.swtpm = "/nonexistent/bin/swtpm";
  VtpmManager broken(o);
  auto r = broken.start("n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("/nonexistent/bin/swtpm"), std::string::npos)
      << r.error().to_string();
  EXPECT_TRUE(broken.running().empty());
}

TEST_F(VtpmManagerTest, SocketPathTooLongIsRefused) {
  VtpmOptions o = opts_;
  o.run_root = root_ / std::string(90, 'r');
  VtpmManager m(o);
  auto r = m.start("some-namespace");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENAMETOOLONG);
}

}  // namespace
}  // namespace nsima::tpm

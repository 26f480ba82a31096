// SPDX-License-Identifier: Apache-2.0
// The holes of the old pipeline, each shown closed against a real swtpm (no BPF):
//   - topology changes recompute owner, default PCR and policy validity (a child of a deleted
//     vTPM namespace must never extend the host TPM's PCR 10, kernel IMA's);
//   - namespace ids are never reissued, and a deleted namespace's vTPM state is archived, never
//     resumed by a later tenant;
//   - an extend that fails while a namespace is deleted does not deadlock, and a quote running
//     while its namespace is deleted does not use a freed TPM;
//   - a restart where capture did not continue records the gap in every list that continues.
#include <signal.h>
#include <sys/wait.h>

#include <condition_variable>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "pipeline_fixture.h"

namespace nsima::ns {
namespace {

using pipetest::PipelineTest;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A real TPM behind a gate: extends and quotes can be held, then released (optionally failing),
// so tests can line up the races the pipeline must survive.
class GateTpm : public tpm::Tpm {
 public:
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool hold_extends = false, hold_quotes = false, fail_extends = false;
    int extends_waiting = 0, quotes_waiting = 0;
    void release_all(bool fail) {
      std::lock_guard lock(mu);
      hold_extends = hold_quotes = false;
      fail_extends = fail;
      cv.notify_all();
    }
    bool wait_for_waiter(int Gate::*counter, std::chrono::milliseconds t) {
      std::unique_lock lock(mu);
      return cv.wait_for(lock, t, [&] { return this->*counter > 0; });
    }
  };
  GateTpm(std::unique_ptr<tpm::Tpm> real, std::shared_ptr<Gate> gate)
      : real_(std::move(real)), gate_(std::move(gate)) {}

  Result<std::vector<tpm::Bank>> banks() override { return real_->banks(); }
  Result<void> extend(int pcr, const std::vector<tpm::BankDigest>& d) override {
    {
      std::unique_lock lock(gate_->mu);
      gate_->extends_waiting++;
      gate_->cv.notify_all();
      gate_->cv.wait(lock, [&] { return !gate_->hold_extends; });
      gate_->extends_waiting--;
      if (gate_->fail_extends) return make_error(EIO, "gate: extend refused", "GateTpm");
    }
    return real_->extend(pcr, d);
  }
  Result<std::map<int, std::vector<uint8_t>>> read_pcrs(tpm::Bank b,
                                                        const std::vector<int>& p) override {
    return real_->read_pcrs(b, p);
  }
  Result<tpm::Quote> quote(const std::vector<tpm::PcrSelection>& s,
                           const std::vector<uint8_t>& n) override {
    {
      std::unique_lock lock(gate_->mu);
      gate_->quotes_waiting++;
      gate_->cv.notify_all();
      gate_->cv.wait(lock, [&] { return !gate_->hold_quotes; });
      gate_->quotes_waiting--;
    }
    return real_->quote(s, n);
  }
  Result<std::string> attestation_key_pem() override { return real_->attestation_key_pem(); }
  std::string describe() const override { return real_->describe(); }

 private:
  std::unique_ptr<tpm::Tpm> real_;
  std::shared_ptr<Gate> gate_;
};

class PipelineCoreTest : public PipelineTest {
 protected:
  void gate_tpms() {
    gate_ = std::make_shared<GateTpm::Gate>();
    auto gate = gate_;
    opts_.open_tpm = [gate](const std::string& tcti) -> Result<std::unique_ptr<tpm::Tpm>> {
      auto t = tpm::EsysTpm::open(tcti);
      if (!t) return tl::unexpected(t.error());
      return std::unique_ptr<tpm::Tpm>(std::make_unique<GateTpm>(std::move(*t), gate));
    };
  }
  Pipeline::CreateOptions measuring(bool vtpm, const std::string& extra = "") {
    Pipeline::CreateOptions o;
    o.vtpm = vtpm;
    o.policy_text = "measure func=FILE_CHECK mask=^MAY_READ " + extra + "\n";
    o.policy_origin = "ns.policy";
    return o;
  }
  std::string pcr_value(const std::string& tcti, int pcr) {
    auto out = nsima::testing::run_tool({"tpm2_pcrread", "-T", tcti, "sha256:" + std::to_string(pcr)});
    EXPECT_EQ(out.rc, 0) << out.output;
    return out.output;
  }
  std::shared_ptr<GateTpm::Gate> gate_;
};

// Deleting a vTPM namespace moves its child under the host: the child's list restarts on the
// host's PCR and its entries are extended into host PCR 23, never into PCR 10 (kernel IMA's).
TEST_F(PipelineCoreTest, ChildOfDeletedVtpmNamespaceMovesToHostPcr) {
  start();
  ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK mask=^MAY_READ\n", "h"));
  auto v = p_->create_namespace(cgroup("v"), measuring(true));
  ASSERT_TRUE(v) << v.error().to_string();
  auto c = p_->create_namespace(cgroup("v/c"), measuring(false));
  ASSERT_TRUE(c) << c.error().to_string();
  std::string cs = std::to_string(*c);
  EXPECT_EQ(p_->namespace_info(cs)->owner, std::to_string(*v));
  EXPECT_EQ(p_->namespace_info(cs)->pcr, 10);
  submit(read_event(file("before", "b"), *c));
  EXPECT_NE(list(cs).find("/before"), std::string::npos);

  std::string pcr10 = pcr_value(tpm_.tcti(), 10);
  ASSERT_TRUE(p_->delete_namespace(std::to_string(*v)));
  auto info = p_->namespace_info(cs);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->owner, "host");
  EXPECT_EQ(info->pcr, 23);
  // a list is always under one owner: the old one is archived, the new one starts over
  EXPECT_EQ(list(cs).find("/before"), std::string::npos) << list(cs);
  submit(read_event(file("after", "a"), *c));
  std::string child = list(cs), host = list("host");
  ASSERT_NE(child.find("/after"), std::string::npos) << child;
  std::string line = child.substr(child.rfind('\n', child.find("/after")) + 1);
  EXPECT_EQ(line.rfind("23 ", 0), 0u) << "ascii lines begin with the PCR: " << line;
  EXPECT_NE(host.find("/after"), std::string::npos) << host;
  EXPECT_EQ(pcr_value(tpm_.tcti(), 10), pcr10) << "the host TPM's PCR 10 was extended";
  expect_pcr_matches_list("host");
}

// A child whose policy uses a vTPM-only PCR cannot be moved under the host: the delete is
// refused and nothing changes.
TEST_F(PipelineCoreTest, TopologyChangeThatWouldInvalidateAPolicyIsRefused) {
  start();
  auto v = p_->create_namespace(cgroup("v"), measuring(true));
  ASSERT_TRUE(v) << v.error().to_string();
  auto c = p_->create_namespace(cgroup("v/c"), measuring(false, "pcr=11"));
  ASSERT_TRUE(c) << c.error().to_string();
  auto d = p_->delete_namespace(std::to_string(*v));
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("would move under host"), std::string::npos)
      << d.error().to_string();
  EXPECT_TRUE(p_->namespace_info(std::to_string(*v)));
  EXPECT_EQ(p_->namespace_info(std::to_string(*c))->owner, std::to_string(*v));
}

// A vTPM namespace created above an existing host-owned one becomes its owner.
TEST_F(PipelineCoreTest, VtpmNamespaceCreatedAboveTakesOverTheChild) {
  start();
  ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK mask=^MAY_READ\n", "h"));
  std::string inner = cgroup("w/x");
  auto x = p_->create_namespace(inner, measuring(false));
  ASSERT_TRUE(x) << x.error().to_string();
  std::string xs = std::to_string(*x);
  EXPECT_EQ(p_->namespace_info(xs)->pcr, 23);
  auto w = p_->create_namespace(cgroup("w"), measuring(true));
  ASSERT_TRUE(w) << w.error().to_string();
  auto info = p_->namespace_info(xs);
  EXPECT_EQ(info->owner, std::to_string(*w));
  EXPECT_EQ(info->pcr, 10);
  submit(read_event(file("inside", "i"), *x));
  EXPECT_NE(list(std::to_string(*w)).find("/inside"), std::string::npos);
  // the vTPM's PCR 10 is its list's replay; the host measures the access in its own right
  auto rep = p_->pcr_report(std::to_string(*w));
  ASSERT_TRUE(rep) << rep.error().to_string();
  EXPECT_EQ(rep->pcr, 10);
  EXPECT_EQ(rep->values.at("sha256"), rep->expected.at("sha256"));
  expect_pcr_matches_list("host");
}

TEST_F(PipelineCoreTest, NamespaceIdsAreNeverReissued) {
  start();
  auto a = p_->create_namespace(cgroup("a"), measuring(false));
  ASSERT_TRUE(a);
  ASSERT_TRUE(p_->delete_namespace(std::to_string(*a)));
  restart();
  auto b = p_->create_namespace(cgroup("b"), measuring(false));
  ASSERT_TRUE(b) << b.error().to_string();
  EXPECT_GT(*b, *a);
}

// A deleted namespace's vTPM state goes to the archive with its list; a new vTPM namespace on
// the same cgroup starts from a fresh vTPM whose PCR 10 is its own list's replay.
TEST_F(PipelineCoreTest, DeletedVtpmIsArchivedNotResumed) {
  start();
  std::string dir = cgroup("v");
  auto v = p_->create_namespace(dir, measuring(true));
  ASSERT_TRUE(v) << v.error().to_string();
  submit(read_event(file("old-tenant", "o"), *v));
  ASSERT_TRUE(p_->delete_namespace(std::to_string(*v)));
  bool archived = false;
  for (auto& d : fs::directory_iterator(opts_.state_dir + "/archive"))
    if (d.path().filename().string().rfind(std::to_string(*v) + ".deleted-", 0) == 0)
      archived = fs::exists(d.path() / "vtpm");
  EXPECT_TRUE(archived) << "no vtpm/ in the deleted namespace's archive";
  EXPECT_FALSE(fs::exists(opts_.state_dir + "/vtpm/" + std::to_string(*v)));
  restart();
  auto w = p_->create_namespace(dir, measuring(true));
  ASSERT_TRUE(w) << w.error().to_string();
  EXPECT_NE(*w, *v);
  submit(read_event(file("new-tenant", "n"), *w));
  auto rep = p_->pcr_report(std::to_string(*w));
  ASSERT_TRUE(rep) << rep.error().to_string();
  EXPECT_EQ(rep->values.at("sha256"), rep->expected.at("sha256"));
  EXPECT_EQ(list(std::to_string(*w)).find("old-tenant"), std::string::npos);
}

// The extender reports a failure while a namespace is being deleted: the old pipeline held its
// lock across the extender's drain, and the failure callback needed that lock.
TEST_F(PipelineCoreTest, ExtendFailureDuringDeleteDoesNotDeadlock) {
  gate_tpms();
  start();
  ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK mask=^MAY_READ\n", "h"));
  auto a = p_->create_namespace(cgroup("a"), measuring(false));
  ASSERT_TRUE(a);
  {
    std::lock_guard lock(gate_->mu);
    gate_->hold_extends = true;
  }
  p_->submit(read_event(file("held", "h"), kHostNsId));
  ASSERT_TRUE(gate_->wait_for_waiter(&GateTpm::Gate::extends_waiting, 10s));
  auto del = std::async(std::launch::async, [&] { return p_->delete_namespace(std::to_string(*a)); });
  if (del.wait_for(300ms) == std::future_status::ready) {
    EXPECT_TRUE(del.get());
  }
  gate_->release_all(/*fail=*/true);
  if (del.valid() && del.wait_for(10s) != std::future_status::ready) {
    ADD_FAILURE() << "delete_namespace deadlocked with a failing extend";
    std::_Exit(1);
  }
  if (del.valid()) {
    EXPECT_TRUE(del.get());
  }
  for (int i = 0; i < 100 && !p_->namespace_info("host")->disabled; ++i)
    std::this_thread::sleep_for(50ms);
  auto host = p_->namespace_info("host");
  EXPECT_TRUE(host->disabled);
  EXPECT_NE(host->disabled_reason.find("extend of entry"), std::string::npos)
      << host->disabled_reason;
}

// A quote waiting on its vTPM while the namespace is deleted: the TPM must outlive the quote.
TEST_F(PipelineCoreTest, QuoteDuringDeleteKeepsItsTpm) {
  gate_tpms();
  start();
  auto v = p_->create_namespace(cgroup("v"), measuring(true));
  ASSERT_TRUE(v) << v.error().to_string();
  submit(read_event(file("q", "q"), *v));
  {
    std::lock_guard lock(gate_->mu);
    gate_->hold_quotes = true;
  }
  auto q = std::async(std::launch::async,
                      [&] { return p_->quote(std::to_string(*v), {1, 2, 3, 4}); });
  ASSERT_TRUE(gate_->wait_for_waiter(&GateTpm::Gate::quotes_waiting, 10s));
  ASSERT_TRUE(p_->delete_namespace(std::to_string(*v)));
  gate_->release_all(false);
  ASSERT_EQ(q.wait_for(20s), std::future_status::ready);
  auto r = q.get();  // an error (its swtpm is stopped) is fine; a freed TPM is not
  if (!r) {
    EXPECT_FALSE(r.error().message.empty());
  }
}

// Capture did not continue across the restart (fresh hooks): the list says so.
TEST_F(PipelineCoreTest, CaptureGapIsAViolationInEveryContinuedList) {
  start();
  ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK mask=^MAY_READ\n", "h"));
  auto a = p_->create_namespace(cgroup("a"), measuring(false));
  ASSERT_TRUE(a);
  submit(read_event(file("x", "x"), *a));
  restart();  // capture continued: nothing to say
  EXPECT_EQ(list("host").find("nsima:capture-gap"), std::string::npos);
  opts_.capture_gap = "hooks-reattached";
  restart();
  EXPECT_NE(list("host").find(" nsima:capture-gap:hooks-reattached\n"), std::string::npos)
      << list("host");
  EXPECT_NE(list(std::to_string(*a)).find(" nsima:capture-gap:hooks-reattached\n"),
            std::string::npos);
  expect_pcr_matches_list("host");
}

// A cgroup removed without an OCI poststop (the runtime was killed) ends its namespace as
// poststop would: after the grace period it is deleted, its list and vTPM state archived with
// ended.json (container id, cgroup, the final PCR values). A cgroup replaced by another of the
// same name counts as gone; a namespace deleted during the grace period is left alone; the
// container id survives a restart.
TEST_F(PipelineCoreTest, NamespaceWhoseCgroupIsRemovedIsEndedAndArchived) {
  opts_.cgroup_check = std::chrono::milliseconds(50);
  opts_.cgroup_gone_grace = std::chrono::milliseconds(2000);
  start();
  auto o = measuring(true);
  o.container = "ctr-1";
  std::string gone_dir = cgroup("gone"), re_dir = cgroup("re"), del_dir = cgroup("del");
  auto g = p_->create_namespace(gone_dir, o);
  ASSERT_TRUE(g) << g.error().to_string();
  auto re = p_->create_namespace(re_dir, measuring(false));
  ASSERT_TRUE(re) << re.error().to_string();
  auto del = p_->create_namespace(del_dir, measuring(false));
  ASSERT_TRUE(del) << del.error().to_string();
  auto stays = p_->create_namespace(cgroup("stays"), measuring(false));
  ASSERT_TRUE(stays) << stays.error().to_string();
  const std::string gs = std::to_string(*g), res = std::to_string(*re), dels = std::to_string(*del);
  o.container = "../x";
  auto bad = p_->create_namespace(cgroup("bad"), o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().where, "container");
  restart();
  ASSERT_TRUE(p_->namespace_info(gs));
  EXPECT_EQ(p_->namespace_info(gs)->container, "ctr-1") << "kept across a restart";
  submit(read_event(file("x", "x"), *g));
  ASSERT_NE(list(gs).find("/x"), std::string::npos);

  ASSERT_EQ(rmdir(gone_dir.c_str()), 0) << strerror(errno);
  ASSERT_EQ(rmdir(re_dir.c_str()), 0) << strerror(errno);
  ASSERT_EQ(mkdir(re_dir.c_str(), 0755), 0) << strerror(errno);  // same name, another cgroup
  ASSERT_EQ(rmdir(del_dir.c_str()), 0) << strerror(errno);
  EXPECT_TRUE(p_->namespace_info(gs)) << "ended before its grace period";
  ASSERT_TRUE(p_->delete_namespace(dels));  // as poststop does during the grace period
  auto t0 = std::chrono::steady_clock::now();
  while ((p_->namespace_info(gs) || p_->namespace_info(res)) &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(p_->namespace_info(gs)) << "its cgroup is gone";
  EXPECT_FALSE(p_->namespace_info(res)) << "its cgroup was replaced";
  EXPECT_TRUE(p_->namespace_info(std::to_string(*stays)));

  const fs::path archive = fs::path(opts_.state_dir) / "archive";
  fs::path ended;
  std::error_code ec;
  for (auto& d : fs::directory_iterator(archive, ec)) {
    std::string n = d.path().filename().string();
    if (n.rfind(gs + ".cgroup-gone-", 0) == 0) ended = d.path();
    EXPECT_NE(n.rfind(dels + ".cgroup-gone-", 0), 0u) << "deleted in its grace period: " << n;
  }
  ASSERT_FALSE(ended.empty()) << "no archive " << gs << ".cgroup-gone-* in " << archive;
  std::ifstream in(ended / "ended.json");
  auto j = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(j.is_object()) << (ended / "ended.json");
  EXPECT_EQ(j.value("reason", ""), "cgroup-gone");
  EXPECT_EQ(j.value("container", ""), "ctr-1");
  EXPECT_EQ(j.value("cgroup", ""), fs::canonical(cg_).string() + "/t-" + std::to_string(getpid()) + "-gone");
  ASSERT_TRUE(j["pcrs"].contains("values")) << j.dump();
  EXPECT_EQ(j["pcrs"].value("pcr", -1), 10);
  const std::string final10 = j["pcrs"]["values"].value("sha256", "");
  EXPECT_EQ(final10, j["pcrs"]["expected"].value("sha256", "")) << "the PCR replays its list";
  EXPECT_NE(final10, std::string(64, '0')) << "the vTPM was extended";
  EXPECT_TRUE(fs::is_directory(ended / "vtpm")) << "the vTPM's state goes with the list";
  bool has_list = false;
  for (auto& f : fs::directory_iterator(ended, ec)) has_list |= f.path().filename() != "ended.json" && f.is_regular_file();
  EXPECT_TRUE(has_list) << "the list is in " << ended;
  // and the container's archive, as its poststop would have written it
  const fs::path oci = archive / ("oci-ctr-1-ns" + gs);
  std::ifstream cj(oci / "container.json"), pj(oci / "pcrs.json"), aj(oci / "ascii_runtime_measurements");
  auto c = nlohmann::json::parse(cj, nullptr, false);
  ASSERT_TRUE(c.is_object()) << oci / "container.json";
  EXPECT_EQ(c.value("container", ""), "ctr-1");
  EXPECT_EQ(c.value("ended", ""), "cgroup-gone");
  auto pc = nlohmann::json::parse(pj, nullptr, false);
  ASSERT_TRUE(pc.is_object()) << oci / "pcrs.json";
  EXPECT_EQ(pc["values"].value("sha256", ""), final10);
  std::stringstream ascii;
  ascii << aj.rdbuf();
  EXPECT_NE(ascii.str().find("/x"), std::string::npos) << ascii.str();
  EXPECT_GT(fs::file_size(oci / "binary_runtime_measurements", ec), 0u);
}

// The state filesystem full while appending: the namespace is suspended (fail-safe: nothing
// recorded or judged allowed, status says why and how many entries were lost), resumes when
// space returns with the violation nsima:suspended:no-space:<lost>, and its list still replays
// to its vTPM's PCR 10: no half-written record.
TEST_F(PipelineCoreTest, FullStateFilesystemSuspendsThenResumes) {
  const std::string small = dir_ + "/small";
  fs::create_directories(small);
  ASSERT_EQ(mount("none", small.c_str(), "tmpfs", 0, "size=2m"), 0) << strerror(errno);
  mounts_.push_back(small);
  opts_.state_dir = small + "/state";
  start();
  auto v = p_->create_namespace(cgroup("v"), measuring(true));
  ASSERT_TRUE(v) << v.error().to_string();
  const std::string vs = std::to_string(*v);
  submit(read_event(file("before", "b"), *v));
  ASSERT_NE(list(vs).find("/before"), std::string::npos);

  // fill it
  {
    std::ofstream fill(small + "/filler", std::ios::binary);
    std::string block(4096, 'f');
    while (fill.write(block.data(), block.size()) && fill.flush()) {
    }
  }
  int n = 0;
  for (; n < 400 && p_->namespace_info(vs)->suspended.empty(); ++n)
    submit(read_event(file("f" + std::to_string(n), std::to_string(n)), *v));
  auto info = p_->namespace_info(vs);
  ASSERT_FALSE(info->suspended.empty()) << "never suspended after " << n << " files";
  EXPECT_EQ(info->suspended.rfind("no space for its list", 0), 0u) << info->suspended;
  EXPECT_FALSE(info->disabled) << info->disabled_reason;
  submit(read_event(file("while", "w"), *v));
  info = p_->namespace_info(vs);
  EXPECT_GE(info->lost, 2u) << "the entry that failed and the one after it";
  const uint64_t lost = info->lost;
  EXPECT_EQ(list(vs).find("/while"), std::string::npos);

  fs::remove(small + "/filler");
  auto t0 = std::chrono::steady_clock::now();
  while (!p_->namespace_info(vs)->suspended.empty() &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(p_->namespace_info(vs)->suspended.empty()) << "not resumed with space back";
  std::string l = list(vs);
  EXPECT_NE(l.find("nsima:suspended:no-space:" + std::to_string(lost)), std::string::npos) << l;
  submit(read_event(file("while", "w"), *v));  // not judged while suspended: measured now
  EXPECT_NE(list(vs).find("/while"), std::string::npos);
  auto rep = p_->pcr_report(vs);
  ASSERT_TRUE(rep) << rep.error().to_string();
  EXPECT_EQ(rep->values.at("sha256"), rep->expected.at("sha256")) << "the list replays to PCR 10";
  std::ifstream audit(p_->namespace_info(vs)->audit_path);
  std::stringstream a;
  a << audit.rdbuf();
  EXPECT_NE(a.str().find("\"event\":\"resumed\""), std::string::npos) << a.str();
}

// A vTPM's swtpm killed: the next extend fails, nsimad starts a fresh swtpm, archives the list
// (its PCRs are gone) and restarts it on the new vTPM, where files are measured again; the host
// list records nsima:ns-N-vtpm-restarted. Nothing is disabled.
TEST_F(PipelineCoreTest, KilledVtpmIsRestartedAndItsListStartsOver) {
  start();
  auto v = p_->create_namespace(cgroup("v"), measuring(true));
  ASSERT_TRUE(v) << v.error().to_string();
  const std::string vs = std::to_string(*v);
  submit(read_event(file("a", "a"), *v));
  ASSERT_NE(list(vs).find("/a"), std::string::npos);
  std::ifstream pidf(fs::path(opts_.run_dir) / "vtpm" / vs / "swtpm.pid");
  pid_t pid = 0;
  ASSERT_TRUE(pidf >> pid) << "no swtpm pid file";
  ASSERT_EQ(kill(pid, SIGKILL), 0) << strerror(errno);
  for (int i = 0; i < 100 && kill(pid, 0) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // until it is reaped

  submit(read_event(file("b", "b"), *v));  // its extend fails
  auto t0 = std::chrono::steady_clock::now();
  while (list("host").find("nsima:ns-" + vs + "-vtpm-restarted") == std::string::npos &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_NE(list("host").find("nsima:ns-" + vs + "-vtpm-restarted"), std::string::npos)
      << list("host");
  auto info = p_->namespace_info(vs);
  ASSERT_TRUE(info);
  EXPECT_FALSE(info->disabled) << info->disabled_reason;
  EXPECT_EQ(list(vs).find("/b"), std::string::npos) << "the list started over: " << list(vs);
  submit(read_event(file("a", "a"), *v));  // measured again in the new list
  EXPECT_NE(list(vs).find("/a"), std::string::npos) << list(vs);
  auto rep = p_->pcr_report(vs);
  ASSERT_TRUE(rep) << rep.error().to_string();
  EXPECT_EQ(rep->values.at("sha256"), rep->expected.at("sha256")) << "the new list replays";
  bool archived = false;
  std::error_code ec;
  for (auto& d : fs::directory_iterator(fs::path(opts_.state_dir) / "archive", ec))
    archived |= d.path().filename().string().rfind(vs + ".vtpm-restarted-", 0) == 0;
  EXPECT_TRUE(archived) << "the old list is archived";
}

}  // namespace
}  // namespace nsima::ns

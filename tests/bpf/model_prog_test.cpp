// SPDX-License-Identifier: Apache-2.0
// The model hooks' helpers (bpf/model.bpf.h) run by the real verifier against real maps and
// the host kernel's own task and cgroup structures, through the SEC("syscall") wrappers of
// bpf/model_selftest.bpf.c (LSM programs have no test run): the decision table, untrust
// inheritance at fork, sockaddr copies, kernel-signal detection, the namespace of another task
// through the kernfs walk (CO-RE: kernfs_node.parent became __parent in 6.15), the refusal of
// an untrusted process's accesses, and the events' layout as nsimad decodes them. Also the
// layout of include/nsima/model_abi.h against the production object's BTF.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>

#include "model/event_decode.h"
#include "model_selftest_abi.h"
#include "nsima_model_selftest.skel.h"

namespace nsima::model {
namespace {

namespace fs = std::filesystem;

struct SkelDeleter {
  void operator()(nsima_model_selftest* s) const { nsima_model_selftest::destroy(s); }
};

constexpr uint32_t kNs = 7;

class ModelProg : public ::testing::Test {
 protected:
  void SetUp() override {
    skel_.reset(nsima_model_selftest::open());
    ASSERT_TRUE(skel_) << "opening nsima_model_selftest.bpf.o failed (errno " << errno << ")";
    configure(skel_.get());
    ASSERT_EQ(nsima_model_selftest::load(skel_.get()), 0)
        << "loading nsima_model_selftest.bpf.o failed (errno " << errno
        << "): SEC(\"syscall\") programs need Linux >= 5.14 and root";
    rb_ = ring_buffer__new(bpf_map__fd(skel_->maps.mevents), &ModelProg::on_event, this, nullptr);
    ASSERT_NE(rb_, nullptr);
  }
  void TearDown() override {
    if (rb_) ring_buffer__free(rb_);
  }
  // Between open and load: map sizes.
  virtual void configure(nsima_model_selftest*) {}

  template <class Args>
  void run(bpf_program* prog, Args& args) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));
    ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(prog), &opts), 0)
        << "BPF_PROG_TEST_RUN failed: " << strerror(errno);
  }

  static int on_event(void* ctx, void* data, size_t size) {
    auto* self = static_cast<ModelProg*>(ctx);
    self->events_.emplace_back(static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
    return 0;
  }
  std::vector<std::vector<uint8_t>> drain() {
    events_.clear();
    EXPECT_GE(ring_buffer__consume(rb_), 0);
    return events_;
  }

  uint32_t decide(uint32_t flags, int untrusted, uint32_t hook, int cross) {
    nsima_mtest_decide a{flags, untrusted, hook, cross, 0xdead};
    run(skel_->progs.nsima_mtest_decide, a);
    return a.decision;
  }

  void set_model(uint32_t ns, uint32_t flags) {
    nsima_model_ns v{flags, 0};
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.model_ns), &ns, &v, BPF_ANY), 0);
  }
  void register_cgroup(uint64_t id, uint32_t ns) {
    nsima_cgroup v{ns, NSIMA_CG_REGISTERED};
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.cgroups), &id, &v, BPF_ANY), 0);
  }
  // The calling task is in registered cgroup 100 (namespace kNs) as far as the current-task
  // resolution goes (the selftest ancestor chain); its real cgroup is what the walk reads.
  nsima_mtest_task task_event(uint32_t hook, uint32_t arg0 = 0) {
    for (auto& a : skel_->bss->selftest_ancestors) a = 0;
    skel_->bss->selftest_ancestors[0] = 1;
    skel_->bss->selftest_ancestors[1] = 100;
    nsima_mtest_task a{};
    a.cgroup_id = 100;
    a.hook = hook;
    a.arg0 = arg0;
    run(skel_->progs.nsima_mtest_task, a);
    return a;
  }
  void mark_untrusted(const nsima_proc_key& k, uint32_t ns = kNs) {
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.untrusted), &k, &ns, BPF_ANY), 0);
  }
  uint64_t mstat(uint32_t idx) {
    int ncpu = libbpf_num_possible_cpus();
    std::vector<uint64_t> v(static_cast<size_t>(ncpu));
    EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.mstats), &idx, v.data()), 0);
    uint64_t sum = 0;
    for (auto x : v) sum += x;
    return sum;
  }

  std::unique_ptr<nsima_model_selftest, SkelDeleter> skel_;
  ring_buffer* rb_ = nullptr;
  std::vector<std::vector<uint8_t>> events_;
};

TEST_F(ModelProg, DecisionTable) {
  const uint32_t E = NSIMA_MDECIDE_EMIT, D = NSIMA_MDECIDE_DENY;
  const uint32_t on = NSIMA_MODEL_ON, enf = NSIMA_MODEL_ON | NSIMA_MODEL_ENFORCE;
  // not modeled: nothing, whatever else
  EXPECT_EQ(decide(0, 1, NSIMA_MHOOK_TASK_KILL, 1), 0u);
  EXPECT_EQ(decide(NSIMA_MODEL_ENFORCE, 1, NSIMA_MHOOK_SOCKET_BIND, 0), 0u);
  // learn/seal (ON only): report, never refuse an untrusted process
  EXPECT_EQ(decide(on, 1, NSIMA_MHOOK_PTRACE_ACCESS_CHECK, 0), E);
  // enforce: an untrusted process is refused everything but the lineage tracepoints
  for (uint32_t h : {NSIMA_MHOOK_PTRACE_ACCESS_CHECK, NSIMA_MHOOK_PTRACE_TRACEME,
                     NSIMA_MHOOK_TASK_KILL, NSIMA_MHOOK_SOCKET_CREATE, NSIMA_MHOOK_SOCKET_CONNECT,
                     NSIMA_MHOOK_SOCKET_BIND, NSIMA_MHOOK_FILE_MPROTECT}) {
    EXPECT_EQ(decide(enf, 1, h, 0), E | D) << "hook " << h;
    EXPECT_EQ(decide(enf, 0, h, 0), E) << "hook " << h;
  }
  EXPECT_EQ(decide(enf, 1, NSIMA_MHOOK_FORK, 0), E);
  EXPECT_EQ(decide(enf, 1, NSIMA_MHOOK_EXIT, 0), E);
  // signals across namespaces: refused in every mode unless allowed
  EXPECT_EQ(decide(on, 0, NSIMA_MHOOK_TASK_KILL, 1), E | D);
  EXPECT_EQ(decide(on | NSIMA_MODEL_CROSS_SIGNALS, 0, NSIMA_MHOOK_TASK_KILL, 1), E);
  EXPECT_EQ(decide(on, 0, NSIMA_MHOOK_PTRACE_ACCESS_CHECK, 1), E) << "only signals";
}

TEST_F(ModelProg, UntrustIsInheritedAtFork) {
  nsima_mtest_inherit a{};
  a.parent = {10, 0, 1000};
  a.child = {11, 0, 2000};
  run(skel_->progs.nsima_mtest_inherit, a);
  EXPECT_EQ(a.marked, 0) << "a trusted parent's child stays trusted";
  uint32_t v = 0;
  EXPECT_NE(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.untrusted), &a.child, &v), 0);
  mark_untrusted(a.parent, 9);
  run(skel_->progs.nsima_mtest_inherit, a);
  EXPECT_EQ(a.marked, 1);
  ASSERT_EQ(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.untrusted), &a.child, &v), 0);
  EXPECT_EQ(v, 9u) << "the child carries the namespace that judged its ancestor";
  // the same pid with another start time is another process
  nsima_proc_key reused{10, 0, 5000};
  EXPECT_NE(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.untrusted), &reused, &v), 0);
}

TEST_F(ModelProg, SockaddrCopyAndKernelSignals) {
  nsima_mtest_addr a{};
  for (size_t i = 0; i < sizeof a.src; ++i) a.src[i] = static_cast<uint8_t>(i + 1);
  a.addrlen = 16;
  run(skel_->progs.nsima_mtest_addr, a);
  EXPECT_EQ(a.ev.addr_len, 16u);
  EXPECT_EQ(std::memcmp(a.ev.addr, a.src, 16), 0);
  EXPECT_EQ(a.ev.flags, 0u);
  a = nsima_mtest_addr{};
  a.src[0] = 0xaa;
  a.addrlen = 200;
  run(skel_->progs.nsima_mtest_addr, a);
  EXPECT_EQ(a.ev.addr_len, uint32_t{NSIMA_MODEL_ADDR_MAX});
  EXPECT_EQ(a.ev.addr[0], 0xaa);
  EXPECT_TRUE(a.ev.flags & NSIMA_MEV_ADDR_TRUNCATED);
  a = nsima_mtest_addr{};
  a.addrlen = -22;
  run(skel_->progs.nsima_mtest_addr, a);
  EXPECT_EQ(a.ev.addr_len, 0u);

  auto from_kernel = [&](uint64_t mode, int32_t si_code) {
    nsima_mtest_addr s{};
    s.info_mode = mode;
    s.si_code = si_code;
    run(skel_->progs.nsima_mtest_addr, s);
    return s.from_kernel;
  };
  EXPECT_EQ(from_kernel(0, 0), 0) << "SEND_SIG_NOINFO: kill(2) by a process";
  EXPECT_EQ(from_kernel(1, 0), 1) << "SEND_SIG_PRIV: the kernel";
  EXPECT_EQ(from_kernel(2, 0), 0) << "SI_USER";
  EXPECT_EQ(from_kernel(2, -6), 0) << "SI_TKILL";
  EXPECT_EQ(from_kernel(2, 1), 1) << "CLD_EXITED and the like";
}

// /proc/self/stat field 22 (start time in clock ticks)
uint64_t start_ticks() {
  std::ifstream in("/proc/self/stat");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  std::istringstream rest(s.substr(s.rfind(')') + 2));
  std::string f;
  for (int i = 3; i <= 22; ++i) rest >> f;
  return std::stoull(f);
}

// The cgroup v2 id of this process's cgroup: the inode number of its directory.
uint64_t own_cgroup_id() {
  std::string root, path;
  std::ifstream mounts("/proc/self/mounts");
  for (std::string dev, dir, type, rest; mounts >> dev >> dir >> type && std::getline(mounts, rest);)
    if (type == "cgroup2" && root.empty()) root = dir;
  std::ifstream cg("/proc/self/cgroup");
  for (std::string line; std::getline(cg, line);)
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  struct stat st;
  EXPECT_EQ(::stat((root + path).c_str(), &st), 0) << root << path;
  return st.st_ino;
}

uint64_t cap_eff() {
  std::ifstream in("/proc/self/status");
  for (std::string l; std::getline(in, l);)
    if (l.rfind("CapEff:", 0) == 0) return std::stoull(l.substr(7), nullptr, 16);
  return ~0ull;
}

TEST_F(ModelProg, UnmodeledNamespaceIsNotOurs) {
  register_cgroup(100, kNs);
  auto a = task_event(NSIMA_MHOOK_TASK_KILL, 15);
  EXPECT_EQ(a.entered, 0u);
  EXPECT_EQ(a.verdict, 0);
  EXPECT_EQ(a.gate, 0);
  EXPECT_TRUE(drain().empty());
}

TEST_F(ModelProg, SignalToAnotherNamespaceIsRefusedAndReported) {
  register_cgroup(100, kNs);
  set_model(kNs, NSIMA_MODEL_ON);
  // the caller's real cgroup is registered nowhere: the target (itself, seen through the
  // kernfs walk) is in no namespace, so the signal crosses
  auto a = task_event(NSIMA_MHOOK_TASK_KILL, 15);
  EXPECT_EQ(a.entered, 1u);
  EXPECT_EQ(a.ns_id, kNs);
  EXPECT_EQ(a.target_ns, 0u);
  EXPECT_EQ(a.verdict, -EPERM);
  EXPECT_EQ(a.gate, 0) << "a trusted process's file accesses are not the model's to refuse";
  // the key the hooks compute is (tgid, group leader start_boottime)
  EXPECT_EQ(a.proc.tgid, static_cast<uint32_t>(getpid()));
  const uint64_t tick_ns = 1000000000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  EXPECT_EQ(a.proc.start / tick_ns, start_ticks());

  auto evs = drain();
  ASSERT_EQ(evs.size(), 1u);
  auto ev = decode_model_event(evs[0]);
  ASSERT_TRUE(ev) << ev.error().to_string();
  EXPECT_EQ(ev->hook, uint32_t{NSIMA_MHOOK_TASK_KILL});
  EXPECT_EQ(ev->flags, uint32_t{NSIMA_MEV_DENIED | NSIMA_MEV_CROSS});
  EXPECT_EQ(ev->ns_id, kNs);
  EXPECT_EQ(ev->proc, (ProcKey{a.proc.tgid, a.proc.start}));
  EXPECT_EQ(ev->target, ev->proc);
  EXPECT_EQ(ev->parent.tgid, static_cast<uint32_t>(getppid()));
  EXPECT_EQ(ev->pid, static_cast<uint32_t>(gettid()));
  EXPECT_EQ(ev->coe.uid, getuid());
  EXPECT_EQ(ev->coe.euid, geteuid());
  EXPECT_EQ(ev->coe.fsgid, getegid());
  EXPECT_EQ(ev->coe.cap_effective, cap_eff());
  EXPECT_EQ(ev->raw.arg0, 15u);
  char comm[16] = {};
  std::ifstream("/proc/self/comm").getline(comm, sizeof comm);
  EXPECT_EQ(ev->comm, comm);
  auto cell = model_cell(*ev, Digest{1});
  ASSERT_TRUE(cell);
  auto* kill = std::get_if<KillCell>(&*cell);
  ASSERT_NE(kill, nullptr);
  EXPECT_EQ(kill->signal, 15u);
  EXPECT_EQ(kill->cross_model, 1u);
  EXPECT_EQ(mstat(NSIMA_MSTAT_EMITTED + NSIMA_MHOOK_TASK_KILL), 1u);
  EXPECT_EQ(mstat(NSIMA_MSTAT_DENIED + NSIMA_MHOOK_TASK_KILL), 1u);

  // allowed by the namespace's flag, still reported
  set_model(kNs, NSIMA_MODEL_ON | NSIMA_MODEL_CROSS_SIGNALS);
  EXPECT_EQ(task_event(NSIMA_MHOOK_TASK_KILL, 15).verdict, 0);
  EXPECT_EQ(drain().size(), 1u);
  // the caller's real cgroup registered to the same namespace: not crossing
  set_model(kNs, NSIMA_MODEL_ON);
  register_cgroup(own_cgroup_id(), kNs);
  a = task_event(NSIMA_MHOOK_TASK_KILL, 15);
  EXPECT_EQ(a.target_ns, kNs);
  EXPECT_EQ(a.verdict, 0);
}

TEST_F(ModelProg, UntrustedProcessIsRefusedOnlyWhenEnforcing) {
  register_cgroup(100, kNs);
  set_model(kNs, NSIMA_MODEL_ON);
  auto a = task_event(NSIMA_MHOOK_PTRACE_ACCESS_CHECK, 0x11);
  EXPECT_EQ(a.verdict, 0);
  mark_untrusted(a.proc);
  a = task_event(NSIMA_MHOOK_PTRACE_ACCESS_CHECK, 0x11);
  EXPECT_EQ(a.untrusted, 1u);
  EXPECT_EQ(a.verdict, 0) << "seal: nothing is denied";
  EXPECT_EQ(a.gate, 0);
  set_model(kNs, NSIMA_MODEL_ON | NSIMA_MODEL_ENFORCE);
  a = task_event(NSIMA_MHOOK_PTRACE_ACCESS_CHECK, 0x11);
  EXPECT_EQ(a.verdict, -EPERM);
  EXPECT_EQ(a.gate, -EPERM) << "file_open/mmap_file/bprm_check of an untrusted process";
  EXPECT_EQ(mstat(NSIMA_MSTAT_DENIED_ACCESS), 1u);
  auto evs = drain();
  ASSERT_EQ(evs.size(), 3u);
  auto last = decode_model_event(evs.back());
  ASSERT_TRUE(last);
  EXPECT_EQ(last->flags, uint32_t{NSIMA_MEV_DENIED | NSIMA_MEV_UNTRUSTED | NSIMA_MEV_CROSS});
  auto cell = model_cell(*last, Digest{2});
  ASSERT_TRUE(cell);
  EXPECT_EQ(std::get<PtraceCell>(*cell).mode, 0x11u);
}

// A ring buffer of one page (12 events of 320 bytes) that nobody drains, and an untrusted map
// of `untrusted_entries_`: every event after the twelfth is lost.
class ModelProgLoss : public ModelProg {
 protected:
  void configure(nsima_model_selftest* s) override {
    ASSERT_EQ(bpf_map__set_max_entries(s->maps.mevents, static_cast<uint32_t>(sysconf(_SC_PAGESIZE))),
              0);
    ASSERT_EQ(bpf_map__set_max_entries(s->maps.untrusted, untrusted_entries_), 0);
  }
  uint64_t model_drops(uint32_t ns) {
    uint64_t v = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.model_drops), &ns, &v) != 0) return 0;
    return v;
  }
  bool untrusted_in_map(const nsima_proc_key& k, uint32_t* ns = nullptr) {
    uint32_t v = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.untrusted), &k, &v) != 0) return false;
    if (ns) *ns = v;
    return true;
  }
  uint32_t untrusted_entries_ = 64;
};

TEST_F(ModelProgLoss, LostEventsAreCountedPerNamespace) {
  register_cgroup(100, kNs);
  set_model(kNs, NSIMA_MODEL_ON);  // seal or learn: counted, nothing marked or refused
  constexpr int kEvents = 40;
  nsima_mtest_task a{};
  for (int i = 0; i < kEvents; ++i) {
    a = task_event(NSIMA_MHOOK_PTRACE_ACCESS_CHECK, 0x11);
    ASSERT_EQ(a.verdict, 0) << "event " << i;
  }
  const uint64_t lost = model_drops(kNs);
  EXPECT_GT(lost, 0u) << "a page holds at most 12 events";
  EXPECT_EQ(lost, mstat(NSIMA_MSTAT_DROPPED + NSIMA_MHOOK_PTRACE_ACCESS_CHECK));
  EXPECT_EQ(drain().size() + lost, static_cast<size_t>(kEvents)) << "emitted + lost = events";
  EXPECT_FALSE(untrusted_in_map(a.proc)) << "not enforcing: a loss marks nobody";
  EXPECT_EQ(mstat(NSIMA_MSTAT_LOST_UNTRUSTED), 0u);
  EXPECT_EQ(model_drops(kNs + 1), 0u);
}

TEST_F(ModelProgLoss, LostEventMakesTheProcessUntrustedWhenEnforcing) {
  register_cgroup(100, kNs);
  set_model(kNs, NSIMA_MODEL_ON | NSIMA_MODEL_ENFORCE);
  nsima_mtest_task a{};
  int first_lost = -1;
  for (int i = 0; i < 40 && first_lost < 0; ++i) {
    a = task_event(NSIMA_MHOOK_PTRACE_ACCESS_CHECK, 0x11);
    EXPECT_EQ(a.verdict, 0) << "a trusted process's event " << i << " is allowed";
    if (model_drops(kNs) > 0) first_lost = i;
  }
  ASSERT_GE(first_lost, 0) << "no event was lost";
  uint32_t judged_by = 0;
  ASSERT_TRUE(untrusted_in_map(a.proc, &judged_by)) << "the lost event's process is marked";
  EXPECT_EQ(judged_by, kNs);
  EXPECT_EQ(mstat(NSIMA_MSTAT_LOST_UNTRUSTED), 1u);
  // from now on refused, in the kernel, before nsimad saw anything
  a = task_event(NSIMA_MHOOK_PTRACE_ACCESS_CHECK, 0x11);
  EXPECT_EQ(a.untrusted, 1u);
  EXPECT_EQ(a.verdict, -EPERM);
  EXPECT_EQ(a.gate, -EPERM);
  EXPECT_EQ(mstat(NSIMA_MSTAT_LOST_UNTRUSTED), 1u) << "marked once";
}

class ModelProgLossFullMarks : public ModelProgLoss {
 protected:
  ModelProgLossFullMarks() { untrusted_entries_ = 1; }
};

TEST_F(ModelProgLossFullMarks, LostEventIsRefusedWhenItsMarkDoesNotFit) {
  register_cgroup(100, kNs);
  set_model(kNs, NSIMA_MODEL_ON | NSIMA_MODEL_ENFORCE);
  mark_untrusted(nsima_proc_key{1, 0, 1});  // another process fills the map
  int refused = 0, lost_before = 0;
  nsima_mtest_task a{};
  for (int i = 0; i < 40; ++i) {
    lost_before = static_cast<int>(model_drops(kNs));
    a = task_event(NSIMA_MHOOK_PTRACE_ACCESS_CHECK, 0x11);
    if (static_cast<int>(model_drops(kNs)) > lost_before)
      EXPECT_EQ(a.verdict, -EPERM) << "a lost event nobody can mark is refused";
    else
      EXPECT_EQ(a.verdict, 0) << "an event that was reported";
    refused += a.verdict == -EPERM;
  }
  EXPECT_GT(refused, 0);
  EXPECT_EQ(static_cast<uint64_t>(refused), mstat(NSIMA_MSTAT_LOST_MARK_FAILED));
  EXPECT_FALSE(untrusted_in_map(a.proc));
  EXPECT_EQ(a.untrusted, 0u);
}

// The namespace of a task in a nested cgroup, found by walking kernfs parents: a child process
// moved into <tmp cgroup>/a/b runs the program; only <tmp>/a is registered.
TEST_F(ModelProg, TargetNamespaceThroughTheCgroupTree) {
  std::string root;
  std::ifstream mounts("/proc/self/mounts");
  for (std::string dev, dir, type, rest; mounts >> dev >> dir >> type && std::getline(mounts, rest);)
    if (type == "cgroup2") {
      root = dir;
      break;
    }
  ASSERT_FALSE(root.empty()) << "no cgroup2 mount";
  const fs::path top = fs::path(root) / ("nsima-model-test-" + std::to_string(getpid()));
  const fs::path a = top / "a", b = a / "b";
  std::error_code ec;
  fs::create_directories(b, ec);
  ASSERT_FALSE(ec) << "cannot create " << b << ": " << ec.message();
  struct stat st;
  ASSERT_EQ(::stat(a.c_str(), &st), 0);
  register_cgroup(st.st_ino, kNs);  // a cgroup v2 directory's inode number is its cgroup id
  register_cgroup(100, kNs);
  set_model(kNs, NSIMA_MODEL_ON);

  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    std::ofstream(b / "cgroup.procs") << getpid() << "\n";
    nsima_mtest_task t = task_event(NSIMA_MHOOK_TASK_KILL, 1);
    (void)!write(fds[1], &t, sizeof t);
    _exit(0);
  }
  close(fds[1]);
  nsima_mtest_task t{};
  ssize_t n = read(fds[0], &t, sizeof t);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  fs::remove(b, ec);
  fs::remove(a, ec);
  fs::remove(top, ec);
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof t)) << "the child did not report";
  EXPECT_EQ(t.proc.tgid, static_cast<uint32_t>(pid));
  EXPECT_EQ(t.target_ns, kNs) << "b's namespace is its registered parent a's";
  EXPECT_EQ(t.verdict, 0) << "same namespace: not a cross-namespace signal";
}

// include/nsima/model_abi.h against the BTF of the object nsimad would load.
TEST(ModelAbiTest, EventLayoutMatchesTheBpfObject) {
  btf* b = btf__parse_elf(NSIMA_MODEL_BPF_OBJECT, nullptr);
  ASSERT_NE(b, nullptr) << "cannot read BTF from " << NSIMA_MODEL_BPF_OBJECT;
  int id = btf__find_by_name_kind(b, "nsima_model_event", BTF_KIND_STRUCT);
  ASSERT_GT(id, 0);
  const btf_type* t = btf__type_by_id(b, id);
  EXPECT_EQ(t->size, sizeof(nsima_model_event));
#define F(f) {#f, offsetof(nsima_model_event, f)}
  const std::map<std::string, size_t> want = {
      F(hook),  F(flags),  F(ktime_ns), F(ns_id), F(pid),   F(proc),   F(parent),   F(cred),
      F(target), F(target_ns), F(arg0), F(arg1),  F(arg2),  F(arg3),   F(i_uid),    F(i_gid),
      F(i_mode), F(fs_magic), F(fs_uuid), F(addr_len), F(pad), F(addr), F(comm)};
#undef F
  const btf_member* m = btf_members(t);
  ASSERT_EQ(static_cast<size_t>(btf_vlen(t)), want.size());
  for (int i = 0; i < btf_vlen(t); ++i) {
    std::string name = btf__name_by_offset(b, m[i].name_off);
    ASSERT_TRUE(want.count(name)) << name;
    EXPECT_EQ(btf_member_bit_offset(t, i) / 8, want.at(name)) << name;
  }
  btf__free(b);
}

}  // namespace
}  // namespace nsima::model

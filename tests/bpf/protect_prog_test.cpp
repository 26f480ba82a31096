// SPDX-License-Identifier: Apache-2.0
// Self-protection's decision helpers (bpf/protect.bpf.h) on the real verifier and real maps:
// protect_selftest.bpf.c wraps them in a SEC("syscall") program (the LSM programs themselves
// run only in the VM: tests/vm/e2e/protect_test.sh). The directory and cgroup walks run on this
// process's real cwd dentry. The daemon side (capture::Protector) fills the same maps here.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "capture/bpf_maps.h"
#include "skel_maps.h"
#include "capture/protect.h"
#include "common/event.h"
#include "nsima_protect_selftest.skel.h"
#include "protect_selftest_abi.h"

namespace nsima::capture {
namespace {

namespace fs = std::filesystem;

struct SkelDeleter {
  void operator()(nsima_protect_selftest* s) const { nsima_protect_selftest::destroy(s); }
};

class ProtectProg : public ::testing::Test {
 protected:
  void SetUp() override {
    skel_.reset(nsima_protect_selftest::open_and_load());
    ASSERT_TRUE(skel_) << "loading nsima_protect_selftest.bpf.o failed (errno " << errno
                       << "): SEC(\"syscall\") programs need Linux >= 5.14 and root";
    maps_ = std::make_unique<BpfMaps>(nsima::testing::selftest_map_fds(skel_.get()));
    base_ = fs::temp_directory_path() / ("nsima-protect-" + std::to_string(getpid()));
    fs::remove_all(base_);
    fs::create_directories(base_);
    old_cwd_ = fs::current_path();
  }
  void TearDown() override {
    fs::current_path(old_cwd_);
    fs::remove_all(base_);
  }

  uint32_t run(nsima_protect_test_args a) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &a, .ctx_size_in = sizeof(a));
    int err = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.nsima_test_protect), &opts);
    EXPECT_EQ(err, 0) << "BPF_PROG_TEST_RUN failed: " << strerror(errno);
    EXPECT_EQ(static_cast<int>(opts.retval), 0) << "op " << a.op;
    return a.result;  // the kernel copies the context back
  }
  uint32_t op(uint32_t o, uint32_t ns_id = 0) {
    nsima_protect_test_args a{};
    a.op = o;
    a.ns_id = ns_id;
    return run(a);
  }
  void protect_dir(const fs::path& p) {
    struct stat st {};
    ASSERT_EQ(stat(p.c_str(), &st), 0);
    nsima_protect_dir k{dev_to_kdev(st.st_dev), st.st_ino};
    uint32_t one = 1;
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.protected_dirs), &k, &one, BPF_ANY), 0);
  }
  void set_cfg(uint32_t flags, uint64_t dev, uint64_t ino) {
    nsima_protect_cfg c{flags, 0, dev, ino};
    uint32_t zero = 0;
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.protect_cfg), &zero, &c, BPF_ANY), 0);
  }
  uint32_t bpf_allowed(uint32_t ns_id, uint64_t dev, uint64_t ino) {
    nsima_protect_test_args a{};
    a.op = NSIMA_PT_BPF;
    a.ns_id = ns_id;
    a.exe_dev = dev;
    a.exe_ino = ino;
    return run(a);
  }
  uint32_t rate(uint32_t ns_id, uint32_t kind, uint64_t now_ns) {
    nsima_protect_test_args a{};
    a.op = NSIMA_PT_RATE;
    a.ns_id = ns_id;
    a.kind = kind;
    a.now_ns = now_ns;
    return run(a);
  }
  uint32_t is_pid(uint32_t tgid, uint64_t start_ns) {
    nsima_protect_test_args a{};
    a.op = NSIMA_PT_PID;
    a.tgid = tgid;
    a.start_ns = start_ns;
    return run(a);
  }

  std::unique_ptr<nsima_protect_selftest, SkelDeleter> skel_;
  std::unique_ptr<BpfMaps> maps_;
  fs::path base_, old_cwd_;
};

TEST_F(ProtectProg, OnlyNamespacesBelowTheHostAreSubjects) {
  EXPECT_EQ(op(NSIMA_PT_SUBJECT, 0), 0u);  // in no registered namespace
  EXPECT_EQ(op(NSIMA_PT_SUBJECT, 1), 0u);  // the host namespace: the operator, systemd
  EXPECT_EQ(op(NSIMA_PT_SUBJECT, 2), 1u);
  EXPECT_EQ(op(NSIMA_PT_SUBJECT, 4000), 1u);
}

TEST_F(ProtectProg, ProtectedProcessesByPidAndStartTime) {
  long hz = sysconf(_SC_CLK_TCK);
  const uint64_t tick_ns = 1000000000ull / static_cast<uint64_t>(hz);
  ASSERT_TRUE(maps_->set_self(4242, 1000));
  EXPECT_EQ(is_pid(4242, 1000 * tick_ns + 7), 1u) << "nsimad (ctl.self_tgid, its start)";
  EXPECT_EQ(is_pid(4242, 1001 * tick_ns), 0u) << "nsimad's pid reused by another process";
  EXPECT_EQ(is_pid(4243, 1000 * tick_ns), 0u);
  uint32_t swtpm = 5151;
  uint64_t ticks = 2000;
  ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.protected_pids), &swtpm, &ticks, BPF_ANY),
            0);
  EXPECT_EQ(is_pid(5151, 2000 * tick_ns), 1u) << "an swtpm in protected_pids";
  EXPECT_EQ(is_pid(5151, 2500 * tick_ns), 0u) << "its pid reused";
  EXPECT_EQ(is_pid(0, 0), 0u);
}

TEST_F(ProtectProg, BpfObjectsRefuseSubjectsAndUnderLockdownAllButNsimad) {
  set_cfg(NSIMA_PROTECT_ON, 0x800001, 77);
  EXPECT_EQ(bpf_allowed(3, 0x800001, 78), 0u) << "a container's bpftool";
  EXPECT_EQ(bpf_allowed(3, 0x800001, 77), 1u) << "nsimad's executable wherever it runs";
  EXPECT_EQ(bpf_allowed(1, 0x800001, 78), 1u) << "host root's bpftool without lockdown";
  EXPECT_EQ(bpf_allowed(0, 0x800002, 77), 1u);
  set_cfg(NSIMA_PROTECT_ON | NSIMA_PROTECT_LOCKDOWN, 0x800001, 77);
  EXPECT_EQ(bpf_allowed(1, 0x800001, 78), 0u) << "lockdown: host root's bpftool";
  EXPECT_EQ(bpf_allowed(0, 0x800001, 78), 0u) << "lockdown: an unregistered cgroup";
  EXPECT_EQ(bpf_allowed(0, 0x800002, 77), 0u) << "same inode number, other filesystem";
  EXPECT_EQ(bpf_allowed(1, 0x800001, 77), 1u) << "lockdown: nsimad (a restarted one too)";
  set_cfg(NSIMA_PROTECT_ON | NSIMA_PROTECT_LOCKDOWN, 0, 0);
  EXPECT_EQ(bpf_allowed(1, 0, 0), 0u) << "no executable known: nothing matches it";
}

TEST_F(ProtectProg, ReportsAreRateLimitedPerNamespaceAndKind) {
  const uint64_t t = 50ull * 1000000000ull;
  for (int i = 0; i < NSIMA_PROTECT_BURST; ++i)
    EXPECT_EQ(rate(3, NSIMA_PROTECT_KIND_SIGNAL, t + i), 1u) << "report " << i;
  EXPECT_EQ(rate(3, NSIMA_PROTECT_KIND_SIGNAL, t + 999999999), 0u) << "over the burst";
  EXPECT_EQ(rate(3, NSIMA_PROTECT_KIND_FILE, t), 1u) << "another kind";
  EXPECT_EQ(rate(4, NSIMA_PROTECT_KIND_SIGNAL, t), 1u) << "another namespace";
  EXPECT_EQ(rate(3, NSIMA_PROTECT_KIND_SIGNAL, t + 1000000000ull), 1u) << "the next second";
}

TEST_F(ProtectProg, FilesBelowAProtectedDirectoryUpToTheDepth) {
  fs::path top = base_ / "state";
  fs::path d = top;
  for (int i = 1; i <= NSIMA_PROTECT_DEPTH; ++i) d /= "d" + std::to_string(i);
  fs::create_directories(d);
  fs::current_path(base_);
  EXPECT_EQ(op(NSIMA_PT_CWD_FILE), 0u) << "nothing protected yet";
  protect_dir(top);
  fs::current_path(top);
  EXPECT_EQ(op(NSIMA_PT_CWD_FILE), 1u) << "the directory itself";
  fs::current_path(base_);
  EXPECT_EQ(op(NSIMA_PT_CWD_FILE), 0u) << "its parent";
  fs::current_path(d.parent_path());  // NSIMA_PROTECT_DEPTH - 1 levels below
  EXPECT_EQ(op(NSIMA_PT_CWD_FILE), 1u) << "the deepest level the walk reaches";
  fs::current_path(d);
  EXPECT_EQ(op(NSIMA_PT_CWD_FILE), 0u) << "one level deeper than the walk (the bound)";
  // a bind mount would show the same dentries; a rename keeps the inode: still protected
  fs::rename(top, base_ / "moved");
  fs::current_path(base_ / "moved" / "d1");
  EXPECT_EQ(op(NSIMA_PT_CWD_FILE), 1u) << "renamed: the (dev, ino) is what counts";
}

TEST_F(ProtectProg, CgroupWritesOnlyInsideTheWritersSubtree) {
  // On cgroup2 a directory's inode number is its cgroup id; any directory shows the walk.
  fs::path ns = base_ / "ns5", child = ns / "child" / "grandchild", other = base_ / "other";
  fs::create_directories(child);
  fs::create_directories(other);
  struct stat st {};
  ASSERT_EQ(stat(ns.c_str(), &st), 0);
  uint64_t cgid = st.st_ino;
  nsima_cgroup reg{5, NSIMA_CG_REGISTERED};
  ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.cgroups), &cgid, &reg, BPF_ANY), 0);
  fs::current_path(ns);
  EXPECT_EQ(op(NSIMA_PT_CWD_CGROUP, 5), 1u) << "its own cgroup";
  fs::current_path(child);
  EXPECT_EQ(op(NSIMA_PT_CWD_CGROUP, 5), 1u) << "a child of its subtree";
  EXPECT_EQ(op(NSIMA_PT_CWD_CGROUP, 6), 0u) << "another namespace's writer";
  fs::current_path(base_);
  EXPECT_EQ(op(NSIMA_PT_CWD_CGROUP, 5), 0u) << "the parent: out of its subtree";
  fs::current_path(other);
  EXPECT_EQ(op(NSIMA_PT_CWD_CGROUP, 5), 0u) << "a sibling";
}

TEST_F(ProtectProg, ObjectsByTypeAndId) {
  nsima_protect_obj k{NSIMA_PROTECT_OBJ_MAP, 7};
  uint32_t one = 1;
  ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.protected_objs), &k, &one, BPF_ANY), 0);
  nsima_protect_test_args a{};
  a.op = NSIMA_PT_OBJ;
  a.type = NSIMA_PROTECT_OBJ_MAP;
  a.id = 7;
  EXPECT_EQ(run(a), 1u);
  a.type = NSIMA_PROTECT_OBJ_PROG;
  EXPECT_EQ(run(a), 0u) << "a program with a map's id";
  a.type = NSIMA_PROTECT_OBJ_MAP;
  a.id = 8;
  EXPECT_EQ(run(a), 0u);
}

// The daemon side: Protector fills the maps the helpers read.
TEST_F(ProtectProg, ProtectorFillsTheSetsAndTurnsProtectionOn) {
  fs::path state = base_ / "state", vtpm = base_ / "vtpm";
  fs::create_directories(state);
  fs::create_directories(vtpm / "7");
  // a stale pid file naming a process that is not an swtpm (this test) protects nothing
  std::ofstream(vtpm / "7" / "swtpm.pid") << getpid() << "\n";
  ProtectFds fds{bpf_map__fd(skel_->maps.protect_cfg), bpf_map__fd(skel_->maps.protected_dirs),
                 bpf_map__fd(skel_->maps.protected_objs), bpf_map__fd(skel_->maps.protected_pids)};
  ProtectOptions o;
  o.lockdown = true;
  o.dirs = {state.string(), (base_ / "missing").string()};
  o.vtpm_run_root = vtpm.string();
  auto p = Protector::start(fds, o);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ((*p)->directories(), 1u) << "the missing one is skipped";
  EXPECT_EQ((*p)->processes(), 0u) << "the pid file names no swtpm";
  fs::current_path(state);
  EXPECT_EQ(op(NSIMA_PT_CWD_FILE), 1u);
  // this process's fds of the selftest object's maps and program are "nsimad's objects"
  bpf_map_info mi{};
  uint32_t len = sizeof mi;
  ASSERT_EQ(bpf_obj_get_info_by_fd(bpf_map__fd(skel_->maps.protected_dirs), &mi, &len), 0);
  bpf_prog_info pi{};
  len = sizeof pi;
  ASSERT_EQ(bpf_obj_get_info_by_fd(bpf_program__fd(skel_->progs.nsima_test_protect), &pi, &len), 0);
  auto objs = bpf_objects_of(getpid());
  EXPECT_TRUE(objs.count({NSIMA_PROTECT_OBJ_MAP, mi.id}));
  EXPECT_TRUE(objs.count({NSIMA_PROTECT_OBJ_PROG, pi.id}));
  nsima_protect_test_args a{};
  a.op = NSIMA_PT_OBJ;
  a.type = NSIMA_PROTECT_OBJ_MAP;
  a.id = mi.id;
  EXPECT_EQ(run(a), 1u) << "protected_objs holds the map's id";
  nsima_protect_cfg cfg{};
  uint32_t zero = 0;
  ASSERT_EQ(bpf_map_lookup_elem(fds.cfg, &zero, &cfg), 0);
  EXPECT_EQ(cfg.flags, uint32_t{NSIMA_PROTECT_ON | NSIMA_PROTECT_LOCKDOWN});
  struct stat exe {};
  ASSERT_EQ(stat("/proc/self/exe", &exe), 0);
  EXPECT_EQ(cfg.exe_ino, exe.st_ino);
  EXPECT_EQ(cfg.exe_dev, dev_to_kdev(exe.st_dev));
}

}  // namespace
}  // namespace nsima::capture

// SPDX-License-Identifier: Apache-2.0
// The hooks' decision helpers (namespace resolution through cgroup ancestors, verdict lookup
// with change stamps and access classes) run by the real verifier against real maps on the
// host kernel: selftest.bpf.c wraps them in SEC("syscall") programs for BPF_PROG_TEST_RUN
// (LSM programs have no test run). The daemon side writes the maps through capture::BpfMaps,
// so its behaviour is tested here against what the kernel side reads.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <memory>

#include <gtest/gtest.h>

#include "capture/bpf_maps.h"
#include "nsima_selftest.skel.h"
#include "selftest_abi.h"

namespace nsima::capture {
namespace {

struct SkelDeleter {
  void operator()(nsima_selftest* s) const { nsima_selftest::destroy(s); }
};

class SelftestProg : public ::testing::Test {
 protected:
  void SetUp() override {
    skel_.reset(nsima_selftest::open_and_load());
    ASSERT_TRUE(skel_) << "loading nsima_selftest.bpf.o failed (errno " << errno
                       << "): SEC(\"syscall\") programs need Linux >= 5.14 and root";
    maps_ = std::make_unique<BpfMaps>(MapFds{
        bpf_map__fd(skel_->maps.cgroups), bpf_map__fd(skel_->maps.verdicts),
        bpf_map__fd(skel_->maps.stats), bpf_map__fd(skel_->maps.ns_drops),
        bpf_map__fd(skel_->maps.self_opens)});
  }

  // Runs a syscall program; the kernel copies the context back into `args`.
  int run(bpf_program* prog, nsima_selftest_args& args) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));
    int err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
    EXPECT_EQ(err, 0) << "BPF_PROG_TEST_RUN failed: " << strerror(errno);
    return static_cast<int>(opts.retval);
  }

  void set_ancestors(std::initializer_list<uint64_t> ids) {
    for (auto& a : skel_->bss->selftest_ancestors) a = 0;
    int i = 0;
    for (uint64_t id : ids) skel_->bss->selftest_ancestors[i++] = id;
  }

  nsima_selftest_args resolve(uint64_t cgroup) {
    nsima_selftest_args a{};
    a.cgroup_id = cgroup;
    EXPECT_EQ(run(skel_->progs.nsima_test_resolve, a), 0);
    return a;
  }

  nsima_selftest_args decide(const nsima_verdict_key& key, const Stamp& s, uint32_t cls) {
    nsima_selftest_args a{};
    a.key = key;
    a.stamp = to_abi(s);
    a.class_ = cls;
    EXPECT_EQ(run(skel_->progs.nsima_test_decide, a), 0);
    return a;
  }

  std::unique_ptr<nsima_selftest, SkelDeleter> skel_;
  std::unique_ptr<BpfMaps> maps_;
};

TEST_F(SelftestProg, ResolvesDeepestRegisteredAncestor) {
  ASSERT_TRUE(maps_->register_cgroup(1, 1, 0));
  ASSERT_TRUE(maps_->register_cgroup(100, 7, NSIMA_CG_FIRST_DENY));
  set_ancestors({1, 50, 100, 200});  // level 0 = root ... level 3 = the task's cgroup
  auto a = resolve(200);
  EXPECT_EQ(a.ns_id, 7u);
  EXPECT_EQ(a.cg_flags, uint32_t{NSIMA_CG_DERIVED | NSIMA_CG_FIRST_DENY});
  // the answer is cached as a DERIVED entry: one lookup next time
  auto cached = maps_->cgroup(200);
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->ns_id, 7u);
  EXPECT_EQ(cached->flags & NSIMA_CG_REGISTERED, 0u);
  // the registered cgroup itself
  set_ancestors({1, 50, 100});
  a = resolve(100);
  EXPECT_EQ(a.ns_id, 7u);
  EXPECT_TRUE(a.cg_flags & NSIMA_CG_REGISTERED);
}

TEST_F(SelftestProg, UnregisteredCgroupsAreCachedAsNone) {
  ASSERT_TRUE(maps_->register_cgroup(100, 7, 0));
  set_ancestors({1, 60, 300});
  auto a = resolve(300);
  EXPECT_EQ(a.ns_id, 0u);
  ASSERT_TRUE(maps_->cgroup(300));
  // a new registration is seen only after the daemon flushes derived entries
  ASSERT_TRUE(maps_->register_cgroup(60, 9, 0));
  EXPECT_EQ(resolve(300).ns_id, 0u);
  ASSERT_TRUE(maps_->flush_derived());
  EXPECT_FALSE(maps_->cgroup(300));
  EXPECT_TRUE(maps_->cgroup(60));   // registered entries survive the flush
  EXPECT_TRUE(maps_->cgroup(100));
  EXPECT_EQ(resolve(300).ns_id, 9u);
}

TEST_F(SelftestProg, VerdictDecisions) {
  nsima_verdict_key key{7, 3, (8ull << 20) | 1, 4242};
  Stamp s{1700000000, 5, 2, 100};
  const uint32_t read_class = NSIMA_CLASS_FILE(NSIMA_MAY_READ);

  auto a = decide(key, s, read_class);
  EXPECT_EQ(a.decision, NSIMA_DECIDE_EMIT) << "never seen";
  EXPECT_EQ(a.flags, 0u);

  ASSERT_TRUE(maps_->allow(key, s, 1u << read_class));
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_QUIET) << "hot path";
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_BPRM).decision, NSIMA_DECIDE_EMIT)
      << "another access class is not silenced";

  Stamp changed = s;
  changed.i_version = 3;
  a = decide(key, changed, read_class);
  EXPECT_EQ(a.decision, NSIMA_DECIDE_EMIT) << "changed file is treated as never seen";
  EXPECT_EQ(a.flags, uint32_t{NSIMA_EV_STALE});
  Stamp touched = s;
  touched.ctime_nsec = 6;
  EXPECT_EQ(decide(key, touched, read_class).decision, NSIMA_DECIDE_EMIT);
  Stamp grown = s;
  grown.size = 101;
  EXPECT_EQ(decide(key, grown, read_class).decision, NSIMA_DECIDE_EMIT);

  // quiet bits accumulate for the same stamp
  ASSERT_TRUE(maps_->allow(key, s, 1u << NSIMA_CLASS_BPRM));
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_QUIET);
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_BPRM).decision, NSIMA_DECIDE_QUIET);

  // deny wins for every class while the stamp matches; an event racing with it keeps it
  ASSERT_TRUE(maps_->deny(key, s));
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_DENY);
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_MMAP_PROT).decision, NSIMA_DECIDE_DENY);
  ASSERT_TRUE(maps_->allow(key, s, 1u << read_class));
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_DENY);
  EXPECT_EQ(decide(key, changed, read_class).decision, NSIMA_DECIDE_EMIT);
  // an explicit allow (nsimactl allow) lifts it
  ASSERT_TRUE(maps_->allow(key, s, 0, /*keep_deny=*/false));
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_EMIT);

  // verdicts are per namespace
  nsima_verdict_key other = key;
  other.ns_id = 8;
  EXPECT_EQ(decide(other, s, read_class).decision, NSIMA_DECIDE_EMIT);
  ASSERT_TRUE(maps_->deny(other, s));
  auto removed = maps_->remove_namespace_verdicts(8);
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, 1u);
  EXPECT_TRUE(maps_->verdict(key));
  EXPECT_FALSE(maps_->verdict(other));
}

TEST_F(SelftestProg, CountersStartAtZero) {
  auto s = maps_->stats();
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->total_emitted() + s->total_dropped() + s->total_denied() + s->total_quiet(), 0u);
  ASSERT_TRUE(maps_->init_ns_drops(5));
  auto d = maps_->ns_drops();
  ASSERT_TRUE(d);
  ASSERT_EQ(d->count(5), 1u);
  EXPECT_EQ(d->at(5), 0u);
}

// The hooks read ctime through CO-RE flavors (6.1 i_ctime, 6.6 __i_ctime, 6.11 i_ctime_sec/nsec):
// on this host's kernel the relocated read must equal what statx reports for the same inode.
TEST_F(SelftestProg, StampMatchesStatxOnThisKernel) {
  nsima_selftest_stamp st{};
  LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &st, .ctx_size_in = sizeof(st));
  ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.nsima_test_stamp), &opts), 0)
      << strerror(errno);
  struct statx sx {};
  ASSERT_EQ(statx(AT_FDCWD, "/proc/self/exe", 0, STATX_BASIC_STATS, &sx), 0);
  EXPECT_EQ(st.ino, sx.stx_ino);
  EXPECT_EQ(st.stamp.ctime_sec, sx.stx_ctime.tv_sec);
  EXPECT_EQ(st.stamp.ctime_nsec, sx.stx_ctime.tv_nsec);
  EXPECT_EQ(st.stamp.size, sx.stx_size);
}

}  // namespace
}  // namespace nsima::capture

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
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "capture/bpf_maps.h"
#include "skel_maps.h"
#include "nsima_selftest.skel.h"
#include "ns/kernel_trust.h"
#include "nsima/model_abi.h"
#include "selftest_abi.h"

namespace nsima::capture {
namespace {

struct SkelDeleter {
  void operator()(nsima_selftest* s) const { nsima_selftest::destroy(s); }
};

class SelftestProg : public ::testing::Test {
 protected:
  void SetUp() override { load(); }

  // Opens the selftest object, lets `configure` change it (map sizes, types), loads it.
  void load(const std::function<void(nsima_selftest*)>& configure = {}) {
    maps_.reset();
    skel_.reset(nsima_selftest::open());
    ASSERT_TRUE(skel_) << "opening nsima_selftest.bpf.o failed (errno " << errno << ")";
    if (configure) configure(skel_.get());
    ASSERT_EQ(nsima_selftest::load(skel_.get()), 0)
        << "loading nsima_selftest.bpf.o failed (errno " << errno
        << "): SEC(\"syscall\") programs need Linux >= 5.14 and root";
    maps_ = std::make_unique<BpfMaps>(nsima::testing::selftest_map_fds(skel_.get()));
  }

  // Runs a syscall program; the kernel copies the context back into `args`.
  template <class Args>
  int run(bpf_program* prog, Args& args) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));
    int err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
    EXPECT_EQ(err, 0) << "BPF_PROG_TEST_RUN failed: " << strerror(errno);
    return static_cast<int>(opts.retval);
  }

  // Ancestor ids by level (0 = root); the task's own cgroup is the deepest one given.
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

  uint32_t flood(uint32_t n, uint32_t ns_id = 1, uint32_t path_len = 64) {
    nsima_selftest_flood f{n, path_len, 0, ns_id};
    EXPECT_EQ(run(skel_->progs.nsima_test_flood, f), 0);
    return f.submitted;
  }

  uint64_t epoch() {
    auto e = maps_->epoch();
    EXPECT_TRUE(e) << e.error().to_string();
    return e ? *e : 0;
  }

  // Fills cg_cache with entries of cgroups nobody uses (valid for the current epoch) until
  // it holds `n` or refuses more. Returns how many went in.
  size_t fill_cache_with_junk(size_t n) {
    int fd = bpf_map__fd(skel_->maps.cg_cache);
    nsima_cg_cache junk{0, NSIMA_CG_DERIVED, epoch()};
    size_t i = 0;
    for (uint64_t id = 1ull << 40; i < n; ++id, ++i)
      if (bpf_map_update_elem(fd, &id, &junk, BPF_ANY)) break;
    return i;
  }

  std::unique_ptr<nsima_selftest, SkelDeleter> skel_;
  std::unique_ptr<BpfMaps> maps_;
};

TEST_F(SelftestProg, ResolvesDeepestRegisteredAncestor) {
  const uint32_t deny = NSIMA_CG_FIRST_DENY | NSIMA_CG_FIRST_DENY_CLASS(NSIMA_CLASS_BPRM);
  ASSERT_TRUE(maps_->register_cgroup(1, 1, 0, 0));
  ASSERT_TRUE(maps_->register_cgroup(100, 7, deny, 2));
  set_ancestors({1, 50, 100, 200});  // level 0 = root ... level 3 = the task's cgroup
  auto a = resolve(200);
  EXPECT_EQ(a.ns_id, 7u);
  // descendants inherit the first-access rule with the classes it covers
  EXPECT_EQ(a.cg_flags, uint32_t{NSIMA_CG_DERIVED | deny});
  // the answer is cached in cg_cache with the current epoch; nothing is added to cgroups
  auto cached = maps_->cached_cgroup(200);
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->ns_id, 7u);
  EXPECT_EQ(cached->epoch, epoch());
  EXPECT_FALSE(maps_->cgroup(200));
  // the registered cgroup itself
  set_ancestors({1, 50, 100});
  a = resolve(100);
  EXPECT_EQ(a.ns_id, 7u);
  EXPECT_TRUE(a.cg_flags & NSIMA_CG_REGISTERED);
  // a cgroup below the root only
  set_ancestors({1, 60});
  EXPECT_EQ(resolve(60).ns_id, 1u);
  auto reg = maps_->registered_cgroups();
  ASSERT_TRUE(reg) << reg.error().to_string();
  ASSERT_EQ(reg->size(), 2u);
}

// Hole 1: the cache is full of junk (a container with a delegated cgroup tree can do that on
// purpose): the hooks still resolve a cgroup below a registered one to its namespace. The old
// single `cgroups` map refused the insert and the hook treated the access as "not ours".
TEST_F(SelftestProg, FullCacheStillResolves) {
  load([](nsima_selftest* s) { bpf_map__set_max_entries(s->maps.cg_cache, 256); });
  ASSERT_TRUE(maps_->register_cgroup(100, 7, 0, 1));
  EXPECT_EQ(fill_cache_with_junk(10 * 256), 2560u) << "an LRU takes every insert (it evicts)";
  size_t held = 0;
  uint64_t key = 0, next = 0;
  for (uint64_t* prev = nullptr;
       bpf_map_get_next_key(bpf_map__fd(skel_->maps.cg_cache), prev, &next) == 0; prev = &key)
    key = next, ++held;
  EXPECT_LE(held, 256u);
  EXPECT_GE(held, 128u) << "the cache is full of junk";
  set_ancestors({1, 100, 200});
  auto a = resolve(200);
  EXPECT_EQ(a.ns_id, 7u) << "a cgroup under registered cgroup 100 must resolve to namespace 7";
  // the LRU made room: the answer is cached (an old junk entry was collected)
  auto cached = maps_->cached_cgroup(200);
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->ns_id, 7u);
  auto st = maps_->stats();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->cg_uncached, 0u);
  EXPECT_EQ(st->unresolved, 0u);
}

// Same with a cache that cannot make room at all (a plain hash standing in for an LRU whose
// insert fails): the computed answer is used, and counted as uncached.
TEST_F(SelftestProg, RefusedCacheInsertStillResolves) {
  load([](nsima_selftest* s) {
    bpf_map__set_type(s->maps.cg_cache, BPF_MAP_TYPE_HASH);
    bpf_map__set_max_entries(s->maps.cg_cache, 64);
  });
  ASSERT_TRUE(maps_->register_cgroup(100, 7, NSIMA_CG_FIRST_DENY, 1));
  EXPECT_EQ(fill_cache_with_junk(1000), 64u) << "a hash map refuses inserts when full";
  set_ancestors({1, 100, 200});
  for (int i = 0; i < 3; ++i) {
    auto a = resolve(200);
    EXPECT_EQ(a.ns_id, 7u);
    EXPECT_EQ(a.cg_flags, uint32_t{NSIMA_CG_DERIVED | NSIMA_CG_FIRST_DENY});
  }
  EXPECT_FALSE(maps_->cached_cgroup(200));
  auto st = maps_->stats();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->cg_uncached, 3u);
}

TEST_F(SelftestProg, RegistrationInvalidatesCachedAnswers) {
  ASSERT_TRUE(maps_->register_cgroup(100, 7, 0, 1));
  set_ancestors({1, 60, 300});
  EXPECT_EQ(resolve(300).ns_id, 0u);
  ASSERT_TRUE(maps_->cached_cgroup(300)) << "negative answers are cached too";
  uint64_t e0 = epoch();
  // a registration above it: the cached "none" must not survive it
  ASSERT_TRUE(maps_->register_cgroup(60, 9, 0, 1));
  EXPECT_GT(epoch(), e0) << "register_cgroup bumps the epoch";
  EXPECT_EQ(resolve(300).ns_id, 9u);
  // and an unregistration
  ASSERT_TRUE(maps_->unregister_cgroup(60));
  EXPECT_EQ(resolve(300).ns_id, 0u);
  EXPECT_FALSE(maps_->cgroup(60));
  EXPECT_TRUE(maps_->cgroup(100));
}

// The cache entry is trusted only for the epoch it was computed in: an entry of the current
// epoch is used as is (even a wrong one, which proves the hit path), one of an older epoch is
// recomputed.
TEST_F(SelftestProg, EntryOfAnotherEpochIsRecomputed) {
  ASSERT_TRUE(maps_->register_cgroup(100, 7, 0, 1));
  set_ancestors({1, 100, 200});
  int fd = bpf_map__fd(skel_->maps.cg_cache);
  uint64_t cg = 200;
  nsima_cg_cache planted{42, NSIMA_CG_DERIVED, epoch()};
  ASSERT_EQ(bpf_map_update_elem(fd, &cg, &planted, BPF_ANY), 0);
  EXPECT_EQ(resolve(200).ns_id, 42u) << "an entry of the current epoch is a cache hit";
  // what a walk that raced with a registration leaves: computed before it, inserted after
  planted = {0, NSIMA_CG_DERIVED, epoch()};
  ASSERT_EQ(bpf_map_update_elem(fd, &cg, &planted, BPF_ANY), 0);
  ASSERT_TRUE(maps_->bump_epoch());
  EXPECT_EQ(resolve(200).ns_id, 7u) << "an entry of an older epoch is recomputed";
  EXPECT_EQ(maps_->cached_cgroup(200)->epoch, epoch());
}

// The race itself, inside one run of the hook's code: the epoch is read, the walk looks at
// levels 3 and 2, then the "daemon" registers level 2's cgroup and bumps the epoch. The walk's
// answer (namespace 1, from the root) is stale; the next access must not use it.
TEST_F(SelftestProg, RegistrationDuringTheWalk) {
  ASSERT_TRUE(maps_->register_cgroup(1, 1, 0, 0));
  set_ancestors({1, 50, 100, 200});
  skel_->data->selftest_race_level = 1;
  skel_->bss->selftest_race_cgid = 100;
  skel_->bss->selftest_race_ns = 9;
  uint64_t e0 = epoch();
  EXPECT_EQ(resolve(200).ns_id, 1u) << "the walk missed the registration that raced with it";
  EXPECT_EQ(epoch(), e0 + 1);
  skel_->data->selftest_race_level = -1;
  EXPECT_EQ(resolve(200).ns_id, 9u) << "the stale answer was cached and used";
}

// Exact for every depth: a task far below NSIMA_MAX_CGROUP_DEPTH levels still finds the
// namespace registered at the deepest level the daemon accepts; deeper registrations are
// refused, so no namespace can sit where the walk does not look.
TEST_F(SelftestProg, DepthLimits) {
  auto too_deep = maps_->register_cgroup(5000, 3, 0, NSIMA_MAX_CGROUP_DEPTH);
  ASSERT_FALSE(too_deep);
  EXPECT_EQ(too_deep.error().code, ELOOP);
  ASSERT_TRUE(maps_->register_cgroup(5031, 3, 0, NSIMA_MAX_CGROUP_DEPTH - 1));
  for (int l = 0; l < NSIMA_MAX_CGROUP_DEPTH; ++l)
    skel_->bss->selftest_ancestors[l] = 5000 + static_cast<uint64_t>(l);
  // the task is at level 40: levels 32..40 are not walked, level 31 is
  EXPECT_EQ(resolve(5040).ns_id, 3u);
  EXPECT_EQ(resolve(5031).ns_id, 3u);
  skel_->bss->selftest_ancestors[NSIMA_MAX_CGROUP_DEPTH - 1] = 0;  // a task at level 30
  EXPECT_EQ(resolve(5030).ns_id, 0u) << "above the namespace";
}

TEST_F(SelftestProg, UnresolvableIsCounted) {
  ASSERT_TRUE(maps_->register_cgroup(100, 7, 0, 1));
  set_ancestors({});
  EXPECT_EQ(resolve(200).ns_id, 0u);
  EXPECT_FALSE(maps_->cached_cgroup(200)) << "no answer, nothing cached";
  auto st = maps_->stats();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->unresolved, 1u);
}

TEST_F(SelftestProg, SelfIdentity) {
  ASSERT_TRUE(maps_->set_self(4242, 777));
  auto c = maps_->ctl();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->self_tgid, 4242u);
  EXPECT_EQ(c->self_start, 777u);
  EXPECT_EQ(c->tick_ns, 1000000000u / sysconf(_SC_CLK_TCK));
  auto start = process_start_ticks(getpid());
  ASSERT_TRUE(start) << start.error().to_string();
  EXPECT_GT(*start, 0u);

  // what the hooks make of it: tgid and start time (to the tick) must both match
  auto is_self = [&](uint32_t tgid, uint64_t start_ns) {
    nsima_selftest_self a{start_ns, tgid, 99};
    EXPECT_EQ(run(skel_->progs.nsima_test_self, a), 0);
    return a.is_self;
  };
  const uint64_t tick = c->tick_ns;
  EXPECT_EQ(is_self(4242, 777 * tick), 1u);
  EXPECT_EQ(is_self(4242, 777 * tick + tick - 1), 1u) << "same tick";
  EXPECT_EQ(is_self(4242, 778 * tick), 0u) << "a dead nsimad's pid reused by a later process";
  EXPECT_EQ(is_self(4243, 777 * tick), 0u);
  ASSERT_TRUE(maps_->set_self(0, 0));
  EXPECT_EQ(is_self(0, 0), 0u) << "no nsimad: nobody is exempt";
}

// cgroup_level counts from the hierarchy's root, as bpf_get_current_ancestor_cgroup_id does.
TEST(CgroupLevel, CountsFromTheRoot) {
  std::ifstream mounts("/proc/self/mounts");
  std::string dev, dir, type, rest, root;
  while (mounts >> dev >> dir >> type && std::getline(mounts, rest))
    if (type == "cgroup2") root = dir;
  ASSERT_FALSE(root.empty()) << "no cgroup2 mount on this host";
  bool is_root = access((root + "/cgroup.type").c_str(), F_OK) != 0;
  auto lvl = cgroup_level(root);
  if (!is_root) {  // a cgroup namespace's view: levels unknowable, refused
    ASSERT_FALSE(lvl);
    EXPECT_EQ(lvl.error().code, EXDEV);
    return;
  }
  ASSERT_TRUE(lvl) << lvl.error().to_string();
  EXPECT_EQ(*lvl, 0u);
  std::string a = root + "/nsima-level-test." + std::to_string(getpid()), b = a + "/b";
  ASSERT_EQ(mkdir(a.c_str(), 0755), 0) << strerror(errno);
  ASSERT_EQ(mkdir(b.c_str(), 0755), 0) << strerror(errno);
  EXPECT_EQ(cgroup_level(a).value_or(99), 1u);
  EXPECT_EQ(cgroup_level(b + "/").value_or(99), 2u);
  EXPECT_EQ(cgroup_level(b + "/../b").value_or(99), 2u);
  rmdir(b.c_str());
  rmdir(a.c_str());
  EXPECT_FALSE(cgroup_level("/tmp")) << "not cgroup2";
}

// A deny names the access classes whose appraisal failed (kernel IMA keeps a status per func):
// an exec refused for a bad signature must not refuse a read no rule appraises.
TEST_F(SelftestProg, DenyIsPerAccessClass) {
  nsima_verdict_key key{9, 3, (8ull << 20) | 1, 4343};
  Stamp s{1700000000, 5, 2, 100};
  const uint32_t read_class = NSIMA_CLASS_FILE(NSIMA_MAY_READ);
  ASSERT_TRUE(maps_->deny(key, s, false, 1u << NSIMA_CLASS_BPRM));
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_BPRM).decision, NSIMA_DECIDE_DENY);
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_EMIT)
      << "a class the deny does not name is a first access of its own";
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_MMAP_PROT).decision, NSIMA_DECIDE_EMIT);
  // the read judged and allowed: silenced, and the exec stays refused
  ASSERT_TRUE(maps_->allow(key, s, 1u << read_class));
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_QUIET);
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_BPRM).decision, NSIMA_DECIDE_DENY)
      << "an allow of another class keeps the exec deny";
  // an exec-mmap failure too: both refused, the read still silenced
  ASSERT_TRUE(maps_->deny(key, s, false, 1u << NSIMA_CLASS_MMAP_PROT));
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_MMAP_PROT).decision, NSIMA_DECIDE_DENY);
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_BPRM).decision, NSIMA_DECIDE_DENY);
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_QUIET);
  // a new version of the file: none of it holds
  Stamp changed = s;
  changed.size = 101;
  EXPECT_EQ(decide(key, changed, NSIMA_CLASS_BPRM).decision, NSIMA_DECIDE_EMIT);
  // the default deny (revocations, older callers): every class
  ASSERT_TRUE(maps_->deny(key, s));
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_DENY);
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
      << "another access class was never judged: a first access (an enforcing namespace denies "
         "the exec of a file that was only read so far)";
  ASSERT_TRUE(maps_->allow(key, s, 0, true, 1u << NSIMA_CLASS_MMAP_PROT));
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_MMAP_PROT).decision, NSIMA_DECIDE_REPORT)
      << "judged, not silenced: reported, never first-access denied";
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_QUIET) << "bits accumulate";

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
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_EMIT) << "allowed, judged again";

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

// Hole 4's building block: an operator deny of the inode, whatever its content becomes.
// A verdict quiet but for the namespace's workload model (BpfMaps::allow's model_quiet_bits):
// its class is REPORT_MODEL (the hooks then look in model_quiet), per class, kept by a later
// allow of the same version, lost by a new version and where a deny refuses the class.
TEST_F(SelftestProg, ModelQuietVerdictIsPerClass) {
  nsima_verdict_key key{7, 3, (8ull << 20) | 1, 4242};
  Stamp s{1700000000, 5, 2, 100};
  const uint32_t read_class = NSIMA_CLASS_FILE(NSIMA_MAY_READ);
  ASSERT_TRUE(maps_->allow(key, s, 0, true, 1u << read_class, 1u << read_class));
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_REPORT_MODEL);
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_MMAP_PROT).decision, NSIMA_DECIDE_EMIT)
      << "another class was never judged";
  ASSERT_TRUE(maps_->allow(key, s, 0, true, 1u << NSIMA_CLASS_MMAP_PROT));
  EXPECT_EQ(decide(key, s, NSIMA_CLASS_MMAP_PROT).decision, NSIMA_DECIDE_REPORT)
      << "judged, reported for another reason than the model: never kept quiet by it";
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_REPORT_MODEL)
      << "an allow of another class keeps the model bit";
  ASSERT_TRUE(maps_->deny(key, s, false, 1u << read_class));
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_DENY);
  Stamp changed = s;
  changed.size = 101;
  EXPECT_EQ(decide(key, changed, read_class).decision, NSIMA_DECIDE_EMIT);
}

// model_quiet entries are per namespace: counted and cleared for one, the others stay.
TEST_F(SelftestProg, ModelQuietEntriesPerNamespace) {
  auto key = [](uint32_t ns, uint32_t tgid) {
    nsima_model_quiet_key k{};
    k.ns_id = ns;
    k.hook = NSIMA_HOOK_FILE_OPEN;
    k.tgid = tgid;
    k.path_len = 3;
    std::memcpy(k.path, "/x", 3);
    return k;
  };
  ASSERT_TRUE(maps_->add_model_quiet(key(7, 1)));
  ASSERT_TRUE(maps_->add_model_quiet(key(7, 2)));
  ASSERT_TRUE(maps_->add_model_quiet(key(7, 2))) << "written again: one entry";
  ASSERT_TRUE(maps_->add_model_quiet(key(8, 1)));
  EXPECT_EQ(maps_->model_quiet_count(7).value(), 2u);
  EXPECT_EQ(maps_->clear_model_quiet(7).value(), 2u);
  EXPECT_EQ(maps_->model_quiet_count(7).value(), 0u);
  EXPECT_EQ(maps_->model_quiet_count(8).value(), 1u);
}

// The key nsimad writes for an event is the key the hooks build for the same access
// (bpf/access.bpf.h, nsima_model_quiet): every field the coefficient depends on, the path
// zero-padded; none for what the hooks never keep quiet.
TEST(ModelQuietKey, OfAnEvent) {
  Event ev;
  ev.hook = Hook::kMmapFile;
  ev.ns_id = 5;
  ev.tgid = 77;
  ev.start_boottime_ns = 123456789;
  ev.self_exec_id = 3;
  ev.cred = Creds{1, 2, 3, 4, 5, 6, 0x80, 7, 8};  // cap_effective before fsuid, fsgid
  ev.kdev = (8ull << 20) | 1;
  ev.ino = 4242;
  ev.generation = 9;
  ev.i_mode = 0100644;
  ev.i_uid = 10;
  ev.i_gid = 11;
  ev.stamp = Stamp{1700000000, 5, 2, 100};
  ev.f_flags = 0x8000;
  ev.prot = 5;
  ev.reqprot = 4;
  ev.mmap_flags = 2;
  ev.path = "/data/w/in1";
  auto k = model_quiet_key_of(ev);
  ASSERT_TRUE(k);
  EXPECT_EQ(k->ns_id, 5u);
  EXPECT_EQ(k->hook, uint32_t{NSIMA_HOOK_MMAP_FILE});
  EXPECT_EQ(k->tgid, 77u);
  EXPECT_EQ(k->start_boottime, 123456789u);
  EXPECT_EQ(k->self_exec_id, 3u);
  EXPECT_EQ(k->cred.uid, 1u);
  EXPECT_EQ(k->cred.sgid, 6u);
  EXPECT_EQ(k->cred.fsuid, 7u);
  EXPECT_EQ(k->cred.fsgid, 8u);
  EXPECT_EQ(k->cred.cap_effective, 0x80u);
  EXPECT_EQ(k->dev, ev.kdev);
  EXPECT_EQ(k->ino, 4242u);
  EXPECT_EQ(k->generation, 9u);
  EXPECT_EQ(k->i_mode, 0100644u);
  EXPECT_EQ(k->i_uid, 10u);
  EXPECT_EQ(k->i_gid, 11u);
  EXPECT_EQ(from_abi(k->stamp), ev.stamp);
  EXPECT_EQ(k->f_flags, 0x8000u);
  EXPECT_EQ(k->prot, 5u);
  EXPECT_EQ(k->mmap_flags, 2u);
  EXPECT_EQ(k->path_len, 12u) << "with the NUL, as bpf_d_path counts";
  EXPECT_EQ(std::string(k->path), "/data/w/in1");
  for (size_t i = 11; i < sizeof(k->path); ++i) ASSERT_EQ(k->path[i], 0) << "byte " << i;
  EXPECT_EQ(k->pad, 0u);

  Event open = ev;
  open.hook = Hook::kFileOpen;
  auto o = model_quiet_key_of(open);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->prot, 0u) << "file_open's key has no mmap fields";
  EXPECT_EQ(o->mmap_flags, 0u);

  auto none = [&](const char* what, auto change) {
    Event e = ev;
    change(e);
    EXPECT_FALSE(model_quiet_key_of(e)) << what;
  };
  none("an exec: a new TASK_ID", [](Event& e) { e.hook = Hook::kBprmCheck; });
  none("an unlinked file", [](Event& e) { e.flags |= NSIMA_EV_DELETED; });
  none("no usable path", [](Event& e) { e.flags |= NSIMA_EV_PATH_ERROR; });
  none("a truncated path", [](Event& e) { e.flags |= NSIMA_EV_PATH_TRUNCATED; });
  none("an open that met a writer", [](Event& e) { e.flags |= NSIMA_EV_WRITERS; });
  none("a path that does not fit", [](Event& e) { e.path = "/" + std::string(255, 'a'); });
  Event longest = ev;
  longest.path = "/" + std::string(254, 'a');
  auto l = model_quiet_key_of(longest);
  ASSERT_TRUE(l) << "255 bytes and the NUL fit";
  EXPECT_EQ(l->path_len, uint32_t{NSIMA_QUIET_PATH});
}

TEST_F(SelftestProg, DenyEveryVersion) {
  nsima_verdict_key key{7, 3, (8ull << 20) | 1, 4242};
  Stamp s{1700000000, 5, 2, 100};
  Stamp rewritten{1700000100, 9, 3, 200};
  const uint32_t read_class = NSIMA_CLASS_FILE(NSIMA_MAY_READ);
  ASSERT_TRUE(maps_->deny(key, s, /*every_version=*/true));
  EXPECT_EQ(maps_->verdict(key)->verdict, uint32_t{NSIMA_VERDICT_DENY_ALWAYS});
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_DENY);
  auto a = decide(key, rewritten, NSIMA_CLASS_BPRM);
  EXPECT_EQ(a.decision, NSIMA_DECIDE_DENY) << "a new version of the file is still denied";
  EXPECT_EQ(a.flags, 0u);
  // the judge's allow of a new version (an event that raced) does not lift it ...
  ASSERT_TRUE(maps_->allow(key, rewritten, 1u << read_class));
  EXPECT_EQ(decide(key, rewritten, read_class).decision, NSIMA_DECIDE_DENY);
  // ... the operator's allow does
  ASSERT_TRUE(maps_->allow(key, rewritten, 1u << read_class, /*keep_deny=*/false));
  EXPECT_EQ(decide(key, rewritten, read_class).decision, NSIMA_DECIDE_QUIET);
  EXPECT_EQ(decide(key, s, read_class).decision, NSIMA_DECIDE_EMIT);
  // a per-version deny still ends with the version
  ASSERT_TRUE(maps_->deny(key, s));
  EXPECT_EQ(decide(key, rewritten, read_class).decision, NSIMA_DECIDE_EMIT);
}

TEST_F(SelftestProg, CountersStartAtZero) {
  auto s = maps_->stats();
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->total_emitted() + s->total_dropped() + s->total_denied() + s->total_quiet(), 0u);
  EXPECT_EQ(s->cg_uncached + s->unresolved + s->drop_no_ns, 0u);
  ASSERT_TRUE(maps_->init_ns_drops(5));
  auto d = maps_->ns_drops();
  ASSERT_TRUE(d);
  ASSERT_EQ(d->count(5), 1u);
  EXPECT_EQ(d->at(5), 0u);
  ASSERT_TRUE(maps_->remove_ns_drops(5));
  EXPECT_EQ(maps_->ns_drops()->count(5), 0u) << "a deleted namespace's counter is gone";
  EXPECT_TRUE(maps_->remove_ns_drops(5)) << "removing twice is fine";
}

// Drops are counted per namespace in ns_drops (NSIMA_MAX_NAMESPACES ids); when that map is
// full the drop is still in stats DROPPED, and NSIMA_STAT_DROP_NO_NS says no namespace got it.
TEST_F(SelftestProg, DropsAreNeverUncounted) {
  load([](nsima_selftest* s) { bpf_map__set_max_entries(s->maps.events, 4096); });
  EXPECT_EQ(bpf_map__max_entries(skel_->maps.ns_drops), uint32_t{NSIMA_MAX_NAMESPACES});
  EXPECT_EQ(flood(100, 5, 200), 100u);
  auto st = maps_->stats();
  ASSERT_TRUE(st);
  uint64_t dropped = st->dropped[NSIMA_HOOK_FILE_OPEN];
  ASSERT_GT(dropped, 0u) << "100 records of ~500 bytes do not fit 4 KiB";
  EXPECT_EQ(st->emitted[NSIMA_HOOK_FILE_OPEN] + dropped, 100u);
  EXPECT_EQ(maps_->ns_drops()->at(5), dropped);
  EXPECT_EQ(st->drop_no_ns, 0u);
  // fill ns_drops with other namespaces
  for (uint32_t id = 1000; id < 1000 + NSIMA_MAX_NAMESPACES; ++id) (void)maps_->init_ns_drops(id);
  EXPECT_EQ(flood(100, 6, 200), 100u);
  st = maps_->stats();
  uint64_t dropped2 = st->dropped[NSIMA_HOOK_FILE_OPEN] - dropped;
  EXPECT_EQ(dropped2, 100u) << "the ring buffer is still full";
  EXPECT_EQ(st->drop_no_ns, dropped2);
  EXPECT_EQ(maps_->ns_drops()->count(6), 0u);
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

// A file event lost (ring buffer full) in a namespace whose model enforces: its process is
// marked untrusted in the model hooks' map (slot 0 of model_untrusted) and the access stands;
// with no map there yet, or the map full, the access is refused where the hook may refuse.
// Outside such a namespace a loss changes no verdict.
TEST_F(SelftestProg, LostFileEventOfAnEnforcingModelMarksItsProcess) {
  auto lost = [&](uint32_t cg_flags, int ret, bool may_deny) {
    nsima_selftest_lost l{cg_flags, 9, ret, may_deny ? 1u : 0u};
    EXPECT_EQ(run(skel_->progs.nsima_test_lost_access, l), 0);
    return l.ret;
  };
  auto counts = [&] {
    auto st = maps_->stats();
    EXPECT_TRUE(st);
    return std::pair{st ? st->lost_untrusted : 0, st ? st->lost_mark_failed : 0};
  };
  const uint32_t model = NSIMA_CG_REGISTERED | NSIMA_CG_MODEL_EXEC;
  EXPECT_EQ(lost(NSIMA_CG_REGISTERED | NSIMA_CG_FIRST_DENY, 0, true), 0) << "not modeled";
  EXPECT_EQ(counts(), (std::pair<uint64_t, uint64_t>{0, 0}));
  // no model hooks yet: refused (fail closed), unless the hook may not refuse
  EXPECT_EQ(lost(model, 0, true), -EACCES);
  EXPECT_EQ(lost(model, 0, false), 0);
  EXPECT_EQ(lost(model, -EACCES, false), -EACCES) << "an earlier refusal stands";
  EXPECT_EQ(counts(), (std::pair<uint64_t, uint64_t>{0, 3}));
  // the model hooks' untrusted map handed over, as ModelHooks::load does
  int marks = bpf_map_create(BPF_MAP_TYPE_HASH, "untrusted", sizeof(nsima_proc_key),
                             sizeof(uint32_t), NSIMA_MAX_UNTRUSTED, nullptr);
  ASSERT_GE(marks, 0) << strerror(errno);
  struct Close {
    int fd;
    ~Close() { close(fd); }
  } close_marks{marks};
  uint32_t zero = 0, mfd = static_cast<uint32_t>(marks);
  ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.model_untrusted), &zero, &mfd, BPF_ANY),
            0)
      << strerror(errno);
  EXPECT_EQ(lost(model, 0, true), 0) << "marked, not refused";
  nsima_proc_key k{}, next{};
  ASSERT_EQ(bpf_map_get_next_key(marks, nullptr, &next), 0) << "the process is marked";
  EXPECT_EQ(next.tgid, static_cast<uint32_t>(getpid()));
  EXPECT_NE(next.start, 0u);
  uint32_t ns = 0;
  ASSERT_EQ(bpf_map_lookup_elem(marks, &next, &ns), 0);
  EXPECT_EQ(ns, 9u) << "the namespace that lost the event";
  EXPECT_EQ(lost(model, 0, true), 0);
  EXPECT_EQ(counts(), (std::pair<uint64_t, uint64_t>{1, 3})) << "one mark, kept";
  // the map full of other processes: the mark does not fit, the access is refused
  const nsima_proc_key mine = next;
  ASSERT_EQ(bpf_map_delete_elem(marks, &mine), 0);
  for (uint32_t i = 0; i < NSIMA_MAX_UNTRUSTED; ++i) {
    k = nsima_proc_key{1000000 + i, 0, 1};
    ASSERT_EQ(bpf_map_update_elem(marks, &k, &ns, BPF_NOEXIST), 0) << i << ": " << strerror(errno);
  }
  EXPECT_EQ(lost(model, 0, true), -EACCES);
  EXPECT_EQ(counts(), (std::pair<uint64_t, uint64_t>{1, 4}));
}

// An event's credentials are the thread's, fsuid and fsgid included: a thread that setfsuid()s
// (as NFS servers and file servers do) is seen with its own fsuid, not its euid.
TEST_F(SelftestProg, CredCarriesFsuidAndFsgid) {
  if (geteuid() != 0) GTEST_SKIP() << "setfsuid to another id needs CAP_SETUID";
  nsima_selftest_cred c{};
  int run_err = -1;
  std::thread t([&] {  // its own cred: setfsuid/setfsgid change only this thread
    ::syscall(SYS_setfsuid, 4321);
    ::syscall(SYS_setfsgid, 8765);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &c, .ctx_size_in = sizeof(c));
    run_err = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.nsima_test_cred), &opts);
  });
  t.join();
  ASSERT_EQ(run_err, 0) << strerror(errno);
  EXPECT_EQ(c.cred.uid, getuid());
  EXPECT_EQ(c.cred.euid, geteuid());
  EXPECT_EQ(c.cred.egid, getegid());
  EXPECT_EQ(c.cred.fsuid, 4321u);
  EXPECT_EQ(c.cred.fsgid, 8765u);
}

// ---------------------------------------------------------------------------------------------
// A first exec decided in the kernel (bpf/trust.bpf.h): the file's sha256 (bpf_ima_file_hash in
// the hook, fed through globals here) looked up in the trusted map with the namespace's id.

Sha256 sha_of(uint8_t fill) {
  Sha256 d;
  d.fill(fill);
  d[0] = 0x5a;
  return d;
}

class TrustProg : public SelftestProg {
 protected:
  // Would a first exec of content `d`, hashed with result `hash_ret`, be trusted in `ns`?
  bool trusted(uint32_t ns, const Sha256& d, long hash_ret = NSIMA_HASH_ALGO_SHA256) {
    std::memcpy(skel_->bss->selftest_file_sha256, d.data(), d.size());
    skel_->data->selftest_hash_ret = hash_ret;
    nsima_selftest_trust t{ns, 99};
    EXPECT_EQ(run(skel_->progs.nsima_test_trust, t), 0);
    EXPECT_LE(t.trusted, 1u);
    return t.trusted == 1;
  }
};

TEST_F(TrustProg, OnlyAListedSha256OfTheSameNamespace) {
  const Sha256 a = sha_of(1), b = sha_of(2);
  EXPECT_FALSE(trusted(7, a)) << "an empty map trusts nothing";
  ASSERT_TRUE(maps_->trust(7, a).value());
  EXPECT_TRUE(trusted(7, a));
  EXPECT_FALSE(trusted(8, a)) << "another namespace's trust is not this one's";
  EXPECT_FALSE(trusted(7, b)) << "another content";
  // the hash is not a sha256 (IMA cached the xattr's algorithm: sha1 = 2, sha512 = 6), or the
  // kernel could not hash the file (-EOPNOTSUPP): never trusted, and counted
  EXPECT_FALSE(trusted(7, a, 2));
  EXPECT_FALSE(trusted(7, a, 6));
  EXPECT_FALSE(trusted(7, a, -95));
  auto st = maps_->stats();
  ASSERT_TRUE(st) << st.error().to_string();
  EXPECT_EQ(st->trust_nohash, 3u);
  ASSERT_TRUE(maps_->untrust(7, a));
  EXPECT_FALSE(trusted(7, a)) << "untrusted (revoked) content";
  EXPECT_TRUE(maps_->untrust(7, a)) << "removing an absent pair is not an error";
}

// A full map never trusts more: trust() reports the refusal, the pair is not there, and the
// kernel answers "not trusted" for it (the first-access rule then denies until appraised).
TEST_F(TrustProg, FullMapMeansNotTrusted) {
  load([](nsima_selftest* s) { bpf_map__set_max_entries(s->maps.trusted, 4); });
  for (uint8_t i = 1; i <= 4; ++i) ASSERT_TRUE(maps_->trust(7, sha_of(i)).value());
  auto full = maps_->trust(7, sha_of(5));
  ASSERT_TRUE(full) << full.error().to_string();
  EXPECT_FALSE(*full) << "a full map refuses the pair (E2BIG), not an error";
  EXPECT_FALSE(trusted(7, sha_of(5)));
  for (uint8_t i = 1; i <= 4; ++i) EXPECT_TRUE(trusted(7, sha_of(i)));
}

// The daemon's writer: the map holds exactly the namespace's set after each set(), removals
// first; what a full map refused is counted, and written once there is room.
TEST_F(TrustProg, KernelTrustKeepsTheMapEqualToTheSet) {
  load([](nsima_selftest* s) { bpf_map__set_max_entries(s->maps.trusted, 3); });
  ns::KernelTrust kt(maps_.get());
  ASSERT_TRUE(kt.set(7, {sha_of(1), sha_of(2)}));
  ASSERT_TRUE(kt.set(9, {sha_of(1)}));
  EXPECT_TRUE(trusted(7, sha_of(1)));
  EXPECT_TRUE(trusted(7, sha_of(2)));
  EXPECT_TRUE(trusted(9, sha_of(1)));
  EXPECT_FALSE(trusted(9, sha_of(2)));
  EXPECT_EQ(kt.counters().entries, 3u);
  // revoked in 7: out of the map, the other namespace untouched
  ASSERT_TRUE(kt.set(7, {sha_of(2)}));
  EXPECT_FALSE(trusted(7, sha_of(1)));
  EXPECT_TRUE(trusted(9, sha_of(1)));
  // two more than fit: one is refused and counted, never trusted
  ASSERT_TRUE(kt.set(7, {sha_of(2), sha_of(3), sha_of(4)}));
  EXPECT_EQ(kt.counters().entries, 3u);
  EXPECT_EQ(kt.counters().not_in_map, 1u);
  EXPECT_EQ(kt.counters().full_events, 1u);
  EXPECT_EQ(trusted(7, sha_of(3)) + trusted(7, sha_of(4)), 1);
  // room again (namespace 9 deleted): the refused pair goes in at the next set
  ASSERT_TRUE(kt.drop(9));
  EXPECT_FALSE(trusted(9, sha_of(1)));
  ASSERT_TRUE(kt.set(7, {sha_of(2), sha_of(3), sha_of(4)}));
  EXPECT_TRUE(trusted(7, sha_of(3)));
  EXPECT_TRUE(trusted(7, sha_of(4)));
  EXPECT_EQ(kt.counters().not_in_map, 0u);
  // a restarted nsimad removes every pair before computing its own
  auto cleared = ns::KernelTrust(maps_.get()).clear_all();
  ASSERT_TRUE(cleared) << cleared.error().to_string();
  EXPECT_EQ(*cleared, 3u);
  EXPECT_FALSE(trusted(7, sha_of(2)));
}

// Two sets share the map (issue 13): the digest lists' NSIMA_TRUST_LISTED and an enforcing
// model's known executables (NSIMA_TRUST_MODEL). Each set() adds and removes only its own bit
// of a pair; the kernel's first-exec trust answers for LISTED only; clear_all removes both.
TEST_F(TrustProg, ListedAndModelSetsShareAPair) {
  load();
  ns::KernelTrust kt(maps_.get());
  auto bits = [&](uint32_t ns, const Sha256& d) {
    nsima_trust_key k{};
    k.ns_id = ns;
    std::memcpy(k.sha256, d.data(), sizeof k.sha256);
    uint32_t v = 0;
    return bpf_map_lookup_elem(bpf_map__fd(skel_->maps.trusted), &k, &v) == 0 ? v : 0u;
  };
  ASSERT_TRUE(kt.set(7, {sha_of(1)}, NSIMA_TRUST_MODEL));
  EXPECT_EQ(bits(7, sha_of(1)), uint32_t{NSIMA_TRUST_MODEL});
  EXPECT_FALSE(trusted(7, sha_of(1))) << "a model's executable is not a listed digest";
  ASSERT_TRUE(kt.set(7, {sha_of(1), sha_of(2)}));
  EXPECT_EQ(bits(7, sha_of(1)), uint32_t{NSIMA_TRUST_LISTED | NSIMA_TRUST_MODEL});
  EXPECT_TRUE(trusted(7, sha_of(1)));
  ASSERT_TRUE(kt.set(7, {}, NSIMA_TRUST_MODEL));
  EXPECT_EQ(bits(7, sha_of(1)), uint32_t{NSIMA_TRUST_LISTED}) << "the lists' bit stays";
  ASSERT_TRUE(kt.set(7, {sha_of(3)}, NSIMA_TRUST_MODEL));
  ASSERT_TRUE(kt.set(7, {}));
  EXPECT_EQ(bits(7, sha_of(1)), 0u);
  EXPECT_EQ(bits(7, sha_of(3)), uint32_t{NSIMA_TRUST_MODEL}) << "the model's bit stays";
  auto cleared = ns::KernelTrust(maps_.get()).clear_all();
  ASSERT_TRUE(cleared) << cleared.error().to_string();
  EXPECT_EQ(bits(7, sha_of(3)), 0u);
}


// A first open or executable mmap decided in the kernel (trust.bpf.h nsima_first_trusted):
// no writer may exist (nothing like exec's deny_write_access holds the content), the stamp
// must be the same before and after the hash, and the file must be open for read; then the
// content is looked up like an exec's, and the digest the event carries is that of the version
// the stamp names. Each refusal is counted; none trusts (fail closed).
class FirstTrustProg : public TrustProg {
 protected:
  struct Answer {
    bool trusted;
    int state;
    Sha256 sha;
  };
  static nsima_stamp stamp(int64_t ctime) { return nsima_stamp{ctime, 5, 0, 1, 4096}; }
  // The hook read `before` and `writers_before`, the hash gave `d` (result `hash_ret`), and
  // the file then read `after` / `writers_after` (open for read if `readable`).
  Answer first(uint32_t ns, const Sha256& d, int32_t writers_before = 0, int32_t writers_after = 0,
               int64_t after_ctime = 100, bool readable = true,
               long hash_ret = NSIMA_HASH_ALGO_SHA256) {
    std::memcpy(skel_->bss->selftest_file_sha256, d.data(), d.size());
    skel_->data->selftest_hash_ret = hash_ret;
    skel_->data->selftest_readable = readable ? 1 : 0;
    skel_->bss->selftest_writers_after = writers_after;
    skel_->bss->selftest_stamp_after = stamp(after_ctime);
    nsima_selftest_first_trust t{};
    t.before = stamp(100);
    t.writers_before = writers_before;
    t.ns_id = ns;
    t.trusted = 99;
    t.state = 99;
    EXPECT_EQ(run(skel_->progs.nsima_test_first_trust, t), 0);
    EXPECT_LE(t.trusted, 1u);
    Answer a{t.trusted == 1, t.state, {}};
    std::memcpy(a.sha.data(), t.sha256, a.sha.size());
    return a;
  }
  Stats stats() {
    auto s = maps_->stats();
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? *s : Stats{};
  }
};

TEST_F(FirstTrustProg, ListedStableContentIsTrustedWithItsDigest) {
  const Sha256 a = sha_of(1), b = sha_of(2);
  ASSERT_TRUE(maps_->trust(7, a).value());
  auto r = first(7, a);
  EXPECT_TRUE(r.trusted);
  EXPECT_EQ(r.state, NSIMA_HASHED);
  EXPECT_EQ(r.sha, a) << "the event carries the digest of the version it was hashed at";
  // an exec holds deny_write_access (i_writecount < 0): stable too
  EXPECT_TRUE(first(7, a, -1, -1).trusted);
  // unlisted, or listed in another namespace: not trusted, but the digest is still good
  r = first(7, b);
  EXPECT_FALSE(r.trusted);
  EXPECT_EQ(r.state, NSIMA_HASHED);
  EXPECT_EQ(r.sha, b);
  EXPECT_FALSE(first(8, a).trusted);
  EXPECT_EQ(stats().trust_unstable, 0u);
  EXPECT_EQ(stats().trust_nohash, 0u);
}

TEST_F(FirstTrustProg, AWriterOrAChangeIsNeverTrusted) {
  const Sha256 a = sha_of(1);
  ASSERT_TRUE(maps_->trust(7, a).value());
  auto r = first(7, a, /*writers_before=*/1);
  EXPECT_FALSE(r.trusted) << "a writer before the hash";
  EXPECT_EQ(r.state, NSIMA_HASH_UNSTABLE);
  r = first(7, a, 0, /*writers_after=*/1);
  EXPECT_FALSE(r.trusted) << "a writer opened while hashing";
  EXPECT_EQ(r.state, NSIMA_HASH_UNSTABLE) << "no digest for the event either";
  r = first(7, a, 0, 0, /*after_ctime=*/101);
  EXPECT_FALSE(r.trusted) << "the file changed while hashed";
  EXPECT_EQ(r.state, NSIMA_HASH_UNSTABLE);
  r = first(7, a, 0, 0, 100, /*readable=*/false);
  EXPECT_FALSE(r.trusted) << "not open for read (IMA would open another instance)";
  EXPECT_EQ(r.state, NSIMA_HASH_UNSTABLE);
  EXPECT_EQ(stats().trust_unstable, 4u);
  // hash failures: not trusted, no digest, counted as before
  r = first(7, a, 0, 0, 100, true, -95);
  EXPECT_FALSE(r.trusted);
  EXPECT_EQ(r.state, NSIMA_HASH_FAILED);
  EXPECT_FALSE(first(7, a, 0, 0, 100, true, 2).trusted) << "another algorithm than sha256";
  EXPECT_EQ(stats().trust_nohash, 2u);
  EXPECT_EQ(stats().trust_unstable, 4u);
}

}  // namespace
}  // namespace nsima::capture

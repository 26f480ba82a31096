// SPDX-License-Identifier: Apache-2.0
// RootCache with real processes: two chroots in one mount namespace each get their own root (the
// file opened through it is the process's own, checked by digest, not only by path); a
// "container" (new mount namespace + tmpfs + chroot) that exits is evicted at once and its tmpfs
// is not pinned by nsimad, and the next container (whose mount-ns inode may be the same number)
// gets its own root; a reused pid is detected by its start time; nsimad's own root needs no
// lender; the cache is bounded.
#include <gtest/gtest.h>
#include <sys/sysmacros.h>

#include <set>

#include "access_test_util.h"
#include "measure/file_reader.h"

namespace nsima::access {
namespace {

using namespace testing;
using namespace std::chrono_literals;

measure::Digest digest_through(RootCache& roots, const Event& ev) {
  auto root = roots.root_for(ev);
  EXPECT_TRUE(root) << (root ? "" : root.error().to_string());
  if (!root) return measure::Digest(measure::HashAlgo::kSha256);
  auto f = measure::open_in_root(root->get(), ev.path, measure::FileIdentity::from_event(ev));
  EXPECT_TRUE(f) << (f ? "" : f.error().to_string());
  if (!f) return measure::Digest(measure::HashAlgo::kSha256);
  auto d = measure::hash_fd(f->fd.get(), measure::HashAlgo::kSha256, ev.path);
  EXPECT_TRUE(d);
  return d ? *d : measure::Digest(measure::HashAlgo::kSha256);
}

// Fds of this process whose file lives on `dev`.
int fds_on_dev(dev_t dev) {
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    struct stat st {};
    if (::stat(e.path().c_str(), &st) == 0 && st.st_dev == dev) ++n;
  }
  return n;
}

TEST(ProcStat, StartTimeIsField22EvenWithSpacesAndParensInComm) {
  std::string line =
      "1234 (a) b (c) d) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
  EXPECT_EQ(parse_stat_start_ticks(line), 987654u);
  EXPECT_EQ(parse_stat_start_ticks("12 (x) S 1 2 3"), std::nullopt);
  EXPECT_EQ(parse_stat_start_ticks("no parenthesis"), std::nullopt);
  EXPECT_EQ(boottime_ns_to_ticks(987654ull * 10000000ull + 9999999ull), 987654u);
}

TEST(RootCache, OwnRootIsPermanentAndNeedsNoLender) {
  TempDir dir;
  write_file(dir / "f", "x");
  RootCache roots({});
  Event ev = event_for(::getpid(), (dir / "f").string());
  ev.tgid = ev.pid = 0x7ffffff0;  // no such process: the permanent entry needs none
  ev.start_boottime_ns = 1;
  auto r = roots.root_for(ev);
  ASSERT_TRUE(r) << r.error().to_string();
  struct stat a {}, b {};
  ASSERT_EQ(::fstat(r->get(), &a), 0);
  ASSERT_EQ(::stat("/", &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(roots.stats().size, 1u);
  roots.capture(ev);
  EXPECT_EQ(roots.stats().hits, 1u);
}

TEST(RootCache, TwoChrootsInOneMountNamespaceEachGetTheirOwnRoot) {
  TempDir dir;
  write_file(dir / "a/bin/f", "content of chroot A\n");
  write_file(dir / "b/bin/f", "content of chroot B, another file at the same path\n");
  std::string a = (dir / "a").string(), b = (dir / "b").string();
  Child ca(chroot_into(a)), cb(chroot_into(b));
  ASSERT_TRUE(ca.ok() && cb.ok());
  Event ea = event_for(ca.pid(), "/bin/f"), eb = event_for(cb.pid(), "/bin/f");
  ASSERT_EQ(ea.mnt_ns, eb.mnt_ns);  // one mount namespace
  ASSERT_NE(ea.root_ino, eb.root_ino);

  RootCache roots({});
  roots.capture(ea);
  roots.capture(eb);
  EXPECT_EQ(roots.stats().captured, 2u);
  // Each event is measured through its own process's root: the digest is of its own file.
  EXPECT_EQ(digest_through(roots, ea), sha256_of("content of chroot A\n"));
  EXPECT_EQ(digest_through(roots, eb),
            sha256_of("content of chroot B, another file at the same path\n"));
  roots.capture(ea);
  EXPECT_EQ(roots.stats().hits, 1u);
}

TEST(RootCache, CaptureHitCost) {
  TempDir dir;
  write_file(dir / "r/bin/f", "x");
  Child c(chroot_into((dir / "r").string()));
  ASSERT_TRUE(c.ok());
  Event ev = event_for(c.pid(), "/bin/f");
  RootCache roots({});
  roots.capture(ev);
  constexpr int kN = 1000000;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kN; ++i) roots.capture(ev);
  auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(roots.stats().hits, static_cast<uint64_t>(kN));
  EXPECT_EQ(roots.stats().captured, 1u);
  std::cerr << "RootCache::capture hit: " << ns / kN << " ns\n";
}

TEST(RootCache, ReusedPidIsDetectedByStartTime) {
  TempDir dir;
  write_file(dir / "r/bin/f", "x");
  std::string r = (dir / "r").string();
  Child c(chroot_into(r));
  ASSERT_TRUE(c.ok());
  Event ev = event_for(c.pid(), "/bin/f");
  ev.start_boottime_ns -= 3 * (1000000000ull / ::sysconf(_SC_CLK_TCK));  // an earlier process
  RootCache roots({});
  roots.capture(ev);
  EXPECT_EQ(roots.stats().pid_reused, 1u);
  EXPECT_EQ(roots.stats().captured, 0u);
  auto root = roots.root_for(ev);
  ASSERT_FALSE(root);
  EXPECT_EQ(root.error().kind, AccessErrorKind::kVanished);
  EXPECT_NE(root.error().to_string().find("pid " + std::to_string(c.pid())), std::string::npos)
      << root.error().to_string();
  EXPECT_NE(root.error().to_string().find("reused"), std::string::npos);
}

TEST(RootCache, ProcessWithAnotherRootThanTheEventsLendsNothing) {
  TempDir dir;
  write_file(dir / "r/bin/f", "x");
  std::string r = (dir / "r").string();
  Child c(chroot_into(r));
  ASSERT_TRUE(c.ok());
  Event ev = event_for(c.pid(), "/bin/f");
  struct stat st {};
  ASSERT_EQ(::stat("/", &st), 0);
  ev.root_ino = st.st_ino + 1000000;  // the hook saw another root (the process chrooted since)
  RootCache roots({});
  roots.capture(ev);
  EXPECT_EQ(roots.stats().moved, 1u);
  EXPECT_FALSE(roots.root_for(ev));
}

TEST(RootCache, ContainerChurnNeverServesTheOldRootAndDoesNotPinIt) {
  TempDir dir;
  std::filesystem::create_directories(dir / "ctr");
  const std::string mnt = (dir / "ctr").string();
  const std::string c1 = "first container's /bin/f\n", c2 = "second container, other bytes\n";
  RootCache::Options o;
  o.sweep_interval = std::chrono::hours(1);  // the lender's death alone must evict it
  RootCache roots(o);

  Child first(container(mnt, c1));
  ASSERT_TRUE(first.ok());
  Event e1 = event_for(first.pid(), "/bin/f");
  struct stat our_ns {};
  ASSERT_EQ(::stat("/proc/self/ns/mnt", &our_ns), 0);
  ASSERT_NE(e1.mnt_ns, our_ns.st_ino);
  roots.capture(e1);
  ASSERT_EQ(roots.stats().captured, 1u);
  EXPECT_EQ(digest_through(roots, e1), sha256_of(c1));
  const dev_t tmpfs1 = kdev_to_dev(e1.root_kdev);
  EXPECT_EQ(fds_on_dev(tmpfs1), 1) << "the cache holds the first container's root";

  first.stop();  // the container exits; its lender's pidfd becomes readable
  ASSERT_TRUE(wait_until([&] { return roots.stats().evicted_dead == 1; }, 1000ms))
      << "the dead lender's entry was not evicted";
  EXPECT_EQ(roots.stats().size, 1u);  // only nsimad's own root
  EXPECT_EQ(fds_on_dev(tmpfs1), 0) << "a dead container's rootfs is still pinned";
  auto gone = roots.root_for(e1);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().kind, AccessErrorKind::kVanished);
  EXPECT_NE(gone.error().error.where.find("pid " + std::to_string(e1.tgid)), std::string::npos);
  EXPECT_NE(gone.error().error.message.find("root "), std::string::npos);

  Child second(container(mnt, c2));
  ASSERT_TRUE(second.ok());
  Event e2 = event_for(second.pid(), "/bin/f");
  std::cerr << "mount namespace inode " << e1.mnt_ns << " then " << e2.mnt_ns
            << (e1.mnt_ns == e2.mnt_ns ? " (reused)" : "") << "\n";
  roots.capture(e2);
  EXPECT_EQ(digest_through(roots, e2), sha256_of(c2));
  // The first container's event never resolves in the second's root.
  EXPECT_FALSE(roots.root_for(e1));
}

TEST(RootCache, RootForTakesTheRootLateFromTheLiveProcess) {
  TempDir dir;
  write_file(dir / "r/bin/f", "late\n");
  std::string r = (dir / "r").string();
  Child c(chroot_into(r));
  ASSERT_TRUE(c.ok());
  Event ev = event_for(c.pid(), "/bin/f");
  RootCache roots({});
  EXPECT_EQ(digest_through(roots, ev), sha256_of("late\n"));  // no capture before
  EXPECT_EQ(roots.stats().late_captures, 1u);
}

TEST(RootCache, BoundedByCapacityLeastRecentlyUsedFirst) {
  TempDir dir;
  std::vector<std::unique_ptr<Child>> kids;
  std::vector<std::string> dirs;
  for (int i = 0; i < 3; ++i) dirs.push_back((dir / ("r" + std::to_string(i))).string());
  for (auto& d : dirs) {
    write_file(d + "/bin/f", d);
    kids.push_back(std::make_unique<Child>(chroot_into(d)));
    ASSERT_TRUE(kids.back()->ok());
  }
  RootCache::Options o;
  o.capacity = 2;
  RootCache roots(o);
  std::vector<Event> evs;
  for (auto& k : kids) evs.push_back(event_for(k->pid(), "/bin/f"));
  roots.capture(evs[0]);
  roots.capture(evs[1]);
  roots.capture(evs[0]);  // 1 is now the least recently used
  roots.capture(evs[2]);
  auto s = roots.stats();
  EXPECT_EQ(s.evicted_lru, 1u);
  EXPECT_EQ(s.size, 3u);  // 2 lent + nsimad's own
  roots.capture(evs[0]);
  EXPECT_EQ(roots.stats().hits, 2u);  // 0 stayed
  roots.capture(evs[1]);
  EXPECT_EQ(roots.stats().captured, 4u);  // 1 had been evicted
}

TEST(RootCache, SweepEvictsALenderThatLeftTheMountNamespace) {
  // A lender that moves to another mount namespace no longer vouches for the root: its old
  // namespace may die and its inode number be reused.
  TempDir dir;
  write_file(dir / "r/bin/f", "x");
  std::string r = (dir / "r").string();
  int go[2], moved[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(moved, O_CLOEXEC), 0);
  Child c(chroot_into(r), [g = go[0], m = moved[1]] {
    char b;
    if (::read(g, &b, 1) != 1) ::_exit(4);
    char ok = ::unshare(CLONE_NEWNS) == 0 ? 'k' : 'e';
    if (::write(m, &ok, 1) != 1) ::_exit(5);
  });
  ASSERT_TRUE(c.ok());
  RootCache::Options o;
  o.sweep_interval = std::chrono::hours(1);  // only the explicit sweep below
  RootCache roots(o);
  Event ev = event_for(c.pid(), "/bin/f");
  roots.capture(ev);
  ASSERT_EQ(roots.stats().captured, 1u);
  roots.sweep();
  EXPECT_EQ(roots.stats().evicted_dead, 0u) << "a lender still in place was evicted";
  char b = 'g', ok = 0;
  ASSERT_EQ(::write(go[1], &b, 1), 1);
  ASSERT_EQ(::read(moved[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'k');
  roots.sweep();
  EXPECT_EQ(roots.stats().evicted_dead, 1u);
  EXPECT_EQ(roots.stats().size, 1u);
  for (int fd : {go[0], go[1], moved[0], moved[1]}) ::close(fd);
}

}  // namespace
}  // namespace nsima::access

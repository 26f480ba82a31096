// SPDX-License-Identifier: Apache-2.0
// A real FUSE stall: a FUSE server (access_fuse_stall, libfuse3) whose read, or open, of one file
// never answers. The accessor answers that request kTimeout after its deadline, keeps serving
// other namespaces' ext4 files meanwhile, replaces the worker stuck in the kernel, answers further
// requests on the stalled filesystem at once, and gets the worker back when the server dies. The
// mount is removed on every path (server killed, then umount2(MNT_DETACH)); it lives in a fresh
// directory under /tmp that nothing else uses.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mount.h>

#include "access_test_util.h"

namespace nsima::access {
namespace {

using namespace std::chrono_literals;
using namespace testing;
using Clock = std::chrono::steady_clock;

class FuseServer {
 public:
  FuseServer(const std::filesystem::path& mnt, bool stall_open) : mnt_(mnt) {
    std::filesystem::create_directories(mnt_);
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::execl(NSIMA_FUSE_STALL_SERVER, NSIMA_FUSE_STALL_SERVER, mnt_.c_str(),
              stall_open ? "--stall-open" : "--stall-read", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    pollfd p{out[0], POLLIN, 0};
    char buf[16] = {};
    if (::poll(&p, 1, 10000) == 1 && ::read(out[0], buf, sizeof buf - 1) > 0)
      ok_ = std::string(buf).starts_with("ready");
    ::close(out[0]);
  }
  ~FuseServer() { stop(); }
  bool ok() const { return ok_; }
  // Kills the server (the kernel aborts the connection: stuck readers get ENOTCONN) and removes
  // the mount.
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (!unmounted_) {
      ::umount2(mnt_.c_str(), MNT_DETACH);  // EINVAL when the server unmounted it already
      unmounted_ = true;
    }
  }

 private:
  std::filesystem::path mnt_;
  pid_t pid_ = -1;
  bool ok_ = false, unmounted_ = false;
};

struct Answers {
  std::mutex mu;
  std::map<uint64_t, AccessResult> got;
  std::map<uint64_t, Clock::time_point> at;
  std::function<void(const AccessResult&)> cb(uint64_t seq) {
    return [this, seq](const AccessResult& r) {
      std::lock_guard lock(mu);
      EXPECT_FALSE(got.count(seq)) << "answered twice: " << seq;
      got.emplace(seq, r);
      at.emplace(seq, Clock::now());
    };
  }
  Clock::time_point when(uint64_t seq) {
    std::lock_guard lock(mu);
    return at.at(seq);
  }
  size_t size() {
    std::lock_guard lock(mu);
    return got.size();
  }
  std::optional<AccessResult> of(uint64_t seq) {
    std::lock_guard lock(mu);
    auto it = got.find(seq);
    if (it == got.end()) return std::nullopt;
    return it->second;
  }
};

FileAccessor::Request request(Answers& a, uint64_t seq, uint32_t queue, const std::string& path,
                              bool open_it = true) {
  FileAccessor::Request r;
  r.seq = seq;
  r.queue = queue;
  fill_process(r.ev, ::getpid());
  fill_file(r.ev, path, open_it);
  r.ev.path = path;
  r.algos = {measure::HashAlgo::kSha256};
  r.done = a.cb(seq);
  return r;
}

void stall_case(bool stall_open) {
  TempDir dir;
  write_file(dir / "ext4-a", "an ext4 file of another namespace\n");
  write_file(dir / "ext4-b", "and another one\n");
  const auto mnt = dir / "fuse";
  FuseServer fuse(mnt, stall_open);
  ASSERT_TRUE(fuse.ok()) << "the FUSE server did not mount " << mnt;
  Answers answers;
  RootCache roots({});
  measure::DigestCache digests(64);
  FileAccessor::Options o;
  o.workers = 2;
  o.timeout = 500ms;
  o.abandon_after = 300ms;
  {
    FileAccessor acc(o, &roots, &digests);
    // The filesystem works: its good file is measured.
    acc.submit(request(answers, 1, 1, (mnt / "ok").string()));
    ASSERT_TRUE(wait_until([&] { return answers.of(1).has_value(); }, 5s));
    ASSERT_TRUE(*answers.of(1)) << answers.of(1)->error().to_string();
    EXPECT_EQ((*answers.of(1))->digests[0], sha256_of("fuse ok\n"));

    auto t0 = Clock::now();
    acc.submit(request(answers, 2, 1, (mnt / "stall").string(), !stall_open));
    acc.submit(request(answers, 3, 2, (dir / "ext4-a").string()));
    ASSERT_TRUE(wait_until([&] { return answers.of(3).has_value(); }, 5s));
    auto other = answers.when(3) - t0;
    EXPECT_TRUE(*answers.of(3));
    ASSERT_TRUE(wait_until([&] { return answers.of(2).has_value(); }, 5s));
    auto stalled = answers.when(2) - t0;
    EXPECT_LT(other, stalled) << "another namespace's file waited for the stalled one";
    ASSERT_FALSE(*answers.of(2));
    EXPECT_EQ(answers.of(2)->error().kind, AccessErrorKind::kTimeout);
    EXPECT_GE(stalled, 490ms);
    EXPECT_LT(stalled, 1500ms);
    ASSERT_TRUE(wait_until([&] { return acc.stats().stuck_workers == 1; }, 5s))
        << "the worker in the FUSE " << (stall_open ? "open" : "read") << " was not abandoned";
    auto s = acc.stats();
    EXPECT_EQ(s.workers, 2u) << "no replacement worker";
    EXPECT_EQ(s.abandoned, 1u);
    // Served meanwhile, by the live workers.
    acc.submit(request(answers, 4, 3, (dir / "ext4-b").string()));
    ASSERT_TRUE(wait_until([&] { return answers.of(4).has_value(); }, 5s));
    EXPECT_TRUE(*answers.of(4));
    // The stalled filesystem gets no more workers: its requests are answered at once (sha1: not
    // the digest request 1 cached).
    auto t1 = Clock::now();
    auto r = request(answers, 5, 1, (mnt / "ok").string());
    r.algos = {measure::HashAlgo::kSha1};
    acc.submit(std::move(r));
    auto r5 = answers.of(5);
    ASSERT_TRUE(r5 && !*r5);
    EXPECT_EQ(r5->error().kind, AccessErrorKind::kTimeout);
    EXPECT_LT(Clock::now() - t1, 100ms);
    std::cerr << "FUSE " << (stall_open ? "open" : "read") << " stall: other namespace served after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(other).count()
              << " ms, stalled request answered kTimeout after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(stalled).count()
              << " ms (timeout 500 ms), worker replaced\n";
    // The server dies: the kernel aborts the connection and the stuck worker comes back.
    fuse.stop();
    ASSERT_TRUE(wait_until([&] { return acc.stats().stuck_workers == 0; }, 5s))
        << "the stuck worker did not come back after the FUSE server died";
    EXPECT_EQ(acc.stats().late_results, 1u);
  }
  EXPECT_EQ(answers.size(), 5u);
}

TEST(FuseStall, ReadThatNeverAnswers) { stall_case(false); }
TEST(FuseStall, OpenThatNeverAnswers) { stall_case(true); }

}  // namespace
}  // namespace nsima::access

// SPDX-License-Identifier: Apache-2.0
// FileAccessor on real files: digests and security.ima through the event's root, the digest
// cache answered inline, round-robin fairness between namespace queues, queue quotas answered at
// once, coalescing, deadlines (a blocking opener is abandoned and replaced; a huge sparse file is
// cancelled within a chunk), change detection, handles when no process lends the root, and
// exactly-once answers on drop and shutdown.
#include "access/file_accessor.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/mount.h>
#include <sys/xattr.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "access_test_util.h"

namespace nsima::access {
namespace {

using namespace std::chrono_literals;
using namespace testing;
using measure::HashAlgo;
using Clock = std::chrono::steady_clock;

// A gate hooks wait on until opened (bounded: a test never hangs on it).
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 20s, [&] { return open_; });
  }
  void open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Collects answers; counts them per request to prove exactly-once.
struct Answers {
  std::mutex mu;
  std::vector<std::pair<uint64_t, AccessResult>> got;  // (seq, result) in answer order
  std::function<void(const AccessResult&)> cb(uint64_t seq) {
    return [this, seq](const AccessResult& r) {
      std::lock_guard lock(mu);
      got.emplace_back(seq, r);
    };
  }
  size_t size() {
    std::lock_guard lock(mu);
    return got.size();
  }
  std::optional<AccessResult> of(uint64_t seq) {
    std::lock_guard lock(mu);
    std::optional<AccessResult> out;
    for (auto& [s, r] : got)
      if (s == seq) {
        EXPECT_FALSE(out) << "request " << seq << " answered twice";
        out = r;
      }
    return out;
  }
  size_t position(uint64_t seq) {  // 1-based order of its answer, 0 if none
    std::lock_guard lock(mu);
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i].first == seq) return i + 1;
    return 0;
  }
};

class FileAccessorTest : public ::testing::Test {
 protected:
  FileAccessor::Request request(uint64_t seq, uint32_t queue, const std::string& file,
                                std::vector<HashAlgo> algos = {HashAlgo::kSha256}) {
    FileAccessor::Request r;
    r.seq = seq;
    r.queue = queue;
    r.ev = event_for(::getpid(), file);
    r.ev.seq = seq;
    r.algos = std::move(algos);
    r.done = answers_.cb(seq);
    return r;
  }
  FileAccessor::Options fast_options() {
    FileAccessor::Options o;
    o.workers = 1;
    o.timeout = 10s;
    o.abandon_after = 500ms;
    return o;
  }

  TempDir dir_;
  RootCache roots_{{}};
  measure::DigestCache digests_{65536};
  Answers answers_;
};

TEST_F(FileAccessorTest, HashesThroughTheRootThenAnswersFromTheCacheInline) {
  write_file(dir_ / "f", "hello accessor\n");
  FileAccessor acc(fast_options(), &roots_, &digests_);
  acc.submit(request(1, 7, (dir_ / "f").string(), {HashAlgo::kSha256, HashAlgo::kSha1}));
  acc.drain();
  auto r = answers_.of(1);
  ASSERT_TRUE(r && *r) << (r && !*r ? (*r).error().to_string() : "no answer");
  ASSERT_EQ((*r)->digests.size(), 2u);
  EXPECT_EQ((*r)->digests[0], sha256_of("hello accessor\n"));
  EXPECT_EQ((*r)->digests[1].algo(), HashAlgo::kSha1);
  EXPECT_FALSE((*r)->from_cache);
  EXPECT_FALSE((*r)->changed);
  EXPECT_EQ((*r)->bytes, 15u);
  EXPECT_FALSE((*r)->ima_xattr);

  // The same version again: answered before submit returns, on this thread.
  std::thread::id on;
  bool answered = false;
  auto req = request(2, 7, (dir_ / "f").string(), {HashAlgo::kSha256, HashAlgo::kSha1});
  req.done = [&](const AccessResult& res) {
    answered = true;
    on = std::this_thread::get_id();
    EXPECT_TRUE(res && res->from_cache);
  };
  acc.submit(std::move(req));
  EXPECT_TRUE(answered);
  EXPECT_EQ(on, std::this_thread::get_id());
  auto s = acc.stats();
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.files_read, 1u);
  EXPECT_EQ(s.submitted, 2u);
}

TEST_F(FileAccessorTest, AnswerInlineOffMovesInlineAnswersOffTheSubmitter) {
  write_file(dir_ / "f", "x");
  auto o = fast_options();
  o.answer_inline = false;
  FileAccessor acc(o, &roots_, &digests_);
  acc.submit(request(1, 1, (dir_ / "f").string()));
  acc.drain();
  std::atomic<bool> answered{false};
  std::thread::id on;
  auto req = request(2, 1, (dir_ / "f").string());
  req.done = [&](const AccessResult& res) {
    on = std::this_thread::get_id();
    EXPECT_TRUE(res && res->from_cache);
    answered = true;
  };
  acc.submit(std::move(req));
  acc.drain();
  EXPECT_TRUE(answered);
  EXPECT_NE(on, std::this_thread::get_id());
}

TEST_F(FileAccessorTest, AnswerInlineOffAlsoForFullQueuesAndDroppedOnes) {
  for (int i = 0; i < 3; ++i) write_file(dir_ / std::to_string(i), std::to_string(i));
  Gate release;
  auto o = fast_options();
  o.answer_inline = false;
  o.queue_capacity = 2;
  o.hooks.before_open = [&](const Event&) { release.wait(); };
  FileAccessor acc(o, &roots_, &digests_);
  std::mutex mu;
  std::vector<std::pair<uint64_t, std::thread::id>> on;
  auto note = [&](uint64_t seq) {
    return [&, seq](const AccessResult&) {
      std::lock_guard lock(mu);
      on.emplace_back(seq, std::this_thread::get_id());
    };
  };
  for (uint64_t i = 0; i < 3; ++i) {
    auto r = request(i + 1, 1, (dir_ / std::to_string(i)).string());
    r.done = note(i + 1);
    acc.submit(std::move(r));  // the third is over the queue's capacity
    if (i == 0) {  // the first is running (held in the hook) before the others
      ASSERT_TRUE(wait_until([&] {
        for (auto& q : acc.stats().queues)
          if (q.queue == 1 && q.running == 1) return true;
        return false;
      }));
    }
  }
  acc.drop_queue(1);  // the second, queued
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return on.size() == 2;
  }));
  release.open();
  acc.drain();
  std::lock_guard lock(mu);
  ASSERT_EQ(on.size(), 3u);
  for (auto& [seq, id] : on) EXPECT_NE(id, std::this_thread::get_id()) << seq;
}

TEST_F(FileAccessorTest, ReadsSecurityImaAndReportsItsAbsence) {
  write_file(dir_ / "signed", "signed file\n");
  write_file(dir_ / "plain", "plain file\n");
  const std::vector<uint8_t> xattr = {0x04, 0x04, 0xaa, 0xbb, 0xcc};
  ASSERT_EQ(::setxattr((dir_ / "signed").c_str(), "security.ima", xattr.data(), xattr.size(), 0),
            0);
  FileAccessor acc(fast_options(), &roots_, &digests_);
  auto a = request(1, 1, (dir_ / "signed").string());
  a.want_ima_xattr = true;
  auto b = request(2, 1, (dir_ / "plain").string());
  b.want_ima_xattr = true;
  acc.submit(std::move(a));
  acc.submit(std::move(b));
  acc.drain();
  auto ra = answers_.of(1), rb = answers_.of(2);
  ASSERT_TRUE(ra && *ra && rb && *rb);
  ASSERT_TRUE((*ra)->ima_xattr);
  EXPECT_EQ(*(*ra)->ima_xattr, xattr);
  EXPECT_FALSE((*rb)->ima_xattr);
  // Digest cached now; the xattr is still read (it is not cached), the digest is not re-read.
  auto c = request(3, 1, (dir_ / "signed").string());
  c.want_ima_xattr = true;
  acc.submit(std::move(c));
  acc.drain();
  auto rc = answers_.of(3);
  ASSERT_TRUE(rc && *rc);
  EXPECT_TRUE((*rc)->from_cache);
  ASSERT_TRUE((*rc)->ima_xattr);
  EXPECT_EQ((*rc)->digests[0], sha256_of("signed file\n"));
}

TEST_F(FileAccessorTest, AQueueOfAThousandDoesNotDelayAnotherQueuesSingleRequest) {
  constexpr int kMany = 1000;
  for (int i = 0; i < kMany; ++i) write_file(dir_ / ("a" + std::to_string(i)), std::to_string(i));
  write_file(dir_ / "b", "namespace B's only file");
  Gate first_started, b_submitted;
  std::atomic<bool> once{false};
  auto o = fast_options();
  o.queue_capacity = 2 * kMany;
  o.hooks.before_open = [&](const Event&) {
    if (!once.exchange(true)) {
      first_started.open();
      b_submitted.wait();  // hold the only worker until B has queued behind A's backlog
    }
  };
  FileAccessor acc(o, &roots_, &digests_);
  for (int i = 0; i < kMany; ++i)
    acc.submit(request(static_cast<uint64_t>(i + 1), 1, (dir_ / ("a" + std::to_string(i))).string()));
  first_started.wait();
  acc.submit(request(5000, 2, (dir_ / "b").string()));
  b_submitted.open();
  acc.drain();
  ASSERT_EQ(answers_.size(), static_cast<size_t>(kMany + 1));
  // One worker, round-robin: A's running request, at most A's turn already scheduled when B
  // arrived, then B; never the rest of A's backlog first.
  EXPECT_LE(answers_.position(5000), 3u) << "B waited behind " << answers_.position(5000) - 1
                                         << " requests of queue A";
  auto r = answers_.of(5000);
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->digests[0], sha256_of("namespace B's only file"));
}

TEST_F(FileAccessorTest, FullQueueAndTotalCapAnswerAtOnce) {
  for (int i = 0; i < 6; ++i) write_file(dir_ / std::to_string(i), std::to_string(i));
  Gate release;
  auto o = fast_options();
  o.queue_capacity = 2;
  o.total_capacity = 3;
  o.hooks.before_open = [&](const Event&) { release.wait(); };
  FileAccessor acc(o, &roots_, &digests_);
  acc.submit(request(1, 1, (dir_ / "0").string()));
  acc.submit(request(2, 1, (dir_ / "1").string()));
  auto t0 = Clock::now();
  acc.submit(request(3, 1, (dir_ / "2").string()));  // queue 1 holds 2
  EXPECT_LT(Clock::now() - t0, 100ms);
  auto r3 = answers_.of(3);
  ASSERT_TRUE(r3) << "a full queue must answer before submit returns";
  ASSERT_FALSE(*r3);
  EXPECT_EQ(r3->error().kind, AccessErrorKind::kQueueFull);
  acc.submit(request(4, 2, (dir_ / "3").string()));  // total 3 now
  EXPECT_FALSE(answers_.of(4));
  acc.submit(request(5, 3, (dir_ / "4").string()));  // over the total cap
  auto r5 = answers_.of(5);
  ASSERT_TRUE(r5 && !*r5);
  EXPECT_EQ(r5->error().kind, AccessErrorKind::kQueueFull);
  EXPECT_NE(r5->error().to_string().find("all queues"), std::string::npos);
  auto s = acc.stats();
  EXPECT_EQ(s.rejected, 2u);
  release.open();
  acc.drain();
  EXPECT_EQ(answers_.size(), 5u);
  for (uint64_t seq : {1, 2, 4}) {
    auto r = answers_.of(seq);
    EXPECT_TRUE(r && *r) << seq;
  }
}

TEST_F(FileAccessorTest, IdenticalRequestsAreCoalescedAndAFailedOpenerIsNotFinal) {
  write_file(dir_ / "shared", "shared by three namespaces\n");
  Gate release;
  auto o = fast_options();
  o.file_handles = false;  // else the first opener finds the inode by handle after all
  o.hooks.before_open = [&](const Event&) { release.wait(); };
  FileAccessor acc(o, &roots_, &digests_);
  // The first requester's path no longer names the file (renamed in its view); the second's does.
  auto first = request(1, 1, (dir_ / "shared").string());
  first.ev.path = (dir_ / "gone").string();
  acc.submit(std::move(first));
  acc.submit(request(2, 2, (dir_ / "shared").string()));
  acc.submit(request(3, 3, (dir_ / "shared").string()));
  release.open();
  acc.drain();
  auto s = acc.stats();
  EXPECT_EQ(s.coalesced, 2u);
  EXPECT_EQ(s.files_read, 1u);
  for (uint64_t seq : {1, 2, 3}) {
    auto r = answers_.of(seq);
    ASSERT_TRUE(r && *r) << seq << ": " << (r && !*r ? r->error().to_string() : "none");
    EXPECT_EQ((*r)->digests[0], sha256_of("shared by three namespaces\n"));
  }
}

TEST_F(FileAccessorTest, BlockingOpenerTimesOutIsAbandonedAndReplaced) {
  write_file(dir_ / "stall", "never read");
  // On a filesystem of its own: one with a stuck read gets no new reads (answered kTimeout).
  TmpfsMount other_fs(dir_ / "otherfs");
  write_file(other_fs / "other", "another namespace's file");
  Gate release;
  std::atomic<int> blocked{0};
  auto o = fast_options();
  o.workers = 1;
  o.timeout = 300ms;
  o.abandon_after = 200ms;
  o.hooks.before_open = [&](const Event& ev) {
    if (ev.path.ends_with("/stall")) {
      ++blocked;
      release.wait();  // a system call that does not return
    }
  };
  auto acc = std::make_unique<FileAccessor>(o, &roots_, &digests_);
  auto t0 = Clock::now();
  acc->submit(request(1, 1, (dir_ / "stall").string()));
  ASSERT_TRUE(wait_until([&] { return answers_.of(1).has_value(); }, 5s));
  auto took = Clock::now() - t0;
  auto r = answers_.of(1);
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().kind, AccessErrorKind::kTimeout);
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
  // The same version again while the first read is still stuck: no second worker is spent on it.
  acc->submit(request(2, 1, (dir_ / "stall").string()));
  auto r2 = answers_.of(2);
  ASSERT_TRUE(r2 && !*r2);
  EXPECT_EQ(r2->error().kind, AccessErrorKind::kTimeout);
  ASSERT_TRUE(wait_until([&] { return acc->stats().stuck_workers == 1; }, 5s));
  auto s = acc->stats();
  EXPECT_EQ(s.workers, 1u) << "no replacement worker";
  EXPECT_EQ(s.abandoned, 1u);
  // Another namespace is served meanwhile, by the replacement.
  acc->submit(request(3, 2, (other_fs / "other").string()));
  ASSERT_TRUE(wait_until([&] { return answers_.of(3).has_value(); }, 5s));
  auto r3 = answers_.of(3);
  ASSERT_TRUE(*r3) << r3->error().to_string();
  EXPECT_EQ((*r3)->digests[0], sha256_of("another namespace's file"));
  EXPECT_EQ(blocked.load(), 1);
  // The stuck call returns at last: its late result is discarded, nothing is answered twice.
  release.open();
  ASSERT_TRUE(wait_until([&] { return acc->stats().stuck_workers == 0; }, 5s));
  EXPECT_EQ(acc->stats().late_results, 1u);
  acc.reset();
  EXPECT_EQ(answers_.size(), 3u);
}

TEST_F(FileAccessorTest, NoMoreReplacementsBeyondMaxStuckWorkers) {
  write_file(dir_ / "s1", "1");
  write_file(dir_ / "s2", "2");
  write_file(dir_ / "ok", "ok");
  Gate release;
  auto o = fast_options();
  o.workers = 1;
  o.timeout = 200ms;
  o.abandon_after = 100ms;
  o.max_stuck_workers = 1;
  o.hooks.before_open = [&](const Event& ev) {
    if (!ev.path.ends_with("/ok")) release.wait();
  };
  {
    FileAccessor acc(o, &roots_, &digests_);
    // Each stuck file on a filesystem of its own: a filesystem with a stuck read gets no new
    // one (it is answered kTimeout at once), which is not what this test is about.
    acc.submit(request(1, 1, (dir_ / "s1").string()));
    ASSERT_TRUE(wait_until([&] { return acc.stats().stuck_workers == 1; }, 5s));
    EXPECT_EQ(acc.stats().workers, 1u);  // replaced (1 stuck <= max 1)
    TmpfsMount fs2(dir_ / "fs2");
    write_file(fs2 / "s2", "2");
    acc.submit(request(2, 1, (fs2 / "s2").string()));
    ASSERT_TRUE(wait_until([&] { return acc.stats().stuck_workers == 2; }, 5s));
    EXPECT_EQ(acc.stats().workers, 0u) << "replaced beyond max_stuck_workers";
    // Nothing can start now: a queued request times out instead of waiting forever.
    TmpfsMount fs3(dir_ / "fs3");
    write_file(fs3 / "ok", "ok");
    auto t0 = Clock::now();
    acc.submit(request(3, 2, (fs3 / "ok").string()));
    ASSERT_TRUE(wait_until([&] { return answers_.of(3).has_value(); }, 5s));
    EXPECT_LT(Clock::now() - t0, 2s);
    auto r3 = answers_.of(3);
    ASSERT_FALSE(*r3);
    EXPECT_EQ(r3->error().kind, AccessErrorKind::kTimeout);
    EXPECT_NE(r3->error().to_string().find("no worker left"), std::string::npos)
        << r3->error().to_string();
    release.open();
    // Abandoned workers run the test's hook (this frame's Gate): let them leave it first.
    ASSERT_TRUE(wait_until([&] { return acc.stats().stuck_workers == 0; }, 5s));
  }
  EXPECT_EQ(answers_.size(), 3u);
}

TEST_F(FileAccessorTest, OneQueueCannotUseUpTheStuckWorkers) {
  // Queue 1 stalls reads on two filesystems of its own; with max_stuck_per_queue 1 its second
  // stall is answered at once instead of taking a second worker, and queue 2 is still served.
  TmpfsMount fs1(dir_ / "fs1"), fs2(dir_ / "fs2"), fs3(dir_ / "fs3");
  write_file(fs1 / "s", "1");
  write_file(fs2 / "s", "2");
  write_file(fs3 / "ok", "queue 2's file");
  Gate release;
  auto o = fast_options();
  o.workers = 1;
  o.timeout = 200ms;
  o.abandon_after = 100ms;
  o.max_stuck_per_queue = 1;
  o.hooks.before_open = [&](const Event& ev) {
    if (ev.path.ends_with("/s")) release.wait();
  };
  {
    FileAccessor acc(o, &roots_, &digests_);
    acc.submit(request(1, 1, (fs1 / "s").string()));
    ASSERT_TRUE(wait_until([&] { return acc.stats().stuck_workers == 1; }, 5s));
    acc.submit(request(2, 1, (fs2 / "s").string()));
    auto r2 = answers_.of(2);
    ASSERT_TRUE(r2 && !*r2) << "queue 1 got a second worker to stall";
    EXPECT_EQ(r2->error().kind, AccessErrorKind::kTimeout);
    EXPECT_NE(r2->error().to_string().find("queue 1 has 1 reads stuck"), std::string::npos)
        << r2->error().to_string();
    acc.submit(request(3, 2, (fs3 / "ok").string()));
    ASSERT_TRUE(wait_until([&] { return answers_.of(3).has_value(); }, 5s));
    EXPECT_TRUE(*answers_.of(3));
    EXPECT_EQ(acc.stats().stuck_workers, 1u);
    release.open();
    // Abandoned workers run the test's hook (this frame's Gate): let them leave it first.
    ASSERT_TRUE(wait_until([&] { return acc.stats().stuck_workers == 0; }, 5s));
  }
}

TEST_F(FileAccessorTest, HugeSparseFileIsCancelledWithinAChunk) {
  // 64 GiB of holes: hashing it takes minutes; the deadline must stop it, not abandon a worker.
  const auto huge = dir_ / "huge";
  {
    UniqueFd fd(::open(huge.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), off_t{64} << 30), 0);
  }
  write_file(dir_ / "small", "after the huge one");
  auto o = fast_options();
  o.timeout = 1000ms;
  o.abandon_after = 2000ms;
  FileAccessor acc(o, &roots_, &digests_);
  auto t0 = Clock::now();
  acc.submit(request(1, 1, huge.string()));
  ASSERT_TRUE(wait_until([&] { return answers_.of(1).has_value(); }, 10s));
  auto took = Clock::now() - t0;
  auto r = answers_.of(1);
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().kind, AccessErrorKind::kTimeout);
  EXPECT_LT(took, 3s);
  // The same single worker is free again within a chunk: it serves the next request, it was not
  // abandoned.
  acc.submit(request(2, 2, (dir_ / "small").string()));
  ASSERT_TRUE(wait_until([&] { return answers_.of(2).has_value(); }, 1500ms))
      << "the worker is still hashing the huge file";
  EXPECT_TRUE(*answers_.of(2));
  auto s = acc.stats();
  EXPECT_EQ(s.abandoned, 0u);
  EXPECT_EQ(s.stuck_workers, 0u);
  EXPECT_EQ(s.timeouts, 1u);
  EXPECT_EQ(s.late_results, 1u);
  std::cerr << "64 GiB sparse file answered kTimeout after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
}

TEST_F(FileAccessorTest, ChangedWhileHashingIsFlaggedAndNotCached) {
  write_file(dir_ / "f", "version 1");
  auto o = fast_options();
  std::atomic<bool> write_once{true};
  o.hooks.before_hash = [&](const Event& ev, int) {
    if (write_once.exchange(false)) {
      std::ofstream out(ev.path, std::ios::app);
      out << " and more";
    }
  };
  FileAccessor acc(o, &roots_, &digests_);
  acc.submit(request(1, 1, (dir_ / "f").string()));
  acc.drain();
  auto r = answers_.of(1);
  ASSERT_TRUE(r && *r);
  EXPECT_TRUE((*r)->changed);
  EXPECT_EQ(digests_.size(), 0u);
  // And a file that changed between the event and the open (the event's stamp is older).
  write_file(dir_ / "g", "old");
  auto req = request(2, 1, (dir_ / "g").string());
  std::this_thread::sleep_for(20ms);
  write_file(dir_ / "g", "new content");
  acc.submit(std::move(req));
  acc.drain();
  auto r2 = answers_.of(2);
  ASSERT_TRUE(r2 && *r2);
  EXPECT_TRUE((*r2)->changed);
  EXPECT_EQ(digests_.size(), 0u);
  // Unchanged: cached.
  acc.submit(request(3, 1, (dir_ / "g").string()));
  acc.drain();
  ASSERT_TRUE(answers_.of(3) && *answers_.of(3));
  EXPECT_FALSE((*answers_.of(3))->changed);
  EXPECT_EQ(digests_.size(), 1u);
}

TEST_F(FileAccessorTest, FailuresKeepTheirKind) {
  write_file(dir_ / "f", "x");
  write_file(dir_ / "g", "y");
  ::mkfifo((dir_ / "fifo").c_str(), 0644);
  FileAccessor acc(fast_options(), &roots_, &digests_);
  auto mismatch = request(1, 1, (dir_ / "f").string());
  mismatch.ev.path = (dir_ / "g").string();  // another inode at that path
  acc.submit(std::move(mismatch));
  auto fifo = request(2, 1, (dir_ / "f").string());
  fill_file(fifo.ev, (dir_ / "fifo").string());
  fifo.ev.path = (dir_ / "fifo").string();
  acc.submit(std::move(fifo));
  auto gone = request(3, 1, (dir_ / "f").string());
  gone.ev.path = (dir_ / "nothing").string();
  gone.ev.ino += 1000000;  // and no inode with that number and generation
  acc.submit(std::move(gone));
  acc.drain();
  for (uint64_t seq : {1, 2, 3}) ASSERT_TRUE(answers_.of(seq) && !*answers_.of(seq)) << seq;
  EXPECT_EQ(answers_.of(1)->error().kind, AccessErrorKind::kMismatch);
  EXPECT_EQ(answers_.of(2)->error().kind, AccessErrorKind::kNotRegular);
  auto k3 = answers_.of(3)->error().kind;
  EXPECT_TRUE(k3 == AccessErrorKind::kVanished || k3 == AccessErrorKind::kMismatch)
      << answers_.of(3)->error().to_string();
  EXPECT_EQ(acc.stats().failed, 3u);
}

TEST_F(FileAccessorTest, ExitedProcessIsMeasuredByHandleOnExt4) {
  // /tmp is ext4 here: {ino32, gen} handles. The chrooted process is gone before the request
  // is served and nothing else lends its root.
  write_file(dir_ / "r/bin/tool", "the chroot's own tool\n");
  Event ev;
  {
    Child c(chroot_into((dir_ / "r").string()));
    ASSERT_TRUE(c.ok());
    ev = event_for(c.pid(), "/bin/tool");
    roots_.capture(ev);
  }
  ASSERT_TRUE(wait_until([&] { return roots_.stats().evicted_dead == 1; }));
  ASSERT_FALSE(roots_.root_for(ev));
  auto o = fast_options();
  {
    FileAccessor acc(o, &roots_, &digests_);
    FileAccessor::Request r;
    r.seq = 1;
    r.ev = ev;
    r.algos = {HashAlgo::kSha256};
    r.done = answers_.cb(1);
    acc.submit(std::move(r));
    // The same inode number with another generation: the file was replaced.
    FileAccessor::Request stale;
    stale.seq = 2;
    stale.ev = ev;
    stale.ev.generation += 1;
    stale.algos = {HashAlgo::kSha256};
    stale.done = answers_.cb(2);
    acc.submit(std::move(stale));
    acc.drain();
    auto r1 = answers_.of(1);
    ASSERT_TRUE(r1 && *r1) << r1->error().to_string();
    EXPECT_EQ((*r1)->digests[0], sha256_of("the chroot's own tool\n"));
    EXPECT_EQ(acc.stats().handle_opens, 1u);
    auto r2 = answers_.of(2);
    ASSERT_TRUE(r2 && !*r2);
    EXPECT_EQ(r2->error().kind, AccessErrorKind::kMismatch) << r2->error().to_string();
  }
  o.file_handles = false;
  FileAccessor without(o, &roots_, nullptr);
  FileAccessor::Request r;
  r.seq = 3;
  r.ev = ev;
  r.algos = {HashAlgo::kSha256};
  r.done = answers_.cb(3);
  without.submit(std::move(r));
  without.drain();
  auto r3 = answers_.of(3);
  ASSERT_TRUE(r3 && !*r3);
  EXPECT_EQ(r3->error().kind, AccessErrorKind::kVanished);
  EXPECT_NE(r3->error().to_string().find("pid " + std::to_string(ev.tgid)), std::string::npos)
      << r3->error().to_string();
}

TEST_F(FileAccessorTest, ChrootsAndContainersAreMeasuredThroughTheirOwnRoots) {
  write_file(dir_ / "a/bin/f", "A's file\n");
  write_file(dir_ / "b/bin/f", "B's file\n");
  std::filesystem::create_directories(dir_ / "ctr");
  const std::string ctr = (dir_ / "ctr").string(), content = "container's file\n";
  Child ca(chroot_into((dir_ / "a").string())), cb(chroot_into((dir_ / "b").string()));
  Child cc(container(ctr, content));
  ASSERT_TRUE(ca.ok() && cb.ok() && cc.ok());
  FileAccessor acc(fast_options(), &roots_, &digests_);
  uint64_t seq = 0;
  for (Child* c : {&ca, &cb, &cc}) {
    FileAccessor::Request r;
    r.seq = ++seq;
    r.queue = static_cast<uint32_t>(seq);
    r.ev = event_for(c->pid(), "/bin/f");
    r.algos = {HashAlgo::kSha256};
    r.done = answers_.cb(seq);
    roots_.capture(r.ev);
    acc.submit(std::move(r));
  }
  acc.drain();
  const std::string want[] = {"A's file\n", "B's file\n", content};
  for (uint64_t i = 1; i <= 3; ++i) {
    auto r = answers_.of(i);
    ASSERT_TRUE(r && *r) << i << ": " << (r ? r->error().to_string() : "no answer");
    EXPECT_EQ((*r)->digests[0], sha256_of(want[i - 1])) << i;
  }
}

TEST_F(FileAccessorTest, SameRootDentryThroughAnotherMountIsRetriedInTheOwnRoot) {
  // x and its bind mount y are the same directory (same root dev/ino, one mount namespace), but
  // x/sub has a tmpfs over it and y/sub (non-recursive bind) shows what is under it. A process
  // chrooted in y reads /sub/g; the root for that key was lent by the process chrooted in x,
  // where /sub/g does not exist. All on tmpfs: no file handle can rescue it.
  TmpfsMount base(dir_ / "base");
  write_file(base / "x/sub/g", "under the submount\n");
  std::filesystem::create_directories(base / "y");
  TmpfsMount sub(base / "x/sub");
  write_file(sub / "f", "in the submount\n");
  ASSERT_EQ(::mount((base / "x").c_str(), (base / "y").c_str(), nullptr, MS_BIND, nullptr), 0);
  struct Unbind {
    std::filesystem::path p;
    ~Unbind() { ::umount2(p.c_str(), MNT_DETACH); }
  } unbind{base / "y"};
  Child cx(chroot_into((base / "x").string())), cy(chroot_into((base / "y").string()));
  ASSERT_TRUE(cx.ok() && cy.ok());
  Event ex = event_for(cx.pid(), "/sub/f"), ey = event_for(cy.pid(), "/sub/g");
  ASSERT_EQ(ex.root_ino, ey.root_ino);
  ASSERT_EQ(ex.root_kdev, ey.root_kdev);
  roots_.capture(ex);  // x lends the key's root
  roots_.capture(ey);  // a hit
  ASSERT_EQ(roots_.stats().captured, 1u);
  FileAccessor acc(fast_options(), &roots_, &digests_);
  FileAccessor::Request r;
  r.seq = 1;
  r.ev = ey;
  r.algos = {HashAlgo::kSha256};
  r.done = answers_.cb(1);
  acc.submit(std::move(r));
  acc.drain();
  auto a = answers_.of(1);
  ASSERT_TRUE(a && *a) << (a ? a->error().to_string() : "no answer");
  EXPECT_EQ((*a)->digests[0], sha256_of("under the submount\n"));
  EXPECT_EQ(roots_.stats().own_roots, 1u);
}

TEST_F(FileAccessorTest, DropQueueAndShutdownAnswerEachRequestOnce) {
  for (int i = 0; i < 6; ++i) write_file(dir_ / std::to_string(i), std::to_string(i));
  Gate release;
  auto o = fast_options();
  o.hooks.before_open = [&](const Event&) { release.wait(); };
  auto acc = std::make_unique<FileAccessor>(o, &roots_, &digests_);
  acc->submit(request(1, 1, (dir_ / "0").string()));  // running (held in the hook)
  ASSERT_TRUE(wait_until([&] {
    for (auto& q : acc->stats().queues)
      if (q.queue == 1 && q.running == 1) return true;
    return false;
  }));
  acc->submit(request(2, 1, (dir_ / "1").string()));
  acc->submit(request(3, 1, (dir_ / "2").string()));
  acc->submit(request(4, 2, (dir_ / "3").string()));
  acc->drop_queue(1);
  for (uint64_t seq : {2, 3}) {
    auto r = answers_.of(seq);
    ASSERT_TRUE(r && !*r) << seq;
    EXPECT_EQ(r->error().kind, AccessErrorKind::kShutdown);
  }
  EXPECT_FALSE(answers_.of(1));
  EXPECT_FALSE(answers_.of(4));
  release.open();
  acc->drain();
  EXPECT_TRUE(answers_.of(1) && *answers_.of(1));
  EXPECT_TRUE(answers_.of(4) && *answers_.of(4));

  // Shutdown with work queued: every request answered, once.
  Gate hold;
  o.hooks.before_open = [&](const Event&) { hold.wait(); };
  acc = std::make_unique<FileAccessor>(o, &roots_, nullptr);
  acc->submit(request(10, 1, (dir_ / "4").string()));
  acc->submit(request(11, 2, (dir_ / "5").string()));
  std::thread opener([&] {
    std::this_thread::sleep_for(100ms);
    hold.open();
  });
  acc.reset();
  opener.join();
  for (uint64_t seq : {10, 11}) {
    auto r = answers_.of(seq);
    ASSERT_TRUE(r) << seq;
  }
  EXPECT_EQ(answers_.size(), 6u);
}

TEST_F(FileAccessorTest, WorkersRunBelowTheWorkloadAndThrowingCallbacksAreContained) {
  write_file(dir_ / "f", "x");
  std::atomic<int> policy{-1}, nice{-100};
  auto o = fast_options();
  o.hooks.before_open = [&](const Event&) {
    policy = ::sched_getscheduler(0);
    errno = 0;
    nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  };
  FileAccessor acc(o, &roots_, &digests_);
  std::atomic<int> calls{0};
  auto r = request(1, 1, (dir_ / "f").string());
  r.done = [&](const AccessResult&) {
    ++calls;
    throw std::runtime_error("a callback that throws");
  };
  acc.submit(std::move(r));
  acc.drain();
  EXPECT_EQ(policy.load(), SCHED_BATCH);
  EXPECT_EQ(nice.load(), 10);
  EXPECT_EQ(calls.load(), 1);
  // The worker survived the exception and serves the next request.
  acc.submit(request(2, 1, (dir_ / "f").string(), {HashAlgo::kSha512}));
  acc.drain();
  ASSERT_TRUE(answers_.of(2) && *answers_.of(2));
}

TEST_F(FileAccessorTest, ThroughputCachedAndUncached) {
  constexpr int kFiles = 2000;
  for (int i = 0; i < kFiles; ++i)
    write_file(dir_ / ("t" + std::to_string(i)), std::string(4096, static_cast<char>('a' + i % 26)));
  auto o = fast_options();
  o.workers = 2;
  o.queue_capacity = kFiles;
  FileAccessor acc(o, &roots_, &digests_);
  std::vector<FileAccessor::Request> reqs;
  for (int i = 0; i < kFiles; ++i)
    reqs.push_back(request(static_cast<uint64_t>(i + 1), static_cast<uint32_t>(i % 4),
                           (dir_ / ("t" + std::to_string(i))).string()));
  auto copy = reqs;
  auto t0 = Clock::now();
  for (auto& r : reqs) acc.submit(std::move(r));
  acc.drain();
  auto cold = std::chrono::duration<double>(Clock::now() - t0).count();
  t0 = Clock::now();
  for (auto& r : copy) acc.submit(std::move(r));
  acc.drain();
  auto warm = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(answers_.size(), static_cast<size_t>(2 * kFiles));
  EXPECT_EQ(acc.stats().cache_hits, static_cast<uint64_t>(kFiles));
  std::cerr << "uncached (open + sha256 of 4 KiB, 2 workers): " << kFiles / cold
            << " requests/s; cached (inline): " << kFiles / warm << " requests/s\n";
}

}  // namespace
}  // namespace nsima::access

// SPDX-License-Identifier: Apache-2.0
// HashPool: real files through open_in_root, cache hits, coalescing of concurrent requests,
// opener fallback, back-pressure without dropping work, change detection, shutdown drains.
#include "measure/hash_pool.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "test_util.h"

namespace nsima::measure {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

// A gate the test opens to let a blocked opener continue.
class Gate {
 public:
  void wait() {
    std::unique_lock l(mu_);
    waiting_ = true;
    cv_.notify_all();
    cv_.wait(l, [&] { return open_; });
  }
  void wait_until_someone_waits() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return waiting_; });
  }
  void open() {
    std::lock_guard l(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false, waiting_ = false;
};

class HashPoolTest : public ::testing::Test {
 protected:
  void SetUp() override { root_.reset(::open(dir_.path().c_str(), O_PATH | O_DIRECTORY)); }

  // Writes a file and returns the request pieces for it, as the pipeline would build them.
  std::pair<FileKey, Opener> file(const std::string& name, const std::string& content) {
    testing::write_file(dir_ / name, content);
    struct stat st {};
    EXPECT_EQ(::stat((dir_ / name).c_str(), &st), 0);
    UniqueFd fd(::open((dir_ / name).c_str(), O_RDONLY));
    long gen = 0;
    EXPECT_EQ(::ioctl(fd.get(), FS_IOC_GETVERSION, &gen), 0);
    FileKey key = FileKey::from_stat(st, static_cast<uint32_t>(gen));
    FileIdentity id{st.st_dev, static_cast<uint64_t>(st.st_ino), static_cast<uint32_t>(gen)};
    int root = root_.get();
    return {key, [root, name, id] { return open_in_root(root, "/" + name, id); }};
  }

  static std::string sha256(const std::string& s) {
    return hash_bytes(HashAlgo::kSha256, testing::bytes_of(s))->hex();
  }

  TempDir dir_;
  UniqueFd root_;
};

TEST_F(HashPoolTest, HashesThenServesFromCache) {
  DigestCache cache(64);
  HashPool pool({.threads = 2, .queue_capacity = 8, .hash = {}}, &cache);
  auto [key, open] = file("a", "hello\n");
  std::promise<HashResult> p1;
  ASSERT_TRUE(
      pool.submit({key, {HashAlgo::kSha256, HashAlgo::kSha1}, open, [&](const HashResult& r) {
                     p1.set_value(r);
                   }}));
  auto r1 = p1.get_future().get();
  ASSERT_TRUE(r1) << r1.error().to_string();
  EXPECT_FALSE(r1->from_cache);
  EXPECT_FALSE(r1->changed);
  EXPECT_EQ(r1->bytes, 6u);
  EXPECT_EQ(r1->digests[0].hex(), sha256("hello\n"));
  EXPECT_EQ(r1->digests[1].algo(), HashAlgo::kSha1);

  // Same version again: answered inline from the cache, no file access.
  bool called = false;
  ASSERT_TRUE(pool.submit({key,
                           {HashAlgo::kSha256},
                           [] {
                             ADD_FAILURE() << "opener must not run on a cache hit";
                             return FileResult<OpenedFile>(tl::unexpected(FileError{}));
                           },
                           [&](const HashResult& r) {
                             called = true;
                             ASSERT_TRUE(r);
                             EXPECT_TRUE(r->from_cache);
                             EXPECT_EQ(r->digests[0].hex(), sha256("hello\n"));
                           }}));
  EXPECT_TRUE(called);
  EXPECT_EQ(pool.stats().cache_hits, 1u);
  EXPECT_EQ(pool.stats().files_hashed, 1u);
}

TEST_F(HashPoolTest, ConcurrentRequestsForOneVersionAreCoalesced) {
  DigestCache cache(64);
  HashPool pool({.threads = 2, .queue_capacity = 8, .hash = {}}, &cache);
  auto [key, open] = file("shared.so", std::string(300000, 's'));
  Gate gate;
  std::atomic<int> opens{0};
  auto slow_open = [&, open = open] {
    ++opens;
    gate.wait();  // hold the first read so the others arrive while it is in flight
    return open();
  };
  std::atomic<int> done{0};
  std::mutex mu;
  std::vector<std::string> digests;
  auto cb = [&](const HashResult& r) {
    ASSERT_TRUE(r) << r.error().to_string();
    std::lock_guard l(mu);
    digests.push_back(r->digests[0].hex());
    ++done;
  };
  ASSERT_TRUE(pool.submit({key, {HashAlgo::kSha256}, slow_open, cb}));
  gate.wait_until_someone_waits();
  for (int i = 0; i < 9; ++i) ASSERT_TRUE(pool.submit({key, {HashAlgo::kSha256}, slow_open, cb}));
  gate.open();
  pool.drain();
  EXPECT_EQ(done.load(), 10);
  EXPECT_EQ(opens.load(), 1);
  auto s = pool.stats();
  EXPECT_EQ(s.files_hashed, 1u);
  EXPECT_EQ(s.coalesced, 9u);
  for (const auto& d : digests) EXPECT_EQ(d, sha256(std::string(300000, 's')));
}

TEST_F(HashPoolTest, CoalescedWaiterOpenerIsTriedWhenTheFirstFails) {
  HashPool pool({.threads = 1, .queue_capacity = 8, .hash = {}}, nullptr);
  auto [key, open] = file("f", "content");
  Gate gate;
  auto vanished = [&] {
    gate.wait();
    return FileResult<OpenedFile>(tl::unexpected(
        FileError{FileErrorKind::kVanished, Error{ENOENT, "gone in namespace A", "/f"}}));
  };
  std::vector<HashResult> results(2);
  ASSERT_TRUE(pool.submit(
      {key, {HashAlgo::kSha256}, vanished, [&](const HashResult& r) { results[0] = r; }}));
  gate.wait_until_someone_waits();
  ASSERT_TRUE(
      pool.submit({key, {HashAlgo::kSha256}, open, [&](const HashResult& r) { results[1] = r; }}));
  gate.open();
  pool.drain();
  // The inode was reachable through namespace B's path: both get its digest.
  ASSERT_TRUE(results[0]);
  ASSERT_TRUE(results[1]);
  EXPECT_EQ(results[0]->digests[0].hex(), sha256("content"));
}

TEST_F(HashPoolTest, FailuresAreReportedWithTheirKind) {
  HashPool pool({.threads = 1, .queue_capacity = 8, .hash = {}}, nullptr);
  auto [key, open] = file("gone", "x");
  std::filesystem::remove(dir_ / "gone");
  std::promise<HashResult> p;
  ASSERT_TRUE(
      pool.submit({key, {HashAlgo::kSha256}, open, [&](const HashResult& r) { p.set_value(r); }}));
  auto r = p.get_future().get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, FileErrorKind::kVanished);
  EXPECT_FALSE(pool.submit({key, {}, open, [](const HashResult&) {}}));  // no algorithms
}

TEST_F(HashPoolTest, BackPressureBlocksTheProducerAndDropsNothing) {
  HashPool pool({.threads = 1, .queue_capacity = 2, .hash = {}}, nullptr);
  Gate gate;
  std::atomic<int> done{0};
  auto cb = [&](const HashResult& r) {
    EXPECT_TRUE(r);
    ++done;
  };
  auto [k0, o0] = file("f0", "0");
  ASSERT_TRUE(pool.submit({k0,
                           {HashAlgo::kSha256},
                           [&, o0 = o0] {
                             gate.wait();
                             return o0();
                           },
                           cb}));
  gate.wait_until_someone_waits();  // f0 is running; the queue is empty
  for (int i = 1; i <= 2; ++i) {
    auto [k, o] = file("f" + std::to_string(i), std::to_string(i));
    ASSERT_TRUE(pool.submit({k, {HashAlgo::kSha256}, o, cb}));
  }
  EXPECT_EQ(pool.queue_depth(), 2u);
  auto [k3, o3] = file("f3", "3");
  auto blocked = std::async(std::launch::async, [&, k3 = k3, o3 = o3] {
    return pool.submit({k3, {HashAlgo::kSha256}, o3, cb});
  });
  EXPECT_EQ(blocked.wait_for(200ms), std::future_status::timeout);  // producer is held back
  EXPECT_EQ(pool.stats().blocked_submits, 1u);
  gate.open();
  ASSERT_TRUE(blocked.get());
  pool.drain();
  EXPECT_EQ(done.load(), 4);
  EXPECT_EQ(pool.stats().files_hashed, 4u);
  EXPECT_EQ(pool.stats().max_queue_depth, 2u);
}

TEST_F(HashPoolTest, ChangedFileIsFlaggedAndNotCached) {
  DigestCache cache(64);
  HashPool pool({.threads = 1, .queue_capacity = 8, .hash = {}}, &cache);
  auto [key, open] = file("c", "before");
  std::this_thread::sleep_for(20ms);  // let ctime move on coarse-timestamp filesystems
  testing::write_file(dir_ / "c", "after, and longer");  // same inode, new content
  std::promise<HashResult> p;
  ASSERT_TRUE(
      pool.submit({key, {HashAlgo::kSha256}, open, [&](const HashResult& r) { p.set_value(r); }}));
  auto r = p.get_future().get();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(r->changed);
  EXPECT_EQ(r->digests[0].hex(), sha256("after, and longer"));
  EXPECT_EQ(cache.size(), 0u);
}

TEST_F(HashPoolTest, DestructionFinishesQueuedWork) {
  std::atomic<int> done{0};
  {
    HashPool pool({.threads = 1, .queue_capacity = 64, .hash = {}}, nullptr);
    for (int i = 0; i < 20; ++i) {
      auto [k, o] = file("d" + std::to_string(i), std::string(10000, 'a' + i % 26));
      ASSERT_TRUE(pool.submit({k, {HashAlgo::kSha256}, o, [&](const HashResult& r) {
                                 EXPECT_TRUE(r);
                                 ++done;
                               }}));
    }
  }
  EXPECT_EQ(done.load(), 20);
}

}  // namespace
}  // namespace nsima::measure

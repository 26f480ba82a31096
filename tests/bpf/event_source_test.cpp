// SPDX-License-Identifier: Apache-2.0
// The ring-buffer consumer on a real BPF ring buffer (filled by the hooks' own nsima_submit from
// the selftest object's SEC("syscall") flood program): events are numbered 1, 2, 3 ...; sync()
// returns only once everything committed before it reached the sink, promptly, and says when
// it cannot; a second consumer of the same (pinned) ring buffer continues exactly where the
// first one stopped, as a restarted nsimad does.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <vector>

#include <gtest/gtest.h>

#include "capture/event_source.h"
#include "nsima_selftest.skel.h"
#include "selftest_abi.h"

namespace nsima::capture {
namespace {

struct SkelDeleter {
  void operator()(nsima_selftest* s) const { nsima_selftest::destroy(s); }
};

// What a sink saw, safe to read from the test thread.
struct Seen {
  std::mutex mu;
  std::vector<uint64_t> seqs;
  std::vector<uint64_t> inos;
  void add(const Event& ev) {
    std::lock_guard lock(mu);
    seqs.push_back(ev.seq);
    inos.push_back(ev.ino);
  }
  size_t size() {
    std::lock_guard lock(mu);
    return seqs.size();
  }
};

class EventSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    skel_.reset(nsima_selftest::open_and_load());
    ASSERT_TRUE(skel_) << "loading nsima_selftest.bpf.o failed (errno " << errno << ")";
  }
  int ring() { return bpf_map__fd(skel_->maps.events); }
  uint32_t flood(uint32_t n) {
    nsima_selftest_flood f{n, 64, 0, 1};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &f, .ctx_size_in = sizeof f);
    EXPECT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.nsima_test_flood), &opts), 0);
    return f.submitted;
  }
  std::unique_ptr<nsima_selftest, SkelDeleter> skel_;
};

TEST_F(EventSourceTest, SyncCoversEveryCommittedRecordPromptly) {
  Seen seen;
  EventSource src(ring(), [&](Event&& ev) { seen.add(ev); });
  ASSERT_TRUE(src.start());
  auto r = src.sync(std::chrono::seconds(5));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, 0u) << "nothing committed yet";

  // Few enough that consuming them takes far less than the consumer's 100 ms poll timeout even
  // on a loaded machine (20,000 took over 90 ms beside a parallel test run): the bound below
  // tells a woken consumer from one that waited for its timeout, not the consumer's speed.
  const uint32_t n = 4000;
  ASSERT_EQ(flood(n), n);
  auto t0 = std::chrono::steady_clock::now();
  r = src.sync(std::chrono::seconds(5));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_GE(*r, n);
  EXPECT_EQ(seen.size(), n) << "sync returned before the sink had every record";
  EXPECT_LT(ms, 90) << "sync waited for a poll timeout instead of waking the consumer";
  EXPECT_EQ(src.pending_bytes(), 0u);
  // a second barrier with nothing new: immediate, same seq
  t0 = std::chrono::steady_clock::now();
  auto r2 = src.sync(std::chrono::seconds(5));
  ASSERT_TRUE(r2);
  EXPECT_EQ(*r2, *r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));
  src.stop();
  std::lock_guard lock(seen.mu);
  for (size_t i = 0; i < seen.seqs.size(); ++i) {
    ASSERT_EQ(seen.seqs[i], i + 1) << "events are numbered 1, 2, 3 ... in intake order";
    ASSERT_EQ(seen.inos[i], i) << "records arrive in the order they were written";
  }
  EXPECT_EQ(src.last_seq(), n);
}

TEST_F(EventSourceTest, SyncSaysWhenTheSinkIsStuck) {
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  bool released = false;
  auto open_gate = [&] {
    if (!released) release.set_value();
    released = true;
  };
  Seen seen;
  EventSource src(ring(), [&](Event&& ev) {
    gate.wait();
    seen.add(ev);
  });
  // whatever fails below, the sink must return before src is destroyed (declared after src)
  std::unique_ptr<void, std::function<void(void*)>> guard(&seen, [&](void*) { open_gate(); });
  ASSERT_TRUE(src.start());
  ASSERT_EQ(flood(10), 10u);
  auto r = src.sync(std::chrono::milliseconds(200));
  ASSERT_FALSE(r) << "a sink that does not return cannot have received everything";
  EXPECT_EQ(r.error().code, ETIMEDOUT);
  EXPECT_NE(r.error().message.find("bytes committed before the request are still unconsumed"),
            std::string::npos)
      << r.error().message;
  open_gate();
  r = src.sync(std::chrono::seconds(5));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, 10u);
  EXPECT_EQ(seen.size(), 10u);
}

// nsimad stopped (SIGTERM with pinned hooks: stop without drain) or killed: what the hooks
// wrote meanwhile stays in the ring buffer, and the next consumer hands exactly that on.
TEST_F(EventSourceTest, NextConsumerContinuesWhereThePreviousStopped) {
  Seen first;
  {
    EventSource a(ring(), [&](Event&& ev) { first.add(ev); });
    ASSERT_TRUE(a.start());
    ASSERT_EQ(flood(100), 100u);
    ASSERT_EQ(a.sync(std::chrono::seconds(5)).value_or(0), 100u);
    a.stop(/*drain=*/false);
    ASSERT_EQ(flood(50), 50u);  // while no consumer runs
    EXPECT_GT(a.pending_bytes(), 0u);
  }
  EXPECT_EQ(first.size(), 100u) << "stop without drain leaves the records";
  Seen second;
  EventSource b(ring(), [&](Event&& ev) { second.add(ev); });
  ASSERT_TRUE(b.start());
  auto r = b.sync(std::chrono::seconds(5));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, 50u) << "seq starts again at 1 in the new consumer";
  std::lock_guard lock(second.mu);
  ASSERT_EQ(second.inos.size(), 50u);
  for (size_t i = 0; i < 50; ++i) EXPECT_EQ(second.inos[i], i) << "exactly the records left";
}

}  // namespace
}  // namespace nsima::capture

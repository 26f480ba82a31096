// SPDX-License-Identifier: Apache-2.0
// The verdict writer against the hooks' own decision code (selftest.bpf.c, real verifier, real
// maps): an operator deny is never overwritten by a judged allow, survives a policy load
// (invalidate), reaches namespaces created below the denying one, leaves them when the denying
// namespace is deleted, and is read back from <state_dir>/overrides.json by a new writer.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include <gtest/gtest.h>

#include "capture/bpf_maps.h"
#include "nsima_selftest.skel.h"
#include "ns/verdict_writer.h"
#include "selftest_abi.h"

namespace nsima::ns {
namespace {

namespace fs = std::filesystem;

struct SkelDeleter {
  void operator()(nsima_selftest* s) const { nsima_selftest::destroy(s); }
};

class VerdictWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    skel_.reset(nsima_selftest::open_and_load());
    ASSERT_TRUE(skel_) << "loading nsima_selftest.bpf.o failed (errno " << errno << ")";
    maps_ = std::make_unique<capture::BpfMaps>(capture::MapFds{
        bpf_map__fd(skel_->maps.cgroups), bpf_map__fd(skel_->maps.verdicts),
        bpf_map__fd(skel_->maps.stats), bpf_map__fd(skel_->maps.ns_drops),
        bpf_map__fd(skel_->maps.self_opens)});
    char tmpl[] = "/tmp/nsima-vw-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  int decide(uint32_t ns, const Stamp& s, uint32_t cls = NSIMA_CLASS_FILE(NSIMA_MAY_READ)) {
    nsima_selftest_args a{};
    a.key = nsima_verdict_key{ns, f_.generation, f_.kdev, f_.ino};
    a.stamp = capture::to_abi(s);
    a.class_ = cls;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &a, .ctx_size_in = sizeof(a));
    EXPECT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.nsima_test_decide), &opts), 0);
    return a.decision;
  }

  std::unique_ptr<nsima_selftest, SkelDeleter> skel_;
  std::unique_ptr<capture::BpfMaps> maps_;
  std::string dir_;
  FileRef f_{(8u << 20) | 1, 4242, 7};
  Stamp s1_{100, 1, 1, 10}, s2_{200, 2, 2, 20};
  const uint32_t bit_ = 1u << NSIMA_CLASS_FILE(NSIMA_MAY_READ);
};

TEST_F(VerdictWriterTest, JudgedAllowNeverReplacesAnOperatorDeny) {
  VerdictWriter w(maps_.get(), dir_);
  ASSERT_TRUE(w.deny(2, f_, s1_, "/x", std::vector<uint32_t>{2}));
  EXPECT_EQ(decide(2, s1_), NSIMA_DECIDE_DENY);
  // the pipeline judged an event that raced the deny (another stamp)
  std::vector<uint32_t> chain{2, 1};
  w.judged_allow(chain, f_, s2_, bit_, bit_);
  w.judged_allow(chain, f_, s1_, bit_, bit_);
  EXPECT_EQ(decide(2, s1_), NSIMA_DECIDE_DENY);
  ASSERT_TRUE(w.denied_by(chain, f_));
  EXPECT_EQ(w.denied_by(chain, f_)->path, "/x");
}

// A judged deny (appraisal failed) refuses the class that failed; the pipeline's judged allow
// of another class of the same version (a read of a binary refused at exec, no rule appraising
// reads) silences that class and leaves the deny.
TEST_F(VerdictWriterTest, JudgedDenyIsPerClassAndSurvivesAnAllowOfAnotherClass) {
  VerdictWriter w(maps_.get(), dir_);
  std::vector<uint32_t> chain{2, 1};
  w.judged_deny(chain, f_, s1_, 1u << NSIMA_CLASS_BPRM);
  EXPECT_EQ(decide(2, s1_, NSIMA_CLASS_BPRM), NSIMA_DECIDE_DENY);
  EXPECT_EQ(decide(2, s1_), NSIMA_DECIDE_EMIT) << "a read of a binary refused at exec";
  w.judged_allow(chain, f_, s1_, bit_, bit_);
  EXPECT_EQ(decide(2, s1_), NSIMA_DECIDE_QUIET);
  EXPECT_EQ(decide(2, s1_, NSIMA_CLASS_BPRM), NSIMA_DECIDE_DENY) << "the read lifted the exec deny";
  // the next version of the file is judged anew
  w.judged_allow(chain, f_, s2_, 0, 1u << NSIMA_CLASS_BPRM);
  EXPECT_EQ(decide(2, s2_, NSIMA_CLASS_BPRM), NSIMA_DECIDE_REPORT);
  EXPECT_EQ(w.errors(), 0u);
}

TEST_F(VerdictWriterTest, PolicyLoadKeepsDeniesAndDropsJudgedVerdicts) {
  VerdictWriter w(maps_.get(), dir_);
  FileRef other{f_.kdev, f_.ino + 1, 0};
  std::vector<uint32_t> chain{2, 1};
  w.judged_allow(chain, other, s1_, bit_, bit_);
  ASSERT_TRUE(w.deny(2, f_, s1_, "/x", std::vector<uint32_t>{2}));
  auto n = w.invalidate(2);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(decide(2, s1_), NSIMA_DECIDE_DENY);
  EXPECT_FALSE(maps_->verdict(nsima_verdict_key{2, 0, other.kdev, other.ino}));
}

TEST_F(VerdictWriterTest, DeniesReachNamespacesBelowAndLeaveWithTheirNamespace) {
  VerdictWriter w(maps_.get(), dir_);
  ASSERT_TRUE(w.deny(2, f_, s1_, "/x", std::vector<uint32_t>{2}));
  // namespace 5 created below 2: its chain is 5, 2, host
  ASSERT_TRUE(w.apply(std::vector<uint32_t>{5, 2, 1}));
  EXPECT_EQ(decide(5, s1_), NSIMA_DECIDE_DENY);
  // a child never relaxes an ancestor
  auto a = w.allow(5, f_, std::vector<uint32_t>{2, 1}, std::vector<uint32_t>{5});
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("denied by namespace 2"), std::string::npos);
  // 2 is deleted: 5 moves under host and is no longer denied
  ASSERT_TRUE(w.forget(2));
  ASSERT_TRUE(w.apply(std::vector<uint32_t>{5, 1}));
  EXPECT_NE(decide(5, s1_), NSIMA_DECIDE_DENY);
}

TEST_F(VerdictWriterTest, OverridesSurviveARestart) {
  {
    VerdictWriter w(maps_.get(), dir_);
    ASSERT_TRUE(w.deny(3, f_, s1_, "/etc/shadow", std::vector<uint32_t>{3}));
  }
  ASSERT_TRUE(maps_->remove_namespace_verdicts(3));  // fresh maps after a restart
  EXPECT_NE(decide(3, s1_), NSIMA_DECIDE_DENY);
  VerdictWriter again(maps_.get(), dir_);
  ASSERT_TRUE(again.load());
  ASSERT_TRUE(again.apply(std::vector<uint32_t>{3, 1}));
  EXPECT_EQ(decide(3, s1_), NSIMA_DECIDE_DENY);
  ASSERT_EQ(again.overrides().size(), 1u);
  EXPECT_EQ(again.overrides()[0].path, "/etc/shadow");
}

TEST_F(VerdictWriterTest, UnreadableOverridesFileStopsStartup) {
  std::ofstream(dir_ + "/overrides.json") << "{not json";
  VerdictWriter w(maps_.get(), dir_);
  auto r = w.load();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().where.find("overrides.json"), std::string::npos);
}

}  // namespace
}  // namespace nsima::ns

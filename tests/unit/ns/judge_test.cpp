// SPDX-License-Identifier: Apache-2.0
// The judge as a pure function: per-namespace decisions, measured once per version and PCR,
// open_writers / ToMToU as kernel IMA raises them, and what reading the file must produce.
#include "ns/judge.h"

#include <gtest/gtest.h>

namespace nsima::ns {
namespace {

policy::Policy pol(const std::string& text) {
  auto p = policy::Policy::parse(text, "test.policy");
  EXPECT_TRUE(p) << p.error().to_string();
  return p ? std::move(*p) : policy::Policy{};
}

Event open_event(uint32_t mask, uint32_t uid = 0) {
  Event ev;
  ev.hook = Hook::kFileOpen;
  ev.mask = mask;
  ev.cred.uid = ev.cred.euid = uid;
  ev.path = "/usr/bin/x";
  ev.stamp = Stamp{1, 2, 3, 4};
  ev.i_mode = 0100755;
  return ev;
}

ChainLink link(uint32_t id, const policy::Policy& p, const FileState* f = nullptr) {
  ChainLink l;
  l.ns_id = id;
  l.policy = &p;
  l.default_pcr = id == 1 ? 23 : 10;
  l.file = f;
  return l;
}

TEST(Judge, EachNamespaceDecidesWithItsOwnPolicy) {
  auto child = pol("measure func=FILE_CHECK mask=^MAY_READ\n");
  auto host = pol("measure func=FILE_CHECK mask=^MAY_READ uid=0\n");
  std::vector<ChainLink> chain{link(2, child), link(1, host)};
  auto j = judge(open_event(NSIMA_MAY_READ, 1000), chain, measure::HashAlgo::kSha256);
  ASSERT_EQ(j.targets.size(), 1u);
  EXPECT_EQ(j.targets[0], (Target{2, 10, measure::TemplateKind::kImaNg}));
  // the host's decision depends on the uid: this access class must keep being reported
  EXPECT_FALSE(j.quiet);
  j = judge(open_event(NSIMA_MAY_READ, 0), chain, measure::HashAlgo::kSha256);
  ASSERT_EQ(j.targets.size(), 2u);
  EXPECT_EQ(j.targets[1], (Target{1, 23, measure::TemplateKind::kImaNg}));
  EXPECT_EQ(j.algos, std::vector<measure::HashAlgo>{measure::HashAlgo::kSha256});
}

TEST(Judge, MeasuredOncePerVersionAndPcr) {
  auto p = pol("measure func=FILE_CHECK\n");
  FileState done{Stamp{1, 2, 3, 4}, 1ull << 10, false};
  std::vector<ChainLink> chain{link(2, p, &done)};
  EXPECT_TRUE(judge(open_event(NSIMA_MAY_READ), chain, measure::HashAlgo::kSha256).targets.empty());
  Event newer = open_event(NSIMA_MAY_READ);
  newer.stamp.i_version++;
  EXPECT_EQ(judge(newer, chain, measure::HashAlgo::kSha256).targets.size(), 1u);
  auto p11 = pol("measure func=FILE_CHECK pcr=11\n");
  std::vector<ChainLink> other{link(2, p11, &done)};
  EXPECT_EQ(judge(open_event(NSIMA_MAY_READ), other, measure::HashAlgo::kSha256).targets.size(), 1u);
}

TEST(Judge, OpenWritersOnReadOpensOnly) {
  auto p = pol("measure func=FILE_CHECK\n");
  std::vector<ChainLink> chain{link(2, p)};
  Event r = open_event(NSIMA_MAY_READ);
  r.i_writecount = 1;
  auto j = judge(r, chain, measure::HashAlgo::kSha256);
  ASSERT_EQ(j.violations.size(), 1u);
  EXPECT_EQ(j.violations[0], (JudgedViolation{2, "/usr/bin/x"}));
  EXPECT_EQ(j.must, std::vector<uint32_t>{2});
  // a write open sets no IMA_MUST_MEASURE and raises no open_writers (ima_rdwr_violation_check)
  Event w = open_event(NSIMA_MAY_WRITE | NSIMA_MAY_READ);
  w.i_writecount = 2;
  j = judge(w, chain, measure::HashAlgo::kSha256);
  EXPECT_TRUE(j.violations.empty());
  EXPECT_TRUE(j.must.empty());
}

TEST(Judge, ToMToUNeedsAReaderThatHadToBeMeasured) {
  auto p = pol("measure func=FILE_CHECK mask=^MAY_READ\n");
  Event w = open_event(NSIMA_MAY_WRITE);
  w.i_readcount = 1;
  FileState seen{Stamp{}, 0, false}, must{Stamp{}, 0, true};
  std::vector<ChainLink> unseen{link(2, p, &seen)};
  EXPECT_TRUE(judge(w, unseen, measure::HashAlgo::kSha256).violations.empty());
  std::vector<ChainLink> measured{link(2, p, &must)};
  auto j = judge(w, measured, measure::HashAlgo::kSha256);
  ASSERT_EQ(j.violations.size(), 1u);
  EXPECT_EQ(j.violations[0].name, "/usr/bin/x");
}

TEST(Judge, UnknownPathAndStoppedNamespaces) {
  auto p = pol("measure func=FILE_CHECK\n");
  Event ev = open_event(NSIMA_MAY_READ);
  ev.flags |= NSIMA_EV_PATH_TRUNCATED;
  std::vector<ChainLink> chain{link(2, p)};
  auto j = judge(ev, chain, measure::HashAlgo::kSha256);
  EXPECT_TRUE(j.path_unknown);
  EXPECT_FALSE(j.quiet);
  EXPECT_TRUE(j.algos.empty());
  chain[0].measuring = false;
  EXPECT_TRUE(judge(open_event(NSIMA_MAY_READ), chain, measure::HashAlgo::kSha256).targets.empty());
}

TEST(Judge, TemplatesDecideWhatIsRead) {
  auto p = pol("measure func=FILE_CHECK template=ima-sig\n");
  auto legacy = pol("measure func=FILE_CHECK template=ima\n");
  std::vector<ChainLink> chain{link(2, p), link(1, legacy)};
  auto j = judge(open_event(NSIMA_MAY_READ), chain, measure::HashAlgo::kSha256);
  EXPECT_TRUE(j.want_ima_xattr);
  EXPECT_EQ(j.algos,
            (std::vector<measure::HashAlgo>{measure::HashAlgo::kSha256, measure::HashAlgo::kSha1}));
}

TEST(Judge, AppraisalIsASecondStageForEveryAppraisingNamespaceOfTheChain) {
  auto child = pol("appraise func=BPRM_CHECK appraise_type=imasig\n");
  auto host = pol("appraise func=BPRM_CHECK\naudit func=BPRM_CHECK\n");
  Event exec = open_event(NSIMA_MAY_EXEC);
  exec.hook = Hook::kBprmCheck;
  std::vector<ChainLink> chain{link(2, child), link(1, host)};
  chain[1].appraise = AppraiseMode::kLog;
  auto j = judge(exec, chain, measure::HashAlgo::kSha256);
  EXPECT_TRUE(j.targets.empty());
  ASSERT_EQ(j.appraise.size(), 2u);
  EXPECT_EQ(j.appraise[0].ns_id, 2u);
  EXPECT_TRUE(j.appraise[0].decision.digsig_required);
  EXPECT_EQ(j.appraise[1].mode, AppraiseMode::kLog);
  EXPECT_TRUE(j.appraise[1].audit);
  EXPECT_TRUE(j.read_needed());
  EXPECT_TRUE(j.want_ima_xattr && j.algo_from_xattr);
  EXPECT_EQ(j.algos, std::vector<measure::HashAlgo>{measure::HashAlgo::kSha256});
  // a read open is not appraised by these rules
  EXPECT_FALSE(judge(open_event(NSIMA_MAY_READ), chain, measure::HashAlgo::kSha256).read_needed());
  // mode off: the namespace's appraise rules are ignored (its audit rule is not)
  chain[0].appraise = AppraiseMode::kOff;
  j = judge(exec, chain, measure::HashAlgo::kSha256);
  ASSERT_EQ(j.appraise.size(), 1u);
  EXPECT_EQ(j.appraise[0].ns_id, 1u);
}

TEST(Judge, AnAppraisalForOneFuncSaysNothingOfAnother) {
  // Kernel IMA keeps a status per func (IMA_FILE_APPRAISED, IMA_BPRM_APPRAISED, ...): a file
  // whose read open passed a hash rule is appraised again on its first exec, under the exec's
  // rule (here: a signature), and a failure of one func is no known failure of another.
  auto p = pol(
      "appraise func=FILE_CHECK mask=MAY_READ\n"
      "appraise func=BPRM_CHECK appraise_type=imasig\n"
      "appraise func=MMAP_CHECK\n");
  Event exec = open_event(NSIMA_MAY_EXEC);
  exec.hook = Hook::kBprmCheck;
  FileState read_passed{exec.stamp, 0, false};
  read_passed.set_appraised(kAppraisedFile, true);
  std::vector<ChainLink> chain{link(2, p, &read_passed)};
  auto j = judge(exec, chain, measure::HashAlgo::kSha256);
  ASSERT_EQ(j.appraise.size(), 1u);
  EXPECT_TRUE(j.appraise[0].appraise);
  EXPECT_TRUE(j.appraise[0].decision.digsig_required);
  EXPECT_FALSE(j.known_fail);
  EXPECT_TRUE(judge(open_event(NSIMA_MAY_READ), chain, measure::HashAlgo::kSha256).appraise.empty());
  FileState exec_failed{exec.stamp, 0, false};
  exec_failed.set_appraised(kAppraisedBprm, false);
  chain[0].file = &exec_failed;
  EXPECT_TRUE(judge(exec, chain, measure::HashAlgo::kSha256).known_fail);
  Event mmap = exec;
  mmap.hook = Hook::kMmapFile;
  mmap.prot = mmap.reqprot = NSIMA_PROT_EXEC;
  j = judge(mmap, chain, measure::HashAlgo::kSha256);
  EXPECT_FALSE(j.known_fail);
  ASSERT_EQ(j.appraise.size(), 1u);
  EXPECT_TRUE(j.appraise[0].appraise);
  // passing again clears the group's failure; the others keep theirs
  exec_failed.set_appraised(kAppraisedMmap, true);
  exec_failed.set_appraised(kAppraisedBprm, true);
  EXPECT_FALSE(judge(exec, chain, measure::HashAlgo::kSha256).known_fail);
  EXPECT_EQ(exec_failed.appraised_fail, 0);
}

TEST(Judge, AnAppraisedVersionIsNotAppraisedAgainAndAKnownFailureDenies) {
  auto p = pol("appraise func=BPRM_CHECK\n");
  Event exec = open_event(NSIMA_MAY_EXEC);
  exec.hook = Hook::kBprmCheck;
  FileState passed{exec.stamp, 0, false};
  passed.set_appraised(kAppraisedBprm, true);
  std::vector<ChainLink> chain{link(2, p, &passed)};
  auto j = judge(exec, chain, measure::HashAlgo::kSha256);
  EXPECT_TRUE(j.appraise.empty());
  EXPECT_FALSE(j.known_fail);
  FileState failed = passed;
  failed.set_appraised(kAppraisedBprm, false);
  chain[0].file = &failed;
  j = judge(exec, chain, measure::HashAlgo::kSha256);
  EXPECT_TRUE(j.known_fail);
  // a new version is appraised again
  Event newer = exec;
  newer.stamp.size++;
  j = judge(newer, chain, measure::HashAlgo::kSha256);
  EXPECT_FALSE(j.known_fail);
  EXPECT_EQ(j.appraise.size(), 1u);
  // in log mode a failure never denies
  chain[0].appraise = AppraiseMode::kLog;
  EXPECT_FALSE(judge(exec, chain, measure::HashAlgo::kSha256).known_fail);
}

TEST(Judge, AppraiseClassesCoverEveryAccessARuleCanMatch) {
  EXPECT_EQ(appraise_classes(pol("appraise func=BPRM_CHECK\n")), 1u << NSIMA_CLASS_BPRM);
  EXPECT_EQ(appraise_classes(pol("appraise func=MMAP_CHECK\n")),
            1u << NSIMA_CLASS_MMAP_PROT | 1u << NSIMA_CLASS_MMAP_REQPROT);
  EXPECT_EQ(appraise_classes(pol("appraise func=FILE_CHECK mask=MAY_READ\n")),
            1u << NSIMA_CLASS_FILE(NSIMA_MAY_READ));
  uint32_t inclusive = appraise_classes(pol("appraise func=FILE_CHECK mask=^MAY_READ\n"));
  for (uint32_t c = 0; c < 16; ++c)
    EXPECT_EQ((inclusive >> c) & 1, (c & NSIMA_MAY_READ) ? 1u : 0u) << c;
  EXPECT_EQ(appraise_classes(pol("appraise\n")), uint32_t{NSIMA_CLASS_ALL});
  EXPECT_EQ(appraise_classes(pol("measure func=BPRM_CHECK\ndont_appraise fsmagic=0x9fa0\n")), 0u);
}

// What a digest list gives a first exec decided in the kernel: the strictest exec rule wins.
TEST(Judge, ListTrustTakesTheStrictestRuleOfTheHooks) {
  EXPECT_EQ(list_trust(pol("appraise func=BPRM_CHECK\n")), ListTrust::kListed);
  EXPECT_EQ(list_trust(pol("appraise\n")), ListTrust::kListed);
  EXPECT_EQ(list_trust(pol("appraise func=CREDS_CHECK appraise_type=imasig\n")),
            ListTrust::kSigned);
  EXPECT_EQ(list_trust(pol("appraise func=BPRM_CHECK fowner=0\n"
                                "appraise func=BPRM_CHECK appraise_type=imasig\n")),
            ListTrust::kSigned);
  EXPECT_EQ(list_trust(pol("appraise func=BPRM_CHECK digest_type=verity "
                                "appraise_type=sigv3\nappraise func=BPRM_CHECK\n")),
            ListTrust::kNever);
  EXPECT_EQ(list_trust(pol("appraise func=BPRM_CHECK appraise_algos=sha512\n")),
            ListTrust::kNever);
  EXPECT_EQ(list_trust(pol("appraise func=BPRM_CHECK appraise_algos=sha256,sha512\n")),
            ListTrust::kListed);
  // one trusted map decides first opens, mmaps and execs: a read or mmap rule counts too
  EXPECT_EQ(list_trust(pol("appraise func=FILE_CHECK appraise_type=imasig\n"
                           "appraise func=BPRM_CHECK\n")),
            ListTrust::kSigned);
  EXPECT_EQ(list_trust(pol("appraise func=FILE_CHECK mask=MAY_READ\n")), ListTrust::kListed);
  EXPECT_EQ(list_trust(pol("appraise func=MMAP_CHECK digest_type=verity appraise_type=sigv3\n"
                           "appraise func=BPRM_CHECK\n")),
            ListTrust::kNever);
  // rules of funcs no hook decides do not count
  EXPECT_EQ(list_trust(pol("appraise func=MODULE_CHECK appraise_type=imasig\n"
                           "appraise func=BPRM_CHECK\n")),
            ListTrust::kListed);
  EXPECT_EQ(list_trust(pol("measure func=BPRM_CHECK\n")), ListTrust::kNoRule);
}

}  // namespace
}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
// Engine tests: ima_match_policy() semantics (ima-facts §1.5) — list order, first match per
// action kind, flags OR-ed over considered rules, exact vs ^ masks, uid/euid with CAP_SETUID
// widening, fowner/fgroup, fs conditions, pcr/template, appraise clearing hash — plus
// cred_dependent and accesses_of().
#include <gtest/gtest.h>

#include "nsima/bpf_abi.h"
#include "policy_test_util.h"

namespace nsima::policy {
namespace {

using testing::access;
using testing::policy_ok;

constexpr uint32_t R = NSIMA_MAY_READ, W = NSIMA_MAY_WRITE, X = NSIMA_MAY_EXEC,
                   A = NSIMA_MAY_APPEND;

TEST(Engine, EmptyPolicyDecidesNothing) {
  Policy p;
  Decision d = p.evaluate(access(Func::kFileCheck, R));
  EXPECT_FALSE(d.measure || d.appraise || d.audit || d.hash);
  EXPECT_EQ(d.measure_rule, -1);
  EXPECT_EQ(d.pcr, -1);
  EXPECT_TRUE(p.empty());
}

TEST(Engine, FirstMatchWinsPerKind) {
  Policy p = policy_ok(
      "dont_measure fsmagic=0x9fa0\n"
      "measure\n"
      "appraise fowner=0\n"
      "dont_appraise\n");
  Access a = access(Func::kFileCheck, R);
  Decision d = p.evaluate(a);
  EXPECT_TRUE(d.measure);
  EXPECT_EQ(d.measure_rule, 1);
  EXPECT_TRUE(d.appraise);
  EXPECT_EQ(d.appraise_rule, 2);

  a.fsmagic = 0x9fa0;
  a.fowner = 1000;
  d = p.evaluate(a);
  EXPECT_FALSE(d.measure);
  EXPECT_EQ(d.measure_rule, 0);  // the dont_measure rule decided
  EXPECT_FALSE(d.appraise);
  EXPECT_EQ(d.appraise_rule, 3);
}

TEST(Engine, KindsAreIndependent) {
  // A dont_measure match does not stop the walk for appraise/audit/hash.
  Policy p = policy_ok(
      "dont_measure\n"
      "audit func=BPRM_CHECK\n"
      "measure\n"
      "hash\n"
      "appraise func=BPRM_CHECK\n");
  Decision d = p.evaluate(access(Func::kBprmCheck, X));
  EXPECT_FALSE(d.measure);
  EXPECT_EQ(d.measure_rule, 0);
  EXPECT_TRUE(d.audit);
  EXPECT_EQ(d.audit_rule, 1);
  // appraise matched after hash: appraisal takes precedence, hash is cleared.
  EXPECT_TRUE(d.appraise);
  EXPECT_FALSE(d.hash);
  EXPECT_EQ(d.hash_rule, 3);
  EXPECT_EQ(d.appraise_rule, 4);
}

TEST(Engine, HashAfterAppraiseStays) {
  // The kernel clears IMA_HASH only when the appraise rule is processed; a hash rule matched
  // later sets it again.
  Policy p = policy_ok("appraise\nhash\n");
  Decision d = p.evaluate(access(Func::kFileCheck, W));
  EXPECT_TRUE(d.appraise);
  EXPECT_TRUE(d.hash);
  Policy q = policy_ok("dont_hash\nhash\n");
  EXPECT_FALSE(q.evaluate(access(Func::kFileCheck, W)).hash);
  EXPECT_EQ(q.evaluate(access(Func::kFileCheck, W)).hash_rule, 0);
}

TEST(Engine, MaskExactVersusInclusive) {
  Policy exact = policy_ok("measure func=FILE_CHECK mask=MAY_READ\n");
  Policy incl = policy_ok("measure func=FILE_CHECK mask=^MAY_READ\n");
  EXPECT_TRUE(exact.evaluate(access(Func::kFileCheck, R)).measure);
  EXPECT_FALSE(exact.evaluate(access(Func::kFileCheck, R | W)).measure);  // O_RDWR
  EXPECT_FALSE(exact.evaluate(access(Func::kFileCheck, W)).measure);
  EXPECT_TRUE(incl.evaluate(access(Func::kFileCheck, R)).measure);
  EXPECT_TRUE(incl.evaluate(access(Func::kFileCheck, R | W)).measure);
  EXPECT_TRUE(incl.evaluate(access(Func::kFileCheck, R | A)).measure);
  EXPECT_FALSE(incl.evaluate(access(Func::kFileCheck, W | A)).measure);
}

TEST(Engine, FuncMustMatch) {
  Policy p = policy_ok("measure func=MMAP_CHECK\nmeasure func=FILE_CHECK mask=MAY_WRITE\n");
  EXPECT_TRUE(p.evaluate(access(Func::kMmapCheck, X)).measure);
  EXPECT_FALSE(p.evaluate(access(Func::kMmapCheckReqprot, X)).measure);
  EXPECT_FALSE(p.evaluate(access(Func::kBprmCheck, X)).measure);
  EXPECT_EQ(p.evaluate(access(Func::kFileCheck, W)).measure_rule, 1);
}

TEST(Engine, UidOperators) {
  Policy p = policy_ok("measure uid>999\nmeasure uid<10\ndont_measure\n");
  EXPECT_TRUE(p.evaluate(access(Func::kFileCheck, R, 1000)).measure);
  EXPECT_FALSE(p.evaluate(access(Func::kFileCheck, R, 999)).measure);
  EXPECT_TRUE(p.evaluate(access(Func::kFileCheck, R, 9)).measure);
  EXPECT_FALSE(p.evaluate(access(Func::kFileCheck, R, 10)).measure);
}

TEST(Engine, UidIsRealUidOnly) {
  Policy p = policy_ok("measure uid=0\n");
  Access a = access(Func::kFileCheck, R, 1000);
  a.euid = 0;  // setuid-root binary run by user 1000
  EXPECT_FALSE(p.evaluate(a).measure);
  a.uid = 0;
  a.euid = 1000;
  EXPECT_TRUE(p.evaluate(a).measure);
}

TEST(Engine, EuidWithAndWithoutCapSetuid) {
  Policy p = policy_ok("measure euid=0\n");
  Access a = access(Func::kFileCheck, R, 1000);
  a.suid = 0;
  EXPECT_FALSE(p.evaluate(a).measure);  // without CAP_SETUID only euid counts
  a.cap_setuid = true;
  EXPECT_TRUE(p.evaluate(a).measure);  // with it, suid (or uid) counts as well
  a.suid = 1000;
  a.uid = 0;
  EXPECT_TRUE(p.evaluate(a).measure);
  a.uid = 1000;
  EXPECT_FALSE(p.evaluate(a).measure);
  a.euid = 0;
  a.cap_setuid = false;
  EXPECT_TRUE(p.evaluate(a).measure);
}

TEST(Engine, GidAndEgidWithCapSetgid) {
  Policy g = policy_ok("measure gid=5\n");
  Policy eg = policy_ok("measure egid>100\n");
  Access a = access(Func::kFileCheck, R, 1000);
  a.gid = 5;
  EXPECT_TRUE(g.evaluate(a).measure);
  a.gid = 6;
  a.egid = 5;
  EXPECT_FALSE(g.evaluate(a).measure);
  a = access(Func::kFileCheck, R, 50);
  a.sgid = 200;
  EXPECT_FALSE(eg.evaluate(a).measure);
  a.cap_setuid = true;  // the wrong capability does not widen egid
  EXPECT_FALSE(eg.evaluate(a).measure);
  a.cap_setgid = true;
  EXPECT_TRUE(eg.evaluate(a).measure);
}

TEST(Engine, FownerAndFgroupAgainstInode) {
  Policy p = policy_ok("appraise fowner=0\nappraise fgroup>1000\n");
  Access a = access(Func::kFileCheck, R, 0);
  a.fowner = 0;
  EXPECT_EQ(p.evaluate(a).appraise_rule, 0);
  a.fowner = 1;
  a.fgroup = 1001;
  EXPECT_EQ(p.evaluate(a).appraise_rule, 1);
  a.fgroup = 1000;
  EXPECT_FALSE(p.evaluate(a).appraise);
  // Task ids are not inode ids.
  a.uid = a.euid = 0;
  EXPECT_FALSE(p.evaluate(a).appraise);
  EXPECT_FALSE(p.evaluate(a).cred_dependent);
}

TEST(Engine, FilesystemConditions) {
  Policy p = policy_ok(
      "dont_measure fsmagic=0x1021994\n"
      "dont_measure fsname=overlay\n"
      "dont_measure fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6\n"
      "measure\n");
  Access a = access(Func::kFileCheck, R);
  EXPECT_TRUE(p.evaluate(a).measure);
  a.fsmagic = 0x1021994;
  EXPECT_EQ(p.evaluate(a).measure_rule, 0);
  a = access(Func::kFileCheck, R);
  a.fsname = "overlay";
  EXPECT_EQ(p.evaluate(a).measure_rule, 1);
  a.fsname = "overlayfs";  // strcmp, not prefix
  EXPECT_EQ(p.evaluate(a).measure_rule, 3);
  a.fsname = "overla";
  EXPECT_EQ(p.evaluate(a).measure_rule, 3);
  a.fsuuid = {0x8b, 0xcb, 0xe3, 0x94, 0x4f, 0x13, 0x41, 0x44,
              0xbe, 0x8e, 0x5a, 0xa9, 0xea, 0x2c, 0xe2, 0xf6};
  EXPECT_EQ(p.evaluate(a).measure_rule, 2);
}

TEST(Engine, FsnameRepeatedLastWins) {
  Policy p = policy_ok("measure fsname=ext4 fsname=xfs\n");
  Access a = access(Func::kFileCheck, R);
  EXPECT_FALSE(p.evaluate(a).measure);
  a.fsname = "xfs";
  EXPECT_TRUE(p.evaluate(a).measure);
}

TEST(Engine, PcrAndTemplateFromTheMeasureRule) {
  Policy p = policy_ok(
      "measure func=BPRM_CHECK pcr=11 template=ima-sig\n"
      "measure pcr=12\n");
  Decision d = p.evaluate(access(Func::kBprmCheck, X));
  EXPECT_EQ(d.pcr, 11);
  EXPECT_EQ(d.template_name, "ima-sig");
  d = p.evaluate(access(Func::kFileCheck, R));
  EXPECT_EQ(d.pcr, 12);
  EXPECT_EQ(d.template_name, "");
  // Format strings resolve to the template's name.
  Policy f = policy_ok("measure template=d-ng|n-ng|sig\n");
  EXPECT_EQ(f.evaluate(access(Func::kFileCheck, R)).template_name, "ima-sig");
}

TEST(Engine, FlagsOredOverMatchedRulesWhileKindOpen) {
  Policy p = policy_ok(
      "dont_measure fsmagic=0x9fa0 permit_directio\n"
      "measure digest_type=verity\n"
      "appraise func=MODULE_CHECK appraise_type=imasig|modsig\n"
      "appraise func=BPRM_CHECK appraise_type=imasig appraise_algos=sha256,sha512\n"
      "measure permit_directio\n");
  Decision d = p.evaluate(access(Func::kBprmCheck, X));
  EXPECT_TRUE(d.measure);
  EXPECT_TRUE(d.verity_required);  // from the measure rule
  EXPECT_TRUE(d.digsig_required);  // from the appraise rule
  EXPECT_FALSE(d.modsig_allowed);  // the MODULE_CHECK rule did not match
  // Rule 4 is a measure rule, but measure was already decided: not considered, flag not taken.
  EXPECT_FALSE(d.permit_directio);
  EXPECT_EQ(d.appraise_algos, (std::vector<std::string>{"sha256", "sha512"}));
  EXPECT_EQ(d.appraise_algos_mask, (1u << 4) | (1u << 6));

  Access proc = access(Func::kBprmCheck, X);
  proc.fsmagic = 0x9fa0;
  d = p.evaluate(proc);
  EXPECT_FALSE(d.measure);
  EXPECT_TRUE(d.permit_directio);  // flags of dont_* rules count too

  d = p.evaluate(access(Func::kModuleCheck, R));
  EXPECT_TRUE(d.modsig_allowed);
  EXPECT_TRUE(d.digsig_required);
  EXPECT_TRUE(d.appraise_algos.empty());
}

TEST(Engine, DontRulesOfUnrequestedKindsAreSkipped) {
  // No measure rule at all: the kernel never asks about measure, so the dont_measure rule
  // (and its permit_directio) is not considered.
  Policy p = policy_ok("dont_measure permit_directio\nappraise\n");
  Decision d = p.evaluate(access(Func::kFileCheck, R));
  EXPECT_EQ(d.measure_rule, -1);
  EXPECT_FALSE(d.permit_directio);
  EXPECT_TRUE(d.appraise);
  EXPECT_FALSE(p.has_action(Action::kMeasure));
  EXPECT_TRUE(p.has_action(Action::kDontMeasure));
  EXPECT_TRUE(p.has_action(Action::kAppraise));
}

TEST(Engine, SetxattrRulesDoNotRequestAppraisal) {
  Policy p = policy_ok("appraise func=SETXATTR_CHECK appraise_algos=sha256\ndont_appraise\n");
  EXPECT_FALSE(p.has_action(Action::kAppraise));
  EXPECT_EQ(p.evaluate(access(Func::kFileCheck, R)).appraise_rule, -1);
}

TEST(Engine, WalkStopsOnceEveryKindIsDecided) {
  // After measure is decided (the only kind asked for), later rules are not visited: their
  // credential conditions cannot make the decision credential-dependent.
  Policy p = policy_ok("measure func=BPRM_CHECK\nmeasure uid=0\n");
  Decision d = p.evaluate(access(Func::kBprmCheck, X, 1000));
  EXPECT_TRUE(d.measure);
  EXPECT_FALSE(d.cred_dependent);
}

TEST(Engine, CredDependent) {
  Policy tcb_like = policy_ok(
      "dont_measure fsmagic=0x9fa0\n"
      "measure func=BPRM_CHECK mask=MAY_EXEC\n"
      "measure func=FILE_CHECK mask=^MAY_READ euid=0\n"
      "measure func=FILE_CHECK mask=^MAY_READ uid=0\n");
  // An exec is measured whoever runs it.
  EXPECT_FALSE(tcb_like.evaluate(access(Func::kBprmCheck, X, 1000)).cred_dependent);
  // A read by a user is not measured, but root's would be: credential-dependent.
  Decision d = tcb_like.evaluate(access(Func::kFileCheck, R, 1000));
  EXPECT_FALSE(d.measure);
  EXPECT_TRUE(d.cred_dependent);
  // A write: the uid rules' other conditions (mask) do not match, so no one would measure it.
  EXPECT_FALSE(tcb_like.evaluate(access(Func::kFileCheck, W, 0)).cred_dependent);
  // On procfs the dont_measure rule decides before any uid rule.
  Access proc = access(Func::kFileCheck, R, 0);
  proc.fsmagic = 0x9fa0;
  EXPECT_FALSE(tcb_like.evaluate(proc).cred_dependent);
  // A rule that matched because of the credentials is credential-dependent too.
  EXPECT_TRUE(tcb_like.evaluate(access(Func::kFileCheck, R, 0)).cred_dependent);
  // Inode owner conditions are not credentials.
  Policy owner = policy_ok("appraise fowner=0\n");
  EXPECT_FALSE(owner.evaluate(access(Func::kFileCheck, R, 1000)).cred_dependent);
}

TEST(Engine, NonObservableFuncsStillEvaluate) {
  Policy p = policy_ok("measure func=MODULE_CHECK\nmeasure func=FIRMWARE_CHECK pcr=9\n");
  EXPECT_TRUE(p.evaluate(access(Func::kModuleCheck, R)).measure);
  EXPECT_EQ(p.evaluate(access(Func::kFirmwareCheck, R)).pcr, 9);
  EXPECT_FALSE(p.evaluate(access(Func::kFileCheck, R)).measure);
}

TEST(Engine, BufferFuncsMatchOnlyTheirOwnRules) {
  Policy p = policy_ok(
      "measure uid=0\n"
      "measure func=KEY_CHECK keyrings=.ima\n"
      "measure func=KEY_CHECK uid=5 pcr=13\n"
      "measure func=CRITICAL_DATA label=selinux\n");
  // A rule without func= never matches KEY_CHECK; a keyrings= rule needs the keyring name.
  Decision d = p.evaluate(access(Func::kKeyCheck, 0, 5));
  EXPECT_EQ(d.measure_rule, 2);
  EXPECT_TRUE(d.cred_dependent);
  EXPECT_FALSE(p.evaluate(access(Func::kKeyCheck, 0, 0)).measure);
  EXPECT_FALSE(p.evaluate(access(Func::kCriticalData, 0, 0)).measure);
}

TEST(Engine, EvaluateIntoReusesDecision) {
  Policy p = policy_ok("appraise func=BPRM_CHECK appraise_algos=sha256\nmeasure template=ima-ng\n");
  Decision d;
  p.evaluate_into(access(Func::kBprmCheck, X), d);
  EXPECT_EQ(d.appraise_algos.size(), 1u);
  EXPECT_EQ(d.template_name, "ima-ng");
  p.evaluate_into(access(Func::kFileCheck, R), d);  // everything reset
  EXPECT_TRUE(d.appraise_algos.empty());
  EXPECT_FALSE(d.appraise);
  EXPECT_EQ(d.appraise_rule, -1);
  EXPECT_EQ(d.template_name, "ima-ng");
}

// ---- accesses_of ----

Event event(Hook hook) {
  Event ev;
  ev.hook = hook;
  ev.cred = Creds{1000, 1001, 1002, 100, 101, 102, 0};
  ev.new_cred = Creds{1000, 0, 0, 100, 0, 0, 0};
  ev.i_uid = 7;
  ev.i_gid = 8;
  ev.fs_magic = 0x794c7630;
  ev.fs_name = "overlay";
  ev.fs_uuid[0] = 0xaa;
  return ev;
}

TEST(AccessesOf, FileOpen) {
  Event ev = event(Hook::kFileOpen);
  ev.mask = R | W;
  auto as = accesses_of(ev);
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].func, Func::kFileCheck);
  EXPECT_EQ(as[0].mask, R | W);
  EXPECT_EQ(as[0].uid, 1000u);
  EXPECT_EQ(as[0].euid, 1001u);
  EXPECT_EQ(as[0].suid, 1002u);
  EXPECT_EQ(as[0].sgid, 102u);
  EXPECT_EQ(as[0].fowner, 7u);
  EXPECT_EQ(as[0].fgroup, 8u);
  EXPECT_EQ(as[0].fsmagic, 0x794c7630u);
  EXPECT_EQ(as[0].fsname, "overlay");
  EXPECT_EQ(as[0].fsuuid[0], 0xaa);
}

TEST(AccessesOf, MmapReqprotFirstThenProt) {
  Event ev = event(Hook::kMmapFile);
  ev.prot = NSIMA_PROT_READ | NSIMA_PROT_EXEC;
  ev.reqprot = NSIMA_PROT_READ | NSIMA_PROT_EXEC;
  auto as = accesses_of(ev);
  ASSERT_EQ(as.size(), 2u);
  EXPECT_EQ(as[0].func, Func::kMmapCheckReqprot);
  EXPECT_EQ(as[1].func, Func::kMmapCheck);
  EXPECT_EQ(as[0].mask, X);
  EXPECT_EQ(as[1].mask, X);
  // READ_IMPLIES_EXEC: only the effective prot has PROT_EXEC.
  ev.reqprot = NSIMA_PROT_READ;
  as = accesses_of(ev);
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].func, Func::kMmapCheck);
  ev.prot = ev.reqprot = NSIMA_PROT_READ;
  EXPECT_TRUE(accesses_of(ev).empty());
  ev.reqprot = NSIMA_PROT_EXEC;
  as = accesses_of(ev);
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].func, Func::kMmapCheckReqprot);
}

TEST(AccessesOf, BprmThenCredsWithNewCredsAndOldCaps) {
  Event ev = event(Hook::kBprmCheck);
  ev.cred.cap_effective = 1ull << 7;  // CAP_SETUID before exec
  ev.new_cred.cap_effective = 0;
  auto as = accesses_of(ev);
  ASSERT_EQ(as.size(), 2u);
  EXPECT_EQ(as[0].func, Func::kBprmCheck);
  EXPECT_EQ(as[0].euid, 1001u);
  EXPECT_TRUE(as[0].cap_setuid);
  EXPECT_EQ(as[1].func, Func::kCredsCheck);
  EXPECT_EQ(as[1].uid, 1000u);
  EXPECT_EQ(as[1].euid, 0u);
  EXPECT_EQ(as[1].egid, 0u);
  EXPECT_TRUE(as[1].cap_setuid);  // has_capability_noaudit(current, ...) sees the old creds
  EXPECT_FALSE(as[1].cap_setgid);
  EXPECT_EQ(as[1].mask, X);

  Policy p = policy_ok("measure func=CREDS_CHECK euid=0\n");
  EXPECT_FALSE(p.evaluate(as[0]).measure);
  EXPECT_TRUE(p.evaluate(as[1]).measure);
}

}  // namespace
}  // namespace nsima::policy

namespace nsima::policy {
namespace {

TEST(Engine, HandBuiltLsmRulesNeverMatch) {
  // The parser refuses LSM conditions; a Rule built by hand with one is inert, like a kernel
  // rule whose label the LSM does not know.
  Rule lsm;
  lsm.action = Action::kMeasure;
  lsm.lsm[static_cast<size_t>(LsmField::kObjType)] = "bin_t";
  Rule key = lsm;
  key.func = Func::kKeyCheck;
  Rule all;
  all.action = Action::kMeasure;
  all.pcr = 5;
  Policy p = Policy::from_rules({lsm, key, all}, "hand");
  EXPECT_EQ(p.evaluate(testing::access(Func::kFileCheck, NSIMA_MAY_READ)).measure_rule, 2);
  EXPECT_FALSE(p.evaluate(testing::access(Func::kKeyCheck, 0)).measure);
  EXPECT_EQ(p.filename(), "hand");
}

}  // namespace
}  // namespace nsima::policy

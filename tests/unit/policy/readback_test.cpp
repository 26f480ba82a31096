// SPDX-License-Identifier: Apache-2.0
// Rule::to_string() against the kernel's ima_policy_show() format (ima-facts §1.8): item order,
// one trailing space per item, normalised values, and the kernel's own printing quirks; plus the
// read-back -> parse round trip where the kernel's output is itself loadable.
#include <gtest/gtest.h>

#include "policy_test_util.h"

namespace nsima::policy {
namespace {

using testing::parse_ok;

std::string rb(std::string_view line) { return parse_ok(line).to_string(); }

TEST(Readback, ActionAlone) {
  EXPECT_EQ(rb("measure"), "measure ");
  EXPECT_EQ(rb("dont_hash"), "dont_hash ");
}

TEST(Readback, ItemOrderIsTheKernels) {
  // Written in reverse order; printed in ima_policy_show() order.
  EXPECT_EQ(rb("measure permit_directio template=ima-ng fgroup=4 fowner=3 egid=2 euid=1 "
               "fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6 pcr=9 fsname=xfs fsmagic=0x58465342 "
               "mask=MAY_READ func=FILE_CHECK"),
            "measure func=FILE_CHECK mask=MAY_READ fsmagic=0x58465342 fsname=xfs pcr=9 "
            "fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6 euid=1 egid=2 fowner=3 fgroup=4 "
            "template=ima-ng permit_directio ");
  EXPECT_EQ(rb("appraise permit_directio appraise_algos=sha512,sha1 appraise_type=imasig "
               "func=BPRM_CHECK"),
            "appraise func=BPRM_CHECK appraise_algos=sha1,sha512 appraise_type=imasig "
            "permit_directio ");
  EXPECT_EQ(rb("measure pcr=13 keyrings=a|b func=KEY_CHECK"),
            "measure func=KEY_CHECK keyrings=a|b pcr=13 ");
  EXPECT_EQ(rb("measure label=x func=CRITICAL_DATA"), "measure func=CRITICAL_DATA label=x ");
}

TEST(Readback, NormalisedValues) {
  EXPECT_EQ(rb("measure func=PATH_CHECK"), "measure func=FILE_CHECK ");
  EXPECT_EQ(rb("measure func=FILE_MMAP"), "measure func=MMAP_CHECK ");
  EXPECT_EQ(rb("dont_measure fsmagic=01021994"), "dont_measure fsmagic=0x1021994 ");
  EXPECT_EQ(rb("dont_measure fsmagic=0XDE5E81E4"), "dont_measure fsmagic=0xde5e81e4 ");
  EXPECT_EQ(rb("measure uid=+007"), "measure uid=7 ");
  EXPECT_EQ(rb("measure pcr=+05"), "measure pcr=5 ");
  EXPECT_EQ(rb("measure template=d-ng|n-ng|sig"), "measure template=ima-sig ");
  EXPECT_EQ(rb("measure fsuuid=8BCBE394-4F13-4144-BE8E-5AA9EA2CE2F6trailing"),
            "measure fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6 ");
  EXPECT_EQ(rb("measure mask=^MAY_APPEND"), "measure mask=^MAY_APPEND ");
  EXPECT_EQ(rb("measure mask=MAY_WRITE"), "measure mask=MAY_WRITE ");
}

TEST(Readback, KernelQuirks) {
  // ids are printed with %d.
  EXPECT_EQ(rb("measure uid>4294967294"), "measure uid>-2 ");
  EXPECT_EQ(rb("measure fgroup<2147483648"), "measure fgroup<-2147483648 ");
  // fsname goes through a 64-byte buffer.
  std::string longname(80, 'n');
  EXPECT_EQ(rb("measure fsname=" + longname), "measure fsname=" + std::string(63, 'n') + " ");
  // appraise_flag= is not printed any more; the signature type is.
  EXPECT_EQ(rb("appraise appraise_flag=check_blacklist appraise_type=imasig"),
            "appraise appraise_type=imasig ");
  EXPECT_EQ(rb("appraise func=MODULE_CHECK appraise_type=imasig|modsig"),
            "appraise func=MODULE_CHECK appraise_type=imasig|modsig ");
  // digest_type is printed after appraise_type although it must be written before it.
  EXPECT_EQ(rb("appraise digest_type=verity appraise_type=sigv3"),
            "appraise appraise_type=sigv3 digest_type=verity ");
}

TEST(Readback, LsmFieldsInKernelOrder) {
  Rule r;
  r.action = Action::kDontMeasure;
  r.lsm[static_cast<size_t>(LsmField::kSubjType)] = "init_t";
  r.lsm[static_cast<size_t>(LsmField::kObjUser)] = "system_u";
  r.uid.set = true;
  EXPECT_EQ(r.to_string(), "dont_measure uid=0 obj_user=system_u subj_type=init_t ");
}

TEST(Readback, PolicyToStringOneLineEach) {
  auto p = Policy::parse("# c\nmeasure func=BPRM_CHECK\n\ndont_measure fsmagic=0x9fa0\n", "t");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->to_string(), "measure func=BPRM_CHECK \ndont_measure fsmagic=0x9fa0 \n");
}

TEST(Readback, RoundTripWhereTheKernelsOutputLoads) {
  const char* rules[] = {
      "measure func=FILE_CHECK mask=^MAY_READ euid=0",
      "measure func=KEY_CHECK keyrings=.ima|_ima uid=0 pcr=13",
      "dont_appraise fsmagic=0x9fa0 fsname=proc permit_directio",
      "appraise func=MODULE_CHECK appraise_type=imasig|modsig appraise_algos=sha256",
      "hash func=FILE_CHECK mask=MAY_WRITE fowner>10 fgroup<20 gid=3",
      "measure func=MMAP_CHECK_REQPROT mask=MAY_EXEC template=ima-sig pcr=63",
      "measure func=FILE_CHECK digest_type=verity template=ima",
  };
  for (const char* line : rules) {
    std::string once = rb(line);
    EXPECT_EQ(rb(once), once) << line;
  }
  // The kernel's own read-back of a verity appraise rule is not loadable (token order).
  EXPECT_FALSE(testing::accepted(rb("appraise digest_type=verity appraise_type=sigv3")));
}

}  // namespace
}  // namespace nsima::policy

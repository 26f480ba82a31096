// SPDX-License-Identifier: Apache-2.0
// ima_validate_rule() as nsima applies it: which actions and options each func allows, the
// action-bound options (pcr, appraise_type, appraise_algos), the verity/signature pairing and the
// special SETXATTR_CHECK rule. Each case is a verdict the 6.12 kernel gives.
#include <gtest/gtest.h>

#include "policy_test_util.h"

namespace nsima::policy {
namespace {

using testing::accepted;
using testing::rejected_at;

// Conditions/options every "file" func accepts (first group of ima_validate_rule).
const char* const kFileOptions[] = {
    "mask=MAY_READ",
    "mask=^MAY_EXEC",
    "fsmagic=0x9fa0",
    "fsname=ext4",
    "fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6",
    "uid=0",
    "euid>5",
    "gid<7",
    "egid=0",
    "fowner=0",
    "fgroup>1",
    "permit_directio",
};

TEST(Validate, FileFuncsAcceptEveryFileCondition) {
  for (const char* func :
       {"", "func=FILE_CHECK", "func=MMAP_CHECK", "func=MMAP_CHECK_REQPROT", "func=BPRM_CHECK",
        "func=CREDS_CHECK", "func=FIRMWARE_CHECK", "func=POLICY_CHECK"}) {
    for (const char* opt : kFileOptions) {
      for (const char* action :
           {"measure", "dont_measure", "appraise", "dont_appraise", "audit", "hash", "dont_hash"}) {
        std::string line = std::string(action) + " " + func + " " + opt;
        EXPECT_TRUE(accepted(line)) << line;
      }
    }
    std::string f(func);
    EXPECT_TRUE(accepted("measure " + f + " pcr=11 template=ima-sig digest_type=verity"));
    EXPECT_TRUE(accepted("appraise " + f + " appraise_type=imasig appraise_algos=sha256"));
    EXPECT_TRUE(accepted("appraise " + f + " digest_type=verity appraise_type=sigv3"));
    EXPECT_FALSE(accepted("appraise " + f + " appraise_type=imasig|modsig")) << f;
  }
}

TEST(Validate, ModuleFuncsAllowModsigNotVerity) {
  for (const char* func :
       {"func=MODULE_CHECK", "func=KEXEC_KERNEL_CHECK", "func=KEXEC_INITRAMFS_CHECK"}) {
    std::string f(func);
    for (const char* opt : kFileOptions)
      EXPECT_TRUE(accepted("appraise " + f + " " + opt)) << f << " " << opt;
    EXPECT_TRUE(accepted("appraise " + f + " appraise_type=imasig|modsig"));
    EXPECT_TRUE(accepted("appraise " + f + " appraise_type=imasig appraise_algos=sha512"));
    EXPECT_TRUE(accepted("measure " + f + " pcr=4 template=ima-sig"));
    // The kernel takes template=ima-modsig here; nsima cannot produce it (parser_test).
    EXPECT_FALSE(accepted("measure " + f + " pcr=4 template=ima-modsig")) << f;
    EXPECT_FALSE(accepted("measure " + f + " digest_type=verity")) << f;
    EXPECT_FALSE(accepted("appraise " + f + " digest_type=verity appraise_type=sigv3")) << f;
  }
}

TEST(Validate, KexecCmdline) {
  EXPECT_TRUE(accepted("measure func=KEXEC_CMDLINE"));
  EXPECT_TRUE(accepted("dont_measure func=KEXEC_CMDLINE"));
  EXPECT_TRUE(accepted("measure func=KEXEC_CMDLINE pcr=12 template=ima-ng"));
  for (const char* opt : {"fsmagic=0x1", "fsname=x", "fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6",
                          "uid=0", "euid=0", "gid=0", "egid=0", "fowner=0", "fgroup=0"})
    EXPECT_TRUE(accepted(std::string("measure func=KEXEC_CMDLINE ") + opt)) << opt;
  for (const char* action : {"appraise", "dont_appraise", "audit", "hash", "dont_hash"})
    EXPECT_FALSE(accepted(std::string(action) + " func=KEXEC_CMDLINE")) << action;
  EXPECT_FALSE(accepted("measure func=KEXEC_CMDLINE mask=MAY_READ"));
  EXPECT_FALSE(accepted("measure func=KEXEC_CMDLINE permit_directio"));
  EXPECT_FALSE(accepted("measure func=KEXEC_CMDLINE digest_type=verity"));
}

TEST(Validate, KeyCheck) {
  EXPECT_TRUE(accepted("measure func=KEY_CHECK"));
  EXPECT_TRUE(accepted("dont_measure func=KEY_CHECK keyrings=.ima"));
  EXPECT_TRUE(accepted("measure func=KEY_CHECK uid=0 gid=0 pcr=13 keyrings=.ima|_ima"));
  EXPECT_TRUE(accepted("measure func=KEY_CHECK template=ima-ng"));
  EXPECT_TRUE(
      rejected_at("appraise func=KEY_CHECK", 1, 1, "appraise", "only measure and dont_measure"));
  // Only uid= and gid=: the effective forms are not in KEY_CHECK's list.
  EXPECT_TRUE(rejected_at("measure func=KEY_CHECK euid=0", 1, 24, "euid=0", "not allowed"));
  EXPECT_TRUE(rejected_at("measure func=KEY_CHECK egid=0", 1, 24, "egid=0", "not allowed"));
  EXPECT_TRUE(rejected_at("measure func=KEY_CHECK fowner=0", 1, 24, "fowner=0", "not allowed"));
  EXPECT_TRUE(rejected_at("measure func=KEY_CHECK mask=MAY_READ", 1, 24, "mask=MAY_READ",
                          "not allowed with func=KEY_CHECK"));
  EXPECT_TRUE(
      rejected_at("measure func=KEY_CHECK label=selinux", 1, 24, "label=selinux", "not allowed"));
  EXPECT_TRUE(rejected_at("measure func=KEY_CHECK subj_type=x", 1, 24, "subj_type=x",
                          "LSM conditions are not allowed"));
}

TEST(Validate, CriticalData) {
  EXPECT_TRUE(accepted("measure func=CRITICAL_DATA"));
  EXPECT_TRUE(accepted("measure func=CRITICAL_DATA label=selinux uid=0 gid=0 pcr=10"));
  EXPECT_TRUE(rejected_at("hash func=CRITICAL_DATA", 1, 1, "hash", "only measure"));
  EXPECT_TRUE(rejected_at("measure func=CRITICAL_DATA keyrings=.ima", 1, 28, "keyrings=.ima",
                          "not allowed"));
  EXPECT_TRUE(
      rejected_at("measure func=CRITICAL_DATA fsmagic=1", 1, 28, "fsmagic=1", "not allowed"));
  EXPECT_TRUE(rejected_at("measure func=CRITICAL_DATA obj_user=x", 1, 28, "obj_user=x",
                          "LSM conditions are not allowed"));
}

TEST(Validate, KeyringsAndLabelOnlyWithTheirFunc) {
  EXPECT_TRUE(rejected_at("measure func=FILE_CHECK keyrings=.ima", 1, 25, "keyrings=.ima",
                          "not allowed with func=FILE_CHECK"));
  EXPECT_TRUE(rejected_at("measure label=x", 1, 9, "label=x", "not allowed with a rule without"));
}

TEST(Validate, SetxattrCheck) {
  EXPECT_TRUE(accepted("appraise func=SETXATTR_CHECK appraise_algos=sha256,sha384,sha512"));
  EXPECT_TRUE(rejected_at("appraise func=SETXATTR_CHECK", 1, 10, "func=SETXATTR_CHECK",
                          "requires appraise_algos"));
  EXPECT_TRUE(rejected_at("measure func=SETXATTR_CHECK", 1, 1, "measure", "must be appraise"));
  EXPECT_TRUE(rejected_at("appraise func=SETXATTR_CHECK appraise_algos=sha256 fowner=0", 1, 52,
                          "fowner=0", "only appraise_algos"));
  EXPECT_TRUE(rejected_at("appraise func=SETXATTR_CHECK appraise_algos=sha256 appraise_type=imasig",
                          1, 52, "appraise_type=imasig", "only appraise_algos"));
}

TEST(Validate, PcrOnlyOnMeasure) {
  EXPECT_TRUE(rejected_at("dont_measure pcr=10", 1, 14, "pcr=10", "only valid on measure"));
  EXPECT_TRUE(rejected_at("appraise pcr=10", 1, 10, "pcr=10", "only valid on measure"));
  // Position in the rule does not matter: checked after all tokens.
  EXPECT_TRUE(accepted("pcr=10 measure"));
}

TEST(Validate, AppraiseOptionsOnlyOnAppraise) {
  EXPECT_TRUE(rejected_at("measure appraise_type=imasig", 1, 9, "appraise_type=imasig",
                          "only valid on appraise rules"));
  EXPECT_TRUE(rejected_at("dont_appraise appraise_type=imasig", 1, 15, "appraise_type=imasig",
                          "only valid on appraise rules"));
  EXPECT_TRUE(rejected_at("hash appraise_algos=sha256", 1, 6, "appraise_algos=sha256",
                          "only valid on appraise rules"));
  EXPECT_TRUE(accepted("appraise_type=imasig appraise"));
}

TEST(Validate, VerityAppraiseNeedsSignature) {
  EXPECT_TRUE(rejected_at("appraise func=BPRM_CHECK digest_type=verity", 1, 26,
                          "digest_type=verity", "appraise_type=sigv3"));
  // Other actions may ask for verity digests without signatures.
  EXPECT_TRUE(accepted("measure func=FILE_CHECK digest_type=verity template=ima-ng"));
  EXPECT_TRUE(accepted("dont_appraise digest_type=verity"));
}

TEST(Validate, ErrorNamesTheLeftmostOffendingToken) {
  EXPECT_TRUE(rejected_at("measure func=KEY_CHECK fowner=1 mask=MAY_READ", 1, 24, "fowner=1",
                          "not allowed"));
  EXPECT_TRUE(rejected_at("measure mask=MAY_READ func=KEXEC_CMDLINE", 1, 9, "mask=MAY_READ",
                          "not allowed with func=KEXEC_CMDLINE"));
}

}  // namespace
}  // namespace nsima::policy

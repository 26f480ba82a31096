// SPDX-License-Identifier: Apache-2.0
// Every example policy of the kernel's Documentation/ABI/testing/ima_policy, with the verdict the
// 6.12 kernel gives it: accepted ones load unchanged (read back as the kernel prints them),
// LSM ones and the fs-verity measure example (template=ima-ngv2, which nsima cannot produce) are
// refused by nsima with its own message, and the document's "ima-sigv3" example is refused
// because no kernel defines that template.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "nsima/bpf_abi.h"
#include "policy_test_util.h"

namespace nsima::policy {
namespace {

using testing::access;
using testing::rejected_at;

std::string data(const std::string& name) {
  return std::string(NSIMA_SOURCE_DIR) + "/tests/unit/policy/data/" + name;
}

TEST(KernelDoc, DefaultPolicyExample) {
  auto p = load_policy_file(data("kernel-abi-default.policy"));
  ASSERT_TRUE(p) << p.error().to_string();
  ASSERT_EQ(p->size(), 27u);
  EXPECT_EQ(p->rule(21).to_string(), "measure func=BPRM_CHECK ");
  EXPECT_EQ(p->rule(22).to_string(), "measure func=MMAP_CHECK mask=MAY_EXEC ");  // FILE_MMAP alias
  EXPECT_EQ(p->rule(23).to_string(), "measure func=FILE_CHECK mask=MAY_READ uid=0 ");
  EXPECT_EQ(p->rule(26).to_string(), "appraise fowner=0 ");
  // "measures all executables in bprm_check, all files mmapped executable in file_mmap, and all
  // files open for read by root in do_filp_open. ... appraises all files owned by root."
  EXPECT_TRUE(p->evaluate(access(Func::kBprmCheck, NSIMA_MAY_EXEC, 1000)).measure);
  EXPECT_TRUE(p->evaluate(access(Func::kMmapCheck, NSIMA_MAY_EXEC, 1000)).measure);
  EXPECT_TRUE(p->evaluate(access(Func::kFileCheck, NSIMA_MAY_READ, 0)).measure);
  EXPECT_FALSE(p->evaluate(access(Func::kFileCheck, NSIMA_MAY_READ, 1000)).measure);
  Access root_owned = access(Func::kFileCheck, NSIMA_MAY_WRITE, 1000);
  EXPECT_TRUE(p->evaluate(root_owned).appraise);
  root_owned.fsmagic = 0x858458f6;  // ramfs: dont_appraise only
  EXPECT_FALSE(p->evaluate(root_owned).appraise);
}

TEST(KernelDoc, OtherExamplesWithoutLsm) {
  // The kernel accepts the whole file; nsima refuses the verity example's template=ima-ngv2 at
  // its position, and loads the rest.
  auto whole = load_policy_file(data("kernel-abi-examples.policy"));
  ASSERT_FALSE(whole);
  EXPECT_EQ(whole.error().where, data("kernel-abi-examples.policy") + ":15:44");
  EXPECT_NE(whole.error().message.find("'template=ima-ngv2': nsima cannot produce the ima-ngv2 "
                                       "template yet: it writes ima-ng, ima-sig and ima entries"),
            std::string::npos)
      << whole.error().to_string();
  auto text = read_policy_text(data("kernel-abi-examples.policy"));
  ASSERT_TRUE(text);
  const std::string verity = "measure func=FILE_CHECK digest_type=verity template=ima-ngv2\n";
  ASSERT_NE(text->find(verity), std::string::npos);
  text->replace(text->find(verity), verity.size(), "measure func=FILE_CHECK digest_type=verity\n");
  auto p = Policy::parse(*text, "kernel-abi-examples.policy");
  ASSERT_TRUE(p) << p.error().to_string();
  std::vector<std::string> want = {
      "measure func=KEXEC_KERNEL_CHECK pcr=4 ",
      "measure func=KEXEC_INITRAMFS_CHECK pcr=5 ",
      "appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig|modsig ",
      "measure func=KEY_CHECK ",
      "measure func=KEY_CHECK keyrings=.builtin_trusted_keys|.ima ",
      "appraise func=SETXATTR_CHECK appraise_algos=sha256,sha384,sha512 ",
      "measure func=FILE_CHECK digest_type=verity ",
      "appraise func=BPRM_CHECK appraise_type=sigv3 digest_type=verity ",
  };
  ASSERT_EQ(p->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(p->rule(i).to_string(), want[i]);
  EXPECT_EQ(p->evaluate(access(Func::kKexecKernelCheck, NSIMA_MAY_READ)).pcr, 4);
  Decision d = p->evaluate(access(Func::kBprmCheck, NSIMA_MAY_EXEC));
  EXPECT_TRUE(d.appraise && d.verity_required && d.digsig_required);
}

TEST(KernelDoc, SelinuxAndSmackExamplesNeedLsmLabels) {
  // Accepted by a kernel with the LSM; nsima has no labels to match them against.
  struct Case {
    const char* rule;
    int col;
    const char* token;
  } cases[] = {
      {"dont_measure obj_type=var_log_t", 14, "obj_type=var_log_t"},
      {"dont_appraise obj_type=var_log_t", 15, "obj_type=var_log_t"},
      {"dont_measure obj_type=auditd_log_t", 14, "obj_type=auditd_log_t"},
      {"dont_appraise obj_type=auditd_log_t", 15, "obj_type=auditd_log_t"},
      {"measure subj_user=system_u func=FILE_CHECK mask=MAY_READ", 9, "subj_user=system_u"},
      {"measure subj_role=system_r func=FILE_CHECK mask=MAY_READ", 9, "subj_role=system_r"},
      {"measure subj_user=_ func=FILE_CHECK mask=MAY_READ", 9, "subj_user=_"},
  };
  for (const auto& c : cases)
    EXPECT_TRUE(rejected_at(c.rule, 1, c.col, c.token, "nsima cannot see LSM labels")) << c.rule;
  // The SELinux example's fsmagic line is fine on its own.
  EXPECT_TRUE(
      Policy::parse("dont_measure fsmagic=0xf97cff8c\ndont_appraise fsmagic=0xf97cff8c\n", "t"));
}

TEST(KernelDoc, SigV3TemplateExampleIsRejectedLikeTheKernel) {
  EXPECT_TRUE(rejected_at("measure func=BPRM_CHECK digest_type=verity template=ima-sigv3", 1, 44,
                          "template=ima-sigv3", "unknown template"));
  // What the kernel takes instead (ima-sigv2) nsima cannot produce yet; ima-sig it can.
  EXPECT_TRUE(rejected_at("measure func=BPRM_CHECK digest_type=verity template=ima-sigv2", 1, 44,
                          "template=ima-sigv2", "nsima cannot produce the ima-sigv2 template"));
  EXPECT_TRUE(
      Policy::parse("measure func=BPRM_CHECK digest_type=verity template=ima-sig\n", "t"));
}

TEST(KernelDoc, EverythingPolicyLoads) {
  auto p = load_policy_file(data("everything.policy"));
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->size(), 22u);
  EXPECT_EQ(p->rule(0).to_string(),
            "measure func=FILE_CHECK mask=MAY_READ fsmagic=0xef53 fsname=ext4 pcr=11 "
            "fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6 uid=0 gid=0 fowner=0 fgroup=0 "
            "template=ima-sig permit_directio ");
  EXPECT_EQ(p->rule(1).to_string(),
            "measure func=FILE_CHECK mask=^MAY_WRITE euid>1000 egid<100 fowner>5 fgroup<6 "
            "template=ima-ng ");
}

TEST(KernelDoc, BadFixturesNamePositions) {
  auto s = load_policy_file(data("bad-syntax.policy"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().where, data("bad-syntax.policy") + ":4:25");
  auto v = load_policy_file(data("bad-validity.policy"));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().where, data("bad-validity.policy") + ":5:24");
  EXPECT_EQ(v.error().message.rfind("'mask=MAY_READ':", 0), 0u);
  auto missing = load_policy_file(data("no-such.policy"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().where, data("no-such.policy"));
  EXPECT_EQ(missing.error().code, ENOENT);
}

}  // namespace
}  // namespace nsima::policy

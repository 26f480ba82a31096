// SPDX-License-Identifier: Apache-2.0
// Builtin policies: the embedded texts equal policies/<name>.policy byte for byte, the kernel ones
// are ima-facts §1.7's rule lists in order (checked through the kernel read-back format), and
// each rule decides the accesses it is there for.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "nsima/bpf_abi.h"
#include "policy_test_util.h"

namespace nsima::policy {
namespace {

using testing::access;

constexpr uint32_t R = NSIMA_MAY_READ, W = NSIMA_MAY_WRITE, X = NSIMA_MAY_EXEC;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Policy builtin(std::string_view name) {
  auto p = builtin_policy(name);
  EXPECT_TRUE(p) << name << ": " << (p ? "" : p.error().to_string());
  return p ? std::move(*p) : Policy{};
}

std::vector<std::string> readback(const Policy& p) {
  std::vector<std::string> out;
  for (const Rule& r : p.rules()) out.push_back(r.to_string());
  return out;
}

// The kernel's pseudo-filesystem magics, in dont_measure_rules[] order.
const std::vector<uint64_t> kTcbMagics = {0x9fa0,     0x62656572, 0x64626720, 0x01021994, 0x1cd1,
                                          0x42494e4d, 0x73636673, 0xf97cff8c, 0x43415d53, 0x27e0eb,
                                          0x63677270, 0x6e736673, 0xde5e81e4};
// default_appraise_rules[] order (RAMFS added, NSFS/EFIVARFS before the cgroups).
const std::vector<uint64_t> kAppraiseMagics = {
    0x9fa0,     0x62656572, 0x64626720, 0x01021994, 0x858458f6, 0x1cd1,   0x42494e4d,
    0x73636673, 0xf97cff8c, 0x43415d53, 0x6e736673, 0xde5e81e4, 0x27e0eb, 0x63677270};

std::string hex(uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

TEST(Builtin, FilesEqualEmbeddedTexts) {
  auto names = builtin_names();
  EXPECT_EQ(names, (std::vector<std::string>{"tcb", "appraise_tcb", "secure_boot", "critical_data",
                                             "container-measure", "container-appraise",
                                             "container-default"}));
  for (const auto& name : names) {
    std::string file = read_file(std::string(NSIMA_SOURCE_DIR) + "/policies/" + name + ".policy");
    EXPECT_EQ(file, builtin_text(name)) << name;
    EXPECT_FALSE(file.empty()) << name;
  }
}

TEST(Builtin, UnknownName) {
  EXPECT_TRUE(builtin_text("ima_tcb").empty());
  auto p = builtin_policy("nope");
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message.find("known: tcb"), std::string::npos);
}

TEST(Builtin, TcbRuleList) {
  Policy p = builtin("tcb");
  std::vector<std::string> want;
  for (uint64_t m : kTcbMagics) want.push_back("dont_measure fsmagic=" + hex(m) + " ");
  want.push_back("measure func=MMAP_CHECK mask=MAY_EXEC ");
  want.push_back("measure func=BPRM_CHECK mask=MAY_EXEC ");
  want.push_back("measure func=FILE_CHECK mask=^MAY_READ euid=0 ");
  want.push_back("measure func=FILE_CHECK mask=^MAY_READ uid=0 ");
  want.push_back("measure func=MODULE_CHECK ");
  want.push_back("measure func=FIRMWARE_CHECK ");
  want.push_back("measure func=POLICY_CHECK ");
  EXPECT_EQ(readback(p), want);
  EXPECT_EQ(p.rule(0).line, 7u);
  EXPECT_EQ(p.filename(), "builtin:tcb");
}

TEST(Builtin, TcbDecisions) {
  Policy p = builtin("tcb");
  // Each pseudo filesystem is skipped by its own rule, for every func.
  for (size_t i = 0; i < kTcbMagics.size(); ++i) {
    for (Func f : {Func::kFileCheck, Func::kBprmCheck, Func::kMmapCheck}) {
      Access a = access(f, f == Func::kFileCheck ? R : X, 0);
      a.fsmagic = kTcbMagics[i];
      Decision d = p.evaluate(a);
      EXPECT_FALSE(d.measure);
      EXPECT_EQ(d.measure_rule, static_cast<int>(i)) << hex(kTcbMagics[i]);
    }
  }
  EXPECT_EQ(p.evaluate(access(Func::kMmapCheck, X, 1000)).measure_rule, 13);
  EXPECT_FALSE(p.evaluate(access(Func::kMmapCheckReqprot, X, 1000)).measure);
  EXPECT_EQ(p.evaluate(access(Func::kBprmCheck, X, 1000)).measure_rule, 14);
  EXPECT_FALSE(p.evaluate(access(Func::kCredsCheck, X, 0)).measure);
  Access root_eff = access(Func::kFileCheck, R, 1000);
  root_eff.euid = 0;
  EXPECT_EQ(p.evaluate(root_eff).measure_rule, 15);
  Access root_real = access(Func::kFileCheck, R | W, 0);
  root_real.euid = 1000;
  EXPECT_EQ(p.evaluate(root_real).measure_rule, 16);
  EXPECT_FALSE(p.evaluate(access(Func::kFileCheck, R, 1000)).measure);
  EXPECT_FALSE(p.evaluate(access(Func::kFileCheck, W, 0)).measure);
  EXPECT_EQ(p.evaluate(access(Func::kModuleCheck, R)).measure_rule, 17);
  EXPECT_EQ(p.evaluate(access(Func::kFirmwareCheck, R)).measure_rule, 18);
  EXPECT_EQ(p.evaluate(access(Func::kPolicyCheck, R)).measure_rule, 19);
  EXPECT_FALSE(p.evaluate(access(Func::kKexecKernelCheck, R)).measure);
  EXPECT_FALSE(p.has_action(Action::kAppraise));
}

TEST(Builtin, AppraiseTcbRuleList) {
  Policy p = builtin("appraise_tcb");
  std::vector<std::string> want;
  for (uint64_t m : kAppraiseMagics) want.push_back("dont_appraise fsmagic=" + hex(m) + " ");
  want.push_back("appraise fowner=0 ");  // Debian: no WRITE_POLICY, no APPRAISE_SIGNED_INIT
  EXPECT_EQ(readback(p), want);
}

TEST(Builtin, AppraiseTcbDecisions) {
  Policy p = builtin("appraise_tcb");
  for (size_t i = 0; i < kAppraiseMagics.size(); ++i) {
    Access a = access(Func::kFileCheck, R, 0);
    a.fsmagic = kAppraiseMagics[i];
    EXPECT_EQ(p.evaluate(a).appraise_rule, static_cast<int>(i));
    EXPECT_FALSE(p.evaluate(a).appraise);
  }
  for (Func f : {Func::kFileCheck, Func::kBprmCheck, Func::kMmapCheck, Func::kModuleCheck}) {
    Access root_file = access(f, R, 1000);
    root_file.fowner = 0;
    Decision d = p.evaluate(root_file);
    EXPECT_TRUE(d.appraise);
    EXPECT_EQ(d.appraise_rule, 14);
    EXPECT_FALSE(d.digsig_required);
    EXPECT_FALSE(d.cred_dependent);
  }
  Access user_file = access(Func::kFileCheck, R, 0);
  user_file.fowner = 1000;
  EXPECT_FALSE(p.evaluate(user_file).appraise);
  EXPECT_EQ(p.evaluate(user_file).appraise_rule, -1);
  EXPECT_FALSE(p.evaluate(user_file).measure);
}

TEST(Builtin, SecureBoot) {
  Policy p = builtin("secure_boot");
  EXPECT_EQ(readback(p), (std::vector<std::string>{
                             "appraise func=MODULE_CHECK appraise_type=imasig ",
                             "appraise func=FIRMWARE_CHECK appraise_type=imasig ",
                             "appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig ",
                             "appraise func=POLICY_CHECK appraise_type=imasig ",
                         }));
  Func funcs[] = {Func::kModuleCheck, Func::kFirmwareCheck, Func::kKexecKernelCheck,
                  Func::kPolicyCheck};
  for (int i = 0; i < 4; ++i) {
    Decision d = p.evaluate(access(funcs[i], R));
    EXPECT_TRUE(d.appraise);
    EXPECT_TRUE(d.digsig_required);
    EXPECT_EQ(d.appraise_rule, i);
  }
  EXPECT_FALSE(p.evaluate(access(Func::kKexecInitramfsCheck, R)).appraise);
  EXPECT_FALSE(p.evaluate(access(Func::kBprmCheck, X)).appraise);
}

TEST(Builtin, CriticalData) {
  Policy p = builtin("critical_data");
  EXPECT_EQ(readback(p), (std::vector<std::string>{"measure func=CRITICAL_DATA "}));
  EXPECT_TRUE(p.evaluate(access(Func::kCriticalData, 0)).measure);
  EXPECT_FALSE(p.evaluate(access(Func::kFileCheck, R)).measure);
}

// Pseudo filesystems the container policies skip: the kernel list without tmpfs.
std::vector<uint64_t> container_magics() {
  std::vector<uint64_t> m;
  for (uint64_t v : kTcbMagics)
    if (v != 0x01021994) m.push_back(v);
  return m;
}

TEST(Builtin, ContainerMeasure) {
  Policy p = builtin("container-measure");
  auto magics = container_magics();
  ASSERT_EQ(p.size(), magics.size() + 2);
  for (size_t i = 0; i < magics.size(); ++i) {
    EXPECT_EQ(p.rule(i).to_string(), "dont_measure fsmagic=" + hex(magics[i]) + " ");
    Access a = access(Func::kBprmCheck, X);
    a.fsmagic = magics[i];
    EXPECT_EQ(p.evaluate(a).measure_rule, static_cast<int>(i));
  }
  EXPECT_EQ(p.evaluate(access(Func::kBprmCheck, X, 1000)).measure_rule, 12);
  EXPECT_EQ(p.evaluate(access(Func::kMmapCheck, X, 1000)).measure_rule, 13);
  // tmpfs is measured on purpose (dropped binaries in /dev/shm, memfd).
  Access tmpfs = access(Func::kBprmCheck, X, 1000);
  tmpfs.fsmagic = 0x01021994;
  EXPECT_TRUE(p.evaluate(tmpfs).measure);
  // Reads and writes are not measured; nothing depends on credentials.
  for (uint32_t m : {R, W, R | W}) {
    Decision d = p.evaluate(access(Func::kFileCheck, m, 0));
    EXPECT_FALSE(d.measure);
    EXPECT_FALSE(d.cred_dependent);
  }
  EXPECT_FALSE(p.evaluate(access(Func::kMmapCheckReqprot, X)).measure);
  EXPECT_FALSE(p.has_action(Action::kAppraise));
}

TEST(Builtin, ContainerAppraise) {
  Policy p = builtin("container-appraise");
  Policy m = builtin("container-measure");
  ASSERT_EQ(p.size(), m.size() + 2);
  for (size_t i = 0; i < m.size(); ++i) EXPECT_EQ(p.rule(i).to_string(), m.rule(i).to_string());
  EXPECT_EQ(p.rule(m.size()).to_string(), "appraise func=BPRM_CHECK appraise_type=imasig ");
  EXPECT_EQ(p.rule(m.size() + 1).to_string(),
            "appraise func=MMAP_CHECK mask=MAY_EXEC appraise_type=imasig ");
  Decision d = p.evaluate(access(Func::kBprmCheck, X, 1000));
  EXPECT_TRUE(d.measure && d.appraise && d.digsig_required);
  EXPECT_EQ(d.appraise_rule, 14);
  d = p.evaluate(access(Func::kMmapCheck, X, 1000));
  EXPECT_TRUE(d.measure && d.appraise && d.digsig_required);
  EXPECT_EQ(d.appraise_rule, 15);
  // Appraisal does not skip pseudo filesystems: procfs exec still needs a signature.
  Access proc = access(Func::kBprmCheck, X);
  proc.fsmagic = 0x9fa0;
  d = p.evaluate(proc);
  EXPECT_FALSE(d.measure);
  EXPECT_TRUE(d.appraise);
  EXPECT_FALSE(p.evaluate(access(Func::kFileCheck, R)).appraise);
}

TEST(Builtin, ContainerDefaultIsMeasureOnly) {
  Policy d = builtin("container-default");
  Policy m = builtin("container-measure");
  EXPECT_EQ(d.to_string(), m.to_string());
  EXPECT_FALSE(d.has_action(Action::kAppraise));
}

}  // namespace
}  // namespace nsima::policy

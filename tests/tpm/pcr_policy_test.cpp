// SPDX-License-Identifier: Apache-2.0
// Host PCR policy: the registry table, refusals that name the owner, and kernel IMA detection on
// fake securityfs / kernel-config trees (no TPM needed).
#include "tpm/pcr_policy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <set>

namespace nsima::tpm {
namespace {

TEST(PcrRegistry, CoversEveryPcrOnceOrMore) {
  std::set<int> seen;
  int open = 0;
  for (const PcrOwner& o : pcr_registry()) {
    EXPECT_GE(o.pcr, 0);
    EXPECT_LT(o.pcr, kPcrCount);
    EXPECT_FALSE(o.owner.empty());
    seen.insert(o.pcr);
    if (o.open_to_applications) {
      ++open;
      EXPECT_EQ(o.pcr, 23);
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kPcrCount));
  EXPECT_EQ(open, 1);
  EXPECT_NE(pcr_owners(10).find("IMA"), std::string::npos);
  EXPECT_NE(pcr_owners(15).find("systemd-pcrmachine"), std::string::npos);
  EXPECT_NE(pcr_owners(11).find("systemd-stub"), std::string::npos);
  EXPECT_NE(pcr_owners(11).find("systemd-pcrphase"), std::string::npos);
  EXPECT_TRUE(pcr_owners(99).empty());
}

TEST(CheckHostPcr, OnlyTheApplicationPcrPassesOnAStandardMachine) {
  EXPECT_TRUE(check_host_pcr(kDefaultHostPcr, 10));
  EXPECT_TRUE(check_host_pcr(kDefaultHostPcr, kNoKernelIma));
  for (int pcr = 0; pcr < kPcrCount; ++pcr) {
    if (pcr == kDefaultHostPcr) continue;
    auto r = check_host_pcr(pcr, kNoKernelIma);
    ASSERT_FALSE(r) << pcr;
    EXPECT_EQ(r.error().code, EBUSY) << pcr;
    EXPECT_NE(r.error().message.find("is used by"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("Use PCR 23"), std::string::npos) << r.error().message;
  }
}

TEST(CheckHostPcr, NamesTheOwner) {
  auto r = check_host_pcr(15, kNoKernelIma);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("systemd-cryptsetup@.service"), std::string::npos);
  r = check_host_pcr(14, kNoKernelIma);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("shim"), std::string::npos);
  EXPECT_NE(r.error().message.find("MOK"), std::string::npos);
  EXPECT_EQ(r.error().where, "host PCR 14");
  r = check_host_pcr(10, kNoKernelIma);  // registered to IMA even if this kernel has none
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("IMA (Linux kernel)"), std::string::npos);
}

TEST(CheckHostPcr, RefusesKernelImasPcrWhereverItIs) {
  // CONFIG_IMA_MEASURE_PCR_IDX=23 would make PCR 23 kernel IMA's.
  auto r = check_host_pcr(23, 23);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EBUSY);
  EXPECT_NE(r.error().message.find("kernel IMA"), std::string::npos) << r.error().message;

  KernelIma ima;
  ima.present = true;
  ima.pcr = 10;
  ima.list_pcrs = {10, 23};  // a policy rule "measure ... pcr=23"
  r = check_host_pcr(23, ima);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("pcr=23"), std::string::npos) << r.error().message;
  ima.list_pcrs = {10};
  EXPECT_TRUE(check_host_pcr(23, ima));
}

TEST(CheckHostPcr, RejectsIndexesOutsideThePcClientRange) {
  for (int pcr : {-1, 24, 31, 1000}) {
    auto r = check_host_pcr(pcr, 10);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EINVAL);
  }
}

class DetectKernelIma : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = "/tmp/nsima-pcrpolicy-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = templ;
    paths_.securityfs = root_ / "securityfs";
    paths_.boot_config = root_ / "config";
    std::filesystem::create_directories(paths_.securityfs);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void write(const std::filesystem::path& p, const std::string& text) {
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }

  std::filesystem::path root_;
  ImaProbePaths paths_;
};

TEST_F(DetectKernelIma, ReadsThePcrFromTheFirstListEntry) {
  write(paths_.securityfs / "ima" / "ascii_runtime_measurements",
        "11 5bd2... ima-ng sha256:0000 boot_aggregate\n"
        "11 1234... ima-ng sha256:abcd /usr/bin/true\n"
        "12 9999... ima-ng sha256:ef01 /etc/shadow\n");
  write(paths_.boot_config, "CONFIG_IMA=y\nCONFIG_IMA_MEASURE_PCR_IDX=10\n");  // list wins
  auto r = detect_kernel_ima(paths_);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(r->present);
  EXPECT_EQ(r->pcr, 11);
  EXPECT_EQ(r->list_pcrs, (std::set<int>{11, 12}));
  EXPECT_NE(r->evidence.find("ascii_runtime_measurements"), std::string::npos);
  EXPECT_FALSE(check_host_pcr(12, *r));
}

TEST_F(DetectKernelIma, FindsTheListUnderIntegrityToo) {
  write(paths_.securityfs / "integrity" / "ima" / "ascii_runtime_measurements",
        "10 5bd2 ima-ng sha256:00 boot_aggregate\n");
  auto r = detect_kernel_ima(paths_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->pcr, 10);
}

TEST_F(DetectKernelIma, FallsBackToTheKernelConfig) {
  write(paths_.boot_config, "# comment\nCONFIG_IMA=y\nCONFIG_IMA_MEASURE_PCR_IDX=14\n");
  auto r = detect_kernel_ima(paths_);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->present);
  EXPECT_EQ(r->pcr, 14);
  write(paths_.boot_config, "CONFIG_IMA=y\n");
  r = detect_kernel_ima(paths_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->pcr, 10);
}

TEST_F(DetectKernelIma, ImaDirectoryOrLsmListMeansPcr10) {
  write(paths_.boot_config, "# CONFIG_IMA is not set\n");
  write(paths_.securityfs / "lsm", "lockdown,capability,landlock,yama,apparmor,ima,evm");
  auto r = detect_kernel_ima(paths_);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->present);
  EXPECT_EQ(r->pcr, 10);
  std::filesystem::remove(paths_.securityfs / "lsm");
  std::filesystem::create_directories(paths_.securityfs / "ima");
  r = detect_kernel_ima(paths_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->pcr, 10);
}

TEST_F(DetectKernelIma, NoImaAnywhere) {
  write(paths_.boot_config, "# CONFIG_IMA is not set\n");
  write(paths_.securityfs / "lsm", "lockdown,capability,yama,apparmor");
  auto r = detect_kernel_ima(paths_);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->present);
  EXPECT_EQ(r->pcr, kNoKernelIma);
  EXPECT_TRUE(check_host_pcr(kDefaultHostPcr, *r));
}

TEST_F(DetectKernelIma, EmptyListFallsBackToTheConfig) {
  write(paths_.securityfs / "ima" / "ascii_runtime_measurements", "");
  write(paths_.boot_config, "CONFIG_IMA=y\nCONFIG_IMA_MEASURE_PCR_IDX=11\n");
  auto r = detect_kernel_ima(paths_);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->present);
  EXPECT_EQ(r->pcr, 11);
}

TEST(DetectKernelImaHere, RunsOnThisMachine) {
  // This host has no kernel IMA (validators.md); the call must succeed and say so consistently.
  auto r = detect_kernel_ima();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->present, r->pcr != kNoKernelIma) << r->evidence;
  EXPECT_FALSE(r->evidence.empty());
}

}  // namespace
}  // namespace nsima::tpm

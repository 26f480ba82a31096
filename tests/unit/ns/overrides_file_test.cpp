// SPDX-License-Identifier: Apache-2.0
// overrides.json as nsimad reads it back at start-up (VerdictWriter::load, no BPF maps needed):
// the operator's denies load as written, and a file nsimad cannot trust is an error naming the
// override and the field (nsimad then refuses to start rather than forget a deny). Found by
// fuzz.state under UBSan: "ns_id": 1.11111e+37 was converted to uint32_t (undefined behaviour)
// and a negative or float value was accepted as some other number.
#include "ns/verdict_writer.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace nsima::ns {
namespace {

namespace fs = std::filesystem;

class OverridesFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsima-overrides-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // load() of an overrides file whose one override is `fields`: the error message, or "" if ok.
  std::string load(const std::string& fields) {
    std::ofstream(dir_ + "/overrides.json") << R"({"version": 1, "overrides": [{)" << fields
                                            << "}]}";
    VerdictWriter w(nullptr, dir_);
    auto r = w.load();
    return r ? "" : r.error().message;
  }
  std::string dir_;
};

constexpr const char* kFile = R"("kdev": 8388609, "ino": 12, "generation": 3)";

TEST_F(OverridesFileTest, LoadsWhatWasWritten) {
  {
    VerdictWriter w(nullptr, dir_);
    const uint32_t subtree[] = {2};
    ASSERT_TRUE(w.deny(2, FileRef{8388609, 12, 3}, Stamp{-5, 7, 9, 11}, "/usr/bin/x", subtree));
  }
  VerdictWriter again(nullptr, dir_);
  ASSERT_TRUE(again.load());
  auto o = again.overrides();
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].ns_id, 2u);
  EXPECT_EQ(o[0].file, (FileRef{8388609, 12, 3}));
  EXPECT_EQ(o[0].stamp, (Stamp{-5, 7, 9, 11}));
  EXPECT_EQ(o[0].path, "/usr/bin/x");
  EXPECT_EQ(load(std::string(R"("ns_id": 2, )") + kFile + R"(, "ctime_sec": -1)"), "");
}

TEST_F(OverridesFileTest, NumbersThatAreNotIntegersInRangeAreRefusedByName) {
  EXPECT_EQ(load(std::string(R"("ns_id": 1.11111e+37, )") + kFile),
            "override 1: \"ns_id\" is not an integer in range");
  EXPECT_EQ(load(std::string(R"("ns_id": 2.0, )") + kFile),
            "override 1: \"ns_id\" is not an integer in range");
  EXPECT_EQ(load(std::string(R"("ns_id": -2, )") + kFile),
            "override 1: \"ns_id\" is not an integer in range");
  EXPECT_EQ(load(std::string(R"("ns_id": 4294967296, )") + kFile),
            "override 1: \"ns_id\" is not an integer in range");
  EXPECT_EQ(load(std::string(R"("ns_id": 2, )") + kFile + R"(, "size": -1)"),
            "override 1: \"size\" is not an integer in range");
  EXPECT_EQ(load(std::string(R"("ns_id": 2, )") + kFile + R"(, "ctime_nsec": 1e300)"),
            "override 1: \"ctime_nsec\" is not an integer in range");
  EXPECT_EQ(load(R"("ns_id": 2, "ino": 12, "generation": 3)"), "override 1: missing \"kdev\"");
  EXPECT_NE(load(std::string(R"("ns_id": 2, )") + kFile + R"(, "path": 5)"), "");
}

}  // namespace
}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
// ns.json as nsimad reads it back at start-up (load_ns_configs): a file nsimad cannot use is
// reported and skipped, never an exception out of the loader (which would end nsimad before it
// restores anything). Found by fuzz.state: a counter that is a string ("unresolved_seen": "x")
// threw nlohmann's type_error 302 out of json::value(); an id that is a huge float was converted
// to uint32_t (undefined behaviour).
#include "ns/ns_config.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace nsima::ns {
namespace {

namespace fs = std::filesystem;

class NsConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsima-nsconfig-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void write(const std::string& name, const std::string& body) {
    fs::create_directories(dir_ + "/ns/" + name);
    std::ofstream(dir_ + "/ns/" + name + "/ns.json") << body;
  }
  std::string dir_;
};

TEST_F(NsConfigTest, RoundTrip) {
  NsConfig c{"3", 3, "/sys/fs/cgroup/c", true, "builtin:tcb", "measure func=BPRM_CHECK\n", "b",
             4, 5, 6};
  ASSERT_TRUE(save_ns_config(dir_, c));
  auto all = load_ns_configs(dir_);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name, "3");
  EXPECT_EQ(all[0].id, 3u);
  EXPECT_TRUE(all[0].vtpm);
  EXPECT_EQ(all[0].policy_text, c.policy_text);
  EXPECT_EQ(all[0].unattributed_drops_seen, 6u);
}

TEST_F(NsConfigTest, FieldOfAnotherTypeSkipsThatNamespaceOnly) {
  NsConfig good{"3", 3, "/sys/fs/cgroup/c", false, "", "", "b"};
  ASSERT_TRUE(save_ns_config(dir_, good));
  write("2", R"({"name": "2", "id": 2, "cgroup": "/sys/fs/cgroup/x", "unresolved_seen": "x"})");
  write("4", R"({"name": "4", "id": "4"})");
  write("5", R"({"name": ["5"], "id": 5})");
  write("6", R"({"name": "6", "id": 6, "vtpm": 1})");
  // Numbers that are not unsigned integers in range: a float far outside uint32 (converting it
  // was undefined behaviour, found by fuzz.state under UBSan), a small float, negative, too big.
  write("7", R"({"name": "7", "id": 1.11111e+37})");
  write("8", R"({"name": "8", "id": 8.0})");
  write("9", R"({"name": "9", "id": 9, "drops_seen": -1})");
  write("10", R"({"name": "10", "id": 4294967296})");
  std::vector<NsConfig> all;
  ASSERT_NO_THROW(all = load_ns_configs(dir_));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name, "3");
}

TEST_F(NsConfigTest, ModelSettingsRoundTripAndBadValuesSkipTheNamespace) {
  NsConfig c{"3", 3, "/sys/fs/cgroup/c", true, "", "", "b"};
  c.model_mode = "enforce";
  c.model_agent = "/run/agent.sock";
  c.model_agent_fail = "open";
  c.model_agent_timeout_ms = 250;
  ASSERT_TRUE(save_ns_config(dir_, c));
  write("4", R"({"name": "4", "id": 4, "model_mode": "learning"})");
  write("5", R"({"name": "5", "id": 5, "model_mode": "seal", "model_agent_fail": "maybe"})");
  write("6", R"({"name": "6", "id": 6, "model_agent": "/a", "model_agent_timeout_ms": 60001})");
  auto all = load_ns_configs(dir_);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].model_mode, "enforce");
  EXPECT_EQ(all[0].model_agent, "/run/agent.sock");
  EXPECT_EQ(all[0].model_agent_fail, "open");
  EXPECT_EQ(all[0].model_agent_timeout_ms, 250u);
}

}  // namespace
}  // namespace nsima::ns

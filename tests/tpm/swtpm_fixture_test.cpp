// SPDX-License-Identifier: Apache-2.0
// The shared swtpm fixture itself: it starts a TPM tpm2-tools can talk to, leaves no process or
// directory behind, and fails with a clear message when swtpm is missing.
#include "swtpm_fixture.h"

#include <gtest/gtest.h>
#include <stdlib.h>

namespace nsima::testing {
namespace {

TEST(SwtpmProcess, StartsStopsAndCleansUp) {
  pid_t pid = -1;
  std::filesystem::path dir;
  {
    SwtpmProcess tpm;
    std::string err;
    ASSERT_TRUE(tpm.start(&err)) << err;
    pid = tpm.pid();
    dir = tpm.dir();
    EXPECT_TRUE(SwtpmProcess::process_exists(pid));
    EXPECT_EQ(tpm.tcti(), "swtpm:path=" + (dir / "sock").string());
    ToolResult r = run_tool({"tpm2_pcrread", "sha256:10"}, {"TPM2TOOLS_TCTI=" + tpm.tcti()});
    EXPECT_EQ(r.rc, 0) << r.output;
    EXPECT_NE(r.output.find("0x0000000000000000000000000000000000000000000000000000000000000000"),
              std::string::npos)
        << r.output;
    EXPECT_TRUE(tpm.stop());  // exits on SIGTERM, reaped
    EXPECT_FALSE(SwtpmProcess::process_exists(pid));
    ASSERT_TRUE(tpm.start(&err)) << err;  // again, same state
    pid = tpm.pid();
  }
  EXPECT_FALSE(SwtpmProcess::process_exists(pid));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(SwtpmProcess, KillHardReapsAtOnce) {
  SwtpmProcess tpm;
  std::string err;
  ASSERT_TRUE(tpm.start(&err)) << err;
  const pid_t pid = tpm.pid();
  tpm.kill_hard();
  EXPECT_FALSE(tpm.running());
  EXPECT_FALSE(SwtpmProcess::process_exists(pid));
}

TEST(SwtpmProcess, TwoInstancesDoNotShareAnything) {
  SwtpmProcess a, b;
  std::string err;
  ASSERT_TRUE(a.start(&err)) << err;
  ASSERT_TRUE(b.start(&err)) << err;
  EXPECT_NE(a.dir(), b.dir());
  EXPECT_NE(a.tcti(), b.tcti());
}

TEST(SwtpmProcess, MissingSwtpmFailsWithAReason) {
  const char* old = std::getenv("PATH");
  const std::string saved = old ? old : "";
  ::setenv("PATH", "/nonexistent", 1);
  SwtpmProcess tpm;
  std::string err;
  const bool started = tpm.start(&err);
  ::setenv("PATH", saved.c_str(), 1);
  EXPECT_FALSE(started);
  EXPECT_NE(err.find("swtpm not found"), std::string::npos) << err;
}

}  // namespace
}  // namespace nsima::testing

// SPDX-License-Identifier: Apache-2.0
// `nsimactl pcr --ns ID --evmctl DIR` against a real swtpm (the host namespace's TPM, PCR 23):
// the pcrs-<bank>.txt files and the binary list it writes are what the real evmctl reads, and
// evmctl's *output* says they match (its exit status is 0 even when nothing matches, so it is
// not what is checked), both banks; a file with another PCR value is caught by the same check.
// nsimactl runs as a child against the control server in this process.
#include <sys/wait.h>

#include <cctype>
#include <cstdio>

#include "cli_fixture.h"

namespace nsima::ns {
namespace pipetest {
namespace {

class CliEvmctlTest : public CliServedTest {};

TEST_F(CliEvmctlTest, EvmctlMatchesTheWrittenPcrFilesOnBothBanks) {
  start();
  ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK mask=^MAY_READ\n", "t.policy"));
  for (int i = 0; i < 5; ++i) submit(read_event(file("f" + std::to_string(i), "x" + std::to_string(i)), kHostNsId));
  serve();
  const std::string out = dir_ + "/evm";
  Out w = sh(nsimactl("pcr --ns host --evmctl " + out));
  ASSERT_EQ(w.rc, 0) << w.text;
  EXPECT_NE(w.text.find("check: evmctl ima_measurement --ignore-violations --pcrs sha256," + out +
                        "/pcrs-sha256.txt --pcrs sha1," + out + "/pcrs-sha1.txt " + out +
                        "/binary_runtime_measurements"),
            std::string::npos)
      << w.text;
  // The files: PCR-00 .. PCR-23, and PCR 23 is the TPM's (tpm2_pcrread, independent of nsima).
  std::ifstream in(out + "/pcrs-sha256.txt");
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 24u);
  EXPECT_EQ(lines[0].substr(0, 8), "PCR-00: ");
  Out pcrread = sh("tpm2_pcrread -T '" + tpm_.tcti() + "' sha256:23");
  ASSERT_EQ(pcrread.rc, 0) << pcrread.text;
  std::string want = lines[23].substr(8);
  for (auto& c : want) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_NE(pcrread.text.find("0x" + want), std::string::npos) << pcrread.text << lines[23];

  // The real evmctl, both banks; its output is the verdict.
  Out v = sh("evmctl -v ima_measurement --ignore-violations --pcrs sha256," + out +
             "/pcrs-sha256.txt --pcrs sha1," + out + "/pcrs-sha1.txt " + out +
             "/binary_runtime_measurements");
  EXPECT_NE(v.text.find("Matched per TPM bank"), std::string::npos) << v.text;
  EXPECT_NE(v.text.find("sha1 PCR-23: succeed at entry 6"), std::string::npos) << v.text;
  EXPECT_NE(v.text.find("sha256 PCR-23: succeed at entry 6"), std::string::npos) << v.text;
  EXPECT_EQ(v.text.find("Failed to match"), std::string::npos) << v.text;
  // Every entry was read: boot_aggregate + 5 files (evmctl stops at the first match, so the
  // count is checked apart).
  std::ifstream bin(out + "/binary_runtime_measurements", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(bin)), {});
  auto listed = p_->list_view("host");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->entries, 6u);
  std::ifstream orig(listed->path, std::ios::binary);
  std::string want_bytes((std::istreambuf_iterator<char>(orig)), {});
  EXPECT_TRUE(bytes == want_bytes) << "the written list is the namespace's list";

  // Another PCR 23 value in the sha256 file: evmctl no longer says the banks match.
  lines[23] = "PCR-23: " + std::string(64, '1');
  {
    std::ofstream bad(out + "/pcrs-sha256.txt", std::ios::trunc);
    for (auto& l : lines) bad << l << "\n";
  }
  Out b = sh("evmctl -v ima_measurement --ignore-violations --pcrs sha256," + out +
             "/pcrs-sha256.txt " + out + "/binary_runtime_measurements");
  EXPECT_EQ(b.text.find("Matched per TPM bank"), std::string::npos) << b.text;
}

TEST_F(CliEvmctlTest, WithoutATpmTheErrorIsNsimads) {
  opts_.host_tcti = "";
  start();
  serve();
  Out w = sh(nsimactl("pcr --ns host --evmctl " + dir_ + "/evm"));
  EXPECT_EQ(w.rc, 1) << w.text;
  EXPECT_EQ(w.text.find("wrote"), std::string::npos) << w.text;
  EXPECT_FALSE(fs::exists(dir_ + "/evm/pcrs-sha256.txt"));
}

}  // namespace
}  // namespace pipetest
}  // namespace nsima::ns

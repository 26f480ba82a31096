// SPDX-License-Identifier: Apache-2.0
// Independent references for the TPM tests: PCR extend computed with OpenSSL, and PCR values as
// tpm2_pcrread (tpm2-tools, a separate TSS user) prints them. Neither uses nsima's TPM code.
#pragma once

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "common/hex.h"
#include "swtpm_fixture.h"
#include "tpm/tpm.h"

namespace nsima::testing {

inline std::vector<uint8_t> ossl_hash(tpm::Bank bank, const std::vector<uint8_t>& data) {
  const EVP_MD* md = EVP_get_digestbyname(tpm::bank_name(bank).c_str());
  EXPECT_NE(md, nullptr) << tpm::bank_name(bank);
  if (md == nullptr) return {};
  std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr), 1);
  out.resize(len);
  return out;
}

// PCR_B := H_B(PCR_B || digest)
inline std::vector<uint8_t> ossl_extend(tpm::Bank bank, const std::vector<uint8_t>& pcr,
                                        const std::vector<uint8_t>& digest) {
  std::vector<uint8_t> buf = pcr;
  buf.insert(buf.end(), digest.begin(), digest.end());
  return ossl_hash(bank, buf);
}

inline std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

// Parses "tpm2_pcrread sha1:10,11+sha256:10" output:
//   sha1:
//     10: 0xABCD...
inline std::map<std::string, std::map<int, std::vector<uint8_t>>> parse_pcrread(
    const std::string& out) {
  std::map<std::string, std::map<int, std::vector<uint8_t>>> res;
  std::istringstream in(out);
  std::string line, bank;
  const std::regex bank_re(R"(^\s*(\w+):\s*$)");
  const std::regex pcr_re(R"(^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, pcr_re)) {
      auto v = from_hex(m[2].str());
      if (v && !bank.empty()) res[bank][std::stoi(m[1].str())] = *v;
    } else if (std::regex_match(line, m, bank_re)) {
      bank = m[1].str();
    }
  }
  return res;
}

// Reads PCRs with tpm2_pcrread through `tcti`; fails the test if the tool fails.
inline std::map<std::string, std::map<int, std::vector<uint8_t>>> tpm2_pcrread(
    const std::string& tcti, const std::string& selection) {
  ToolResult r = run_tool({"tpm2_pcrread", "-T", tcti, selection});
  EXPECT_EQ(r.rc, 0) << r.output;
  return parse_pcrread(r.output);
}

}  // namespace nsima::testing

// SPDX-License-Identifier: Apache-2.0
// The gmock Tpm compiles against the interface and behaves like one (a guard for the interface's
// mockability: a signature change breaks this test, not the next team's build).
#include "mock_tpm.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace nsima::testing {
namespace {

using ::testing::Return;
using ::testing::SizeIs;

// What a caller above the TPM layer does: extend the banks the TPM reports.
Result<void> measure(tpm::Tpm& t, int pcr) {
  auto banks = t.banks();
  if (!banks) return tl::unexpected(banks.error());
  auto ff = tpm::violation_digests(*banks);
  if (!ff) return tl::unexpected(ff.error());
  return t.extend(pcr, *ff);
}

TEST(MockTpm, StandsInForTheInterface) {
  MockTpm t;
  EXPECT_CALL(t, banks())
      .WillOnce(Return(Result<std::vector<tpm::Bank>>{{tpm::Bank::kSha1, tpm::Bank::kSha256}}));
  EXPECT_CALL(t, extend(10, SizeIs(2))).WillOnce(Return(Result<void>{}));
  EXPECT_TRUE(measure(t, 10));

  EXPECT_CALL(t, banks()).WillOnce(Return(Result<std::vector<tpm::Bank>>{{tpm::Bank::kSha256}}));
  EXPECT_CALL(t, extend(10, SizeIs(1)))
      .WillOnce(Return(Result<void>(
          make_error(EIO, "Esys_PCR_Extend(0xA000A) - tcti:IO failure", "swtpm:path=/x"))));
  auto r = measure(t, 10);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO);
}

}  // namespace
}  // namespace nsima::testing

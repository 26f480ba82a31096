// SPDX-License-Identifier: Apache-2.0
// gmock double of nsima::tpm::Tpm for the components above the TPM layer (measurement lists,
// pipeline, control handlers): unit tests there need no swtpm.
//
//   nsima::testing::MockTpm tpm;
//   EXPECT_CALL(tpm, extend(10,
//   ::testing::SizeIs(2))).WillOnce(::testing::Return(nsima::Result<void>{}));
#pragma once

#include <gmock/gmock.h>

#include "tpm/tpm.h"

namespace nsima::testing {

class MockTpm : public tpm::Tpm {
 public:
  MOCK_METHOD(Result<std::vector<tpm::Bank>>, banks, (), (override));
  MOCK_METHOD(Result<void>, extend, (int pcr, const std::vector<tpm::BankDigest>& digests),
              (override));
  MOCK_METHOD(Result<std::vector<uint8_t>>, read_pcr, (int pcr, tpm::Bank bank), (override));
  MOCK_METHOD((Result<std::map<int, std::vector<uint8_t>>>), read_pcrs,
              (tpm::Bank bank, const std::vector<int>& pcrs), (override));
  MOCK_METHOD(Result<tpm::Quote>, quote,
              (const std::vector<tpm::PcrSelection>& selection, const std::vector<uint8_t>& nonce),
              (override));
  MOCK_METHOD(Result<std::string>, attestation_key_pem, (), (override));
  MOCK_METHOD(std::string, describe, (), (const, override));
};

}  // namespace nsima::testing

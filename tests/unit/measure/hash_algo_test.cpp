// SPDX-License-Identifier: Apache-2.0
// enum hash_algo ids/names/sizes (ima-facts §4.4) and TPM algorithm ids, both directions.
#include "measure/hash_algo.h"

#include <gtest/gtest.h>

namespace nsima::measure {
namespace {

TEST(HashAlgo, KernelTableMatchesUapi) {
  struct Row {
    uint32_t id;
    const char* name;
    size_t size;
  };
  // include/uapi/linux/hash_info.h + crypto/hash_info.c, copied from ima-facts §4.4.
  const Row rows[] = {
      {0, "md4", 16},       {1, "md5", 16},       {2, "sha1", 20},         {3, "rmd160", 20},
      {4, "sha256", 32},    {5, "sha384", 48},    {6, "sha512", 64},       {7, "sha224", 28},
      {8, "rmd128", 16},    {9, "rmd256", 32},    {10, "rmd320", 40},      {11, "wp256", 32},
      {12, "wp384", 48},    {13, "wp512", 64},    {14, "tgr128", 16},      {15, "tgr160", 20},
      {16, "tgr192", 24},   {17, "sm3", 32},      {18, "streebog256", 32}, {19, "streebog512", 64},
      {20, "sha3-256", 32}, {21, "sha3-384", 48}, {22, "sha3-512", 64},
  };
  for (const auto& r : rows) {
    auto a = hash_algo_from_id(r.id);
    ASSERT_TRUE(a) << r.id;
    EXPECT_EQ(hash_algo_name(*a), r.name);
    EXPECT_EQ(hash_digest_size(*a), r.size) << r.name;
    EXPECT_EQ(hash_algo_from_name(r.name), a);
  }
  EXPECT_FALSE(hash_algo_from_id(23));
  EXPECT_FALSE(hash_algo_from_name("SHA256"));  // kernel names are lower case
  EXPECT_FALSE(hash_algo_from_name("sha3_256"));
}

TEST(HashAlgo, TpmIdsBothWays) {
  EXPECT_EQ(tpm_alg_id(HashAlgo::kSha1), 0x0004);
  EXPECT_EQ(tpm_alg_id(HashAlgo::kSha256), 0x000B);
  EXPECT_EQ(tpm_alg_id(HashAlgo::kSha384), 0x000C);
  EXPECT_EQ(tpm_alg_id(HashAlgo::kSha512), 0x000D);
  EXPECT_EQ(tpm_alg_id(HashAlgo::kSm3_256), 0x0012);
  EXPECT_FALSE(tpm_alg_id(HashAlgo::kMd5));
  EXPECT_EQ(hash_algo_from_tpm(0x0004), HashAlgo::kSha1);
  EXPECT_EQ(hash_algo_from_tpm(0x000B), HashAlgo::kSha256);
  EXPECT_EQ(hash_algo_from_tpm(0x000C), HashAlgo::kSha384);
  EXPECT_EQ(hash_algo_from_tpm(0x000D), HashAlgo::kSha512);
  EXPECT_FALSE(hash_algo_from_tpm(0x0001));  // TPM_ALG_RSA
  EXPECT_FALSE(hash_algo_from_tpm(0));
}

TEST(Digest, ValueSemantics) {
  Digest z(HashAlgo::kSha256);
  EXPECT_EQ(z.size(), 32u);
  EXPECT_TRUE(z.is_zero());
  EXPECT_EQ(z.hex(), std::string(64, '0'));
  auto ff = Digest::filled(HashAlgo::kSha1, 0xff);
  EXPECT_EQ(ff.hex(), std::string(40, 'f'));
  EXPECT_FALSE(ff.is_zero());
  auto d = Digest::from_hex(HashAlgo::kSha1, "A9993E364706816ABA3E25717850C26C9CD0D89D");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->to_string(), "sha1:a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_FALSE(Digest::from_hex(HashAlgo::kSha256, "a999"));  // wrong size
  EXPECT_FALSE(Digest::from_hex(HashAlgo::kSha1, "zz"));
  EXPECT_NE(Digest(HashAlgo::kSha1), Digest(HashAlgo::kRmd160));  // same size, other algorithm
}

}  // namespace
}  // namespace nsima::measure

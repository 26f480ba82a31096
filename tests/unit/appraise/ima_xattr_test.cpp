// SPDX-License-Identifier: Apache-2.0
// security.ima parsing against values written by the real tools: evmctl ima_sign (RSA and EC,
// several algorithms) and evmctl ima_hash (sha1 legacy form, md5, sha256, sha512). Malformed
// values are made by cutting, extending or patching those real values: every one must give a
// typed error with a reason, never a crash.
#include <gtest/gtest.h>

#include "appraise/ima_xattr.h"
#include "appraise_test_util.h"
#include "common/hex.h"
#include "measure/hasher.h"

namespace nsima::appraise {
namespace {

using measure::HashAlgo;
using namespace testing;

class ImaXattrTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    rsa_ = new TestKey(make_key(dir_->path(), "rsa", "rsa:2048"));
    ec_ = new TestKey(make_key(dir_->path(), "ec", "ec -pkeyopt ec_paramgen_curve:prime256v1"));
  }
  static void TearDownTestSuite() {
    delete rsa_;
    delete ec_;
    delete dir_;
  }
  fs::path file(const std::string& name, const std::string& content = "hello appraise\n") {
    fs::path p = *dir_ / name;
    write_file(p, content);
    return p;
  }
  static TempDir* dir_;
  static TestKey* rsa_;
  static TestKey* ec_;
};
TempDir* ImaXattrTest::dir_ = nullptr;
TestKey* ImaXattrTest::rsa_ = nullptr;
TestKey* ImaXattrTest::ec_ = nullptr;

TEST_F(ImaXattrTest, ParsesEvmctlRsaSignature) {
  auto f = file("rsa.txt");
  auto v = evmctl_sign(f, rsa_->combined);
  ASSERT_EQ(v.size(), 265u);
  auto x = parse_ima_xattr(v);
  ASSERT_TRUE(x) << x.error().reason;
  EXPECT_EQ(x->type, XattrType::kDigsig);
  EXPECT_EQ(x->version, 2);
  EXPECT_EQ(x->algo, HashAlgo::kSha256);
  EXPECT_EQ(x->keyid_hex(), rsa_->skid_tail);  // evmctl took it from the appended cert's SKID
  EXPECT_EQ(x->signature.size(), 256u);
  EXPECT_EQ(x->raw, v);
  EXPECT_TRUE(x->is_signature());
  EXPECT_EQ(hash_algo_for_xattr(v, HashAlgo::kSha1), HashAlgo::kSha256);
}

TEST_F(ImaXattrTest, ParsesEvmctlEcSignaturesOfEveryAlgorithm) {
  const std::pair<const char*, HashAlgo> algos[] = {{"sha1", HashAlgo::kSha1},
                                                    {"sha224", HashAlgo::kSha224},
                                                    {"sha256", HashAlgo::kSha256},
                                                    {"sha384", HashAlgo::kSha384},
                                                    {"sha512", HashAlgo::kSha512}};
  for (auto [name, algo] : algos) {
    auto f = file(std::string("ec-") + name + ".txt");
    auto v = evmctl_sign(f, ec_->combined, name);
    auto x = parse_ima_xattr(v);
    ASSERT_TRUE(x) << name << ": " << x.error().reason;
    EXPECT_EQ(x->algo, algo) << name;
    EXPECT_EQ(x->keyid_hex(), ec_->skid_tail);
    EXPECT_EQ(x->signature.size() + kSignatureHeaderSize, v.size());
    EXPECT_EQ(x->signature[0], 0x30) << "DER ECDSA-Sig-Value starts with SEQUENCE";
    EXPECT_EQ(hash_algo_for_xattr(v, HashAlgo::kSha1), algo);
  }
}

TEST_F(ImaXattrTest, ParsesEvmctlHashes) {
  struct Case {
    const char* algo;
    uint8_t type;
    HashAlgo expect;
  } cases[] = {{"sha1", 0x01, HashAlgo::kSha1},     {"md5", 0x01, HashAlgo::kMd5},
               {"sha256", 0x04, HashAlgo::kSha256}, {"sha384", 0x04, HashAlgo::kSha384},
               {"sha512", 0x04, HashAlgo::kSha512}, {"sha224", 0x04, HashAlgo::kSha224}};
  for (const auto& c : cases) {
    auto f = file(std::string("hash-") + c.algo + ".txt", std::string("content for ") + c.algo);
    auto v = evmctl_hash(f, c.algo);
    ASSERT_FALSE(v.empty()) << c.algo;
    EXPECT_EQ(v[0], c.type) << c.algo;
    auto x = parse_ima_xattr(v);
    ASSERT_TRUE(x) << c.algo << ": " << x.error().reason;
    EXPECT_EQ(x->algo, c.expect) << c.algo;
    EXPECT_FALSE(x->is_signature());
    EXPECT_EQ(to_hex(x->digest), openssl_digest(f, c.algo)) << c.algo;
    EXPECT_EQ(hash_algo_for_xattr(v, HashAlgo::kSha256), c.expect) << c.algo;
  }
}

TEST_F(ImaXattrTest, LegacyMd5PaddedTo20BytesIsMd5AsTheKernelReadsIt) {
  auto f = file("md5pad.txt", "pad me");
  auto v = evmctl_hash(f, "md5");
  ASSERT_EQ(v.size(), 17u);
  v.insert(v.end(), 4, 0);  // the old kernels' 20-byte md5 layout
  auto x = parse_ima_xattr(v);
  ASSERT_TRUE(x) << x.error().reason;
  EXPECT_EQ(x->algo, HashAlgo::kMd5);
  EXPECT_EQ(to_hex(x->digest), openssl_digest(f, "md5"));
}

// Every prefix of every real value either parses to the value itself or fails with a reason.
TEST_F(ImaXattrTest, EveryTruncationIsATypedFailure) {
  auto fr = file("trunc-rsa.txt");
  auto fe = file("trunc-ec.txt");
  auto fh = file("trunc-hash.txt");
  auto fl = file("trunc-legacy.txt");
  const std::vector<std::vector<uint8_t>> values = {
      evmctl_sign(fr, rsa_->combined), evmctl_sign(fe, ec_->combined), evmctl_hash(fh, "sha256"),
      evmctl_hash(fl, "sha1")};
  for (const auto& v : values) {
    for (size_t n = 0; n < v.size(); ++n) {
      auto x = parse_ima_xattr(std::span<const uint8_t>(v.data(), n));
      if (v[0] == 0x01 && n == 17) {  // 01 + 16 bytes is the legacy md5 form: a valid value
        ASSERT_TRUE(x) << x.error().reason;
        EXPECT_EQ(x->algo, HashAlgo::kMd5);
        continue;
      }
      ASSERT_FALSE(x) << "prefix of " << n << "/" << v.size() << " bytes parsed";
      EXPECT_FALSE(x.error().reason.empty());
      if (n == 0) {
        EXPECT_EQ(x.error().kind, XattrErrorKind::kEmpty);
      } else if (v[0] != 0x01) {
        EXPECT_EQ(x.error().kind, XattrErrorKind::kTruncated)
            << n << " bytes: " << x.error().reason;
      }
    }
  }
}

TEST_F(ImaXattrTest, SizeFieldDisagreeingWithLengthFails) {
  auto v = evmctl_sign(file("size.txt"), rsa_->combined);
  auto longer = v;
  longer.push_back(0);
  auto x = parse_ima_xattr(longer);
  ASSERT_FALSE(x);
  EXPECT_EQ(x.error().kind, XattrErrorKind::kSizeMismatch);
  EXPECT_NE(x.error().reason.find("sig_size"), std::string::npos) << x.error().reason;

  auto patched = v;
  patched[8] ^= 0x01;  // sig_size 256 -> 257
  x = parse_ima_xattr(patched);
  ASSERT_FALSE(x);
  EXPECT_EQ(x.error().kind, XattrErrorKind::kTruncated);
  patched[7] = 0x00;
  patched[8] = 0x10;  // 16
  x = parse_ima_xattr(patched);
  ASSERT_FALSE(x);
  EXPECT_EQ(x.error().kind, XattrErrorKind::kSizeMismatch);

  auto h = evmctl_hash(file("size-h.txt"), "sha256");
  h.push_back(0xaa);
  x = parse_ima_xattr(h);
  ASSERT_FALSE(x);
  EXPECT_EQ(x.error().kind, XattrErrorKind::kSizeMismatch);
}

TEST_F(ImaXattrTest, UnknownAlgorithmTypeAndVersionFail) {
  auto sig = evmctl_sign(file("alg.txt"), rsa_->combined);
  auto hash = evmctl_hash(file("alg-h.txt"), "sha256");
  struct Case {
    std::vector<uint8_t> v;
    XattrErrorKind kind;
  };
  std::vector<Case> cases;
  for (uint8_t algo : {uint8_t{23}, uint8_t{0x7f}, uint8_t{0xff}}) {
    auto s = sig;
    s[2] = algo;
    cases.push_back({s, XattrErrorKind::kUnknownAlgorithm});
    auto h = hash;
    h[1] = algo;
    cases.push_back({h, XattrErrorKind::kUnknownAlgorithm});
  }
  for (uint8_t type : {uint8_t{0x00}, uint8_t{0x07}, uint8_t{0x42}, uint8_t{0xff}}) {
    auto s = sig;
    s[0] = type;
    cases.push_back({s, XattrErrorKind::kUnknownType});
  }
  for (uint8_t type : {uint8_t{0x02}, uint8_t{0x05}}) {
    auto s = sig;
    s[0] = type;
    cases.push_back({s, XattrErrorKind::kNotImaType});
  }
  auto s = sig;
  s[1] = 3;  // v3 under type 0x03
  cases.push_back({s, XattrErrorKind::kUnknownVersion});
  s[1] = 0;
  cases.push_back({s, XattrErrorKind::kUnknownVersion});
  s[1] = 1;
  cases.push_back({s, XattrErrorKind::kUnsupportedVersion});
  s = sig;
  s[0] = 0x06;  // v2 header under the verity type
  cases.push_back({s, XattrErrorKind::kUnknownVersion});
  for (const auto& c : cases) {
    auto x = parse_ima_xattr(c.v);
    ASSERT_FALSE(x) << to_hex(std::span<const uint8_t>(c.v.data(), 3));
    EXPECT_EQ(x.error().kind, c.kind) << x.error().reason;
    EXPECT_FALSE(x.error().reason.empty());
  }
  // The kernel's ima_get_hash_algo() keeps the default for an unreadable header.
  auto bad = sig;
  bad[2] = 0xff;
  EXPECT_EQ(hash_algo_for_xattr(bad, HashAlgo::kSha512), HashAlgo::kSha512);
  bad = sig;
  bad[1] = 3;
  EXPECT_EQ(hash_algo_for_xattr(bad, HashAlgo::kSha512), HashAlgo::kSha512);
}

TEST_F(ImaXattrTest, OversizedValueFails) {
  std::vector<uint8_t> huge(kXattrSizeMax + 1, 0);
  huge[0] = 0x03;
  huge[1] = 0x02;
  huge[2] = 0x04;
  auto x = parse_ima_xattr(huge);
  ASSERT_FALSE(x);
  EXPECT_EQ(x.error().kind, XattrErrorKind::kOversized);
  // The largest value a header can describe (sig_size 0xffff) is over the kernel's limit too.
  std::vector<uint8_t> max(kSignatureHeaderSize + 0xffff, 0);
  max[0] = 0x03, max[1] = 0x02, max[2] = 0x04, max[7] = 0xff, max[8] = 0xff;
  x = parse_ima_xattr(max);
  ASSERT_FALSE(x);
  EXPECT_EQ(x.error().kind, XattrErrorKind::kOversized);
  // The kernel refuses it at setxattr time as well (E2BIG), so it can only come from an image.
  auto f = file("big.txt");
  EXPECT_NE(::setxattr(f.c_str(), "security.ima", huge.data(), huge.size(), 0), 0);
}

// v3: what is signed is H(0x06 || algo || digest); checked against openssl over those bytes.
TEST_F(ImaXattrTest, Sigv3SignedDigestIsTheKernelsFileIdHash) {
  auto f = file("verity.bin", std::string(10000, 'v'));
  // fsverity-utils computes the fs-verity file digest in userspace (no fs-verity mount needed).
  std::string out = trim(must("fsverity digest " + f.string()));
  ASSERT_TRUE(out.starts_with("sha256:")) << out;
  auto vd = measure::Digest::from_hex(HashAlgo::kSha256, out.substr(7, 64));
  ASSERT_TRUE(vd);
  auto id = sigv3_signed_digest(*vd);
  ASSERT_TRUE(id);
  fs::path fid = *dir_ / "file_id.bin";
  std::string bytes("\x06\x04", 2);
  bytes.append(reinterpret_cast<const char*>(vd->data()), vd->size());
  write_file(fid, bytes);
  EXPECT_EQ(id->hex(), openssl_digest(fid, "sha256"));
  EXPECT_EQ(id->algo(), HashAlgo::kSha256);
}

}  // namespace
}  // namespace nsima::appraise

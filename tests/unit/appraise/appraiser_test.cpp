// SPDX-License-Identifier: Apache-2.0
// The appraiser, branch by branch. Decisions come from real policy text evaluated by the policy
// engine (so `appraise_type=imasig`, `digest_type=verity appraise_type=sigv3`, `appraise_algos=`
// mean what the parser makes of them); security.ima values from evmctl ima_sign / ima_hash;
// sigv3 signatures from `openssl dgst -sign` over 0x06||algo||`fsverity digest`; manifests from
// sha256sum, signed by openssl. Where evmctl can judge the same file (v2 signatures), its
// ima_verify verdict is checked to agree.
#include <gtest/gtest.h>

#include "appraise/appraiser.h"
#include "appraise_test_util.h"
#include "measure/hasher.h"
#include "nsima/bpf_abi.h"
#include "policy/policy.h"

namespace nsima::appraise {
namespace {

using measure::Digest;
using measure::HashAlgo;
using namespace testing;

policy::Decision decide(const std::string& rule) {
  auto p = policy::Policy::parse(rule + "\n", "test.policy");
  EXPECT_TRUE(p) << p.error().to_string();
  policy::Access a;
  a.func = policy::Func::kBprmCheck;
  a.mask = NSIMA_MAY_EXEC;
  return p->evaluate(a);
}

class AppraiserTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    rsa_ = new TestKey(make_key(dir_->path(), "rsa", "rsa:2048"));
    ec_ = new TestKey(make_key(dir_->path(), "ec", "ec -pkeyopt ec_paramgen_curve:prime256v1"));
    sibling_ = new TestKey(make_key(dir_->path(), "sibling", "rsa:2048"));
  }
  static void TearDownTestSuite() {
    delete rsa_;
    delete ec_;
    delete sibling_;
    delete dir_;
  }
  void SetUp() override {
    hash_rule_ = decide("appraise func=BPRM_CHECK");
    sig_rule_ = decide("appraise func=BPRM_CHECK appraise_type=imasig");
    verity_rule_ = decide("appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3");
    ASSERT_TRUE(hash_rule_.appraise && !hash_rule_.digsig_required);
    ASSERT_TRUE(sig_rule_.appraise && sig_rule_.digsig_required && !sig_rule_.verity_required);
    ASSERT_TRUE(verity_rule_.digsig_required && verity_rule_.verity_required);
    for (const TestKey* k : {rsa_, ec_}) {
      auto key = Key::from_file(k->der);
      ASSERT_TRUE(key);
      ASSERT_TRUE(keys_.add(*key));
    }
  }

  // A file with `content`; returns its path.
  fs::path file(const std::string& name, const std::string& content) {
    fs::path p = *dir_ / name;
    write_file(p, content);
    return p;
  }
  static std::vector<Digest> digests_of(const fs::path& p) {
    std::vector<Digest> out;
    for (HashAlgo a : {HashAlgo::kSha1, HashAlgo::kSha256, HashAlgo::kSha512}) {
      auto d = measure::hash_bytes(a, read_bytes(p));
      EXPECT_TRUE(d);
      out.push_back(*d);
    }
    return out;
  }
  Appraisal appraise_file(const policy::Decision& d, const fs::path& p,
                          const std::vector<uint8_t>* xattr, const DigestStore* store = nullptr,
                          std::optional<Digest> verity = std::nullopt,
                          const Keyring* keys = nullptr) {
    digests_ = digests_of(p);
    AppraiseInput in;
    in.decision = &d;
    in.file_digests = digests_;
    in.verity_digest = verity;
    if (xattr) in.ima_xattr = std::span<const uint8_t>(*xattr);
    in.keys = keys ? keys : &keys_;
    in.digests = store;
    return appraise(in);
  }
  bool evmctl_verifies(const fs::path& p, const TestKey& k) {
    return run("evmctl ima_verify --key " + k.der.string() + " " + p.string()).output.find(
               "verification is OK") != std::string::npos;
  }

  static TempDir* dir_;
  static TestKey *rsa_, *ec_, *sibling_;
  policy::Decision hash_rule_, sig_rule_, verity_rule_;
  Keyring keys_;
  std::vector<Digest> digests_;
};
TempDir* AppraiserTest::dir_ = nullptr;
TestKey *AppraiserTest::rsa_, *AppraiserTest::ec_, *AppraiserTest::sibling_;

void expect_status(const Appraisal& a, Status s, bool pass) {
  EXPECT_EQ(a.status, s) << status_name(a.status) << ": " << a.reason;
  EXPECT_EQ(a.pass, pass) << a.reason;
  EXPECT_FALSE(a.reason.empty());
}

TEST_F(AppraiserTest, NoAppraiseRulePasses) {
  auto d = decide("measure func=BPRM_CHECK");
  auto p = file("noappraise", "x");
  expect_status(appraise_file(d, p, nullptr), Status::kNotAppraised, true);
  auto dont = decide("dont_appraise func=BPRM_CHECK\nappraise func=BPRM_CHECK");
  expect_status(appraise_file(dont, p, nullptr), Status::kNotAppraised, true);
}

TEST_F(AppraiserTest, HashRuleWithEvmctlHashes) {
  for (std::string algo : {"sha256", "sha1", "sha512"}) {
    auto p = file("hash-" + algo, "hashed " + algo);
    auto x = evmctl_hash(p, algo);
    auto a = appraise_file(hash_rule_, p, &x);
    expect_status(a, Status::kPass, true);
    EXPECT_EQ(a.source, Source::kXattrDigest);
    EXPECT_EQ(a.algo, measure::hash_algo_from_name(algo));
    // The same xattr on changed content: the kernel's "invalid-hash".
    auto changed = file("hash-changed-" + algo, "changed " + algo);
    a = appraise_file(hash_rule_, changed, &x);
    expect_status(a, Status::kInvalidHash, false);
    EXPECT_EQ(a.cause(), "invalid-hash");
  }
}

TEST_F(AppraiserTest, MissingXattr) {
  auto p = file("bare", "no xattr");
  auto a = appraise_file(hash_rule_, p, nullptr);
  expect_status(a, Status::kMissingHash, false);
  EXPECT_EQ(a.cause(), "missing-hash");
  expect_status(appraise_file(sig_rule_, p, nullptr), Status::kSignatureRequired, false);
  EXPECT_EQ(appraise_file(sig_rule_, p, nullptr).cause(), "IMA-signature-required");
  expect_status(appraise_file(verity_rule_, p, nullptr), Status::kVeritySignatureRequired, false);
  std::vector<uint8_t> empty;  // a zero-length value reads as none, as in the kernel
  expect_status(appraise_file(hash_rule_, p, &empty), Status::kMissingHash, false);
}

TEST_F(AppraiserTest, SignatureRuleWithEvmctlSignatures) {
  for (const TestKey* k : {rsa_, ec_}) {
    for (std::string algo : {"sha256", "sha512"}) {
      auto p = file("sig-" + k->skid_tail + algo, "signed binary " + algo);
      auto x = evmctl_sign(p, k->combined, algo);
      ASSERT_TRUE(evmctl_verifies(p, *k));
      auto a = appraise_file(sig_rule_, p, &x);
      expect_status(a, Status::kPass, true);
      EXPECT_EQ(a.source, Source::kXattrSignature);
      EXPECT_EQ(a.keyid, parse_ima_xattr(x)->keyid);
      // A signature also satisfies a hash-only rule.
      expect_status(appraise_file(hash_rule_, p, &x), Status::kPass, true);
      // One byte of the file changed, signature kept: denied, and evmctl agrees.
      std::string content = read_file(p);
      content[0] ^= 0x20;
      write_file(p, content);
      ASSERT_FALSE(evmctl_verifies(p, *k));
      a = appraise_file(sig_rule_, p, &x);
      expect_status(a, Status::kInvalidSignature, false);
      EXPECT_EQ(a.cause(), "invalid-signature");
    }
  }
}

// Appraising one file for every access class (pre-appraisal, a security.ima written at run time)
// verifies each signature once: the memo answers the other classes with the same outcome, and a
// changed signed digest, another keyring or another signature is verified on its own.
TEST_F(AppraiserTest, SignatureMemoVerifiesEachSignatureOnceWithTheSameAnswer) {
  auto p = file("memo", "signed once, appraised for 19 classes");
  auto x = evmctl_sign(p, rsa_->combined, "sha256");
  auto digests = digests_of(p);
  SignatureMemo memo;
  auto appraise_with = [&](const Keyring* keys, const std::vector<uint8_t>& xattr,
                           std::span<const Digest> ds) {
    AppraiseInput in;
    in.decision = &sig_rule_;
    in.file_digests = ds;
    in.ima_xattr = std::span<const uint8_t>(xattr);
    in.keys = keys;
    in.memo = &memo;
    return appraise(in);
  };
  for (int c = 0; c < 19; ++c) expect_status(appraise_with(&keys_, x, digests), Status::kPass, true);
  EXPECT_EQ(memo.verifications, 1u);
  EXPECT_EQ(memo.hits, 18u);

  // The same signature over other content: verified again, and refused every time.
  auto other = digests_of(file("memo-other", "other content"));
  for (int c = 0; c < 3; ++c)
    expect_status(appraise_with(&keys_, x, other), Status::kInvalidSignature, false);
  EXPECT_EQ(memo.verifications, 2u);

  // Another keyring (a namespace of the chain without the key): its own answer.
  Keyring sib;
  ASSERT_TRUE(sib.add(*Key::from_file(sibling_->der)));
  expect_status(appraise_with(&sib, x, digests), Status::kUnknownKey, false);
  EXPECT_EQ(memo.verifications, 3u);
  expect_status(appraise_with(&keys_, x, digests), Status::kPass, true);  // still known
  EXPECT_EQ(memo.verifications, 3u);

  // One bit of the signature changed: not the memo's signature.
  auto bad = x;
  bad.back() ^= 1;
  expect_status(appraise_with(&keys_, bad, digests), Status::kInvalidSignature, false);
  EXPECT_EQ(memo.verifications, 4u);
}

TEST_F(AppraiserTest, HashXattrUnderSignatureRule) {
  auto p = file("hashonly", "hash only");
  auto x = evmctl_hash(p, "sha256");
  auto a = appraise_file(sig_rule_, p, &x);
  expect_status(a, Status::kSignatureRequired, false);
  expect_status(appraise_file(verity_rule_, p, &x), Status::kVeritySignatureRequired, false);
}

TEST_F(AppraiserTest, KeyOnlyASiblingHoldsIsUnknown) {
  auto p = file("sibling", "signed elsewhere");
  auto x = evmctl_sign(p, sibling_->combined);
  auto a = appraise_file(sig_rule_, p, &x);
  expect_status(a, Status::kUnknownKey, false);
  EXPECT_EQ(a.cause(), "invalid-signature");  // the kernel's cause; rc -ENOKEY
  EXPECT_EQ(a.error, ENOKEY);
  EXPECT_NE(a.reason.find(sibling_->skid_tail), std::string::npos) << a.reason;
  // The sibling's own keyring accepts it.
  Keyring sib;
  ASSERT_TRUE(sib.add(*Key::from_file(sibling_->der)));
  expect_status(appraise_file(sig_rule_, p, &x, nullptr, std::nullopt, &sib), Status::kPass, true);
  // A namespace without keys.
  Keyring none;
  expect_status(appraise_file(sig_rule_, p, &x, nullptr, std::nullopt, &none), Status::kUnknownKey,
                false);
}

TEST_F(AppraiserTest, CallerMustHashWithTheXattrAlgorithm) {
  auto p = file("sha384", "three eight four");
  auto x = evmctl_hash(p, "sha384");
  EXPECT_EQ(required_hash_algo(std::span<const uint8_t>(x), HashAlgo::kSha256), HashAlgo::kSha384);
  EXPECT_EQ(required_hash_algo(std::nullopt, HashAlgo::kSha256), HashAlgo::kSha256);
  auto a = appraise_file(hash_rule_, p, &x);  // digests_of gives sha1/sha256/sha512 only
  expect_status(a, Status::kDigestUnavailable, false);
  EXPECT_NE(a.reason.find("sha384"), std::string::npos);
}

TEST_F(AppraiserTest, AppraiseAlgosRestrictsTheAlgorithm) {
  auto only512 = decide("appraise func=BPRM_CHECK appraise_type=imasig appraise_algos=sha512");
  auto both = decide("appraise func=BPRM_CHECK appraise_type=imasig appraise_algos=sha256,sha512");
  ASSERT_NE(only512.appraise_algos_mask, 0u);
  auto p = file("algos", "algos");
  auto x = evmctl_sign(p, rsa_->combined, "sha256");
  auto a = appraise_file(only512, p, &x);
  expect_status(a, Status::kDeniedHashAlgorithm, false);
  EXPECT_EQ(a.cause(), "denied-hash-algorithm");
  expect_status(appraise_file(both, p, &x), Status::kPass, true);
  x = evmctl_sign(p, rsa_->combined, "sha512");
  expect_status(appraise_file(only512, p, &x), Status::kPass, true);
}

// ------------------------------------------------------------------ digest lists

TEST_F(AppraiserTest, DigestListPassesHashRulesAndSignedListPassesImasig) {
  auto p = file("listed", "an unsigned binary from the image");
  const fs::path m = *dir_ / "image.sha256";
  write_file(m, must("cd " + dir_->path().string() + " && sha256sum listed"));
  auto loaded = load_manifest(m, &keys_);
  ASSERT_TRUE(loaded);
  ASSERT_FALSE(loaded->is_signed);
  DigestStore store = DigestStore::in_memory();
  ASSERT_TRUE(store.add(*loaded));

  auto a = appraise_file(hash_rule_, p, nullptr, &store);
  expect_status(a, Status::kPass, true);
  EXPECT_EQ(a.source, Source::kDigestList);
  // An unsigned list is not a signature.
  expect_status(appraise_file(sig_rule_, p, nullptr, &store), Status::kSignatureRequired, false);
  // A copy at another path: same content, same verdict.
  auto copy = file("copy-of-listed", read_file(p));
  expect_status(appraise_file(hash_rule_, copy, nullptr, &store), Status::kPass, true);
  // Changed content: not listed any more.
  auto changed = file("listed-changed", "an unsigned binary from the image!");
  expect_status(appraise_file(hash_rule_, changed, nullptr, &store), Status::kMissingHash, false);

  // The same manifest signed with openssl: now it satisfies imasig, but not a verity rule.
  must("openssl dgst -sha256 -sign " + ec_->key.string() + " -out " + m.string() + ".sig " +
       m.string());
  auto signed_m = load_manifest(m, &keys_);
  ASSERT_TRUE(signed_m) << signed_m.error().to_string();
  ASSERT_TRUE(signed_m->is_signed);
  DigestStore signed_store = DigestStore::in_memory();
  ASSERT_TRUE(signed_store.add(*signed_m));
  a = appraise_file(sig_rule_, p, nullptr, &signed_store);
  expect_status(a, Status::kPass, true);
  EXPECT_EQ(a.source, Source::kSignedDigestList);
  expect_status(appraise_file(verity_rule_, p, nullptr, &signed_store),
                Status::kVeritySignatureRequired, false);
}

TEST_F(AppraiserTest, RevokedDigestFailsWhateverSignsIt) {
  auto p = file("revoked", "a signed binary, later revoked");
  auto x = evmctl_sign(p, rsa_->combined);
  DigestStore store = DigestStore::in_memory();
  expect_status(appraise_file(sig_rule_, p, &x, &store), Status::kPass, true);
  auto d = measure::hash_bytes(HashAlgo::kSha256, read_bytes(p));
  Manifest m;
  m.entries.push_back({*d, "/revoked", false});
  ASSERT_TRUE(store.add(m, true));  // even listed in a signed manifest
  ASSERT_TRUE(store.revoke(*d));
  auto a = appraise_file(sig_rule_, p, &x, &store);
  expect_status(a, Status::kRevoked, false);
  EXPECT_NE(a.reason.find(d->hex()), std::string::npos);
  expect_status(appraise_file(hash_rule_, p, &x, &store), Status::kRevoked, false);
  // A sha512 revocation catches it too (the pipeline may hash with several algorithms).
  DigestStore s512 = DigestStore::in_memory();
  ASSERT_TRUE(s512.revoke(*measure::hash_bytes(HashAlgo::kSha512, read_bytes(p))));
  expect_status(appraise_file(sig_rule_, p, &x, &s512), Status::kRevoked, false);
}

// Parent enforces imasig with its keys; the child adds a key the parent does not hold: a file
// signed with the child's key passes in the child and is denied by the chain.
TEST_F(AppraiserTest, ChildNeverRelaxesAnAncestor) {
  auto p = file("child-signed", "signed by the child's key");
  auto x = evmctl_sign(p, sibling_->combined);
  Keyring child_keys = keys_;
  ASSERT_TRUE(child_keys.add(*Key::from_file(sibling_->der)));
  digests_ = digests_of(p);
  auto no_rule = decide("measure func=BPRM_CHECK");
  AppraiseInput child{&no_rule, digests_, std::nullopt, std::span<const uint8_t>(x), &child_keys,
                      nullptr};
  AppraiseInput parent{&sig_rule_, digests_, std::nullopt, std::span<const uint8_t>(x), &keys_,
                       nullptr};
  const AppraiseInput chain[] = {child, parent};
  auto c = appraise_chain(chain);
  EXPECT_FALSE(c.pass);
  ASSERT_EQ(c.each.size(), 2u);
  EXPECT_TRUE(c.each[0].pass);
  ASSERT_EQ(c.failed, 1u);
  EXPECT_EQ(c.verdict()->status, Status::kUnknownKey);
  // With the child also enforcing, it passes there and still fails in the parent.
  child.decision = &sig_rule_;
  const AppraiseInput chain2[] = {child, parent};
  c = appraise_chain(chain2);
  EXPECT_TRUE(c.each[0].pass);
  EXPECT_FALSE(c.pass);
  // Signed with a key both hold: the whole chain passes.
  auto q = file("both-signed", "signed by a shared key");
  auto y = evmctl_sign(q, rsa_->combined);
  digests_ = digests_of(q);
  AppraiseInput c3{&sig_rule_, digests_, std::nullopt, std::span<const uint8_t>(y), &child_keys,
                   nullptr};
  AppraiseInput p3{&sig_rule_, digests_, std::nullopt, std::span<const uint8_t>(y), &keys_,
                   nullptr};
  const AppraiseInput chain3[] = {c3, p3};
  c = appraise_chain(chain3);
  EXPECT_TRUE(c.pass);
  EXPECT_FALSE(c.failed);
  EXPECT_EQ(c.verdict(), nullptr);
}

// ------------------------------------------------------------------ malformed values

TEST_F(AppraiserTest, MalformedXattrsFailWithTheKernelsCauseAndAReason) {
  auto p = file("malformed", "malformed");
  auto sig = evmctl_sign(p, rsa_->combined);
  auto hash = evmctl_hash(file("malformed-h", "malformed"), "sha256");
  struct Case {
    std::string name;
    std::vector<uint8_t> v;
    const policy::Decision* rule;
    Status status;
    std::optional<XattrErrorKind> kind;
  };
  std::vector<Case> cases;
  auto truncated = sig;
  truncated.resize(100);
  cases.push_back({"truncated", truncated, &sig_rule_, Status::kInvalidSignature,
                   XattrErrorKind::kTruncated});
  auto wrong_size = sig;
  wrong_size.push_back(0);
  cases.push_back({"wrong-size", wrong_size, &sig_rule_, Status::kInvalidSignature,
                   XattrErrorKind::kSizeMismatch});
  auto unknown_algo = sig;
  unknown_algo[2] = 99;
  cases.push_back({"unknown-algo", unknown_algo, &sig_rule_, Status::kInvalidSignature,
                   XattrErrorKind::kUnknownAlgorithm});
  auto unknown_hash_algo = hash;
  unknown_hash_algo[1] = 99;
  cases.push_back({"unknown-hash-algo", unknown_hash_algo, &hash_rule_, Status::kInvalidHash,
                   XattrErrorKind::kUnknownAlgorithm});
  std::vector<uint8_t> huge(kXattrSizeMax + 10, 0xab);
  huge[0] = 0x03, huge[1] = 0x02, huge[2] = 0x04;
  cases.push_back({"huge", huge, &sig_rule_, Status::kInvalidSignature, XattrErrorKind::kOversized});
  auto unknown_type = sig;
  unknown_type[0] = 0x09;
  cases.push_back({"unknown-type", unknown_type, &hash_rule_, Status::kUnknownImaData,
                   XattrErrorKind::kUnknownType});
  auto evm_type = sig;
  evm_type[0] = 0x05;
  cases.push_back({"evm-type", evm_type, &hash_rule_, Status::kUnknownImaData,
                   XattrErrorKind::kNotImaType});
  auto v3_in_v2 = sig;
  v3_in_v2[1] = 3;
  cases.push_back({"v3-under-0x03", v3_in_v2, &sig_rule_, Status::kInvalidSignatureVersion,
                   XattrErrorKind::kUnknownVersion});
  auto v1 = sig;
  v1[1] = 1;
  cases.push_back({"v1", v1, &sig_rule_, Status::kInvalidSignature,
                   XattrErrorKind::kUnsupportedVersion});
  auto short_hash = hash;
  short_hash.resize(10);
  cases.push_back({"short-hash", short_hash, &hash_rule_, Status::kInvalidHash,
                   XattrErrorKind::kTruncated});
  for (const auto& c : cases) {
    auto a = appraise_file(*c.rule, p, &c.v);
    EXPECT_EQ(a.status, c.status) << c.name << ": " << status_name(a.status) << " " << a.reason;
    EXPECT_FALSE(a.pass) << c.name;
    EXPECT_EQ(a.malformed, c.kind) << c.name;
    EXPECT_FALSE(a.reason.empty()) << c.name;
  }
}

// ------------------------------------------------------------------ sigv3 (fs-verity)

class Sigv3Test : public AppraiserTest {
 protected:
  // An fs-verity signature as `evmctl sign_hash --veritysig` would write it (evmctl 1.5+; Debian
  // ships 1.4): openssl signs sha256(0x06 || 0x04 || verity digest); the 9-byte header is built
  // here. Returns the xattr and the verity digest.
  std::pair<std::vector<uint8_t>, Digest> verity_sign(const fs::path& p, const TestKey& k) {
    std::string out = trim(must("fsverity digest " + p.string()));
    EXPECT_TRUE(out.starts_with("sha256:")) << out;
    auto vd = Digest::from_hex(HashAlgo::kSha256, out.substr(7, 64));
    EXPECT_TRUE(vd);
    fs::path fid = p.string() + ".fileid";
    std::string id("\x06\x04", 2);
    id.append(reinterpret_cast<const char*>(vd->data()), vd->size());
    write_file(fid, id);
    fs::path sig = p.string() + ".vsig";
    must("openssl dgst -sha256 -sign " + k.key.string() + " -out " + sig.string() + " " +
         fid.string());
    std::vector<uint8_t> s = read_bytes(sig);
    std::vector<uint8_t> x = {0x06, 0x03, 0x04};
    auto keyid = unhex(k.skid_tail);
    x.insert(x.end(), keyid.begin(), keyid.end());
    x.push_back(static_cast<uint8_t>(s.size() >> 8));
    x.push_back(static_cast<uint8_t>(s.size()));
    x.insert(x.end(), s.begin(), s.end());
    return {x, *vd};
  }
};

TEST_F(Sigv3Test, VeritySignatureOverTheFileId) {
  for (const TestKey* k : {rsa_, ec_}) {
    auto p = file("verity-" + k->skid_tail, std::string(5000, 'q'));
    auto [x, vd] = verity_sign(p, *k);
    auto a = appraise_file(verity_rule_, p, &x, nullptr, vd);
    expect_status(a, Status::kPass, true);
    EXPECT_EQ(a.source, Source::kXattrVerity);
    // Another file's verity digest.
    auto other = file("verity-other", "other");
    std::string out = trim(must("fsverity digest " + other.string()));
    auto od = Digest::from_hex(HashAlgo::kSha256, out.substr(7, 64));
    a = appraise_file(verity_rule_, p, &x, nullptr, *od);
    expect_status(a, Status::kInvalidVeritySignature, false);
    // Verity required, file not fs-verity: the kernel's no-verity-digest.
    expect_status(appraise_file(verity_rule_, p, &x, nullptr, std::nullopt), Status::kNoVerityDigest,
                  false);
    // A sigv3 value under a plain imasig rule: the kernel wants a v2 signature.
    expect_status(appraise_file(sig_rule_, p, &x, nullptr, vd), Status::kSignatureRequired, false);
    // Under a hash rule the kernel checks it over the file's own digest: it cannot verify.
    expect_status(appraise_file(hash_rule_, p, &x, nullptr, vd), Status::kInvalidVeritySignature,
                  false);
  }
}

TEST_F(Sigv3Test, V2SignatureUnderVerityRule) {
  auto p = file("v2-verity", "v2");
  auto x = evmctl_sign(p, rsa_->combined);
  expect_status(appraise_file(verity_rule_, p, &x), Status::kVeritySignatureRequired, false);
  auto bad_version = verity_sign(p, *rsa_).first;
  bad_version[1] = 2;
  auto a = appraise_file(verity_rule_, p, &bad_version);
  expect_status(a, Status::kInvalidSignatureVersion, false);
}

}  // namespace
}  // namespace nsima::appraise

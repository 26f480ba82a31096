// SPDX-License-Identifier: Apache-2.0
// Keys and key ids against openssl-made certificates and evmctl-made signatures: the id evmctl
// writes (SKID tail from an appended cert, SHA-1 of the public key without one), certificates
// without SKID, several keys sharing an id, non-certificates refused with a reason, the on-disk
// key store (atomic files, duplicates, removal, reload).
#include <gtest/gtest.h>

#include "appraise/keyring.h"
#include "appraise_test_util.h"
#include "measure/hasher.h"

namespace nsima::appraise {
namespace {

using measure::HashAlgo;
using namespace testing;

class KeyringTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const fs::path d = dir_->path();
    rsa_ = new TestKey(make_key(d, "rsa", "rsa:2048"));
    ec_ = new TestKey(make_key(d, "ec", "ec -pkeyopt ec_paramgen_curve:prime256v1"));
    noskid_ = new TestKey(make_key(d, "noskid", "rsa:2048", "none"));
    // Two different keys whose certificates carry the same (explicit) SKID.
    twin1_ = new TestKey(make_key(d, "twin1", "rsa:2048", "01:02:03:04:aa:bb:cc:dd"));
    twin2_ = new TestKey(make_key(d, "twin2", "ec -pkeyopt ec_paramgen_curve:prime256v1",
                                  "01:02:03:04:aa:bb:cc:dd"));
  }
  static void TearDownTestSuite() {
    for (auto* k : {rsa_, ec_, noskid_, twin1_, twin2_}) delete k;
    delete dir_;
  }
  static Key load(const TestKey& k, bool pem = false) {
    auto key = Key::from_file(pem ? k.pem : k.der);
    EXPECT_TRUE(key) << key.error().to_string();
    return *key;
  }
  fs::path file(const std::string& name, const std::string& content = "signed content\n") {
    fs::path p = *dir_ / name;
    write_file(p, content);
    return p;
  }
  static measure::Digest file_digest(const fs::path& p, HashAlgo algo = HashAlgo::kSha256) {
    auto d = measure::hash_bytes(algo, read_bytes(p));
    EXPECT_TRUE(d);
    return *d;
  }
  static ImaXattr parse(const std::vector<uint8_t>& v) {
    auto x = parse_ima_xattr(v);
    EXPECT_TRUE(x) << x.error().reason;
    return *x;
  }
  static TempDir* dir_;
  static TestKey *rsa_, *ec_, *noskid_, *twin1_, *twin2_;
};
TempDir* KeyringTest::dir_ = nullptr;
TestKey *KeyringTest::rsa_, *KeyringTest::ec_, *KeyringTest::noskid_, *KeyringTest::twin1_,
    *KeyringTest::twin2_;

TEST_F(KeyringTest, KeyIdIsTheSkidTailEvmctlWrites) {
  for (const TestKey* k : {rsa_, ec_}) {
    Key key = load(*k);
    EXPECT_EQ(key.info().keyid_hex, k->skid_tail);
    EXPECT_TRUE(key.info().keyid_from_skid);
    // With subjectKeyIdentifier=hash, evmctl's key-only id (SHA-1 of the public key) is the same.
    auto f = file("id-" + k->skid_tail);
    auto x = parse(evmctl_sign(f, k->key));
    EXPECT_EQ(x.keyid, key.keyid());
    EXPECT_EQ(key.info().pubkey_keyid, key.keyid());
  }
}

TEST_F(KeyringTest, PemAndDerAreTheSameKey) {
  Key der = load(*rsa_);
  Key pem = load(*rsa_, true);
  EXPECT_EQ(der.info().fingerprint, pem.info().fingerprint);
  EXPECT_EQ(der.der(), pem.der());
  EXPECT_EQ(der.der(), read_bytes(rsa_->der));
  EXPECT_EQ(der.info().fingerprint, openssl_digest(rsa_->der, "sha256"));
}

TEST_F(KeyringTest, ListViewFields) {
  Key rsa = load(*rsa_);
  EXPECT_EQ(rsa.info().algorithm, "rsa-2048");
  EXPECT_EQ(rsa.info().type, KeyType::kRsa);
  EXPECT_NE(rsa.info().subject.find("CN=nsima test rsa"), std::string::npos) << rsa.info().subject;
  EXPECT_NE(rsa.info().subject.find("O=nsima appraise test"), std::string::npos);
  Key ec = load(*ec_);
  EXPECT_EQ(ec.info().algorithm, "ec-prime256v1");
  EXPECT_EQ(ec.info().type, KeyType::kEc);
  // not-after as openssl prints it, e.g. "notAfter=Nov 28 10:01:02 2036 GMT".
  std::string na = trim(must("openssl x509 -in " + rsa_->pem.string() +
                             " -noout -enddate -dateopt iso_8601"));
  // "notAfter=2036-11-28 10:01:02Z"
  ASSERT_TRUE(na.starts_with("notAfter=")) << na;
  std::string iso = na.substr(9);
  iso[10] = 'T';
  EXPECT_EQ(rsa.info().not_after, iso);
}

TEST_F(KeyringTest, CertificateWithoutSkidUsesEvmctlPublicKeyId) {
  Key key = load(*noskid_);
  EXPECT_FALSE(key.info().keyid_from_skid);
  EXPECT_EQ(key.keyid(), key.info().pubkey_keyid);
  // evmctl ima_sign with the bare key writes SHA-1(subjectPublicKey) tail; evmctl ima_verify
  // with the cert computes the same; so do we.
  auto f = file("noskid.txt");
  auto x = parse(evmctl_sign(f, noskid_->key));
  EXPECT_EQ(x.keyid, key.keyid());
  std::string v = run("evmctl ima_verify --key " + noskid_->der.string() + " " + f.string()).output;
  EXPECT_NE(v.find("verification is OK"), std::string::npos) << v;
  Keyring ring;
  ASSERT_TRUE(ring.add(key));
  EXPECT_TRUE(ring.verify(x, file_digest(f).bytes()).ok());
}

TEST_F(KeyringTest, VerifiesEvmctlSignaturesRsaAndEc) {
  Keyring ring;
  ASSERT_TRUE(ring.add(load(*rsa_)));
  ASSERT_TRUE(ring.add(load(*ec_)));
  for (const TestKey* k : {rsa_, ec_}) {
    for (std::string algo : {"sha256", "sha512", "sha1"}) {
      auto f = file("v-" + k->skid_tail + "-" + algo, "content " + algo);
      auto x = parse(evmctl_sign(f, k->combined, algo));
      auto a = measure::hash_algo_from_name(algo);
      auto check = ring.verify(x, file_digest(f, *a).bytes());
      ASSERT_TRUE(check.ok()) << algo << ": " << check.reason;
      EXPECT_EQ(check.key->keyid, x.keyid);
      // Another file's digest: the same signature must not verify.
      auto other = file("o-" + algo, "other content");
      check = ring.verify(x, file_digest(other, *a).bytes());
      EXPECT_EQ(check.outcome, SignatureCheck::Outcome::kBadSignature) << algo;
      EXPECT_EQ(check.error, EKEYREJECTED);
    }
  }
}

TEST_F(KeyringTest, FlippedSignatureByteFails) {
  Keyring ring;
  ASSERT_TRUE(ring.add(load(*rsa_)));
  auto f = file("flip.txt");
  auto v = evmctl_sign(f, rsa_->combined);
  v[100] ^= 0x01;
  auto check = ring.verify(parse(v), file_digest(f).bytes());
  EXPECT_EQ(check.outcome, SignatureCheck::Outcome::kBadSignature) << check.reason;
}

TEST_F(KeyringTest, UnknownKeyId) {
  Keyring ring;
  ASSERT_TRUE(ring.add(load(*ec_)));
  auto f = file("unknown.txt");
  auto x = parse(evmctl_sign(f, rsa_->combined));
  auto check = ring.verify(x, file_digest(f).bytes());
  EXPECT_EQ(check.outcome, SignatureCheck::Outcome::kUnknownKey);
  EXPECT_EQ(check.error, ENOKEY);
  EXPECT_NE(check.reason.find(rsa_->skid_tail), std::string::npos) << check.reason;
}

// Kernel semantics: the id is the SKID's tail. A signature whose id is evmctl's public-key hash
// (made from the bare key) does not find a certificate whose SKID is something else, exactly as
// the kernel's keyring search fails (evmctl ima_verify, which hashes the public key, would pass).
TEST_F(KeyringTest, ExplicitSkidIsTheIdNotThePublicKeyHash) {
  Key twin = load(*twin1_);
  EXPECT_EQ(twin.info().keyid_hex, "aabbccdd");
  EXPECT_NE(twin.info().pubkey_keyid, twin.keyid());
  Keyring ring;
  ASSERT_TRUE(ring.add(twin));
  auto f = file("explicit.txt");
  auto by_skid = parse(evmctl_sign(f, twin1_->combined));
  EXPECT_EQ(by_skid.keyid_hex(), "aabbccdd");
  EXPECT_TRUE(ring.verify(by_skid, file_digest(f).bytes()).ok());
  auto by_pubkey = parse(evmctl_sign(f, twin1_->key));
  EXPECT_EQ(by_pubkey.keyid, twin.info().pubkey_keyid);
  EXPECT_EQ(ring.verify(by_pubkey, file_digest(f).bytes()).outcome,
            SignatureCheck::Outcome::kUnknownKey);
}

TEST_F(KeyringTest, SeveralKeysWithTheSameIdAreEachTried) {
  Keyring ring;
  ASSERT_TRUE(ring.add(load(*twin1_)));
  ASSERT_TRUE(ring.add(load(*twin2_)));
  EXPECT_EQ(ring.find(0xaabbccdd).size(), 2u);
  for (const TestKey* k : {twin1_, twin2_}) {
    auto f = file("twin-" + k->key.stem().string());
    auto x = parse(evmctl_sign(f, k->combined));
    auto check = ring.verify(x, file_digest(f).bytes());
    ASSERT_TRUE(check.ok()) << check.reason;
    EXPECT_EQ(check.key->fingerprint, load(*k).info().fingerprint);
  }
  auto f = file("twin-bad");
  auto x = parse(evmctl_sign(f, twin1_->combined));
  auto other = file("twin-other", "different");
  auto check = ring.verify(x, file_digest(other).bytes());
  EXPECT_EQ(check.outcome, SignatureCheck::Outcome::kBadSignature);
  EXPECT_EQ(check.tried, 2u);
  EXPECT_EQ(ring.remove(0xaabbccdd), 2u);
  EXPECT_TRUE(ring.empty());
}

TEST_F(KeyringTest, DuplicateCertificateRefused) {
  Keyring ring;
  ASSERT_TRUE(ring.add(load(*rsa_)));
  auto again = ring.add(load(*rsa_, true));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EEXIST);
}

TEST_F(KeyringTest, NonCertificatesRefusedWithAReason) {
  const fs::path d = dir_->path();
  must("openssl pkey -in " + rsa_->key.string() + " -pubout -out " + (d / "pub.pem").string());
  must("openssl req -new -key " + rsa_->key.string() + " -subj /CN=csr -out " +
       (d / "csr.pem").string());
  must("openssl req -new -nodes -x509 -subj /CN=ed -newkey ed25519 -keyout " +
       (d / "ed.key").string() + " -out " + (d / "ed.pem").string());
  write_file(d / "garbage.bin", "this is not a certificate at all");
  write_file(d / "empty.bin", "");
  std::string der_plus = read_file(rsa_->der) + "X";
  write_file(d / "derplus.der", der_plus);
  const std::pair<fs::path, std::string> cases[] = {
      {rsa_->key, "private key"},    {d / "pub.pem", "public key"},
      {d / "csr.pem", "request"},    {d / "ed.pem", "ED25519"},
      {d / "garbage.bin", "neither"}, {d / "empty.bin", "empty"},
      {d / "derplus.der", "extra bytes"}};
  for (const auto& [path, want] : cases) {
    auto k = Key::from_file(path);
    ASSERT_FALSE(k) << path;
    EXPECT_EQ(k.error().code, EINVAL) << path;
    EXPECT_NE(k.error().message.find(want), std::string::npos) << path << ": " << k.error().message;
    EXPECT_EQ(k.error().where, path.string());
  }
}

TEST_F(KeyringTest, DetachedSignatureAgainstAnyKey) {
  Keyring ring;
  ASSERT_TRUE(ring.add(load(*ec_)));
  ASSERT_TRUE(ring.add(load(*rsa_)));
  auto f = file("detached.txt");
  for (const TestKey* k : {rsa_, ec_}) {
    const fs::path sig = *dir_ / "detached.sig";
    must("openssl dgst -sha256 -sign " + k->key.string() + " -out " + sig.string() + " " +
         f.string());
    auto check = ring.verify_any(HashAlgo::kSha256, file_digest(f).bytes(), read_bytes(sig));
    ASSERT_TRUE(check.ok()) << check.reason;
    EXPECT_EQ(check.key->keyid_hex, k->skid_tail);
  }
}

TEST_F(KeyringTest, KeyIdParsing) {
  EXPECT_EQ(parse_keyid("89a89d7b"), 0x89a89d7bu);
  EXPECT_EQ(parse_keyid("id:89A89D7B"), 0x89a89d7bu);
  EXPECT_EQ(parse_keyid("0x0000000f"), 0xfu);
  EXPECT_FALSE(parse_keyid("89a89d7"));
  EXPECT_FALSE(parse_keyid("89a89d7g"));
}

// ---------------------------------------------------------------- key store

TEST_F(KeyringTest, KeyStoreAddListRemoveReload) {
  TempDir state;
  const fs::path dir = namespace_keys_dir(state.path(), 7);
  EXPECT_EQ(dir, state.path() / "ns/7/keys");
  auto store = KeyStore::open(dir);
  ASSERT_TRUE(store) << store.error().to_string();
  auto a = store->add_file(rsa_->pem);  // PEM in, DER on disk
  ASSERT_TRUE(a) << a.error().to_string();
  EXPECT_EQ(a->keyid_hex, rsa_->skid_tail);
  auto b = store->add_file(ec_->der);
  ASSERT_TRUE(b) << b.error().to_string();
  auto t1 = store->add_file(twin1_->der);
  auto t2 = store->add_file(twin2_->der);
  ASSERT_TRUE(t1 && t2);

  auto dup = store->add_file(rsa_->der);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, EEXIST);
  EXPECT_NE(dup.error().message.find(rsa_->skid_tail), std::string::npos);
  auto bad = store->add_file(rsa_->key);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EINVAL);

  const fs::path stored = dir / (rsa_->skid_tail + "-" + a->fingerprint.substr(0, 16) + ".der");
  EXPECT_EQ(read_bytes(stored), read_bytes(rsa_->der));
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().extension(), ".der") << e.path();  // no temp file left behind
    ++files;
  }
  EXPECT_EQ(files, 4u);

  // A new store object over the same directory (a restart) sees the same keys.
  auto reopened = KeyStore::open(dir);
  ASSERT_TRUE(reopened);
  auto ring = reopened->load();
  ASSERT_TRUE(ring) << ring.error().to_string();
  EXPECT_EQ(ring->size(), 4u);
  auto list = ring->list();
  ASSERT_EQ(list.size(), 4u);
  EXPECT_TRUE(std::is_sorted(list.begin(), list.end(), [](const KeyInfo& x, const KeyInfo& y) {
    return x.keyid < y.keyid;
  }));

  auto removed = reopened->remove(0xaabbccdd);
  ASSERT_TRUE(removed) << removed.error().to_string();
  EXPECT_EQ(removed->size(), 2u);
  auto gone = reopened->remove(0xaabbccdd);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ENOENT);
  ring = reopened->load();
  ASSERT_TRUE(ring);
  EXPECT_EQ(ring->size(), 2u);

  // A file that is not a certificate in the store fails the load, naming it.
  write_file(dir / "00000000-0000000000000000.der", "junk");
  ring = reopened->load();
  ASSERT_FALSE(ring);
  EXPECT_NE(ring.error().where.find("00000000-0000000000000000.der"), std::string::npos);
}

}  // namespace
}  // namespace nsima::appraise

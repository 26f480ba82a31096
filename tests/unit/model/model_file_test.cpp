// SPDX-License-Identifier: Apache-2.0
// Model files: save/load round trip (points, order, measurement, state), offline state equal to
// the live one, every malformed or tampered form refused naming FILE:LINE, signatures made by
// the openssl CLI checked with the namespace keyring (daemon/appraise), and nsima's own
// signatures checked by `openssl dgst -verify`. Keys are TEST-ONLY, made at test time.
#include <gtest/gtest.h>

#include "../appraise/appraise_test_util.h"
#include "common/hex.h"
#include "model/model_file.h"

namespace nsima::model {
namespace {

using namespace nsima::appraise::testing;

Digest H(std::string_view s) {
  return sha256(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

Model sample_model() {
  Model m(H("base"), H("aggregate"));
  m.observe(H("c1"), EventType::kBprmCommittedCreds, "exec /bin/busybox uid=0");
  m.observe(H("c2"), EventType::kFileOpen, "/etc/passwd");
  m.observe(H("c3"), EventType::kSocketConnect, "");
  m.observe(H("c2"), EventType::kFileOpen);  // a repeat
  m.observe(H("c4"), EventType::kTaskKill, "  weird\tdesc\x01 ");
  return m;
}

Result<ModelFile> parse(const std::string& text) { return parse_model(text, "m.model"); }

// The text of a valid unsigned file with points p1, p2.
std::string valid_text() {
  return "nsima-model 1\n"
         "digest sha256\n"
         "base " + to_hex(kZeroDigest) + "\n"
         "aggregate " + to_hex(H("agg")) + "\n"
         "point " + to_hex(H("p1")) + " file_open /etc/passwd read by cat\n"
         "point " + to_hex(H("p2")) + " bprm_committed_creds\n"
         "end 2\n";
}

TEST(ModelFileTest, RoundTrip) {
  Model m = sample_model();
  ASSERT_TRUE(m.set_mode(Mode::kSeal));
  m.observe(H("forensic"), EventType::kFileOpen);  // not part of the saved model
  std::string text = serialize_model(m);
  auto f = parse(text);
  ASSERT_TRUE(f) << f.error().to_string() << "\n" << text;
  EXPECT_FALSE(f->signature);
  EXPECT_EQ(f->base, H("base"));
  EXPECT_EQ(f->aggregate, H("aggregate"));
  ASSERT_EQ(f->points.size(), 4u);
  EXPECT_EQ(f->points[0].coefficient, H("c1"));
  EXPECT_EQ(f->points[0].event, EventType::kBprmCommittedCreds);
  EXPECT_EQ(f->points[0].description, "exec /bin/busybox uid=0");
  EXPECT_EQ(f->points[2].description, "");
  EXPECT_EQ(f->points[3].description, "weird?desc?") << "descriptions keep what the format carries";
  auto loaded = model_from_file(*f, Mode::kEnforce);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->mode(), Mode::kEnforce);
  EXPECT_EQ(loaded->known_count(), 4u);
  // the loaded model's measurement is the learning run's (file order = trajectory order)
  Model learned = sample_model();
  EXPECT_EQ(loaded->measurement(), learned.measurement());
  EXPECT_EQ(loaded->state(), learned.state());
  EXPECT_EQ(serialize_model(*loaded), text) << "save(load(save(m))) == save(m)";
}

TEST(ModelFileTest, OfflineStateEqualsLiveState) {
  Model m = sample_model();
  auto f = parse(serialize_model(m));
  ASSERT_TRUE(f);
  OfflineValues v = offline_values(*f);
  EXPECT_EQ(v.state, m.state());
  EXPECT_EQ(v.measurement, m.measurement());
  EXPECT_EQ(v.points, 4u);
  // another aggregate (another TPM): another state
  EXPECT_NE(offline_values(*f, H("other aggregate")).state, m.state());
}

TEST(ModelFileTest, FileOnDisk) {
  TempDir dir;
  Model m = sample_model();
  ASSERT_TRUE(write_model_file(dir / "a.model", serialize_model(m)));
  auto f = read_model_file(dir / "a.model", appraise::Keyring{});
  ASSERT_TRUE(f) << f.error().to_string();
  EXPECT_EQ(offline_values(*f).state, m.state());
  auto missing = read_model_file(dir / "nope.model", appraise::Keyring{});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().where, (dir / "nope.model").string());
}

struct Bad {
  std::string name;
  std::function<std::string(std::string)> mutate;
  std::string line;      // expected "m.model:N"
  std::string message;   // a fragment of the reason
};

TEST(ModelFileTest, MalformedFilesAreRefusedNamingThePlace) {
  const std::string p1 = to_hex(H("p1"));
  auto replace = [](std::string s, const std::string& from, const std::string& to) {
    size_t i = s.find(from);
    EXPECT_NE(i, std::string::npos) << from;
    return i == std::string::npos ? s : s.replace(i, from.size(), to);
  };
  std::vector<Bad> cases = {
      {"empty", [](std::string) { return std::string(); }, "m.model:1", "empty file"},
      {"other format", [](std::string) { return std::string("hello\n"); }, "m.model:1",
       "not a model file"},
      {"version 2", [&](std::string s) { return replace(s, "nsima-model 1", "nsima-model 2"); },
       "m.model:1", "unsupported model version '2'"},
      {"no final newline", [](std::string s) { s.pop_back(); return s; }, "m.model:7",
       "no newline"},
      {"truncated mid-line", [](std::string s) { return s.substr(0, s.size() - 30); },
       "m.model:6", "no newline"},
      {"CRLF", [&](std::string s) { return replace(s, "digest sha256\n", "digest sha256\r\n"); },
       "m.model:2", "byte 0x0d"},
      {"NUL byte", [&](std::string s) { return replace(s, "/etc/passwd", std::string("/etc\0pw", 7)); },
       "m.model:5", "byte 0x00"},
      {"sha1", [&](std::string s) { return replace(s, "digest sha256", "digest sha1"); },
       "m.model:2", "sha256 only"},
      {"missing digest line", [&](std::string s) { return replace(s, "digest sha256\n", ""); },
       "m.model:2", "expected 'digest ...'"},
      {"upper-case base", [&](std::string s) {
         return replace(s, "base 0000", "base 000A"); }, "m.model:3", "base: expected 64"},
      {"short aggregate", [&](std::string s) {
         return replace(s, "aggregate " + to_hex(H("agg")), "aggregate abcd"); },
       "m.model:4", "aggregate: expected 64"},
      {"unknown event", [&](std::string s) { return replace(s, " bprm_committed_creds", " inode_create"); },
       "m.model:6", "unknown event 'inode_create'"},
      {"point without event", [&](std::string s) {
         return replace(s, " bprm_committed_creds", ""); }, "m.model:6", "without an event"},
      {"duplicate point", [&](std::string s) { return replace(s, to_hex(H("p2")), p1); },
       "m.model:6", "already on line 5"},
      {"wrong count", [&](std::string s) { return replace(s, "end 2", "end 3"); }, "m.model:7",
       "end says 3 points, the file has 2"},
      {"count with leading zero", [&](std::string s) { return replace(s, "end 2", "end 02"); },
       "m.model:7", "expected the number of points"},
      {"no end", [&](std::string s) { return replace(s, "end 2\n", ""); }, "m.model:7",
       "ends without 'end"},
      {"garbage after end", [](std::string s) { return s + "point " + std::string(64, 'a') + " file_open\n"; },
       "m.model:8", "only a 'sig' line may follow"},
      {"line after sig", [](std::string s) { return s + "sig sha256 abcd\nend 2\n"; },
       "m.model:9", "nothing may follow the 'sig' line"},
      {"sig with odd hex", [](std::string s) { return s + "sig sha256 abc\n"; }, "m.model:8",
       "sig: expected the signature"},
      {"sig with md5", [](std::string s) { return s + "sig md5 abcd\n"; }, "m.model:8",
       "unsupported algorithm 'md5'"},
      {"trailing space", [&](std::string s) { return replace(s, "end 2", "end 2 "); },
       "m.model:7", "trailing space"},
      {"two spaces", [&](std::string s) { return replace(s, "file_open /etc", "file_open  /etc"); },
       "m.model:5", "two spaces"},
      {"empty line", [&](std::string s) { return replace(s, "end 2\n", "\nend 2\n"); },
       "m.model:7", "empty line"},
      {"description too long", [&](std::string s) {
         return replace(s, "read by cat", std::string(2000, 'x')); }, "m.model:5",
       "description of"},
  };
  ASSERT_TRUE(parse(valid_text())) << parse(valid_text()).error().to_string();
  for (const auto& c : cases) {
    std::string text = c.mutate(valid_text());
    auto r = parse(text);
    ASSERT_FALSE(r) << c.name << " was accepted:\n" << text;
    EXPECT_EQ(r.error().code, EINVAL) << c.name;
    EXPECT_EQ(r.error().where, c.line) << c.name << ": " << r.error().to_string();
    EXPECT_NE(r.error().message.find(c.message), std::string::npos)
        << c.name << ": " << r.error().to_string();
  }
}

class SignedModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    rsa_ = new TestKey(make_key(dir_->path(), "rsa", "rsa:2048"));
    ec_ = new TestKey(make_key(dir_->path(), "ec", "ec -pkeyopt ec_paramgen_curve:prime256v1"));
    other_ = new TestKey(make_key(dir_->path(), "other", "rsa:2048"));
  }
  static void TearDownTestSuite() {
    delete rsa_;
    delete ec_;
    delete other_;
    delete dir_;
  }
  static appraise::Keyring ring(std::initializer_list<const TestKey*> keys) {
    appraise::Keyring r;
    for (auto* k : keys) {
      auto key = appraise::Key::from_file(k->der);
      EXPECT_TRUE(key) << key.error().to_string();
      EXPECT_TRUE(r.add(*key));
    }
    return r;
  }
  // Signs `text` with the openssl CLI (independent of nsima) and appends the sig line.
  static std::string openssl_signed(const std::string& text, const TestKey& k,
                                    const std::string& algo = "sha256") {
    write_file(*dir_ / "m.model", text);
    must("openssl dgst -" + algo + " -sign " + k.key.string() + " -out " +
         (*dir_ / "m.sig").string() + " " + (*dir_ / "m.model").string());
    return text + "sig " + algo + " " + to_hex(read_bytes(*dir_ / "m.sig")) + "\n";
  }
  static TempDir* dir_;
  static TestKey *rsa_, *ec_, *other_;
};
TempDir* SignedModelTest::dir_ = nullptr;
TestKey *SignedModelTest::rsa_ = nullptr, *SignedModelTest::ec_ = nullptr,
        *SignedModelTest::other_ = nullptr;

TEST_F(SignedModelTest, OpensslSignaturesVerify) {
  for (const auto& [key, algo] : {std::pair{rsa_, "sha256"}, std::pair{ec_, "sha256"},
                                  std::pair{rsa_, "sha512"}, std::pair{ec_, "sha384"}}) {
    std::string text = openssl_signed(valid_text(), *key, algo);
    auto f = load_model(text, "m.model", ring({other_, key}));
    ASSERT_TRUE(f) << algo << ": " << f.error().to_string();
    ASSERT_TRUE(f->signature);
    EXPECT_EQ(f->signature->line, 8u);
    EXPECT_EQ(f->points.size(), 2u);
  }
}

TEST_F(SignedModelTest, TamperedSignedModelIsRefused) {
  std::string text = openssl_signed(valid_text(), *rsa_);
  // one hex digit of a point changed after signing
  std::string tampered = text;
  size_t at = tampered.find("point ") + 6;
  tampered[at] = tampered[at] == '0' ? '1' : '0';
  auto r = load_model(tampered, "m.model", ring({rsa_}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EPERM);
  EXPECT_EQ(r.error().where, "m.model:8") << "the sig line";
  EXPECT_NE(r.error().message.find("bad signature"), std::string::npos) << r.error().message;
  // a point appended before the sig line (and the count fixed): the signed bytes changed
  std::string added = valid_text();
  added = added.substr(0, added.find("end 2")) + "point " + to_hex(H("evil")) +
          " file_open\nend 3\n" + text.substr(text.find("sig "));
  r = load_model(added, "m.model", ring({rsa_}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().where, "m.model:9");
  // signed by a key the namespace does not have
  r = load_model(openssl_signed(valid_text(), *other_), "m.model", ring({rsa_, ec_}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("none of the 2 keys"), std::string::npos) << r.error().message;
}

TEST_F(SignedModelTest, SignaturePolicy) {
  // unsigned, the namespace has keys: refused
  auto r = load_model(valid_text(), "m.model", ring({rsa_}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EPERM);
  EXPECT_EQ(r.error().where, "m.model");
  EXPECT_NE(r.error().message.find("unsigned model"), std::string::npos);
  // signed, no key to check it with: refused
  r = load_model(openssl_signed(valid_text(), *rsa_), "m.model", appraise::Keyring{});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no key"), std::string::npos) << r.error().message;
  // unsigned, no keys: accepted
  EXPECT_TRUE(load_model(valid_text(), "m.model", appraise::Keyring{}));
}

TEST_F(SignedModelTest, NsimaSignaturesVerifyWithOpenssl) {
  for (const TestKey* k : {rsa_, ec_}) {
    auto signed_text = sign_model(valid_text(), k->key);
    ASSERT_TRUE(signed_text) << signed_text.error().to_string();
    EXPECT_TRUE(load_model(*signed_text, "m.model", ring({k})));
    // openssl checks the same bytes with the certificate's public key
    size_t sig = signed_text->rfind("sig sha256 ");
    write_file(*dir_ / "n.model", signed_text->substr(0, sig));
    auto raw = from_hex(std::string_view(*signed_text).substr(sig + 11, signed_text->size() - sig - 12));
    ASSERT_TRUE(raw);
    std::string bytes(raw->begin(), raw->end());
    write_file(*dir_ / "n.sig", bytes);
    must("openssl x509 -in " + k->pem.string() + " -pubkey -noout > " + (*dir_ / "n.pub").string());
    std::string out = must("openssl dgst -sha256 -verify " + (*dir_ / "n.pub").string() +
                           " -signature " + (*dir_ / "n.sig").string() + " " +
                           (*dir_ / "n.model").string());
    EXPECT_NE(out.find("Verified OK"), std::string::npos) << out;
  }
  auto twice = sign_model(*sign_model(valid_text(), rsa_->key), rsa_->key);
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("already signed"), std::string::npos);
  auto notkey = sign_model(valid_text(), rsa_->pem);
  ASSERT_FALSE(notkey);
  EXPECT_EQ(notkey.error().where, rsa_->pem.string());
}

}  // namespace
}  // namespace nsima::model

// `exec <sha256>` lines: a model's known executables, saved sorted after the points, loaded
// back; a repeated one is refused naming its line.
namespace nsima::model {
namespace {

TEST(ModelFileTest, ExecutablesRoundTrip) {
  Model m = sample_model();
  EXPECT_TRUE(m.add_executable(H("exe2")));
  EXPECT_TRUE(m.add_executable(H("exe1")));
  EXPECT_FALSE(m.add_executable(H("exe1")));
  std::string text = serialize_model(m);
  EXPECT_NE(text.find("exec " + to_hex(H("exe1")) + "\n"), std::string::npos) << text;
  auto f = parse(text);
  ASSERT_TRUE(f) << f.error().to_string() << "\n" << text;
  EXPECT_EQ(f->points.size(), 4u) << "exec lines are not points";
  auto loaded = model_from_file(*f, Mode::kEnforce);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->executables(), m.executables());
  EXPECT_EQ(loaded->state(), m.state()) << "executables are not hashed into the state";
  EXPECT_EQ(serialize_model(*loaded), text);
}

TEST(ModelFileTest, RepeatedExecutableRefused) {
  std::string text = valid_text();
  const std::string line = "exec " + to_hex(H("x")) + "\n";
  text.insert(text.find("end 2"), line + line);
  auto f = parse(text);
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().to_string().find("m.model:8"), std::string::npos) << f.error().to_string();
  std::string bad = valid_text();
  bad.insert(bad.find("end 2"), "exec nothex\n");
  EXPECT_FALSE(parse(bad));
}

}  // namespace
}  // namespace nsima::model

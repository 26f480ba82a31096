// SPDX-License-Identifier: Apache-2.0
// vTPM identity against real swtpm, checked by tools independent of nsima:
//   - a new vTPM is manufactured with an EK certificate: tpm2_nvread reads it from the vTPM and
//     `openssl verify` chains it to the CA root that VtpmManager::ca_certificate() gives, through
//     ca_chain(); the CA's own config files live in the CA directory;
//   - a vTPM whose state predates EK provisioning keeps working and reports ENOENT for its EK;
//   - tpm2_makecredential (software, --tcti none) -> EsysTpm::activate_credential returns the
//     secret; our make_credential -> tpm2_activatecredential (EK and AK made by tpm2-tools)
//     returns the secret;
//   - a credential made for another AK's name is refused by the vTPM (an AK not bound to the EK);
//   - check_quote_signature accepts the vTPM's quote with its AK and rejects it with another AK,
//     another nonce, or a flipped byte.
#include <gtest/gtest.h>
#include <sys/prctl.h>

#include <fstream>

#include "common/hex.h"
#include "swtpm_fixture.h"
#include "tpm/credential.h"
#include "tpm/esys_tpm.h"
#include "tpm/vtpm_manager.h"

namespace nsima::tpm {
namespace {

namespace fs = std::filesystem;
using nsima::testing::run_tool;
using Bytes = std::vector<uint8_t>;

Bytes slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void spit(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
void spit(const fs::path& p, const std::string& s) { spit(p, Bytes(s.begin(), s.end())); }

class AttestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    std::string templ = "/tmp/nsima-attest-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = templ;
    opts_.state_root = root_ / "state" / "vtpm";
    opts_.run_root = root_ / "run";
    opts_.start_timeout = std::chrono::milliseconds(10000);
    mgr_ = std::make_unique<VtpmManager>(opts_);
  }
  void TearDown() override {
    if (mgr_)
      for (auto& ns : mgr_->running()) (void)mgr_->destroy(ns);
    mgr_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  // A vTPM and its ESYS connection.
  std::unique_ptr<EsysTpm> vtpm(const std::string& ns, VtpmInstance* out = nullptr) {
    auto inst = mgr_->start(ns);
    EXPECT_TRUE(inst) << inst.error().to_string();
    if (!inst) return nullptr;
    if (out) *out = *inst;
    auto t = EsysTpm::open(inst->tcti);
    EXPECT_TRUE(t) << t.error().to_string();
    return t ? std::move(*t) : nullptr;
  }

  fs::path root_;
  VtpmOptions opts_;
  std::unique_ptr<VtpmManager> mgr_;
};

TEST_F(AttestTest, NewVtpmHasAnEkCertificateThatOpensslChainsToTheCa) {
  VtpmInstance inst;
  auto t = vtpm("1", &inst);
  ASSERT_TRUE(t);
  EXPECT_TRUE(inst.created);
  // The CA is nsima's own: its config files are in the CA directory (never /etc's).
  const fs::path ca = mgr_->ca_dir();
  EXPECT_EQ(ca, root_ / "state" / "vtpm-ca");
  EXPECT_TRUE(fs::exists(ca / "swtpm-localca.conf"));
  EXPECT_TRUE(fs::exists(ca / "swtpm_setup.conf"));
  auto root_pem = mgr_->ca_certificate();
  ASSERT_TRUE(root_pem) << root_pem.error().to_string();
  auto chain = mgr_->ca_chain();
  ASSERT_TRUE(chain) << chain.error().to_string();
  spit(root_ / "ca.pem", *root_pem);
  spit(root_ / "chain.pem", *chain);

  // tpm2-tools reads the certificate the vTPM holds; openssl checks the chain.
  auto rd = run_tool({"tpm2_nvread", "-T", inst.tcti, "-o", (root_ / "ek.der").string(),
                      "0x1c00002"});
  ASSERT_EQ(rd.rc, 0) << rd.output;
  auto pem = run_tool({"openssl", "x509", "-inform", "DER", "-in", (root_ / "ek.der").string(),
                       "-out", (root_ / "ek.pem").string()});
  ASSERT_EQ(pem.rc, 0) << pem.output;
  auto v = run_tool({"openssl", "verify", "-CAfile", (root_ / "ca.pem").string(), "-untrusted",
                     (root_ / "chain.pem").string(), (root_ / "ek.pem").string()});
  EXPECT_EQ(v.rc, 0) << v.output;
  EXPECT_NE(v.output.find("OK"), std::string::npos) << v.output;
  // Without the intermediate the root alone does not sign it (the chain is really used).
  auto v2 = run_tool({"openssl", "verify", "-CAfile", (root_ / "chain.pem").string(),
                      (root_ / "ek.pem").string()});
  EXPECT_NE(v2.rc, 0) << v2.output;

  // nsima reads the same certificate and checks it the same way.
  auto id = t->identity();
  ASSERT_TRUE(id) << id.error().to_string();
  EXPECT_EQ(id->ek_cert, slurp(root_ / "ek.der"));
  auto c = check_ek_certificate(id->ek_cert, *chain, *root_pem, id->ek_public);
  EXPECT_TRUE(c) << c.error().to_string();
  // Against a CA that did not sign it: refused.
  auto other = run_tool({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                         "/CN=other", "-keyout", (root_ / "o.key").string(), "-out",
                         (root_ / "o.pem").string(), "-days", "1"});
  ASSERT_EQ(other.rc, 0) << other.output;
  std::string other_pem(reinterpret_cast<const char*>(slurp(root_ / "o.pem").data()),
                        slurp(root_ / "o.pem").size());
  EXPECT_FALSE(check_ek_certificate(id->ek_cert, *chain, other_pem, id->ek_public));

  // The vTPM still has every PCR bank a plain swtpm has (swtpm_setup would keep sha256 only).
  auto banks = t->banks();
  ASSERT_TRUE(banks);
  EXPECT_EQ(banks->size(), 4u);
  // A restart of the same namespace does not manufacture again.
  ASSERT_TRUE(mgr_->stop("1"));
  auto again = mgr_->start("1");
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_FALSE(again->created);
}

TEST_F(AttestTest, VtpmMadeBeforeEkCertificatesKeepsWorkingWithoutAnEk) {
  {
    VtpmOptions old = opts_;
    old.ek_cert = false;  // what nsimad did before
    VtpmManager m(old);
    auto inst = m.start("7");
    ASSERT_TRUE(inst) << inst.error().to_string();
    ASSERT_TRUE(m.stop("7"));
  }
  VtpmInstance inst;
  auto t = vtpm("7", &inst);
  ASSERT_TRUE(t);
  EXPECT_FALSE(inst.created);  // its state is kept: no swtpm_setup over it
  auto id = t->identity();
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code, ENOENT) << id.error().to_string();
  // Quotes still work.
  auto q = t->quote({{Bank::kSha256, {10}}}, {1, 2, 3});
  EXPECT_TRUE(q) << q.error().to_string();
}

TEST_F(AttestTest, WithoutSwtpmSetupTheVtpmMeasuresButHasNoEk) {
  opts_.swtpm_setup = "/nonexistent/swtpm_setup";
  mgr_ = std::make_unique<VtpmManager>(opts_);
  VtpmInstance inst;
  auto t = vtpm("6", &inst);
  ASSERT_TRUE(t);
  EXPECT_TRUE(inst.created);
  auto id = t->identity();
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code, ENOENT);
  EXPECT_TRUE(t->quote({{Bank::kSha256, {10}}}, {1}));
}

TEST_F(AttestTest, Tpm2MakecredentialIsActivatedByTheVtpm) {
  auto t = vtpm("2");
  ASSERT_TRUE(t);
  auto id = t->identity();
  ASSERT_TRUE(id) << id.error().to_string();
  spit(root_ / "ek.pub", id->ek_public);
  spit(root_ / "secret", std::string("the verifier's challenge 0123456"));
  auto mk = run_tool({"tpm2_makecredential", "--tcti", "none", "-u",
                      (root_ / "ek.pub").string(), "-s", (root_ / "secret").string(), "-n",
                      to_hex(id->ak_name), "-o", (root_ / "cred").string()});
  ASSERT_EQ(mk.rc, 0) << mk.output;
  auto c = credential_from_tools_file(slurp(root_ / "cred"));
  ASSERT_TRUE(c) << c.error().to_string();
  auto s = t->activate_credential(c->id_object, c->enc_secret);
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(*s, slurp(root_ / "secret"));
  // Our own MakeCredential gives the same result through the same vTPM.
  Bytes secret(32, 0x5a);
  auto ours = make_credential(id->ek_public, id->ak_name, secret);
  ASSERT_TRUE(ours) << ours.error().to_string();
  auto s2 = t->activate_credential(ours->id_object, ours->enc_secret);
  ASSERT_TRUE(s2) << s2.error().to_string();
  EXPECT_EQ(*s2, secret);
  // The name the TPM reports is the name computed from the public area.
  auto name = public_name(id->ak_public);
  ASSERT_TRUE(name);
  EXPECT_EQ(*name, id->ak_name);
}

TEST_F(AttestTest, OurMakeCredentialIsActivatedByTpm2Tools) {
  VtpmInstance inst;
  auto t = vtpm("3", &inst);
  ASSERT_TRUE(t);
  t.reset();  // tpm2-tools alone talk to it now
  const std::string T = inst.tcti;
  auto p = [&](const char* f) { return (root_ / f).string(); };
  auto ek = run_tool({"tpm2_createek", "-T", T, "-c", p("ek.ctx"), "-G", "rsa", "-u", p("ek.pub")});
  ASSERT_EQ(ek.rc, 0) << ek.output;
  auto ak = run_tool({"tpm2_createak", "-T", T, "-C", p("ek.ctx"), "-c", p("ak.ctx"), "-G", "ecc",
                      "-g", "sha256", "-s", "ecdsa", "-u", p("ak.pub"), "-n", p("ak.name")});
  ASSERT_EQ(ak.rc, 0) << ak.output;
  run_tool({"tpm2_flushcontext", "-T", T, "-t"});
  Bytes secret = {'n', 's', 'i', 'm', 'a', '-', 's', 'e', 'c', 'r', 'e', 't'};
  auto c = make_credential(slurp(root_ / "ek.pub"), slurp(root_ / "ak.name"), secret);
  ASSERT_TRUE(c) << c.error().to_string();
  spit(root_ / "cred", credential_to_tools_file(*c));
  // The EK's policy, as tpm2_activatecredential(1) shows: PolicySecret(endorsement).
  auto ss = run_tool({"tpm2_startauthsession", "-T", T, "--policy-session", "-S", p("s.ctx")});
  ASSERT_EQ(ss.rc, 0) << ss.output;
  auto ps = run_tool({"tpm2_policysecret", "-T", T, "-S", p("s.ctx"), "-c", "0x4000000B"});
  ASSERT_EQ(ps.rc, 0) << ps.output;
  auto act = run_tool({"tpm2_activatecredential", "-T", T, "-c", p("ak.ctx"), "-C", p("ek.ctx"),
                       "-i", p("cred"), "-o", p("out"), "-P", "session:" + p("s.ctx")});
  ASSERT_EQ(act.rc, 0) << act.output;
  EXPECT_EQ(slurp(root_ / "out"), secret);
  run_tool({"tpm2_flushcontext", "-T", T, "-t"});
  run_tool({"tpm2_flushcontext", "-T", T, "-s"});
}

TEST_F(AttestTest, AnAkNotInTheEksTpmCannotActivate) {
  auto a = vtpm("4");
  auto b = vtpm("5");
  ASSERT_TRUE(a && b);
  auto ida = a->identity();
  auto idb = b->identity();
  ASSERT_TRUE(ida && idb);
  EXPECT_NE(ida->ak_name, idb->ak_name);
  // A credential for A's EK and B's AK: A's TPM has no object of that name under its EK.
  auto c = make_credential(ida->ek_public, idb->ak_name, Bytes(32, 1));
  ASSERT_TRUE(c);
  auto s = a->activate_credential(c->id_object, c->enc_secret);
  EXPECT_FALSE(s);
  // And B cannot open a credential for A's EK (it does not hold that EK).
  auto c2 = make_credential(ida->ek_public, idb->ak_name, Bytes(32, 1));
  ASSERT_TRUE(c2);
  EXPECT_FALSE(b->activate_credential(c2->id_object, c2->enc_secret));
}

TEST_F(AttestTest, QuoteSignatureIsCheckedAgainstTheBoundAk) {
  auto a = vtpm("8");
  auto b = vtpm("9");
  ASSERT_TRUE(a && b);
  auto ida = a->identity();
  auto idb = b->identity();
  ASSERT_TRUE(ida && idb);
  Bytes nonce = {9, 8, 7, 6, 5};
  auto q = a->quote({{Bank::kSha256, {10}}}, nonce);
  ASSERT_TRUE(q) << q.error().to_string();
  auto ok = check_quote_signature(q->message, q->signature, ida->ak_public, nonce);
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->pcr_digest, q->pcr_digest);
  auto wrong_ak = check_quote_signature(q->message, q->signature, idb->ak_public, nonce);
  ASSERT_FALSE(wrong_ak);
  EXPECT_EQ(wrong_ak.error().where, "signature");
  auto wrong_nonce = check_quote_signature(q->message, q->signature, ida->ak_public, {1});
  ASSERT_FALSE(wrong_nonce);
  EXPECT_EQ(wrong_nonce.error().where, "nonce");
  Bytes flipped = q->message;
  flipped.back() ^= 1;
  EXPECT_FALSE(check_quote_signature(flipped, q->signature, ida->ak_public, nonce));
  // The PCR file round trip.
  auto vals = parse_pcrs_file(q->pcrs);
  ASSERT_TRUE(vals) << vals.error().to_string();
  EXPECT_EQ((*vals)[Bank::kSha256][10], q->values[Bank::kSha256][10]);
}

}  // namespace
}  // namespace nsima::tpm

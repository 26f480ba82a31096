// SPDX-License-Identifier: Apache-2.0
// Quotes from EsysTpm, verified by stock tpm2_checkquote (tpm2-tools 5.4), for both AK types:
// right nonce accepted, wrong nonce and tampered files rejected, quoted PCR values equal to the
// TPM's, the PCR file byte-identical to tpm2_quote's, the AK deterministic, no transient object
// left behind, and recovery from object slots another client filled.
#include <gtest/gtest.h>
#include <openssl/rand.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <thread>

#include "swtpm_fixture.h"
#include "tpm/esys_tpm.h"
#include "tpm_test_util.h"

namespace nsima::tpm {
namespace {

using nsima::testing::bytes;
using nsima::testing::ossl_hash;
using nsima::testing::run_tool;
using nsima::testing::SwtpmProcess;
using nsima::testing::ToolResult;

const std::vector<Bank> kBanks = {Bank::kSha1, Bank::kSha256, Bank::kSha384, Bank::kSha512};

std::vector<BankDigest> event(const std::string& data) {
  std::vector<BankDigest> out;
  for (Bank b : kBanks) out.push_back({b, ossl_hash(b, bytes(data))});
  return out;
}

std::vector<uint8_t> random_nonce(size_t n = 20) {
  std::vector<uint8_t> v(n);
  EXPECT_EQ(RAND_bytes(v.data(), static_cast<int>(n)), 1);
  return v;
}

std::vector<uint8_t> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& p, const std::vector<uint8_t>& b) {
  std::ofstream(p, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

ToolResult checkquote(const std::filesystem::path& dir, const std::string& nonce_hex) {
  return run_tool({"tpm2_checkquote", "-u", (dir / kQuoteAkPemFile).string(), "-m",
                   (dir / kQuoteMessageFile).string(), "-s", (dir / kQuoteSignatureFile).string(),
                   "-f", (dir / kQuotePcrsFile).string(), "-g", "sha256", "-q", nonce_hex});
}

std::string transient_handles(const std::string& tcti) {
  ToolResult r = run_tool({"tpm2_getcap", "-T", tcti, "handles-transient"});
  EXPECT_EQ(r.rc, 0) << r.output;
  return r.output;
}

class QuoteTest : public ::testing::TestWithParam<AkAlgorithm> {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(swtpm_.start(&err)) << err;
    opts_.ak_algorithm = GetParam();
    auto t = EsysTpm::open(swtpm_.tcti(), opts_);
    ASSERT_TRUE(t) << t.error().to_string();
    tpm_ = std::move(*t);
    dir_ = swtpm_.dir() / "quote";
  }

  SwtpmProcess swtpm_;
  EsysTpmOptions opts_;
  std::unique_ptr<EsysTpm> tpm_;
  std::filesystem::path dir_;
};

TEST_P(QuoteTest, CheckquoteAcceptsTheRightNonceAndRejectsEverythingElse) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(tpm_->extend(10, event("file-" + std::to_string(i))));
    ASSERT_TRUE(tpm_->extend(16, event("other-" + std::to_string(i))));
  }
  ASSERT_TRUE(tpm_->extend(10, *violation_digests(kBanks)));
  const auto nonce = random_nonce();
  auto q = tpm_->quote({{Bank::kSha256, {16, 10}}, {Bank::kSha1, {10}}}, nonce);
  ASSERT_TRUE(q) << q.error().to_string();
  ASSERT_TRUE(write_quote_files(*q, dir_));

  ToolResult ok = checkquote(dir_, to_hex(nonce));
  EXPECT_EQ(ok.rc, 0) << ok.output;

  auto other = nonce;
  other[0] ^= 1;
  ToolResult bad_nonce = checkquote(dir_, to_hex(other));
  EXPECT_NE(bad_nonce.rc, 0) << bad_nonce.output;
  EXPECT_NE(bad_nonce.output.find("nonce"), std::string::npos) << bad_nonce.output;

  // The quoted values are the TPM's values, and the selection came back canonical.
  ASSERT_EQ(q->selection.size(), 2u);
  EXPECT_EQ(q->selection[0].bank, Bank::kSha256);
  EXPECT_EQ(q->selection[0].pcrs, (std::vector<int>{10, 16}));
  for (const auto& [bank, pcrs] : q->values) {
    for (const auto& [pcr, value] : pcrs) {
      auto now = tpm_->read_pcr(pcr, bank);
      ASSERT_TRUE(now);
      EXPECT_EQ(to_hex(value), to_hex(*now)) << bank_name(bank) << ":" << pcr;
    }
  }
  EXPECT_EQ(q->values.at(Bank::kSha1).size(), 1u);
  EXPECT_EQ(q->nonce, nonce);
  EXPECT_EQ(q->hash, Bank::kSha256);
  EXPECT_EQ(q->pcr_digest.size(), 32u);
  auto pem = tpm_->attestation_key_pem();
  ASSERT_TRUE(pem);
  EXPECT_EQ(q->ak_public_pem, *pem);
  EXPECT_EQ(read_file(dir_ / kQuoteNonceFile), bytes(to_hex(nonce) + "\n"));

  // A PCR value that is not the quoted one fails the composite check.
  auto pcrs = read_file(dir_ / kQuotePcrsFile);
  auto tampered = pcrs;
  tampered[sizeof(TPML_PCR_SELECTION) + 4 + 4 + 2] ^= 0x01;  // first byte of the first digest
  write_bytes(dir_ / kQuotePcrsFile, tampered);
  ToolResult bad_pcr = checkquote(dir_, to_hex(nonce));
  EXPECT_NE(bad_pcr.rc, 0) << bad_pcr.output;
  write_bytes(dir_ / kQuotePcrsFile, pcrs);

  // A modified message fails the signature.
  auto msg = read_file(dir_ / kQuoteMessageFile);
  msg.back() ^= 0x01;
  write_bytes(dir_ / kQuoteMessageFile, msg);
  ToolResult bad_sig = checkquote(dir_, to_hex(nonce));
  EXPECT_NE(bad_sig.rc, 0) << bad_sig.output;
}

TEST_P(QuoteTest, AllPcrsOfTwoBanksSpanSeveralDigestLists) {
  ASSERT_TRUE(tpm_->extend(23, event("x")));
  std::vector<int> all;
  for (int i = 0; i < 24; ++i) all.push_back(i);
  const auto nonce = random_nonce(32);
  auto q = tpm_->quote({{Bank::kSha384, all}, {Bank::kSha1, all}}, nonce);
  ASSERT_TRUE(q) << q.error().to_string();
  ASSERT_TRUE(write_quote_files(*q, dir_));
  // 48 digests: six TPML_DIGEST lists of 8.
  EXPECT_EQ(q->pcrs.size(), sizeof(TPML_PCR_SELECTION) + 4 + 6 * sizeof(TPML_DIGEST));
  ToolResult ok = checkquote(dir_, to_hex(nonce));
  EXPECT_EQ(ok.rc, 0) << ok.output;
}

TEST_P(QuoteTest, PcrFileIsByteIdenticalToTpm2Quote) {
  ASSERT_TRUE(tpm_->extend(10, event("a")));
  ASSERT_TRUE(tpm_->extend(16, event("b")));
  const auto nonce = random_nonce();
  auto q = tpm_->quote({{Bank::kSha256, {10, 16}}, {Bank::kSha1, {10}}}, nonce);
  ASSERT_TRUE(q) << q.error().to_string();
  ASSERT_TRUE(write_quote_files(*q, dir_));

  // The same AK template made by tpm2-tools, and tpm2_quote's own output files.
  const std::string alg = GetParam() == AkAlgorithm::kEccP256 ? "ecc256:ecdsa-sha256:null"
                                                              : "rsa2048:rsassa-sha256:null";
  const std::string ctx = (swtpm_.dir() / "tools_ak.ctx").string();
  ToolResult cp = run_tool({"tpm2_createprimary", "-T", swtpm_.tcti(), "-C", "e", "-G", alg, "-a",
                            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign",
                            "-c", ctx, "-Q"});
  ASSERT_EQ(cp.rc, 0) << cp.output;
  const auto tools = swtpm_.dir() / "tools";
  std::filesystem::create_directories(tools);
  ToolResult tq = run_tool({"tpm2_quote", "-T", swtpm_.tcti(), "-c", ctx, "-l",
                            "sha256:10,16+sha1:10", "-q", to_hex(nonce), "-m",
                            (tools / "quote.msg").string(), "-s", (tools / "quote.sig").string(),
                            "-o", (tools / "quote.pcrs").string(), "-g", "sha256"});
  ToolResult pem = run_tool({"tpm2_readpublic", "-T", swtpm_.tcti(), "-c", ctx, "-f", "pem", "-o",
                             (tools / "ak.pub.pem").string()});
  ToolResult flush = run_tool({"tpm2_flushcontext", "-T", swtpm_.tcti(), "-t"});
  ASSERT_EQ(tq.rc, 0) << tq.output;
  ASSERT_EQ(pem.rc, 0) << pem.output;
  ASSERT_EQ(flush.rc, 0) << flush.output;

  EXPECT_EQ(to_hex(read_file(tools / "quote.pcrs")), to_hex(q->pcrs));
  // Same template, same seed: tpm2-tools derived the very same key.
  EXPECT_EQ(to_hex(read_file(tools / "ak.pub.pem")), to_hex(bytes(q->ak_public_pem)));
  // So our PEM verifies tpm2_quote's quote, and tpm2_checkquote takes our pcrs for it.
  ToolResult cross =
      run_tool({"tpm2_checkquote", "-u", (dir_ / kQuoteAkPemFile).string(), "-m",
                (tools / "quote.msg").string(), "-s", (tools / "quote.sig").string(), "-f",
                (dir_ / kQuotePcrsFile).string(), "-g", "sha256", "-q", to_hex(nonce)});
  EXPECT_EQ(cross.rc, 0) << cross.output;
}

TEST_P(QuoteTest, AttestationKeyIsDeterministic) {
  auto pem1 = tpm_->attestation_key_pem();
  ASSERT_TRUE(pem1) << pem1.error().to_string();
  EXPECT_EQ(pem1->rfind("-----BEGIN PUBLIC KEY-----", 0), 0u) << *pem1;

  auto second = EsysTpm::open(swtpm_.tcti(), opts_);
  ASSERT_TRUE(second);
  auto pem2 = (*second)->attestation_key_pem();
  ASSERT_TRUE(pem2);
  EXPECT_EQ(*pem1, *pem2);

  // Same TPM state after a restart: same key (re-created, nothing stored).
  std::string err;
  ASSERT_TRUE(swtpm_.restart(&err)) << err;
  auto q = tpm_->quote({{Bank::kSha256, {10}}}, {1, 2, 3});
  ASSERT_TRUE(q) << q.error().to_string();
  EXPECT_EQ(q->ak_public_pem, *pem1);

  // Another TPM: another key.
  SwtpmProcess other;
  ASSERT_TRUE(other.start(&err)) << err;
  auto t3 = EsysTpm::open(other.tcti(), opts_);
  ASSERT_TRUE(t3);
  auto pem3 = (*t3)->attestation_key_pem();
  ASSERT_TRUE(pem3);
  EXPECT_NE(*pem1, *pem3);
}

TEST_P(QuoteTest, LeavesNoTransientObjectLoaded) {
  for (int i = 0; i < 4; ++i) {
    auto q = tpm_->quote({{Bank::kSha256, {10}}}, random_nonce());
    ASSERT_TRUE(q) << q.error().to_string();
  }
  ASSERT_TRUE(tpm_->attestation_key_pem());
  EXPECT_EQ(transient_handles(swtpm_.tcti()).find("0x80"), std::string::npos)
      << transient_handles(swtpm_.tcti());
}

TEST_P(QuoteTest, RecoversWhenAnotherClientFilledTheObjectSlots) {
  // tpm2-tools without a resource manager leaves every object it creates loaded.
  for (int i = 0; i < 3; ++i) {
    ToolResult r =
        run_tool({"tpm2_createprimary", "-T", swtpm_.tcti(), "-C", "o", "-c",
                  (swtpm_.dir() / ("leak" + std::to_string(i) + ".ctx")).string(), "-Q"});
    ASSERT_EQ(r.rc, 0) << r.output;
  }
  ASSERT_NE(transient_handles(swtpm_.tcti()).find("0x80"), std::string::npos);
  const auto nonce = random_nonce();
  auto q = tpm_->quote({{Bank::kSha256, {10}}}, nonce);
  ASSERT_TRUE(q) << q.error().to_string();
  ASSERT_TRUE(write_quote_files(*q, dir_));
  ToolResult ok = checkquote(dir_, to_hex(nonce));
  EXPECT_EQ(ok.rc, 0) << ok.output;
  EXPECT_EQ(transient_handles(swtpm_.tcti()).find("0x80"), std::string::npos);
}

TEST_P(QuoteTest, QuotesStayValidWhilePcrsChange) {
  // Another TPM client extends the quoted PCR all the time; a quote whose values were read after
  // a change is detected (composite mismatch) and taken again.
  opts_.quote_attempts = 20;
  auto quoter = EsysTpm::open(swtpm_.tcti(), opts_);
  ASSERT_TRUE(quoter);
  std::atomic<bool> stop{false};
  std::atomic<int> extends{0};
  std::thread extender([&] {
    const auto d = event("busy");
    while (!stop) {
      if (tpm_->extend(16, d)) ++extends;
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  });
  int verified = 0;
  for (int i = 0; i < 5; ++i) {
    const auto nonce = random_nonce();
    auto q = (*quoter)->quote({{Bank::kSha256, {16}}}, nonce);
    if (!q) {
      ADD_FAILURE() << q.error().to_string();
      continue;
    }
    auto dir = dir_ / std::to_string(i);
    ASSERT_TRUE(write_quote_files(*q, dir));
    ToolResult ok = checkquote(dir, to_hex(nonce));
    EXPECT_EQ(ok.rc, 0) << ok.output;
    verified += ok.rc == 0;
  }
  stop = true;
  extender.join();
  EXPECT_EQ(verified, 5);
  EXPECT_GT(extends.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Ak, QuoteTest,
                         ::testing::Values(AkAlgorithm::kEccP256, AkAlgorithm::kRsa2048),
                         [](const auto& info) {
                           return info.param == AkAlgorithm::kEccP256 ? "EccP256" : "Rsa2048";
                         });

TEST(QuoteErrors, BadRequestsAreRefusedBeforeTheTpm) {
  SwtpmProcess swtpm;
  std::string err;
  ASSERT_TRUE(swtpm.start(&err)) << err;
  auto tpm = EsysTpm::open(swtpm.tcti());
  ASSERT_TRUE(tpm);
  auto r = (*tpm)->quote({{Bank::kSha256, {10}}}, std::vector<uint8_t>(65, 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  r = (*tpm)->quote({}, {1});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("empty"), std::string::npos);
  r = (*tpm)->quote({{Bank::kSm3_256, {10}}}, {1});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not allocated"), std::string::npos) << r.error().message;
  r = (*tpm)->quote({{Bank::kSha256, {24}}}, {1});
  ASSERT_FALSE(r);
  EXPECT_TRUE((*tpm)->connected());

  Quote empty;
  auto w = write_quote_files(empty, swtpm.dir() / "q");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, EINVAL);
}

TEST(QuoteErrors, WrongHierarchyPasswordIsExplained) {
  SwtpmProcess swtpm;
  std::string err;
  ASSERT_TRUE(swtpm.start(&err)) << err;
  EsysTpmOptions o;
  o.hierarchy_auth = "not-the-password";
  auto tpm = EsysTpm::open(swtpm.tcti(), o);
  ASSERT_TRUE(tpm);
  auto r = (*tpm)->quote({{Bank::kSha256, {10}}}, {1});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EREMOTEIO);
  EXPECT_NE(r.error().message.find("Esys_CreatePrimary(0x"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("password"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace nsima::tpm

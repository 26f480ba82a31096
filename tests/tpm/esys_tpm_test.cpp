// SPDX-License-Identifier: Apache-2.0
// EsysTpm against a real swtpm per test: extends in every bank checked against OpenSSL and against
// tpm2_pcrread, IMA violation extends (0xFF), argument validation, concurrency, TCTI variants,
// and the failure paths (bad TCTI strings, swtpm killed under us, reconnect).
#include "tpm/esys_tpm.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <thread>

#include "swtpm_fixture.h"
#include "tpm_test_util.h"

namespace nsima::tpm {
namespace {

using nsima::testing::bytes;
using nsima::testing::ossl_extend;
using nsima::testing::ossl_hash;
using nsima::testing::SwtpmProcess;

const std::vector<Bank> kSwtpmBanks = {Bank::kSha1, Bank::kSha256, Bank::kSha384, Bank::kSha512};

// IMA-style digests of one event: H_B(data) for every bank.
std::vector<BankDigest> event_digests(const std::vector<Bank>& banks, const std::string& data) {
  std::vector<BankDigest> out;
  for (Bank b : banks) out.push_back({b, ossl_hash(b, bytes(data))});
  return out;
}

class EsysTpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(swtpm_.start(&err)) << err;
    auto t = EsysTpm::open(swtpm_.tcti());
    ASSERT_TRUE(t) << t.error().to_string();
    tpm_ = std::move(*t);
  }

  // Expected values, modelled with OpenSSL from the all-zero reset value.
  std::vector<uint8_t>& model(Bank b, int pcr) {
    auto& v = model_[b][pcr];
    if (v.empty()) v.assign(bank_digest_size(b), 0);
    return v;
  }
  void extend_both(int pcr, const std::vector<BankDigest>& d) {
    auto r = tpm_->extend(pcr, d);
    ASSERT_TRUE(r) << r.error().to_string();
    for (const auto& bd : d)
      model(bd.bank, pcr) = ossl_extend(bd.bank, model(bd.bank, pcr), bd.digest);
  }

  SwtpmProcess swtpm_;
  std::unique_ptr<EsysTpm> tpm_;
  std::map<Bank, std::map<int, std::vector<uint8_t>>> model_;
};

TEST_F(EsysTpmTest, ReportsTheFourSwtpmBanks) {
  auto banks = tpm_->banks();
  ASSERT_TRUE(banks) << banks.error().to_string();
  EXPECT_EQ(*banks, kSwtpmBanks);
  for (Bank b : *banks) EXPECT_TRUE(bank_supported(b)) << bank_name(b);
  EXPECT_EQ(tpm_->describe(), swtpm_.tcti());
}

TEST_F(EsysTpmTest, ExtendsEveryBankLikeOpenSslAndTpm2Pcrread) {
  const std::vector<int> pcrs = {10, 11, 16, 23};
  for (int i = 0; i < 20; ++i) {
    const int pcr = pcrs[static_cast<size_t>(i) % pcrs.size()];
    extend_both(pcr, event_digests(kSwtpmBanks, "event-" + std::to_string(i)));
  }
  // Through our own read path...
  for (Bank b : kSwtpmBanks) {
    auto values = tpm_->read_pcrs(b, pcrs);
    ASSERT_TRUE(values) << values.error().to_string();
    for (int pcr : pcrs) {
      EXPECT_EQ(to_hex((*values)[pcr]), to_hex(model(b, pcr))) << bank_name(b) << ":" << pcr;
      auto one = tpm_->read_pcr(pcr, b);
      ASSERT_TRUE(one);
      EXPECT_EQ(*one, (*values)[pcr]);
    }
  }
  // ...and through tpm2-tools, a different TSS client.
  auto tools = nsima::testing::tpm2_pcrread(
      swtpm_.tcti(), "sha1:10,11,16,23+sha256:10,11,16,23+sha384:10,11,16,23+sha512:10,11,16,23");
  for (Bank b : kSwtpmBanks) {
    for (int pcr : pcrs) {
      EXPECT_EQ(to_hex(tools[bank_name(b)][pcr]), to_hex(model(b, pcr)))
          << "tpm2_pcrread " << bank_name(b) << ":" << pcr;
    }
  }
  // Untouched PCRs stay at their reset value.
  auto untouched = tpm_->read_pcr(12, Bank::kSha256);
  ASSERT_TRUE(untouched);
  EXPECT_EQ(*untouched, std::vector<uint8_t>(32, 0));
}

TEST_F(EsysTpmTest, DigestOrderDoesNotMatter) {
  auto d = event_digests(kSwtpmBanks, "x");
  std::reverse(d.begin(), d.end());
  extend_both(14, d);
  auto v = tpm_->read_pcr(14, Bank::kSha384);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, model(Bank::kSha384, 14));
}

TEST_F(EsysTpmTest, ViolationExtendsAllOnesInEveryBank) {
  extend_both(10, event_digests(kSwtpmBanks, "before"));
  auto ff = violation_digests(kSwtpmBanks);
  ASSERT_TRUE(ff);
  for (const auto& d : *ff) {
    EXPECT_EQ(d.digest, std::vector<uint8_t>(bank_digest_size(d.bank), 0xff)) << bank_name(d.bank);
  }
  extend_both(10, *ff);
  extend_both(10, event_digests(kSwtpmBanks, "after"));
  auto tools = nsima::testing::tpm2_pcrread(swtpm_.tcti(), "sha1:10+sha256:10+sha384:10+sha512:10");
  for (Bank b : kSwtpmBanks) {
    auto v = tpm_->read_pcr(10, b);
    ASSERT_TRUE(v);
    EXPECT_EQ(to_hex(*v), to_hex(model(b, 10))) << bank_name(b);
    EXPECT_EQ(to_hex(tools[bank_name(b)][10]), to_hex(model(b, 10))) << bank_name(b);
  }
  EXPECT_FALSE(violation_digests({static_cast<Bank>(0x7777)}));
}

TEST_F(EsysTpmTest, RejectsBadExtendsWithoutTouchingThePcr) {
  auto before = tpm_->read_pcr(10, Bank::kSha256);
  ASSERT_TRUE(before);
  auto good = event_digests(kSwtpmBanks, "e");

  auto missing = good;
  missing.pop_back();  // no sha512
  auto r = tpm_->extend(10, missing);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_NE(r.error().message.find("sha512"), std::string::npos) << r.error().message;

  auto dup = good;
  dup.push_back(good[0]);
  r = tpm_->extend(10, dup);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("two digests"), std::string::npos) << r.error().message;

  auto short_digest = good;
  short_digest[1].digest.resize(20);
  r = tpm_->extend(10, short_digest);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("expected 32"), std::string::npos) << r.error().message;

  auto unknown = good;
  unknown.push_back({Bank::kSha3_256, std::vector<uint8_t>(32, 1)});
  r = tpm_->extend(10, unknown);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("sha3_256 is not allocated"), std::string::npos);

  for (int pcr : {-1, 32, 100}) {
    r = tpm_->extend(pcr, good);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EINVAL);
  }
  EXPECT_FALSE(tpm_->read_pcr(24, Bank::kSha256));   // swtpm has PCRs 0..23
  EXPECT_FALSE(tpm_->read_pcr(10, Bank::kSm3_256));  // not allocated on swtpm
  EXPECT_FALSE(tpm_->read_pcrs(Bank::kSha256, {}));

  auto after = tpm_->read_pcr(10, Bank::kSha256);
  ASSERT_TRUE(after);
  EXPECT_EQ(*after, *before);
  EXPECT_TRUE(tpm_->connected());  // argument errors never cost the connection
}

TEST_F(EsysTpmTest, TpmRefusalKeepsTheConnection) {
  // PCRs 17-22 belong to the DRTM: a TPM refuses extends from locality 0 (TPM_RC_LOCALITY).
  auto r = tpm_->extend(17, event_digests(kSwtpmBanks, "drtm"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EREMOTEIO) << r.error().to_string();
  EXPECT_NE(r.error().message.find("Esys_PCR_Extend(0x"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("locality"), std::string::npos) << r.error().message;
  EXPECT_TRUE(tpm_->connected());
  // The default host PCR, 23, takes extends from locality 0.
  extend_both(23, event_digests(kSwtpmBanks, "host"));
  auto v = tpm_->read_pcr(23, Bank::kSha256);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, model(Bank::kSha256, 23));
}

TEST_F(EsysTpmTest, ReadsAllTwentyFourPcrsAcrossSeveralTpmReads) {
  // TPM2_PCR_Read returns at most 8 digests per call: 24 PCRs need three.
  extend_both(0, event_digests(kSwtpmBanks, "pcr0"));
  extend_both(23, event_digests(kSwtpmBanks, "pcr23"));
  std::vector<int> all;
  for (int i = 0; i < 24; ++i) all.push_back(i);
  auto v = tpm_->read_pcrs(Bank::kSha512, all);
  ASSERT_TRUE(v) << v.error().to_string();
  ASSERT_EQ(v->size(), 24u);
  auto tools = nsima::testing::tpm2_pcrread(swtpm_.tcti(), "sha512:all");
  for (int i = 0; i < 24; ++i) {
    EXPECT_EQ(to_hex((*v)[i]), to_hex(tools["sha512"][i])) << i;
  }
  EXPECT_EQ((*v)[0], model(Bank::kSha512, 0));
  EXPECT_EQ((*v)[23], model(Bank::kSha512, 23));
  // PCRs 17-22 reset to all ones (TCG PC Client: DRTM PCRs), the others to zero.
  EXPECT_EQ((*v)[17], std::vector<uint8_t>(64, 0xff));
}

TEST_F(EsysTpmTest, ConcurrentExtendsFromManyThreadsAreSerialised) {
  constexpr int kThreads = 4, kPerThread = 50;
  const auto d = event_digests(kSwtpmBanks, "same event");
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!tpm_->extend(13, d)) ++failures;
        if (!tpm_->read_pcr(13, Bank::kSha1)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  // Identical digests make the final value independent of the interleaving.
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    for (const auto& bd : d)
      model(bd.bank, 13) = ossl_extend(bd.bank, model(bd.bank, 13), bd.digest);
  }
  for (Bank b : kSwtpmBanks) {
    auto v = tpm_->read_pcr(13, b);
    ASSERT_TRUE(v);
    EXPECT_EQ(*v, model(b, 13)) << bank_name(b);
  }
}

TEST(EsysTpmOpen, BadTctiStringsFailClearly) {
  auto r = EsysTpm::open("nosuchtcti:whatever");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("Tss2_TctiLdr_Initialize(0x"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(r.error().where, "nosuchtcti:whatever");

  r = EsysTpm::open("swtpm:path=/nonexistent/nsima/sock");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find(" - "), std::string::npos) << r.error().message;  // decoded

  r = EsysTpm::open("device:/nonexistent/tpmrm9");
  ASSERT_FALSE(r);

  EsysTpmOptions long_auth;
  long_auth.hierarchy_auth.assign(65, 'x');
  r = EsysTpm::open("swtpm:path=/nonexistent", long_auth);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
}

TEST(EsysTpmOpen, WorksOverTcp) {
  SwtpmProcess::Options o;
  o.transport = SwtpmProcess::Transport::kTcp;
  SwtpmProcess swtpm(o);
  std::string err;
  ASSERT_TRUE(swtpm.start(&err)) << err;
  ASSERT_NE(swtpm.tcti().find("swtpm:host=127.0.0.1,port="), std::string::npos);
  auto tpm = EsysTpm::open(swtpm.tcti());
  ASSERT_TRUE(tpm) << tpm.error().to_string();
  auto d = event_digests(kSwtpmBanks, "tcp");
  ASSERT_TRUE((*tpm)->extend(15, d));
  auto v = (*tpm)->read_pcr(15, Bank::kSha256);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, ossl_extend(Bank::kSha256, std::vector<uint8_t>(32, 0), d[1].digest));
}

TEST(EsysTpmOpen, StartsATpmThatWasNeverStarted) {
  // Without startup-clear (and without saved volatile state) swtpm waits for TPM2_Startup, as a
  // TPM does before the firmware runs; every other command returns TPM_RC_INITIALIZE.
  SwtpmProcess::Options o;
  o.startup_clear = false;
  SwtpmProcess swtpm(o);
  std::string err;
  ASSERT_TRUE(swtpm.start(&err)) << err;
  auto before = nsima::testing::run_tool({"tpm2_pcrread", "-T", swtpm.tcti(), "sha256:0"});
  EXPECT_NE(before.rc, 0) << before.output;

  auto tpm = EsysTpm::open(swtpm.tcti());
  ASSERT_TRUE(tpm) << tpm.error().to_string();
  ASSERT_TRUE((*tpm)->extend(16, event_digests(kSwtpmBanks, "started")));
  auto after = nsima::testing::run_tool({"tpm2_pcrread", "-T", swtpm.tcti(), "sha256:16"});
  EXPECT_EQ(after.rc, 0) << after.output;
}

TEST_F(EsysTpmTest, SwtpmKilledMidwayGivesAClearErrorThenReconnects) {
  const auto d = event_digests(kSwtpmBanks, "e1");
  extend_both(10, d);
  swtpm_.kill_hard();

  auto r = tpm_->extend(10, d);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO) << r.error().to_string();
  EXPECT_NE(r.error().message.find("(0x"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(" - "), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().where, swtpm_.tcti());
  EXPECT_FALSE(tpm_->connected());

  auto rd = tpm_->read_pcr(10, Bank::kSha256);  // reconnect attempt fails too, cleanly
  ASSERT_FALSE(rd);
  EXPECT_FALSE(tpm_->banks());
  EXPECT_FALSE(tpm_->quote({{Bank::kSha256, {10}}}, {1, 2, 3}));

  // A new swtpm on the same socket and state: volatile state (PCRs) is gone, the TPM is back.
  std::string err;
  ASSERT_TRUE(swtpm_.start(&err)) << err;
  auto v = tpm_->read_pcr(10, Bank::kSha256);
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(*v, std::vector<uint8_t>(32, 0));
  EXPECT_TRUE(tpm_->connected());
  EXPECT_TRUE(tpm_->extend(10, d));
}

}  // namespace
}  // namespace nsima::tpm

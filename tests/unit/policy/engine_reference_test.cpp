// SPDX-License-Identifier: Apache-2.0
// Differential test of the engine's indexed walk (per-func lists, hashed quick keys, 8-rule
// blocks) against a plain transcription of ima_match_policy() over the parsed Rules, on random
// policies and accesses drawn from small value sets so that rules match, collide and shadow each
// other often. Deterministic: fixed seeds.
#include <gtest/gtest.h>

#include <random>

#include "nsima/bpf_abi.h"
#include "policy_test_util.h"

namespace nsima::policy {
namespace {

uint32_t action_bit(Action a) {
  switch (a) {
    case Action::kMeasure:
      return 0x1;
    case Action::kDontMeasure:
      return 0x2;
    case Action::kAppraise:
      return 0x4;
    case Action::kDontAppraise:
      return 0x8;
    case Action::kAudit:
      return 0x40;
    case Action::kHash:
      return 0x100;
    case Action::kDontHash:
      return 0x200;
  }
  return 0;
}

// ima_match_policy() read straight off the kernel source, rule by rule, no index.
Decision reference(const Policy& p, const Access& a) {
  Decision d;
  uint32_t requested = 0;
  for (const Rule& r : p.rules())
    if (r.func != Func::kSetxattrCheck) requested |= action_bit(r.action) & 0x145;
  uint32_t actmask = requested | requested << 1;
  bool data_func = a.func == Func::kKeyCheck || a.func == Func::kCriticalData;
  for (size_t i = 0; i < p.size() && actmask; ++i) {
    const Rule& r = p.rule(i);
    uint32_t bit = action_bit(r.action);
    if (!(bit & actmask)) continue;
    if (r.func != Func::kNone && r.func != a.func) continue;
    if (data_func) {
      if (r.func != a.func) continue;
      if (r.keyrings || r.labels) continue;
      if (r.uid.set) {
        d.cred_dependent = true;
        if (!r.uid.matches(a.uid)) continue;
      }
    } else {
      if (r.mask && (r.mask_inclusive ? !(r.mask & a.mask) : r.mask != a.mask)) continue;
      if (r.fsmagic && *r.fsmagic != a.fsmagic) continue;
      if (r.fsname && *r.fsname != a.fsname) continue;
      if (r.fsuuid && *r.fsuuid != a.fsuuid) continue;
      if (r.fowner.set && !r.fowner.matches(a.fowner)) continue;
      if (r.fgroup.set && !r.fgroup.matches(a.fgroup)) continue;
      if (r.uid.set || r.gid.set) {
        d.cred_dependent = true;
        if (r.uid.set) {
          bool ok = r.uid.effective
                        ? r.uid.matches(a.euid) ||
                              (a.cap_setuid && (r.uid.matches(a.suid) || r.uid.matches(a.uid)))
                        : r.uid.matches(a.uid);
          if (!ok) continue;
        }
        if (r.gid.set) {
          bool ok = r.gid.effective
                        ? r.gid.matches(a.egid) ||
                              (a.cap_setgid && (r.gid.matches(a.sgid) || r.gid.matches(a.gid)))
                        : r.gid.matches(a.gid);
          if (!ok) continue;
        }
      }
    }
    int idx = static_cast<int>(i);
    d.digsig_required |= r.digsig_required;
    d.permit_directio |= r.permit_directio;
    d.modsig_allowed |= r.modsig_allowed;
    d.verity_required |= r.verity_required;
    switch (r.action) {
      case Action::kMeasure:
        d.measure = true;
        d.measure_rule = idx;
        break;
      case Action::kDontMeasure:
        d.measure_rule = idx;
        break;
      case Action::kAppraise:
        d.appraise = true;
        d.hash = false;
        d.appraise_rule = idx;
        if (r.appraise_algos) {
          d.appraise_algos_mask = r.appraise_algos;
          d.appraise_algos = r.appraise_algo_names();
        }
        break;
      case Action::kDontAppraise:
        d.appraise_rule = idx;
        break;
      case Action::kAudit:
        d.audit = true;
        d.audit_rule = idx;
        break;
      case Action::kHash:
        d.hash = true;
        d.hash_rule = idx;
        break;
      case Action::kDontHash:
        d.hash_rule = idx;
        break;
    }
    if (bit & 0x145)
      actmask &= ~(bit | bit << 1);
    else
      actmask &= ~(bit | bit >> 1);
    if (r.pcr) d.pcr = *r.pcr;
    if (!r.template_name.empty()) d.template_name = r.template_name;
  }
  return d;
}

void expect_same(const Decision& got, const Decision& want, const std::string& ctx) {
  EXPECT_EQ(got.measure, want.measure) << ctx;
  EXPECT_EQ(got.appraise, want.appraise) << ctx;
  EXPECT_EQ(got.audit, want.audit) << ctx;
  EXPECT_EQ(got.hash, want.hash) << ctx;
  EXPECT_EQ(got.pcr, want.pcr) << ctx;
  EXPECT_EQ(got.template_name, want.template_name) << ctx;
  EXPECT_EQ(got.digsig_required, want.digsig_required) << ctx;
  EXPECT_EQ(got.permit_directio, want.permit_directio) << ctx;
  EXPECT_EQ(got.modsig_allowed, want.modsig_allowed) << ctx;
  EXPECT_EQ(got.verity_required, want.verity_required) << ctx;
  EXPECT_EQ(got.appraise_algos, want.appraise_algos) << ctx;
  EXPECT_EQ(got.appraise_algos_mask, want.appraise_algos_mask) << ctx;
  EXPECT_EQ(got.measure_rule, want.measure_rule) << ctx;
  EXPECT_EQ(got.appraise_rule, want.appraise_rule) << ctx;
  EXPECT_EQ(got.audit_rule, want.audit_rule) << ctx;
  EXPECT_EQ(got.hash_rule, want.hash_rule) << ctx;
  EXPECT_EQ(got.cred_dependent, want.cred_dependent) << ctx;
}

class Gen {
 public:
  explicit Gen(uint32_t seed) : rng_(seed) {}
  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool coin(int percent) { return pick(100) < static_cast<size_t>(percent); }

  std::string rule() {
    static const char* kActions[] = {"measure", "dont_measure", "appraise", "dont_appraise",
                                     "audit",   "hash",         "dont_hash"};
    static const char* kFuncs[] = {"FILE_CHECK", "MMAP_CHECK",   "MMAP_CHECK_REQPROT",
                                   "BPRM_CHECK", "CREDS_CHECK",  "MODULE_CHECK",
                                   "KEY_CHECK",  "CRITICAL_DATA"};
    static const char* kMasks[] = {"MAY_EXEC", "MAY_WRITE", "MAY_READ", "MAY_APPEND"};
    static const char* kOps[] = {"=", "<", ">"};
    std::string action = kActions[pick(7)];
    std::string s = action;
    std::string func = coin(60) ? kFuncs[pick(8)] : "";
    bool data = func == "KEY_CHECK" || func == "CRITICAL_DATA";
    if (data) {
      s = coin(50) ? "measure" : "dont_measure";
      s += " func=" + func;
      if (coin(40)) s += " uid" + std::string(kOps[pick(3)]) + std::to_string(pick(3));
      if (coin(20)) s += func == "KEY_CHECK" ? " keyrings=.ima" : " label=selinux";
      if (s.starts_with("measure") && coin(30)) s += " pcr=" + std::to_string(pick(24));
      return s;
    }
    if (!func.empty()) s += " func=" + func;
    if (coin(30)) s += std::string(" mask=") + (coin(50) ? "^" : "") + kMasks[pick(4)];
    if (coin(30)) s += " fsmagic=" + std::to_string(pick(3));
    if (coin(20)) s += " fsname=fs" + std::to_string(pick(3));
    if (coin(10)) s += " fsuuid=00000000-0000-0000-0000-00000000000" + std::to_string(pick(2));
    if (coin(25))
      s += std::string(coin(50) ? " uid" : " euid") + kOps[pick(3)] + std::to_string(pick(3));
    if (coin(20))
      s += std::string(coin(50) ? " gid" : " egid") + kOps[pick(3)] + std::to_string(pick(3));
    if (coin(20)) s += std::string(" fowner") + kOps[pick(3)] + std::to_string(pick(3));
    if (coin(20)) s += std::string(" fgroup") + kOps[pick(3)] + std::to_string(pick(3));
    if (coin(15)) s += " permit_directio";
    if (action == "measure") {
      if (coin(30)) s += " pcr=" + std::to_string(pick(24));
      if (coin(30)) s += std::string(" template=") + (coin(50) ? "ima-sig" : "ima-ng");
      if (coin(10) && func != "MODULE_CHECK") s += " digest_type=verity";
    }
    if (action == "appraise") {
      if (coin(10) && func != "MODULE_CHECK")
        s += " digest_type=verity appraise_type=sigv3";
      else if (coin(40))
        s += func == "MODULE_CHECK" && coin(50) ? " appraise_type=imasig|modsig"
                                                : " appraise_type=imasig";
      if (coin(30)) s += coin(50) ? " appraise_algos=sha256" : " appraise_algos=sha1,sha512";
    }
    return s;
  }

  Access access() {
    static const Func kFuncs[] = {Func::kFileCheck,     Func::kMmapCheck,  Func::kMmapCheckReqprot,
                                  Func::kBprmCheck,     Func::kCredsCheck, Func::kModuleCheck,
                                  Func::kFirmwareCheck, Func::kKeyCheck,   Func::kCriticalData};
    Access a;
    a.func = kFuncs[pick(9)];
    a.mask = static_cast<uint32_t>(pick(16));
    a.uid = static_cast<uint32_t>(pick(3));
    a.euid = static_cast<uint32_t>(pick(3));
    a.suid = static_cast<uint32_t>(pick(3));
    a.gid = static_cast<uint32_t>(pick(3));
    a.egid = static_cast<uint32_t>(pick(3));
    a.sgid = static_cast<uint32_t>(pick(3));
    a.cap_setuid = coin(30);
    a.cap_setgid = coin(30);
    a.fowner = static_cast<uint32_t>(pick(3));
    a.fgroup = static_cast<uint32_t>(pick(3));
    a.fsmagic = pick(3);
    a.fsname = "fs" + std::to_string(pick(3));
    a.fsuuid[15] = static_cast<uint8_t>(pick(2));
    return a;
  }

 private:
  std::mt19937 rng_;
};

TEST(EngineReference, RandomPoliciesAgreeWithPlainWalk) {
  Gen g(20240611);
  int compared = 0;
  for (int round = 0; round < 300; ++round) {
    std::string text;
    size_t n = 1 + g.pick(40);
    for (size_t i = 0; i < n; ++i) text += g.rule() + "\n";
    auto p = Policy::parse(text, "rand");
    ASSERT_TRUE(p) << p.error().to_string() << "\n" << text;
    Decision reused;
    for (int k = 0; k < 60; ++k) {
      Access a = g.access();
      Decision want = reference(*p, a);
      std::string ctx = "round " + std::to_string(round) + " func " +
                        std::string(func_name(a.func)) + "\n" + text;
      expect_same(p->evaluate(a), want, ctx);
      p->evaluate_into(a, reused);
      expect_same(reused, want, ctx);
      ++compared;
      if (::testing::Test::HasFailure()) return;
    }
  }
  EXPECT_EQ(compared, 300 * 60);
}

TEST(EngineReference, LongPolicyCrossesManyBlocks) {
  // 1,000 rules: every block boundary and the padding of the last block get exercised.
  Gen g(7);
  std::string text;
  for (int i = 0; i < 1000; ++i) text += g.rule() + "\n";
  auto p = Policy::parse(text, "long");
  ASSERT_TRUE(p) << p.error().to_string();
  for (int k = 0; k < 2000; ++k) {
    Access a = g.access();
    expect_same(p->evaluate(a), reference(*p, a), "access " + std::to_string(k));
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace
}  // namespace nsima::policy

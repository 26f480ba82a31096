// SPDX-License-Identifier: Apache-2.0
// Policy engine speed: evaluation of a 200-rule policy (target >= 5M evaluations/s on one core)
// and loading of a 10,000-rule policy (target < 50 ms). Run: build-*/tests/bench/bench_policy.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "nsima/bpf_abi.h"
#include "policy/policy.h"

namespace nsima::policy {
namespace {

// 200 rules: the kernel tcb list (20) followed by 180 rules of the shapes a site policy has
// (filesystems skipped by name, owner- and group-scoped measure/appraise rules, a uid range).
std::string policy_200() {
  std::string text(builtin_text("tcb"));
  for (int i = 0; i < 60; ++i) {
    text += "dont_measure fsname=fs" + std::to_string(i) + "\n";
    text += "measure func=FILE_CHECK mask=MAY_WRITE fowner=" + std::to_string(2000 + i) + "\n";
    text +=
        "appraise func=BPRM_CHECK fgroup=" + std::to_string(3000 + i) + " appraise_type=imasig\n";
  }
  return text;
}

// 200 rules without func= that never match the accesses below: every evaluation walks them all.
std::string policy_200_worst() {
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "measure fsname=nomatch" + std::to_string(i) + " uid>" + std::to_string(i) + "\n";
  return text;
}

std::vector<Access> accesses() {
  auto make = [](Func f, uint32_t mask, uint32_t uid, uint32_t fowner) {
    Access a;
    a.func = f;
    a.mask = mask;
    a.uid = a.euid = a.suid = a.gid = a.egid = a.sgid = uid;
    a.fowner = fowner;
    a.fgroup = fowner;
    a.fsmagic = 0x794c7630;  // overlayfs
    a.fsname = "overlay";
    return a;
  };
  return {
      make(Func::kBprmCheck, NSIMA_MAY_EXEC, 1000, 0),
      make(Func::kMmapCheck, NSIMA_MAY_EXEC, 1000, 0),
      make(Func::kFileCheck, NSIMA_MAY_READ, 0, 0),
      make(Func::kFileCheck, NSIMA_MAY_READ, 1000, 1000),
      make(Func::kFileCheck, NSIMA_MAY_WRITE | NSIMA_MAY_READ, 1000, 1000),
      make(Func::kCredsCheck, NSIMA_MAY_EXEC, 1000, 0),
      make(Func::kMmapCheckReqprot, NSIMA_MAY_EXEC, 1000, 0),
      make(Func::kFileCheck, NSIMA_MAY_WRITE, 1000, 2059),
  };
}

void run_eval(benchmark::State& state, const std::string& text) {
  auto policy = Policy::parse(text, "bench");
  if (!policy) {
    state.SkipWithError(policy.error().to_string().c_str());
    return;
  }
  if (policy->size() != 200) state.SkipWithError("policy is not 200 rules");
  auto as = accesses();
  Decision d;
  size_t i = 0;
  for (auto _ : state) {
    policy->evaluate_into(as[i++ & 7], d);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Evaluate200Rules(benchmark::State& state) { run_eval(state, policy_200()); }
BENCHMARK(BM_Evaluate200Rules);

void BM_Evaluate200RulesWorstCase(benchmark::State& state) { run_eval(state, policy_200_worst()); }
BENCHMARK(BM_Evaluate200RulesWorstCase);

// evaluate() returning a fresh Decision (what most callers will write).
void BM_Evaluate200RulesByValue(benchmark::State& state) {
  auto policy = Policy::parse(policy_200(), "bench");
  auto as = accesses();
  size_t i = 0;
  for (auto _ : state) {
    Decision d = policy->evaluate(as[i++ & 7]);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Evaluate200RulesByValue);

void BM_Load10000Rules(benchmark::State& state) {
  std::string text;
  for (int i = 0; i < 2000; ++i) {
    std::string n = std::to_string(i);
    text += "# block " + n + "\n";
    text += "dont_measure fsmagic=0x" + n + "abc\n";
    text += "measure func=FILE_CHECK mask=^MAY_READ euid>" + n + " template=ima-sig pcr=11\n";
    text +=
        "appraise func=BPRM_CHECK fowner=" + n + " appraise_type=imasig appraise_algos=sha256\n";
    text += "dont_appraise fsname=fs" + n + " fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6\n";
    text += "audit func=MMAP_CHECK mask=MAY_EXEC fgroup<" + n + "\n";
  }
  for (auto _ : state) {
    auto policy = Policy::parse(text, "bench");
    if (!policy || policy->size() != 10000) state.SkipWithError("policy did not load");
    benchmark::DoNotOptimize(policy);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_Load10000Rules)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace nsima::policy

BENCHMARK_MAIN();

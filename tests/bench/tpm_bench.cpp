// SPDX-License-Identifier: Apache-2.0
// TPM throughput: PCR extends per second through nsima's EsysTpm against a bare tpm2-tss
// Esys_PCR_Extend loop, both on the same swtpm (Unix socket), both extending all four banks with
// the same prepared digests. Goal: EsysTpm >= 0.9x the raw loop, i.e. nsima's validation, locking
// and reconnect bookkeeping cost under 10% of a TPM round trip.
//
// The host is shared, so besides the two plain benchmarks an interleaved one alternates short
// batches of both and times each side separately; load from other processes then hits both sides
// alike. The ratio printed at the end is taken from the interleaved run.
//
//   bench_tpm [--benchmark_min_time=2]
#include <benchmark/benchmark.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "../tpm/swtpm_fixture.h"
#include "tpm/esys.h"
#include "tpm/esys_tpm.h"

namespace {

using nsima::tpm::Bank;
using nsima::tpm::BankDigest;

constexpr int kPcr = 16;
const Bank kBanks[] = {Bank::kSha1, Bank::kSha256, Bank::kSha384, Bank::kSha512};

struct Fixture {
  nsima::testing::SwtpmProcess swtpm;
  std::unique_ptr<nsima::tpm::EsysTpm> tpm;
  std::optional<nsima::tpm::EsysConnection> raw;  // a separate, plain ESYS context
  std::vector<BankDigest> digests;
  TPML_DIGEST_VALUES raw_values{};
};
Fixture* g = nullptr;

// The raw side: what a minimal C program does (validators.md §2.3's pcrbench).
bool raw_extend() {
  return Esys_PCR_Extend(g->raw->get(), ESYS_TR_PCR0 + kPcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                         ESYS_TR_NONE, &g->raw_values) == TSS2_RC_SUCCESS;
}

bool nsima_extend() { return g->tpm->extend(kPcr, g->digests).has_value(); }

void BM_RawEsysExtend(benchmark::State& state) {
  for (auto _ : state) {
    if (!raw_extend()) state.SkipWithError("Esys_PCR_Extend failed");
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_EsysTpmExtend(benchmark::State& state) {
  for (auto _ : state) {
    if (!nsima_extend()) state.SkipWithError("EsysTpm::extend failed");
  }
  state.SetItemsProcessed(state.iterations());
}

// Alternating short batches, the side that goes first swapped every round so that neither gets
// the warmer (or the more disturbed) slot systematically. Counters raw_per_s, nsima_per_s, ratio.
void BM_Interleaved(benchmark::State& state) {
  constexpr int kBatch = 20;
  using Clock = std::chrono::steady_clock;
  Clock::duration raw_time{}, nsima_time{};
  int64_t raw_n = 0, nsima_n = 0;
  bool raw_first = true;
  auto run_raw = [&] {
    auto t0 = Clock::now();
    for (int i = 0; i < kBatch; ++i) {
      if (!raw_extend()) state.SkipWithError("Esys_PCR_Extend failed");
    }
    raw_time += Clock::now() - t0;
    raw_n += kBatch;
  };
  auto run_nsima = [&] {
    auto t0 = Clock::now();
    for (int i = 0; i < kBatch; ++i) {
      if (!nsima_extend()) state.SkipWithError("EsysTpm::extend failed");
    }
    nsima_time += Clock::now() - t0;
    nsima_n += kBatch;
  };
  for (auto _ : state) {
    if (raw_first) {
      run_raw();
      run_nsima();
    } else {
      run_nsima();
      run_raw();
    }
    raw_first = !raw_first;
  }
  const double raw_s = std::chrono::duration<double>(raw_time).count();
  const double nsima_s = std::chrono::duration<double>(nsima_time).count();
  state.counters["raw_per_s"] = raw_s > 0 ? raw_n / raw_s : 0;
  state.counters["nsima_per_s"] = nsima_s > 0 ? nsima_n / nsima_s : 0;
  state.counters["ratio"] = (raw_s > 0 && nsima_s > 0) ? (nsima_n / nsima_s) / (raw_n / raw_s) : 0;
  state.SetItemsProcessed(raw_n + nsima_n);
}

void BM_EsysTpmReadPcr(benchmark::State& state) {
  for (auto _ : state) {
    auto v = g->tpm->read_pcr(kPcr, Bank::kSha256);
    if (!v) state.SkipWithError("read_pcr failed");
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_EsysTpmQuoteEcc(benchmark::State& state) {
  const std::vector<uint8_t> nonce(20, 0x5a);
  for (auto _ : state) {
    auto q = g->tpm->quote({{Bank::kSha256, {10, kPcr}}}, nonce);
    if (!q) state.SkipWithError(q.error().to_string().c_str());
    benchmark::DoNotOptimize(q);
  }
  state.SetItemsProcessed(state.iterations());
}

// Collects the figures the summary line needs.
class Reporter : public benchmark::ConsoleReporter {
 public:
  Reporter() : ConsoleReporter(::isatty(STDOUT_FILENO) ? OO_Defaults : OO_Tabular) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      // With --benchmark_repetitions, take the median; ignore mean, stddev and cv.
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      if (r.run_type == Run::RT_Aggregate && !median) continue;
      // "raw_esys_extend_4banks/real_time" -> "raw_esys_extend_4banks"
      const std::string full = r.benchmark_name();
      const std::string name = full.substr(0, full.find('/'));
      if (!median && has_median.count(name)) continue;
      if (median) has_median.insert(name);
      auto items = r.counters.find("items_per_second");
      if (items != r.counters.end()) per_second[name] = items->second;
      auto ratio = r.counters.find("ratio");
      if (ratio != r.counters.end()) interleaved_ratio = ratio->second;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, double> per_second;
  std::set<std::string> has_median;
  double interleaved_ratio = 0;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  Fixture f;
  g = &f;
  std::string err;
  if (!f.swtpm.start(&err)) {
    std::fprintf(stderr, "bench_tpm: %s\n", err.c_str());
    return 1;
  }
  auto tpm = nsima::tpm::EsysTpm::open(f.swtpm.tcti());
  if (!tpm) {
    std::fprintf(stderr, "bench_tpm: %s\n", tpm.error().to_string().c_str());
    return 1;
  }
  f.tpm = std::move(*tpm);
  auto raw = nsima::tpm::EsysConnection::open(f.swtpm.tcti());
  if (!raw) {
    std::fprintf(stderr, "bench_tpm: %s\n", raw.error().to_string().c_str());
    return 1;
  }
  f.raw.emplace(std::move(*raw));
  for (Bank b : kBanks) {
    BankDigest d{b, std::vector<uint8_t>(nsima::tpm::bank_digest_size(b), 0xa5)};
    TPMT_HA& ha = f.raw_values.digests[f.raw_values.count++];
    ha.hashAlg = static_cast<TPMI_ALG_HASH>(b);
    std::memcpy(&ha.digest, d.digest.data(), d.digest.size());
    f.digests.push_back(std::move(d));
  }

  benchmark::RegisterBenchmark("raw_esys_extend_4banks", BM_RawEsysExtend)->UseRealTime();
  benchmark::RegisterBenchmark("nsima_esys_tpm_extend_4banks", BM_EsysTpmExtend)->UseRealTime();
  benchmark::RegisterBenchmark("interleaved_raw_vs_nsima", BM_Interleaved)->UseRealTime();
  benchmark::RegisterBenchmark("nsima_read_pcr_sha256", BM_EsysTpmReadPcr)->UseRealTime();
  benchmark::RegisterBenchmark("nsima_quote_ecc_p256", BM_EsysTpmQuoteEcc)->UseRealTime();

  Reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const double raw_ps = reporter.per_second["raw_esys_extend_4banks"];
  const double ours_ps = reporter.per_second["nsima_esys_tpm_extend_4banks"];
  if (raw_ps > 0 && ours_ps > 0) {
    std::printf(
        "\nextends/s: raw Esys_PCR_Extend %.0f, nsima EsysTpm %.0f (separate runs: %.2fx)\n",
        raw_ps, ours_ps, ours_ps / raw_ps);
  }
  if (reporter.interleaved_ratio > 0) {
    std::printf("EsysTpm / raw ESAPI (interleaved): %.2fx  [goal >= 0.90x: %s]\n",
                reporter.interleaved_ratio, reporter.interleaved_ratio >= 0.9 ? "met" : "NOT met");
  }
  return 0;
}

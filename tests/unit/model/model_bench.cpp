// SPDX-License-Identifier: Apache-2.0
// Issue 13's speed figures for the model library (Google Benchmark, not a test): coefficient
// computation (encode + SHA-256 of COE, CELL and the 160-byte outer input) and the lookup of a
// known coefficient in a sealed model of 100k points (goal: >= 1M lookups/s per core), and the
// whole Modeler::event path. Run: build/tests/unit/model/bench_model
#include <benchmark/benchmark.h>

#include "model/model.h"

namespace {

using namespace nsima::model;

Digest H(uint64_t i) {
  return sha256(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&i), sizeof i));
}

const Coe kCoe{0, 0, 0, 0, 0, 0, 0, 0, 0x1ffffffffffull};
FileCell cell() {
  return FileCell{0x8000, InodeCell{0, 0, 0100644, 0xEF53, {}}, "/usr/lib/x86_64-linux-gnu/libc.so.6",
                  H(1)};
}

void BM_FileOpenCoefficient(benchmark::State& st) {
  FileCell c = cell();
  Digest ptask = H(2), task = H(3);
  for (auto _ : st) benchmark::DoNotOptimize(coefficient(EventType::kFileOpen, ptask, task, kCoe, c));
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_FileOpenCoefficient);

void BM_KnownLookup(benchmark::State& st) {
  Model m;
  std::vector<Digest> pts;
  for (uint64_t i = 0; i < 100000; ++i) pts.push_back(H(i));
  for (const auto& p : pts) m.observe(p, EventType::kFileOpen);
  (void)m.set_mode(Mode::kEnforce);
  size_t i = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(m.observe(pts[i], EventType::kFileOpen));
    i = (i + 7919) % pts.size();
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_KnownLookup);

void BM_ModelerKnownEvent(benchmark::State& st) {
  Modeler m{Model{}};
  ProcKey p{1, 1};
  FileCell c = cell();
  (void)m.event(p, EventType::kFileOpen, kCoe, c);
  (void)m.model().set_mode(Mode::kEnforce);
  for (auto _ : st) benchmark::DoNotOptimize(m.event(p, EventType::kFileOpen, kCoe, c));
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_ModelerKnownEvent);

void BM_State100k(benchmark::State& st) {
  Model m;
  for (uint64_t i = 0; i < 100000; ++i) m.observe(H(i), EventType::kFileOpen);
  for (auto _ : st) benchmark::DoNotOptimize(m.state());
}
BENCHMARK(BM_State100k)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

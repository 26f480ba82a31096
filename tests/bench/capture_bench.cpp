// SPDX-License-Identifier: Apache-2.0
// Ring-buffer consumer throughput: a SEC("syscall") program (selftest.bpf.c) fills the real BPF
// ring buffer with events through the hooks' own nsima_submit(); the timed part is what nsimad's
// consumer thread does per record (libbpf ring_buffer__consume + decode_event + sink).
// Goal (issue 3): >= 1M events/s decoded on one core.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <benchmark/benchmark.h>
#include <cstdio>
#include <memory>

#include "capture/event_source.h"
#include "nsima_selftest.skel.h"
#include "selftest_abi.h"

namespace {

void BM_ConsumeAndDecode(benchmark::State& state) {
  const uint32_t path_len = static_cast<uint32_t>(state.range(0));
  nsima_selftest* skel = nsima_selftest::open_and_load();
  if (!skel) {
    state.SkipWithError("cannot load nsima_selftest.bpf.o (root and Linux >= 5.17 needed)");
    return;
  }
  uint64_t seen = 0, bytes = 0;
  nsima::capture::EventSource source(bpf_map__fd(skel->maps.events), [&](nsima::Event&& ev) {
    seen++;
    bytes += ev.path.size();
  });
  ring_buffer* rb = ring_buffer__new(bpf_map__fd(skel->maps.events),
                                     &nsima::capture::EventSource::on_sample, &source, nullptr);
  const uint32_t batch = 16384;  // fits the 8 MiB ring buffer at up to 512-byte records
  uint64_t total = 0;
  for (auto _ : state) {
    state.PauseTiming();
    nsima_selftest_flood f{batch, path_len, 0, 0};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &f, .ctx_size_in = sizeof f);
    bpf_prog_test_run_opts(bpf_program__fd(skel->progs.nsima_test_flood), &opts);
    state.ResumeTiming();
    int n = ring_buffer__consume(rb);
    benchmark::DoNotOptimize(n);
    total += static_cast<uint64_t>(n > 0 ? n : 0);
  }
  state.SetItemsProcessed(static_cast<int64_t>(total));
  state.counters["decoded"] = static_cast<double>(seen);
  state.counters["errors"] = static_cast<double>(source.errors());
  if (seen != total) state.SkipWithError("decoded fewer events than consumed");
  ring_buffer__free(rb);
  nsima_selftest::destroy(skel);
}
BENCHMARK(BM_ConsumeAndDecode)->Arg(32)->Arg(128)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

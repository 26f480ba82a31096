// SPDX-License-Identifier: Apache-2.0
// Measurement benchmarks, reported as figures against goals:
//  - file hashing throughput (hash_fd, page-cache-warm file, one thread) against
//    `openssl speed -evp sha256` on 16 KiB blocks (one core); goal >= 0.9x;
//  - resident memory per list entry after appending 1M entries to a MeasurementList (RSS delta
//    divided by entries); goal <= 200 bytes;
//  - append rate and HashPool throughput, for context.
// A custom main runs `openssl speed` first and prints the ratios after the benchmarks.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>

#include "common/log.h"
#include "common/unique_fd.h"
#include "measure/hash_pool.h"
#include "measure/hasher.h"
#include "measure/measurement_list.h"

namespace nsima::measure {
namespace {

constexpr size_t kFileSize = size_t{256} << 20;

std::filesystem::path bench_dir() {
  static const std::filesystem::path dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "nsima-bench-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) std::abort();
    return std::filesystem::path(tmpl);
  }();
  return dir;
}

const std::filesystem::path& big_file() {
  static const std::filesystem::path p = [] {
    auto path = bench_dir() / "big.bin";
    std::ofstream out(path, std::ios::binary);
    std::vector<char> block(1 << 20);
    std::mt19937_64 rng(1);
    for (size_t done = 0; done < kFileSize; done += block.size()) {
      for (auto& c : block) c = static_cast<char>(rng());
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
    return path;
  }();
  return p;
}

uint64_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// hash_fd over a 256 MiB page-cache-warm file; arg = chunk size in KiB.
void BM_HashFileSha256(benchmark::State& state) {
  UniqueFd fd(::open(big_file().c_str(), O_RDONLY | O_CLOEXEC));
  HashFileOptions opt;
  opt.chunk_size = static_cast<size_t>(state.range(0)) << 10;
  (void)hash_fd(fd.get(), HashAlgo::kSha256, "big", opt);  // warm the page cache
  for (auto _ : state) {
    auto d = hash_fd(fd.get(), HashAlgo::kSha256, "big", opt);
    if (!d) state.SkipWithError(d.error().to_string().c_str());
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kFileSize));
}
BENCHMARK(BM_HashFileSha256)
    ->Arg(64)
    ->Arg(256)
    ->Arg(1024)
    ->Arg(4096)
    ->Unit(benchmark::kMillisecond);

// sha1 + sha256 in one pass (what an `ima`-template d field next to a sha256 list costs).
void BM_HashFileSha1AndSha256(benchmark::State& state) {
  UniqueFd fd(::open(big_file().c_str(), O_RDONLY | O_CLOEXEC));
  const HashAlgo algos[] = {HashAlgo::kSha1, HashAlgo::kSha256};
  for (auto _ : state) benchmark::DoNotOptimize(hash_fd(fd.get(), algos, "big"));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kFileSize));
}
BENCHMARK(BM_HashFileSha1AndSha256)->Unit(benchmark::kMillisecond);

// EVP over 16 KiB in memory: the same measurement openssl speed makes, through our Hasher.
void BM_Sha256Memory16K(benchmark::State& state) {
  std::vector<uint8_t> buf(16384, 0x5a);
  auto h = Hasher::create(HashAlgo::kSha256);
  for (auto _ : state) {
    (void)h->update(buf);
    benchmark::DoNotOptimize(buf.data());
  }
  benchmark::DoNotOptimize(h->finish());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * buf.size()));
}
BENCHMARK(BM_Sha256Memory16K);

Entry bench_entry(uint64_t i) {
  Entry e;
  uint8_t seed[8];
  std::memcpy(seed, &i, 8);
  e.digest = *hash_bytes(HashAlgo::kSha256, seed);
  e.name = "/usr/lib/x86_64-linux-gnu/lib" + std::to_string(i) + ".so";
  return e;
}

// Resident memory per entry: 1M appends of distinct ima-ng entries to one list.
void BM_ListMemoryPerEntry(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  for (auto _ : state) {
    auto dir = bench_dir() / "list-memory";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    ListConfig cfg;
    cfg.sync_every = 4096;
    ::malloc_trim(0);
    const uint64_t before = rss_bytes();
    auto list = MeasurementList::open(dir, cfg);
    if (!list) {
      state.SkipWithError(list.error().to_string().c_str());
      return;
    }
    for (uint64_t i = 0; i < n; ++i)
      if (!list->append(bench_entry(i))) {
        state.SkipWithError("append failed");
        return;
      }
    ::malloc_trim(0);
    const uint64_t after = rss_bytes();
    state.counters["entries"] = static_cast<double>(list->count());
    state.counters["rss_delta_MiB"] = static_cast<double>(after - before) / (1 << 20);
    state.counters["bytes_per_entry"] =
        static_cast<double>(after - before) / static_cast<double>(n);
    state.counters["file_MiB"] = static_cast<double>(list->size_bytes()) / (1 << 20);

    // Reopen (replay + index rebuild) cost and memory, for the record.
    (void)list->close();
    const auto t0 = std::chrono::steady_clock::now();
    auto again = MeasurementList::open(dir, cfg);
    const auto t1 = std::chrono::steady_clock::now();
    state.counters["reopen_s"] = std::chrono::duration<double>(t1 - t0).count();
    state.counters["reopened_entries"] = again ? static_cast<double>(again->count()) : -1;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}
BENCHMARK(BM_ListMemoryPerEntry)->Arg(1000000)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

// HashPool on many small files (cache off): files/s with 2 threads.
void BM_HashPoolSmallFiles(benchmark::State& state) {
  static const std::vector<std::pair<FileKey, std::filesystem::path>> files = [] {
    std::vector<std::pair<FileKey, std::filesystem::path>> v;
    auto dir = bench_dir() / "small";
    std::filesystem::create_directories(dir);
    for (int i = 0; i < 2000; ++i) {
      auto p = dir / std::to_string(i);
      std::ofstream(p) << std::string(16384, static_cast<char>('a' + i % 26));
      struct stat st {};
      ::stat(p.c_str(), &st);
      v.emplace_back(FileKey::from_stat(st, 0), p);
    }
    return v;
  }();
  UniqueFd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  for (auto _ : state) {
    HashPool pool({.threads = 2, .queue_capacity = 256, .hash = {}}, nullptr);
    for (const auto& [key, path] : files) {
      FileIdentity id{key.dev, key.ino, std::nullopt};
      std::string p = path.string();
      int r = root.get();
      (void)pool.submit({key,
                         {HashAlgo::kSha256},
                         [r, p, id] { return open_in_root(r, p, id); },
                         [](const HashResult& res) { benchmark::DoNotOptimize(res); }});
    }
    pool.drain();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * files.size()));
}
BENCHMARK(BM_HashPoolSmallFiles)->UseRealTime()->Unit(benchmark::kMillisecond);

// Captures the figures the summary needs, and prints the normal console report.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      auto it = r.counters.find("bytes_per_second");
      if (it != r.counters.end()) rates[r.benchmark_name()] = it->second.value;
      auto bpe = r.counters.find("bytes_per_entry");
      if (bpe != r.counters.end()) bytes_per_entry = bpe->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, double> rates;
  double bytes_per_entry = -1;
};

// `openssl speed -evp sha256 -bytes 16384`: bytes per second on one core, or -1.
double openssl_speed_sha256() {
  FILE* f = ::popen("openssl speed -evp sha256 -seconds 3 -bytes 16384 2>/dev/null", "r");
  if (!f) return -1;
  char line[512];
  double kbps = -1;
  while (std::fgets(line, sizeof line, f)) {
    double v = 0;
    if (std::sscanf(line, "sha256 %lfk", &v) == 1) kbps = v;
  }
  ::pclose(f);
  return kbps < 0 ? -1 : kbps * 1000.0;
}

}  // namespace
}  // namespace nsima::measure

int main(int argc, char** argv) {
  using namespace nsima::measure;
  nsima::set_log_level("warn");
  benchmark::Initialize(&argc, argv);
  const double openssl_before = openssl_speed_sha256();
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  const double openssl_after = openssl_speed_sha256();
  benchmark::Shutdown();
  std::filesystem::remove_all(bench_dir());

  const double openssl = std::max(openssl_before, openssl_after);  // the less disturbed run
  std::printf("\n== measure summary ==\n");
  std::printf("openssl speed -evp sha256 (16 KiB, 1 core): %.0f MB/s (runs: %.0f, %.0f)\n",
              openssl / 1e6, openssl_before / 1e6, openssl_after / 1e6);
  for (const auto& [name, rate] : reporter.rates) {
    if (name.rfind("BM_HashFile", 0) != 0 && name.rfind("BM_Sha256Memory", 0) != 0) continue;
    std::printf("%-40s %8.0f MB/s  ratio vs openssl %.3f\n", name.c_str(), rate / 1e6,
                openssl > 0 ? rate / openssl : -1.0);
  }
  if (reporter.bytes_per_entry >= 0)
    std::printf("list resident memory per entry (1M entries): %.1f bytes (goal <= 200)\n",
                reporter.bytes_per_entry);
  return 0;
}

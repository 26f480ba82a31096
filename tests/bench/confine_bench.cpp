// SPDX-License-Identifier: Apache-2.0
// Cost per parse of the confined parser (daemon/confine) against the same parser in process:
// a security.ima value (an RSA-2048 signature from the fuzz corpus, and a sha256 digest) and a
// 5,000-line sha256sum manifest; and what starting one worker costs (spawn, confinement, hello:
// paid once per worker, and again after each crash or timeout), which is why workers are kept.
#include <benchmark/benchmark.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "appraise/digest_list.h"
#include "appraise/ima_xattr.h"
#include "confine/parser.h"

namespace nsima::confine {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> corpus(const char* name) {
  std::ifstream in(fs::path(NSIMA_SOURCE_DIR) / "tests/fuzz/corpus/appraise" / name, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string manifest_5000() {
  std::string t;
  char hex[65];
  for (int i = 0; i < 5000; ++i) {
    for (int j = 0; j < 64; ++j) hex[j] = "0123456789abcdef"[(i * 7 + j * 13) % 16];
    hex[64] = 0;
    t += std::string(hex) + "  /usr/lib/x86_64-linux-gnu/libexample-" + std::to_string(i) + ".so.1\n";
  }
  return t;
}

Parser& parser() {
  static Parser p(ParserOptions{NSIMA_PARSE_BIN, std::chrono::milliseconds(2000), 1});
  return p;
}

void BM_XattrInProcess(benchmark::State& state, const char* name) {
  const auto v = corpus(name);
  for (auto _ : state) benchmark::DoNotOptimize(appraise::parse_ima_xattr(v));
}

void BM_XattrConfined(benchmark::State& state, const char* name) {
  const auto v = corpus(name);
  for (auto _ : state) {
    auto r = parser().ima_xattr(v);
    if (!r || !*r) state.SkipWithError("confined parse failed");
    benchmark::DoNotOptimize(r);
  }
}

void BM_Manifest5000InProcess(benchmark::State& state) {
  const auto t = manifest_5000();
  for (auto _ : state) {
    auto m = appraise::parse_manifest(t, "bench");
    if (!m || m->entries.size() != 5000) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(m);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * t.size()));
}

void BM_Manifest5000Confined(benchmark::State& state) {
  const auto t = manifest_5000();
  for (auto _ : state) {
    auto m = parser().manifest(t, "bench");
    if (!m || !*m || (*m)->entries.size() != 5000) state.SkipWithError("confined parse failed");
    benchmark::DoNotOptimize(m);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * t.size()));
}

// A read-group member's control request line (status of a namespace by its cgroup).
constexpr std::string_view kRequest = R"({"cmd":"status","ns":"2","json":true})";

void BM_ControlRequestInProcess(benchmark::State& state) {
  for (auto _ : state) {
    auto j = nlohmann::json::parse(kRequest, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(j);
  }
}

void BM_ControlRequestConfined(benchmark::State& state) {
  for (auto _ : state) {
    auto r = parser().control_request(kRequest);
    if (!r || !*r) state.SkipWithError("confined parse failed");
    benchmark::DoNotOptimize(r);
  }
}

// One worker's start: posix_spawn, confinement (setresuid, seccomp), hello; then its end.
void BM_WorkerStart(benchmark::State& state) {
  for (auto _ : state) {
    Parser p(ParserOptions{NSIMA_PARSE_BIN, std::chrono::milliseconds(2000), 1});
    if (auto r = p.start(); !r) {
      state.SkipWithError(("start failed: " + r.error().to_string()).c_str());
      break;
    }
  }
}

BENCHMARK_CAPTURE(BM_XattrInProcess, sig_rsa_sha256, "sig-rsa-sha256");
BENCHMARK_CAPTURE(BM_XattrConfined, sig_rsa_sha256, "sig-rsa-sha256");
BENCHMARK_CAPTURE(BM_XattrInProcess, hash_sha256, "hash-sha256");
BENCHMARK_CAPTURE(BM_XattrConfined, hash_sha256, "hash-sha256");
BENCHMARK(BM_ControlRequestInProcess);
BENCHMARK(BM_ControlRequestConfined);
BENCHMARK(BM_Manifest5000InProcess)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Manifest5000Confined)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_WorkerStart)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace nsima::confine

BENCHMARK_MAIN();

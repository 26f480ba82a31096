// SPDX-License-Identifier: Apache-2.0
// Cost per parse of the confined parser (daemon/confine) against the same parser in process:
// a security.ima value (an RSA-2048 signature from the fuzz corpus, and a sha256 digest) and a
// 5,000-line sha256sum manifest; and what starting one worker costs (spawn, confinement, hello:
// paid once per worker, and again after each crash or timeout), which is why workers are kept.
// And one rpm package's header read and signature check (from-rpm): a package built with
// rpmbuild and signed with rpmsign by an RSA-2048 gpg key made here, in a temporary directory.
#include <benchmark/benchmark.h>
#include <signal.h>

#include <cstdlib>
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

// A signed rpm (2 files) and the trusted keys of the rpm database it was imported into, made
// once with gpg, rpmbuild, rpmsign and rpmkeys (tests/unit/appraise/digest_list_test.cpp RpmTest).
struct RpmFixture {
  std::vector<std::vector<uint8_t>> keys;
  std::vector<uint8_t> package;
  bool ok = false;
};

const RpmFixture& rpm_fixture() {
  static const RpmFixture f = [] {
    RpmFixture r;
    char tmpl[] = "/tmp/nsima-bench-rpm-XXXXXX";
    if (!mkdtemp(tmpl)) return r;
    const fs::path w = tmpl;
    const std::string g = "GNUPGHOME=" + (w / "gnupg").string() + " ";
    fs::create_directories(w / "gnupg");
    fs::permissions(w / "gnupg", fs::perms::owner_all);
    std::ofstream(w / "kp") << "%no-protection\nKey-Type: RSA\nKey-Length: 2048\nName-Real: bench\n"
                               "Name-Email: bench@example.invalid\nExpire-Date: 0\n%commit\n";
    fs::create_directories(w / "top/SPECS");
    std::ofstream(w / "top/SPECS/t.spec")
        << "Name: nsimabench\nVersion: 1.0\nRelease: 1\nSummary: t\nLicense: MIT\n"
           "BuildArch: noarch\n%description\nt\n%install\n"
           "mkdir -p %{buildroot}/usr/share/b\nprintf 'a\\n' > %{buildroot}/usr/share/b/a\n"
           "printf 'b\\n' > %{buildroot}/usr/share/b/b\n%files\n/usr/share/b\n";
    const fs::path pkg = w / "top/RPMS/noarch/nsimabench-1.0-1.noarch.rpm";
    const std::string cmd =
        "(" + g + "gpg --batch --gen-key " + (w / "kp").string() + " && " + g +
        "gpg --export --armor bench@example.invalid > " + (w / "k.asc").string() +
        " && rpmkeys --dbpath " + (w / "db").string() + " --import " + (w / "k.asc").string() +
        " && rpmbuild --quiet --define '_topdir " + (w / "top").string() + "' --define '_dbpath " +
        (w / "bdb").string() + "' -bb " + (w / "top/SPECS/t.spec").string() + " && " + g +
        "rpmsign --define '__gpg /usr/bin/gpg' --define '_gpg_name bench@example.invalid' "
        "--addsign " +
        pkg.string() + " </dev/null; " + g + "gpgconf --kill gpg-agent) >/dev/null 2>&1";
    fs::create_directories(w / "db");
    if (std::system(cmd.c_str()) != 0) return r;
    auto keys = appraise::rpm_trusted_keys(w / "db");
    std::ifstream in(pkg, std::ios::binary);
    r.package.assign(std::istreambuf_iterator<char>(in), {});
    if (keys) r.keys = std::move(*keys);
    r.ok = keys && !r.keys.empty() && !r.package.empty();
    fs::remove_all(w);
    return r;
  }();
  return f;
}

void BM_RpmHeaderInProcess(benchmark::State& state) {
  const auto& f = rpm_fixture();
  if (!f.ok) state.SkipWithError("could not build a signed rpm (gpg, rpmbuild, rpmsign)");
  for (auto _ : state) {
    auto r = appraise::rpm_read_header(f.keys, f.package);
    if (!r || r->entries.size() != 2) state.SkipWithError("rpm header read failed");
    benchmark::DoNotOptimize(r);
  }
  state.SetLabel(std::to_string(f.package.size()) + "-byte package");
}

void BM_RpmHeaderConfined(benchmark::State& state) {
  const auto& f = rpm_fixture();
  if (!f.ok) state.SkipWithError("could not build a signed rpm (gpg, rpmbuild, rpmsign)");
  for (auto _ : state) {
    auto r = parser().rpm_header(f.keys, f.package);
    if (!r || !*r || (*r)->entries.size() != 2)
      state.SkipWithError("confined rpm header read failed");
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
BENCHMARK(BM_RpmHeaderInProcess)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RpmHeaderConfined)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_WorkerStart)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace nsima::confine

BENCHMARK_MAIN();

// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for digest lists (daemon/appraise/digest_list): sha256sum manifests read from
// a file (load_manifest), the digest store's own files read back at start-up (DigestStore::open:
// `listed` and `revoked`), and dpkg md5sums files (manifest_from_dpkg). Any byte string is cut at
// its NUL bytes into a manifest, a listed file, a revoked file and an md5sums file.
// Invariants: a manifest file loads as its text parses; a store that opens keeps what it holds
// across a write and a reopen; manifest_from_dpkg emits only files inside its root whose md5
// matched (the root holds two files, so every entry is one of their sha256 digests).
// (security.ima values and manifest text round trips are fuzz.appraise's.) Invariant violations
// trap so that libFuzzer records the input. Run by run_fuzz.sh (ctest fuzz.digest_list).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "appraise/digest_list.h"
#include "common/log.h"
#include "measure/hasher.h"

namespace {

namespace fs = std::filesystem;
using namespace nsima::appraise;
using nsima::measure::Digest;
using nsima::measure::HashAlgo;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

fs::path* root = nullptr;
std::vector<Digest>* root_digests = nullptr;

void write_file(const fs::path& p, std::string_view s) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
  check(static_cast<bool>(out));
}

Digest sha256(std::string_view s) {
  auto d = nsima::measure::hash_bytes(
      HashAlgo::kSha256, {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  check(d.has_value());
  return *d;
}

void manifest_file(std::string_view text) {
  const fs::path f = *root / "manifest";
  write_file(f, text);
  auto loaded = load_manifest(f, nullptr, SignaturePolicy::kIgnore);
  auto parsed = parse_manifest(text, f.string());
  check(loaded.has_value() == parsed.has_value());
  if (!loaded) return;
  check(!loaded->is_signed && loaded->manifest.entries.size() == parsed->entries.size());
}

void store(std::string_view listed, std::string_view revoked) {
  const fs::path dir = *root / "digests";
  fs::remove_all(dir);
  write_file(dir / "listed", listed);
  write_file(dir / "revoked", revoked);
  auto s = DigestStore::open(dir);
  if (!s) {
    check(!s.error().where.empty());
    return;
  }
  Manifest m;
  m.entries.push_back({sha256("fuzz"), "/fuzz", false});
  check(s->add(m, true).has_value());
  check(s->revoke(sha256("revoked")).has_value());
  auto again = DigestStore::open(dir);
  check(again.has_value());
  check(again->listed_count() == s->listed_count() && again->signed_count() == s->signed_count() &&
        again->revoked_count() == s->revoked_count());
  check(again->lookup(sha256("fuzz")).signed_listed);
  for (const Digest& d : s->revoked()) check(again->lookup(d).revoked);
}

void dpkg(std::string_view md5sums) {
  const fs::path r = *root / "root";
  write_file(r / "var/lib/dpkg/info/fuzz.md5sums", md5sums);
  auto g = manifest_from_dpkg(r);
  check(g.has_value() && g->sources == 1);
  for (const auto& e : g->manifest.entries) {
    bool known = false;
    for (const Digest& d : *root_digests) known |= e.digest == d;
    check(known);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nsima::set_log_level("off");
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/nsima-digest-fuzz-XXXXXX";
  check(::mkdtemp(tmpl.data()) != nullptr);
  root = new fs::path(tmpl);
  std::atexit([] { fs::remove_all(*root); });
  // The dpkg root: two files (md5 of "a" is 0cc175b9c0f1b6a831c399e269772661), and a symlink
  // out of the root, which must never be followed.
  write_file(*root / "root/bin/a", "a");
  write_file(*root / "root/etc/b", "b");
  fs::create_symlink("/etc/hostname", *root / "root/bin/out");
  fs::create_symlink("/etc", *root / "root/up");
  root_digests = new std::vector<Digest>{sha256("a"), sha256("b")};
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  for (size_t at = 0;;) {
    size_t nul = in.find('\0', at);
    parts.push_back(in.substr(at, nul == std::string_view::npos ? std::string_view::npos : nul - at));
    if (nul == std::string_view::npos || parts.size() == 4) break;
    at = nul + 1;
  }
  parts.resize(4);
  manifest_file(parts[0]);
  store(parts[1], parts[2]);
  dpkg(parts[3]);
  return 0;
}

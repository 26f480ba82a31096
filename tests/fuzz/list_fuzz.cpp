// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for nsima's own measurement lists as nsimad reads them back at start-up
// (daemon/measure: parse_record, RecordReader, MeasurementList::open's replay). Any byte string
// is (1) parsed as one binary record, which must re-encode to exactly the bytes it was read
// from, and (2) written as a list file and opened: twice, once as given and once with every
// parsed record's SHA-1 template digest recomputed (random bytes almost never carry a valid
// SHA-1, so only then does the fuzzer reach the duplicate index, replay and rendering).
// Invariants: a list that opens was at most cut at a torn tail (a prefix of what was written);
// one that does not open is left exactly as it was (evidence is never discarded); an opened list
// renders, replays, takes one more entry and reopens with one more entry. Invariant violations
// trap so that libFuzzer records the input. Run by run_fuzz.sh (ctest fuzz.list).
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "common/log.h"
#include "measure/list_format.h"
#include "measure/measurement_list.h"
#include "measure/template.h"

namespace {

namespace fs = std::filesystem;
using namespace nsima::measure;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

fs::path* dir = nullptr;

void write_file(const fs::path& p, std::span<const uint8_t> bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  check(static_cast<bool>(out));
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The input with each record's digest column made valid (violations, all zero, stay zero).
std::vector<uint8_t> fix_digests(std::span<const uint8_t> in) {
  std::vector<uint8_t> out(in.begin(), in.end());
  size_t off = 0;
  Record r;
  while (off < out.size()) {
    auto used = parse_record(std::span(out).subspan(off), off, r);
    if (!used) break;
    if (!r.violation()) {
      auto d = template_digest(r.template_name, r.data, HashAlgo::kSha1);
      if (d) std::copy(d->bytes().begin(), d->bytes().end(), out.begin() + off + 4);
    }
    off += *used;
  }
  return out;
}

void open_list(std::span<const uint8_t> bytes, HashAlgo algo) {
  fs::remove_all(*dir);
  fs::create_directories(*dir);
  const fs::path file = *dir / std::string(kDefaultListFile);
  write_file(file, bytes);
  ListConfig cfg;
  cfg.hash_algo = algo;
  // A list of the legacy `ima` template is continued as one (it cannot take ima-ng entries),
  // which needs sha1, as nsimad configures it (--template ima).
  Record first;
  if (parse_record(bytes, 0, first) && first.template_name == "ima") {
    cfg.hash_algo = HashAlgo::kSha1;
    cfg.default_template = TemplateKind::kIma;
  }
  cfg.sync_every = 0;
  cfg.sync_interval = std::chrono::milliseconds(0);
  const std::string written(bytes.begin(), bytes.end());
  auto list = MeasurementList::open(*dir, cfg);
  const std::string kept = read_file(file);
  if (!list) {
    check(kept == written);  // a list that cannot be read is left as evidence
    return;
  }
  check(kept.size() <= written.size() && written.compare(0, kept.size(), kept) == 0);
  check(list->size_bytes() == kept.size());
  const uint64_t count = list->count();
  uint64_t seen = 0;
  auto each = list->for_each(0, [&](uint64_t index, const Record&) -> nsima::Result<void> {
    check(index == seen++);
    return {};
  });
  check(each.has_value() && seen == count);
  for (HashAlgo bank : {HashAlgo::kSha1, HashAlgo::kSha256}) {
    std::ostringstream a, b;
    check(list->render_ascii(a, bank).has_value());
    check(list->render_binary(b, bank).has_value());
    if (bank == HashAlgo::kSha1) check(b.str() == kept);  // the sha1 file is the list itself
    check(list->replay(10, bank, count).has_value());
  }
  auto v = list->append_violation("fuzz");
  check(v.has_value() && v->added);
  check(list->close().has_value());
  auto again = MeasurementList::open(*dir, cfg);
  check(again.has_value() && again->count() == count + 1);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nsima::set_log_level("off");
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/nsima-list-fuzz-XXXXXX";
  check(::mkdtemp(tmpl.data()) != nullptr);
  dir = new fs::path(fs::path(tmpl) / "ns");
  std::atexit([] { fs::remove_all(dir->parent_path()); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  Record r;
  if (auto used = parse_record(in, 0, r)) {
    check(*used <= size && binary_size(r) == *used);
    std::string enc;
    append_binary(r, enc);
    check(enc.size() == *used && std::memcmp(enc.data(), data, enc.size()) == 0);
    std::string line;
    (void)append_ascii(r, HashAlgo::kSha256, line);
  }
  // The namespace hash algorithm varies with the input's length (sha256 is nsimad's default).
  const HashAlgo algos[] = {HashAlgo::kSha256, HashAlgo::kSha1, HashAlgo::kSha512};
  const HashAlgo algo = algos[size % 3];
  open_list(in, algo);
  auto fixed = fix_digests(in);
  if (fixed != std::vector<uint8_t>(in.begin(), in.end())) open_list(fixed, algo);
  return 0;
}

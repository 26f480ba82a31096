// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the intake journal as the next nsimad reads it (daemon/capture/journal:
// Journal::open + replay_previous) and the ring-buffer record decoder every replayed record goes
// through (common/event: decode_event, event_to_json). Any byte string is cut in two at the
// offset its first two bytes name, and the parts are left as segments seg-1.bin and seg-2.bin
// of a previous run. Invariants: the replayed records (with their headers) fit in what was written; a decoded
// event renders as valid JSON; replay deletes the old segments; the records, journaled anew and
// left unacknowledged, are replayed by the next run exactly as they were. Invariant violations
// trap so that libFuzzer records the input. Run by run_fuzz.sh (ctest fuzz.journal).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "capture/journal.h"
#include "common/event.h"
#include "common/log.h"

namespace {

namespace fs = std::filesystem;
using nsima::capture::Journal;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

fs::path* dir = nullptr;

void write_file(const fs::path& p, std::span<const uint8_t> bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  check(static_cast<bool>(out));
}

using Records = std::vector<std::vector<uint8_t>>;

Records replay(Journal& j) {
  Records out;
  auto n = j.replay_previous([&](const uint8_t* d, size_t size) {
    check(size > 0 && size <= (1u << 16));
    out.emplace_back(d, d + size);
    auto ev = nsima::decode_event(d, size);
    if (ev) {
      auto js = nlohmann::json::parse(nsima::event_to_json(*ev), nullptr, false);
      check(!js.is_discarded() && js.is_object());
    }
  });
  check(n.has_value() && *n == out.size());
  return out;
}

size_t segments() {
  size_t n = 0;
  for (auto& e : fs::directory_iterator(*dir))
    n += e.path().filename().string().rfind("seg-", 0) == 0;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nsima::set_log_level("off");
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/nsima-journal-fuzz-XXXXXX";
  check(::mkdtemp(tmpl.data()) != nullptr);
  dir = new fs::path(fs::path(tmpl) / "journal");
  std::atexit([] { fs::remove_all(dir->parent_path()); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fs::remove_all(*dir);
  fs::create_directories(*dir);
  size_t cut = size >= 2 ? (size_t{data[0]} << 8 | data[1]) : 0;
  std::span<const uint8_t> in(data, size);
  cut = std::min(cut, size);
  write_file(*dir / "seg-1.bin", in.first(cut));
  write_file(*dir / "seg-2.bin", in.subspan(cut));

  Records first;
  {
    auto j = Journal::open(dir->string());
    check(j.has_value());
    first = replay(**j);
    check(segments() == 0);
    size_t total = 0;
    for (auto& r : first) total += r.size() + 12;  // u32 size + u64 seq header
    check(total <= size);
    uint64_t seq = 1;
    for (auto& r : first) (*j)->append(seq++, r.data(), r.size());
    check((*j)->stats().errors == 0);
  }  // no ack: a crash as far as the journal can tell
  auto j = Journal::open(dir->string());
  check(j.has_value());
  Records second = replay(**j);
  check(second == first);
  return 0;
}

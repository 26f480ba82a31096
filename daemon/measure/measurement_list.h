// SPDX-License-Identifier: Apache-2.0
// One namespace's measurement list: an append-only file in the kernel's binary format (sha1
// digest column), so `evmctl ima_measurement <dir>/binary_runtime_measurements` reads it as is.
//
// Memory: entries are not kept in memory. What stays resident is a duplicate index (open
// addressing, 32 bytes per slot: a 16-byte prefix of the entry's template digest in the
// namespace's hash algorithm, its PCR, and the record's file offset and index for an exact check
// on a prefix hit), a checkpoint offset per 1024 entries, and counters: at most ~90 bytes per
// entry at the worst point of the table's growth.
//
// Duplicates are suppressed as kernel IMA does (ima_queue.c): an entry whose template digest of
// the namespace's hash algorithm AND PCR equal an existing record's is neither appended nor
// extended. Violations bypass the check.
//
// Durability (what exactly is guaranteed):
//  1. append() returns only after one write(2) of the complete record has returned. From then on
//     the record survives any crash of nsimad itself (it is in the page cache). Callers must
//     extend the PCR only after append() returns (write-ahead), never before.
//  2. It reaches stable storage at the next fdatasync(2): after `sync_every` unsynced appends, on
//     the first append or sync_if_due() at least `sync_interval` after the oldest unsynced append,
//     and on sync(), close() and destruction. An OS crash or power loss loses at most the records
//     appended since the last fdatasync. A hardware TPM loses its PCRs in the same power loss;
//     for a vTPM whose state outlives the crash, the caller reconciles with replay() /
//     extended_prefix() on restart.
//  3. A write(2) that fails or comes back short is undone with ftruncate(2) and reported; the
//     file never keeps half a record written by a live process. A record torn by a crash (the
//     file ends inside it, or ends in zero-filled blocks) is truncated by open() with a warning;
//     any other damage makes open() fail and names the offset, so evidence is never discarded.
//  4. open() takes an exclusive flock(2): one writer per list file.
//  5. An fdatasync failure is logged and sticky: sync() and close() report it from then on.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "measure/boot_aggregate.h"
#include "measure/hash_algo.h"
#include "measure/list_format.h"
#include "measure/template.h"

namespace nsima::measure {

inline constexpr std::string_view kDefaultListFile = "binary_runtime_measurements";

struct ListConfig {
  HashAlgo hash_algo = HashAlgo::kSha256;  // the namespace's ima_hash: dup index, violation d-ng
  TemplateKind default_template = TemplateKind::kImaNg;  // `ima` requires hash_algo == sha1
  uint32_t default_pcr = 10;                             // CONFIG_IMA_MEASURE_PCR_IDX
  std::vector<HashAlgo> banks{HashAlgo::kSha1, HashAlgo::kSha256};  // PCR banks to extend
  std::string file_name = std::string(kDefaultListFile);
  uint32_t sync_every = 64;                       // 0: no count-based fdatasync
  std::chrono::milliseconds sync_interval{1000};  // 0: no time-based fdatasync
};

struct AppendOutcome {
  bool added = false;  // false: duplicate; nothing written, nothing to extend
  uint64_t index = 0;  // added: the new entry's index; duplicate: the index it duplicates
  uint32_t pcr = 0;
  bool violation = false;
  std::vector<Digest> extend;  // added: value to extend per ListConfig::banks (same order)
};

class MeasurementList {
 public:
  // Opens (creating if needed) <dir>/<config.file_name>, replays it (truncating a torn last
  // record, with a warning) and rebuilds the duplicate index. `dir` must exist.
  static Result<MeasurementList> open(const std::filesystem::path& dir, ListConfig config);

  MeasurementList(MeasurementList&&) noexcept;
  MeasurementList& operator=(MeasurementList&&) noexcept;
  ~MeasurementList();  // close(), logging a failure

  // Thread-safe. Encodes `entry` (default template/PCR where unset; violations always use the
  // defaults), suppresses duplicates, writes the record, returns what to extend.
  Result<AppendOutcome> append(const Entry& entry);
  // A violation entry for `name` (zero digest, 0xFF.. extends).
  Result<AppendOutcome> append_violation(std::string name);
  // The first entry (EEXIST if the list is not empty). `banks`: PCR 0-9 of the (v)TPM, empty for
  // no TPM. See boot_aggregate.h.
  Result<AppendOutcome> append_boot_aggregate(std::span<const PcrBank> banks);

  uint64_t count() const;       // entries in the list (runtime_measurements_count)
  uint64_t violations() const;  // violation entries in the list
  uint64_t size_bytes() const;  // committed bytes of the binary file
  const std::filesystem::path& path() const;
  const ListConfig& config() const;

  Result<void> sync();         // fdatasync now if anything is unsynced
  Result<void> sync_if_due();  // for the owner's timer: fdatasync if sync_interval has passed
  Result<void> close();        // sync and release the file; further calls fail with EBADF

  // Expected value of PCR `pcr` in `bank` after the first `upto_index` entries of the list
  // (entries for other PCRs are skipped): start at zeros, PCR := H(PCR || extend value).
  Result<Digest> replay(uint32_t pcr, HashAlgo bank, uint64_t upto_index) const;
  // Crash recovery: the largest N such that replay(pcr, bank, N) == `pcr_value`, or nullopt when
  // no prefix matches. Entries from index N on that target `pcr` still need extending.
  Result<std::optional<uint64_t>> extended_prefix(uint32_t pcr, HashAlgo bank,
                                                  const Digest& pcr_value) const;

  // Calls `fn(index, record)` for entries from `from_index` on (streamed from the file).
  using RecordFn = std::function<Result<void>(uint64_t index, const Record& record)>;
  Result<void> for_each(uint64_t from_index, const RecordFn& fn) const;

  // Writes the list as binary_runtime_measurements[_<bank>] / ascii_runtime_measurements[_<bank>]
  // would show it, streaming from the file. Returns bytes written.
  Result<uint64_t> render_binary(std::ostream& os, HashAlgo bank = HashAlgo::kSha1) const;
  Result<uint64_t> render_ascii(std::ostream& os, HashAlgo bank = HashAlgo::kSha1) const;

  // Follow: raw bytes of the binary (sha1) file from `offset`, at most out.size(), never beyond
  // the committed end. Returns 0 at the end. Poll with the last offset + bytes returned.
  Result<size_t> read_at(uint64_t offset, std::span<uint8_t> out) const;

 private:
  // Renders every record with `render` (appending to a buffer) and writes the buffer to `os` in
  // chunks of about kStreamChunk bytes.
  using RenderFn = std::function<Result<void>(uint64_t index, const Record&, std::string& out)>;
  Result<uint64_t> stream_records(std::ostream& os, const RenderFn& render) const;

  struct State;
  explicit MeasurementList(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace nsima::measure

// SPDX-License-Identifier: Apache-2.0
// The two measurement-list renderings the kernel exports (ima_fs.c), and a parser for the binary
// one. Binary record (ima-facts §2.2), integers little-endian:
//   u32 pcr | template digest (20 bytes in the default/sha1 file, bank size in _<bank> files) |
//   u32 template name length | name (no NUL) | u32 template data length (absent for `ima`) | data
// Ascii line (§2.3): "%2d " pcr, the template digest in lower-case hex, " <template name>", then
// for every field a space and its rendering (empty fields render as nothing, hence the trailing
// space of an unsigned ima-sig entry), then "\n".
//
// A violation record has an all-zero template digest column; that is the only place the binary
// format marks it, so Record::violation() reads it from there, as evmctl does.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "measure/hash_algo.h"
#include "measure/template.h"

namespace nsima::measure {

inline constexpr size_t kSha1Len = 20;
inline constexpr uint32_t kMaxTemplateNameLen = 255;        // evmctl's TCG_EVENT_NAME_LEN_MAX
inline constexpr uint32_t kMaxTemplateDataLen = 64u << 20;  // far above any real entry
inline constexpr uint32_t kMaxPcrIndex = 63;                // highest pcr= the policy accepts

// Error codes a parser returns, so callers can tell a torn tail from corruption.
inline constexpr int kErrTruncated = ENODATA;  // the bytes end inside a record
inline constexpr int kErrCorrupt = EBADMSG;    // a complete record that cannot be valid

struct Record {
  uint32_t pcr = 0;
  std::array<uint8_t, kSha1Len> digest{};  // SHA-1 template digest column; zeros = violation
  std::string template_name;
  std::vector<uint8_t> data;  // template data as written (for `ima`: d[20] || u32 len || name)

  bool violation() const;
};

// Encodes `e` as a record of template `kind` for `pcr`, with its SHA-1 template digest (zeros for
// a violation). `ima_hash` is the namespace's hash algorithm.
Result<Record> make_record(const Entry& e, TemplateKind kind, uint32_t pcr, HashAlgo ima_hash);

// Bytes the record takes in the default (sha1) binary file.
size_t binary_size(const Record& r);
// Kernel binary layout, sha1 digest column (binary_runtime_measurements).
void append_binary(const Record& r, std::string& out);
// Per-bank layout (binary_runtime_measurements_<bank>): the digest column is the bank's template
// digest (zeros of the bank size for a violation).
Result<void> append_binary(const Record& r, HashAlgo bank, std::string& out);
// One ascii line, with the digest column of `bank` (sha1 = ascii_runtime_measurements).
Result<void> append_ascii(const Record& r, HashAlgo bank, std::string& out);

// Parses one binary (sha1-column) record from the start of `buf` into `out` and returns the bytes
// it took. Errors: kErrTruncated when `buf` ends inside the record, kErrCorrupt for impossible
// values; Error::where names the absolute offset (`base_offset` + position).
Result<size_t> parse_record(std::span<const uint8_t> buf, uint64_t base_offset, Record& out);

// Sequential reader of binary records from a file range [begin, end), buffered, with pread (so
// several readers and one appender can share the fd).
class RecordReader {
 public:
  // `buffer_size`: initial read buffer (grows for a record that does not fit).
  RecordReader(int fd, uint64_t begin, uint64_t end, std::string path,
               size_t buffer_size = size_t{1} << 20);

  // Reads the next record into `out`: true, or false at `end`. A range that stops inside a record
  // gives kErrTruncated; the error names the record's offset.
  Result<bool> next(Record& out);
  // Offset of the record next() returns next (after a successful next(): of the one after).
  uint64_t offset() const { return offset_; }
  // Offset where the record just returned started.
  uint64_t record_offset() const { return record_offset_; }

 private:
  Result<bool> fill();

  int fd_;
  uint64_t end_;
  std::string path_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;  // next unparsed byte in buf_
  size_t len_ = 0;  // valid bytes in buf_
  uint64_t file_pos_;
  uint64_t offset_;
  uint64_t record_offset_ = 0;
};

}  // namespace nsima::measure

// SPDX-License-Identifier: Apache-2.0
// Binary and ascii list records (ima_fs.c ima_measurements_show / ima_ascii_measurements_show).
#include "measure/list_format.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/hex.h"
#include "measure/bytes.h"
#include "measure/hasher.h"

namespace nsima::measure {

namespace {

bool is_legacy(const std::string& name) { return name == "ima"; }

tl::unexpected<Error> corrupt(uint64_t offset, std::string msg) {
  return make_error(kErrCorrupt, std::move(msg), "offset " + std::to_string(offset));
}

tl::unexpected<Error> truncated(uint64_t offset, size_t need, size_t have) {
  return make_error(kErrTruncated,
                    "record truncated: " + std::to_string(need) + " bytes needed, " +
                        std::to_string(have) + " present",
                    "offset " + std::to_string(offset));
}

Result<Digest> bank_column(const Record& r, HashAlgo bank) {
  if (bank == HashAlgo::kSha1) return Digest::from_bytes(HashAlgo::kSha1, r.digest);
  if (r.violation()) return Digest(bank);
  return template_digest(r.template_name, r.data, bank);
}

void append_tail(const Record& r, std::string& out) {
  put_u32le(out, static_cast<uint32_t>(r.template_name.size()));
  out += r.template_name;
  if (!is_legacy(r.template_name)) put_u32le(out, static_cast<uint32_t>(r.data.size()));
  out.append(reinterpret_cast<const char*>(r.data.data()), r.data.size());
}

}  // namespace

bool Record::violation() const {
  return std::all_of(digest.begin(), digest.end(), [](uint8_t b) { return b == 0; });
}

Result<Record> make_record(const Entry& e, TemplateKind kind, uint32_t pcr, HashAlgo ima_hash) {
  if (pcr > kMaxPcrIndex) return make_error(EINVAL, "PCR " + std::to_string(pcr) + " out of range");
  auto data = encode_template_data(kind, e, ima_hash);
  if (!data) return tl::unexpected(data.error());
  Record r;
  r.pcr = pcr;
  r.template_name = std::string(template_name(kind));
  r.data = std::move(*data);
  if (!e.violation) {
    auto d = template_digest(r.template_name, r.data, HashAlgo::kSha1);
    if (!d) return tl::unexpected(d.error());
    std::copy(d->bytes().begin(), d->bytes().end(), r.digest.begin());
  }
  return r;
}

size_t binary_size(const Record& r) {
  return 4 + kSha1Len + 4 + r.template_name.size() + (is_legacy(r.template_name) ? 0 : 4) +
         r.data.size();
}

void append_binary(const Record& r, std::string& out) {
  put_u32le(out, r.pcr);
  out.append(reinterpret_cast<const char*>(r.digest.data()), r.digest.size());
  append_tail(r, out);
}

Result<void> append_binary(const Record& r, HashAlgo bank, std::string& out) {
  auto d = bank_column(r, bank);
  if (!d) return tl::unexpected(d.error());
  put_u32le(out, r.pcr);
  out.append(reinterpret_cast<const char*>(d->data()), d->size());
  append_tail(r, out);
  return {};
}

Result<void> append_ascii(const Record& r, HashAlgo bank, std::string& out) {
  auto d = bank_column(r, bank);
  if (!d) return tl::unexpected(d.error());
  auto fields = split_template_data(r.template_name, r.data);
  if (!fields) return tl::unexpected(fields.error());
  char pcr[16];
  std::snprintf(pcr, sizeof pcr, "%2d ", static_cast<int>(r.pcr));
  out += pcr;
  out += d->hex();
  out += ' ';
  out += r.template_name;
  for (const auto& f : *fields) {
    out += ' ';
    if (auto ok = append_field_ascii(f, out); !ok) return ok;
  }
  out += '\n';
  return {};
}

Result<size_t> parse_record(std::span<const uint8_t> buf, uint64_t base, Record& out) {
  const uint8_t* p = buf.data();
  const size_t n = buf.size();
  size_t pos = 0;
  if (n < 4 + kSha1Len + 4) return truncated(base, 4 + kSha1Len + 4, n);
  out.pcr = get_u32le(p);
  if (out.pcr > kMaxPcrIndex) return corrupt(base, "PCR index " + std::to_string(out.pcr));
  std::memcpy(out.digest.data(), p + 4, kSha1Len);
  uint32_t name_len = get_u32le(p + 4 + kSha1Len);
  pos = 4 + kSha1Len + 4;
  if (name_len == 0 || name_len > kMaxTemplateNameLen)
    return corrupt(base, "template name length " + std::to_string(name_len));
  if (n - pos < name_len) return truncated(base, pos + name_len, n);
  out.template_name.assign(reinterpret_cast<const char*>(p + pos), name_len);
  pos += name_len;

  uint32_t data_len;
  if (is_legacy(out.template_name)) {
    // d[20] || u32 len || name: the length is implicit in the name length word.
    if (n - pos < kLegacyDigestLen + 4) return truncated(base, pos + kLegacyDigestLen + 4, n);
    uint32_t nlen = get_u32le(p + pos + kLegacyDigestLen);
    if (nlen > kLegacyNameMax)
      return corrupt(base, "'ima' event name length " + std::to_string(nlen));
    data_len = static_cast<uint32_t>(kLegacyDigestLen + 4 + nlen);
  } else {
    if (n - pos < 4) return truncated(base, pos + 4, n);
    data_len = get_u32le(p + pos);
    pos += 4;
    if (data_len > kMaxTemplateDataLen)
      return corrupt(base, "template data length " + std::to_string(data_len));
  }
  if (n - pos < data_len) return truncated(base, pos + data_len, n);
  out.data.assign(p + pos, p + pos + data_len);
  pos += data_len;

  if (auto f = split_template_data(out.template_name, out.data); !f)
    return corrupt(base, "template '" + out.template_name + "': " + f.error().message);
  return pos;
}

RecordReader::RecordReader(int fd, uint64_t begin, uint64_t end, std::string path,
                           size_t buffer_size)
    : fd_(fd), end_(end), path_(std::move(path)), file_pos_(begin), offset_(begin) {
  buf_.resize(std::max<size_t>(buffer_size, 64));
}

Result<bool> RecordReader::fill() {
  if (file_pos_ >= end_) return false;
  if (pos_ > 0) {  // keep the unparsed tail at the front
    std::memmove(buf_.data(), buf_.data() + pos_, len_ - pos_);
    len_ -= pos_;
    pos_ = 0;
  }
  if (len_ == buf_.size()) buf_.resize(buf_.size() * 2);  // one record larger than the buffer
  size_t want = static_cast<size_t>(std::min<uint64_t>(buf_.size() - len_, end_ - file_pos_));
  for (;;) {
    ssize_t r = ::pread(fd_, buf_.data() + len_, want, static_cast<off_t>(file_pos_));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      return make_error(
          err, "read at offset " + std::to_string(file_pos_) + ": " + std::strerror(err), path_);
    }
    if (r == 0) {  // the file is shorter than the range we were told to read
      end_ = file_pos_;
      return false;
    }
    len_ += static_cast<size_t>(r);
    file_pos_ += static_cast<uint64_t>(r);
    return true;
  }
}

Result<bool> RecordReader::next(Record& out) {
  for (;;) {
    auto used = parse_record(std::span(buf_.data() + pos_, len_ - pos_), offset_, out);
    if (used) {
      pos_ += *used;
      record_offset_ = offset_;
      offset_ += *used;
      return true;
    }
    if (used.error().code != kErrTruncated) {
      used.error().where = path_ + ": " + used.error().where;
      return tl::unexpected(used.error());
    }
    auto more = fill();
    if (!more) return tl::unexpected(more.error());
    if (!*more) {
      if (len_ == pos_) return false;  // clean end
      used.error().where = path_ + ": " + used.error().where;
      return tl::unexpected(used.error());
    }
  }
}

}  // namespace nsima::measure

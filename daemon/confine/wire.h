// SPDX-License-Identifier: Apache-2.0
// The bytes between nsimad (or the OCI hook) and its confined parser, nsima-parse: frames on a
// socketpair, each `u32 length (little-endian) || body`, body = `u8 op-or-status || payload`.
// Writer and Reader are the only code that builds or reads a payload; a Reader never reads past
// its span and remembers the first short read (`ok()` false), so a truncated or lying reply is
// refused as a whole.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nsima::confine {

// Largest frame either side accepts (a manifest of ~200,000 lines; the control socket's own
// limit on a manifest is lower).
inline constexpr uint32_t kMaxFrame = 64u << 20;

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { le(v, 2); }
  void u32(uint32_t v) { le(v, 4); }
  void u64(uint64_t v) { le(v, 8); }
  void bytes(std::span<const uint8_t> b) {
    u32(static_cast<uint32_t>(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
  }
  void str(std::string_view s) {
    bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  }
  std::vector<uint8_t>& out() { return out_; }

 private:
  void le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  uint8_t u8() { return static_cast<uint8_t>(le(1)); }
  uint16_t u16() { return static_cast<uint16_t>(le(2)); }
  uint32_t u32() { return static_cast<uint32_t>(le(4)); }
  uint64_t u64() { return le(8); }
  // A length-prefixed byte string of at most `max` bytes.
  std::span<const uint8_t> bytes(size_t max) {
    const uint32_t n = u32();
    if (!ok_ || n > max || n > in_.size() - pos_) {
      ok_ = false;
      return {};
    }
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string str(size_t max) {
    auto b = bytes(max);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }  // every byte read, none missing

 private:
  uint64_t le(int n) {
    if (!ok_ || in_.size() - pos_ < static_cast<size_t>(n)) {
      ok_ = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(in_[pos_ + i]) << (8 * i);
    pos_ += n;
    return v;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace nsima::confine

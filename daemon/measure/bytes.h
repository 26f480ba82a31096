// SPDX-License-Identifier: Apache-2.0
// Little-endian integer helpers for the list and template encodings. The kernel writes host order
// (little-endian on x86/arm64) or, with ima_canonical_fmt, little-endian; we always write
// little-endian, which is both on the hosts we support. The static_assert keeps a big-endian
// build from silently producing lists the local kernel tools would read differently.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace nsima::measure {

static_assert(std::endian::native == std::endian::little,
              "nsima writes IMA lists in little-endian (canonical) order; big-endian hosts would "
              "need ima_canonical_fmt handling");

inline void put_u32le(std::vector<uint8_t>& out, uint32_t v) {
  uint8_t b[4];
  std::memcpy(b, &v, 4);
  out.insert(out.end(), b, b + 4);
}

inline void put_u32le(std::string& out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}

inline uint32_t get_u32le(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline void put_bytes(std::vector<uint8_t>& out, std::span<const uint8_t> b) {
  out.insert(out.end(), b.begin(), b.end());
}

inline std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace nsima::measure

// SPDX-License-Identifier: Apache-2.0
// Integers from nsima's own JSON state files (ns.json, overrides.json), read strictly.
// nlohmann::json's get<unsigned>() converts whatever number it finds: a float outside the target
// type's range is undefined behaviour (UBSan: "1.11111e+37 is outside the range of representable
// values of type 'unsigned int'", found by fuzz.state), and a negative integer wraps. nsima
// writes integers only, so anything else is damage and is reported as such.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>

#include <nlohmann/json.hpp>

namespace nsima {

// `v` as a T if it is a JSON integer in T's range; nullopt for any other value (a float, a
// string, a negative number for an unsigned T, a number out of range).
template <class T>
std::optional<T> json_int(const nlohmann::json& v) {
  static_assert(std::is_integral_v<T> && sizeof(T) <= sizeof(uint64_t));
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
    return static_cast<T>(u);
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      if (i < 0 || static_cast<uint64_t>(i) > std::numeric_limits<T>::max()) return std::nullopt;
    } else {
      if (i < std::numeric_limits<T>::min() || i > std::numeric_limits<T>::max())
        return std::nullopt;
    }
    return static_cast<T>(i);
  }
  return std::nullopt;
}

// Field `key` of object `j`: `dflt` when absent, nullopt when present but not such an integer.
template <class T>
std::optional<T> json_int_field(const nlohmann::json& j, const char* key, T dflt) {
  auto it = j.find(key);
  if (it == j.end()) return dflt;
  return json_int<T>(*it);
}

}  // namespace nsima

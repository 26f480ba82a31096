// SPDX-License-Identifier: Apache-2.0
// An OCI container id as runc and crun accept it: 1 to 1024 characters of A-Za-z0-9_+.-, not
// "." or ".." (it names files: the hook's record, archive directories).
#pragma once

#include <string_view>

namespace nsima {

inline bool is_container_id(std::string_view id) {
  if (id.empty() || id.size() > 1024 || id == "." || id == "..") return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == '+';
    if (!ok) return false;
  }
  return true;
}

}  // namespace nsima

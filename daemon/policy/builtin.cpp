// SPDX-License-Identifier: Apache-2.0
// The builtin policies, embedded so that nsimad works without policies/ installed: the files
// policies/<name>.policy, byte for byte, generated into builtin_policies.inc at build time
// (daemon/CMakeLists.txt). The kernel ones reproduce ima_policy.c's rule arrays.
#include <cerrno>

#include "policy/policy.h"

namespace nsima::policy {
namespace {

struct Builtin {
  std::string_view name;
  std::string_view text;
};

// clang-format off
constexpr Builtin kBuiltins[] = {
#include "builtin_policies.inc"  // NOLINT(build/include)
};
// clang-format on

}  // namespace

std::string_view builtin_text(std::string_view name) {
  for (const auto& b : kBuiltins)
    if (b.name == name) return b.text;
  return {};
}

std::vector<std::string> builtin_names() {
  std::vector<std::string> out;
  for (const auto& b : kBuiltins) out.emplace_back(b.name);
  return out;
}

Result<Policy> builtin_policy(std::string_view name) {
  std::string_view text = builtin_text(name);
  if (text.empty()) {
    std::string known;
    for (const auto& b : kBuiltins) known += (known.empty() ? "" : ", ") + std::string(b.name);
    return make_error(ENOENT,
                      "unknown builtin policy '" + std::string(name) + "' (known: " + known + ")");
  }
  return Policy::parse(text, "builtin:" + std::string(name));
}

}  // namespace nsima::policy

// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the policy unit tests: parse-or-fail wrappers that print the parser's error,
// and an Access builder for the common cases.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "policy/parser.h"
#include "policy/policy.h"

namespace nsima::policy::testing {

inline Rule parse_ok(std::string_view line) {
  auto r = parse_rule(line, "t.policy", 1);
  EXPECT_TRUE(r) << "'" << line << "' -> " << (r ? "" : r.error().to_string());
  return r ? *r : Rule{};
}

inline Policy policy_ok(std::string_view text, std::string_view name = "t.policy") {
  auto p = Policy::parse(text, name);
  EXPECT_TRUE(p) << (p ? "" : p.error().to_string());
  return p ? std::move(*p) : Policy{};
}

// Asserts that `text` is rejected at line:col, naming `token`, with `why` in the message.
inline ::testing::AssertionResult rejected_at(std::string_view text, int line, int col,
                                              std::string_view token, std::string_view why) {
  auto p = Policy::parse(text, "t.policy");
  if (p) return ::testing::AssertionFailure() << "accepted: " << text;
  const Error& e = p.error();
  std::string where = "t.policy:" + std::to_string(line) + ":" + std::to_string(col);
  if (e.where != where)
    return ::testing::AssertionFailure()
           << "where " << e.where << " != " << where << " (" << e.to_string() << ")";
  std::string tok = "'" + std::string(token) + "':";
  if (e.message.rfind(tok, 0) != 0)
    return ::testing::AssertionFailure()
           << "message does not start with " << tok << ": " << e.message;
  if (e.message.find(why) == std::string::npos)
    return ::testing::AssertionFailure() << "message lacks '" << why << "': " << e.message;
  if (e.code != EINVAL) return ::testing::AssertionFailure() << "code " << e.code;
  return ::testing::AssertionSuccess();
}

// Accepted or rejected, without caring where: for tables of kernel verdicts.
inline bool accepted(std::string_view line) { return static_cast<bool>(parse_rule(line, "t", 1)); }

inline Access access(Func f, uint32_t mask, uint32_t uid = 0) {
  Access a;
  a.func = f;
  a.mask = mask;
  a.uid = a.euid = a.suid = uid;
  a.gid = a.egid = a.sgid = uid;
  a.fsmagic = 0xef53;  // ext4
  a.fsname = "ext4";
  return a;
}

}  // namespace nsima::policy::testing

// SPDX-License-Identifier: Apache-2.0
// The kernel IMA policy grammar (security/integrity/ima/ima_policy.c, 6.12): text -> Rules.
// Accepts exactly what ima_parse_add_rule()/ima_parse_rule()/ima_validate_rule() accept, token
// order rules included, and rejects LSM label conditions, which nsima cannot evaluate. Every
// error names file:line:column (1-based, bytes), the offending token and why.
#pragma once

#include <string_view>
#include <vector>

#include "common/result.h"
#include "policy/rule.h"

namespace nsima::policy {

// Parses one rule line (no newline; a comment or blank line is an error here). `line_no` and
// `filename` only feed error positions and Rule::line.
Result<Rule> parse_rule(std::string_view line, std::string_view filename, size_t line_no);

// Parses a whole policy: one rule per line, blank lines and lines whose first non-blank character
// is '#' skipped. The first error fails the whole text (a policy is applied whole or not at all).
// A text without any rule is an error too: the kernel refuses to commit an empty batch.
// The largest policy text nsima parses (nsimad's load, nsimactl's check and explain alike): far
// above any real policy, and small enough to travel in one control request.
inline constexpr size_t kMaxPolicyBytes = size_t{4} << 20;

Result<std::vector<Rule>> parse_rules(std::string_view text, std::string_view filename);

// Like parse_rules() but keeps going after an error and returns every error found, in order
// (empty when the text is valid). For `nsimactl policy check`.
std::vector<Error> check_rules(std::string_view text, std::string_view filename);

}  // namespace nsima::policy

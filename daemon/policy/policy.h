// SPDX-License-Identifier: Apache-2.0
// The policy engine: a parsed IMA policy and the decision the kernel's ima_match_policy() would
// take for one access (ima-facts §1.5). Rules are walked in list order; the first matching rule
// of each pair (measure/dont_measure, appraise/dont_appraise, hash/dont_hash, audit) decides that
// kind, independently of the others; signature/directio/verity flags are OR-ed from every rule
// that matched while its kind was still open; pcr= and template= come from the measure rule.
//
// evaluate() is on the daemon's hot path: it allocates nothing (the rule lists per func are
// built at parse time) unless the deciding appraise rule carries appraise_algos=, whose names
// are copied into the Decision (evaluate_into() reuses the Decision's storage instead). Each
// func's list carries a 64-bit "quick key" per rule (hashed fs and owner conditions) so that the
// walk rejects most rules with one AND and compare, eight rules per branch.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/event.h"
#include "common/result.h"
#include "policy/rule.h"

namespace nsima::policy {

// One IMA "func" invocation to judge.
struct Access {
  Func func = Func::kNone;
  uint32_t mask = 0;  // NSIMA_MAY_* bits
  uint32_t uid = 0, euid = 0, suid = 0, gid = 0, egid = 0, sgid = 0;
  // CAP_SETUID / CAP_SETGID of the *current* task. For CREDS_CHECK the ids are bprm->cred's but
  // the kernel still asks has_capability_noaudit(current, ...), i.e. the pre-exec creds.
  bool cap_setuid = false, cap_setgid = false;
  uint32_t fowner = 0, fgroup = 0;
  uint64_t fsmagic = 0;
  std::string fsname;
  std::array<uint8_t, 16> fsuuid{};
};

// The accesses the kernel would judge for a captured event, in the kernel's order:
// file_open -> FILE_CHECK with ev.mask; mmap_file -> MMAP_CHECK_REQPROT if reqprot has PROT_EXEC,
// then MMAP_CHECK if prot has PROT_EXEC (none, one or both); bprm_check -> BPRM_CHECK with
// ev.cred, then CREDS_CHECK with ev.new_cred. All but FILE_CHECK use MAY_EXEC.
std::vector<Access> accesses_of(const nsima::Event& ev);

struct Decision {
  bool measure = false, appraise = false, audit = false, hash = false;
  int pcr = -1;               // from the matching measure rule; -1 = namespace default
  std::string template_name;  // from the matching measure rule; empty = namespace default
  bool digsig_required = false, permit_directio = false, modsig_allowed = false,
       verity_required = false;
  std::vector<std::string> appraise_algos;  // from the matching appraise rule; empty = any
  uint32_t appraise_algos_mask = 0;         // the same as bits of enum hash_algo; 0 = any
  // Index of the rule that decided each kind (also a dont_* rule), -1 when none matched.
  int measure_rule = -1, appraise_rule = -1, audit_rule = -1, hash_rule = -1;
  // True if some rule reached during the walk had all its non-credential conditions matching
  // and a credential condition (uid/euid/gid/egid): the same (file, func, mask) accessed with
  // other credentials could be decided differently, so repeats must not be silenced.
  bool cred_dependent = false;
};

class Policy {
 public:
  Policy() = default;  // the empty policy: decides nothing

  // Parses a whole policy text (see parser.h); the first error fails the whole text.
  static Result<Policy> parse(std::string_view text, std::string_view filename);
  // Builds a policy from already parsed rules (e.g. a namespace's policy plus appended rules).
  // A rule carrying LSM conditions (only possible if built by hand: the parser refuses them)
  // never matches, like a kernel rule whose LSM label is inactive.
  static Policy from_rules(std::vector<Rule> rules, std::string filename);

  Decision evaluate(const Access& a) const;
  // Same as evaluate(), reusing `d`'s string/vector storage: no allocation once warm.
  void evaluate_into(const Access& a, Decision& d) const;

  size_t size() const { return rules_.size(); }
  bool empty() const { return rules_.empty(); }
  const Rule& rule(size_t i) const { return rules_[i]; }
  const std::vector<Rule>& rules() const { return rules_; }
  const std::string& filename() const { return filename_; }
  // Whole policy in the kernel's read-back format, one rule per line.
  std::string to_string() const;
  // Whether some rule with this exact action can take part in access decisions. Like the
  // kernel's ima_policy_flag, func=SETXATTR_CHECK rules do not count.
  bool has_action(Action kind) const;

 private:
  // Everything evaluate() needs of a rule, packed for the walk.
  struct Compiled {
    uint16_t action;  // kernel action bit (MEASURE 0x1 ... DONT_HASH 0x200)
    uint16_t cond;    // kCond* bits below
    uint8_t mask;
    uint8_t uid_op, gid_op, fowner_op, fgroup_op;
    uint8_t template_id;  // index+1 into builtin_templates(); 0 = none
    int8_t pcr;           // -1 = none
    uint8_t nonaction;    // kNa* bits below
    uint32_t uid, gid, fowner, fgroup;
    uint32_t fsname_off, fsname_len;
    uint32_t appraise_algos;
    uint64_t fsmagic;
    std::array<uint8_t, 16> fsuuid;
  };
  // The rules that can match one func (func= equal, or no func=), in policy order. A rule can
  // only match an access whose quick key k has (k & qmask[i]) == qval[i]; the arrays are padded
  // to a multiple of kQuickBlock with entries that never pass.
  struct FuncIndex {
    std::vector<uint32_t> rules;
    std::vector<uint64_t> qmask, qval;
  };
  static constexpr size_t kQuickBlock = 8;
  void compile();

  std::string filename_;
  std::vector<Rule> rules_;
  std::vector<Compiled> compiled_;
  std::string fsnames_;  // fsname= values, concatenated
  std::array<FuncIndex, kFuncCount> by_func_;
  uint32_t requested_ = 0;  // DO-action bits present in the policy (ima_policy_flag)
};

// Reads and parses a policy file; errors name the file (and line:column for syntax errors).
Result<Policy> load_policy_file(const std::string& path);
// The text of a policy file; errors name the file.
Result<std::string> read_policy_text(const std::string& path);

// Builtin policies (builtin.cpp; the same texts as policies/<name>.policy): the kernel's "tcb",
// "appraise_tcb", "secure_boot", "critical_data", and nsima's "container-measure",
// "container-appraise", "container-default". Parsed with filename "builtin:<name>".
Result<Policy> builtin_policy(std::string_view name);
std::string_view builtin_text(std::string_view name);  // empty if unknown
std::vector<std::string> builtin_names();

}  // namespace nsima::policy

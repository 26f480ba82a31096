// SPDX-License-Identifier: Apache-2.0
// One rule of a kernel IMA policy, as security/integrity/ima/ima_policy.c (6.12) holds it after
// parsing: the action, its conditions and options, plus where it came from (line and original
// text) so that explanations and errors can point at the source. Also the kernel's name tables
// (funcs, templates, hash algorithms) that the parser, the read-back printer and the engine share.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nsima::policy {

// IMA "func" values (enum ima_hooks in the kernel, less the internal POST_SETATTR).
enum class Func : uint8_t {
  kNone,
  kFileCheck,
  kMmapCheck,
  kMmapCheckReqprot,
  kBprmCheck,
  kCredsCheck,
  kModuleCheck,
  kFirmwareCheck,
  kKexecKernelCheck,
  kKexecInitramfsCheck,
  kKexecCmdline,
  kPolicyCheck,
  kKeyCheck,
  kCriticalData,
  kSetxattrCheck,
};
inline constexpr size_t kFuncCount = 15;

// Canonical kernel name ("FILE_CHECK"); "NONE" for kNone.
std::string_view func_name(Func f);
// Accepts the canonical names and the kernel's aliases PATH_CHECK and FILE_MMAP.
std::optional<Func> func_from_name(std::string_view name);
// The funcs a BPF-LSM event can produce (FILE_CHECK, MMAP_CHECK(_REQPROT), BPRM_CHECK,
// CREDS_CHECK). Rules for any other func are valid but never match an nsima access.
bool func_observable(Func f);

enum class Action : uint8_t {
  kMeasure,
  kDontMeasure,
  kAppraise,
  kDontAppraise,
  kAudit,
  kHash,
  kDontHash,
};
std::string_view action_name(Action a);

// Comparison of uid/euid/gid/egid/fowner/fgroup conditions.
enum class CmpOp : uint8_t { kEq, kGt, kLt };

// One numeric identity condition. The uid slot holds uid= or euid= (effective = true), the gid
// slot gid= or egid=; fowner/fgroup never set `effective`.
struct IdCond {
  bool set = false;
  bool effective = false;
  CmpOp op = CmpOp::kEq;
  uint32_t value = 0;
  bool matches(uint32_t id) const {
    switch (op) {
      case CmpOp::kEq:
        return id == value;
      case CmpOp::kGt:
        return id > value;
      case CmpOp::kLt:
        return id < value;
    }
    return false;
  }
};

// LSM label conditions, in the kernel's order (enum lsm_rule_types).
enum class LsmField : uint8_t { kObjUser, kObjRole, kObjType, kSubjUser, kSubjRole, kSubjType };
inline constexpr size_t kLsmFieldCount = 6;
std::string_view lsm_field_name(LsmField f);  // "obj_user", ...

// A template IMA knows by name (ima_template.c builtin_templates).
struct TemplateDesc {
  std::string_view name;  // "ima-ng"
  std::string_view fmt;   // "d-ng|n-ng"
};
// Looks a template= value up by name or by format string, as lookup_template_desc() does.
const TemplateDesc* find_template(std::string_view name_or_fmt);
const std::vector<TemplateDesc>& builtin_templates();
// The templates nsima's pipeline writes entries in (ima-ng, ima-sig, ima). The parser refuses a
// template= naming any other (ima-ngv2, ima-sigv2: no fs-verity digests; ima-buf, ima-modsig,
// evm-sig: fields nsima does not fill) instead of letting it fall back to the default.
bool template_produced(std::string_view name);
// "ima-ng, ima-sig and ima", for messages.
std::string_view produced_templates();

// Kernel hash algorithm names (crypto/hash_info.c hash_algo_name[], indexed by enum hash_algo).
inline constexpr size_t kHashAlgoCount = 23;
std::string_view hash_algo_name(size_t id);
std::optional<size_t> hash_algo_from_name(std::string_view name);
// Whether the 6.12 kernel's crypto API can provide the algorithm (crypto_has_alg). rmd128/256/320
// and tgr* were removed from the kernel's crypto code; sm3 is not built in Debian's config.
bool hash_algo_available(size_t id);

struct Rule {
  // Provenance.
  size_t line = 0;   // 1-based line in the policy source
  std::string text;  // the source line without its newline

  Action action = Action::kMeasure;
  Func func = Func::kNone;      // kNone: no func= condition
  uint32_t mask = 0;            // one NSIMA_MAY_* bit; 0: no mask= condition
  bool mask_inclusive = false;  // mask=^MAY_X: any access containing the bit
  std::optional<uint64_t> fsmagic;
  std::optional<std::string> fsname;
  std::optional<std::array<uint8_t, 16>> fsuuid;
  IdCond uid;  // uid= / euid=
  IdCond gid;  // gid= / egid=
  IdCond fowner;
  IdCond fgroup;
  std::optional<std::vector<std::string>> keyrings;  // KEY_CHECK only
  std::optional<std::vector<std::string>> labels;    // CRITICAL_DATA only (label=)
  std::optional<int> pcr;
  std::string template_name;     // canonical template name; empty: no template=
  bool digsig_required = false;  // appraise_type=imasig / imasig|modsig / sigv3
  bool modsig_allowed = false;   // appraise_type=imasig|modsig
  bool check_blacklist = false;  // implied by every appraise_type since 6.6
  bool verity_required = false;  // digest_type=verity
  bool permit_directio = false;
  uint32_t appraise_algos = 0;                  // bit per enum hash_algo id; 0: no appraise_algos=
  std::array<std::string, kLsmFieldCount> lsm;  // empty string: field absent

  // The rule as the kernel prints it in securityfs ima/policy (ima_policy_show): action, one
  // space, each item followed by one space. No newline.
  std::string to_string() const;
  // uid/euid/gid/egid or subj_* condition: the outcome can depend on who accesses the file.
  bool has_cred_condition() const;
  bool has_lsm_condition() const;
  // Appraise algorithm names in enum hash_algo order.
  std::vector<std::string> appraise_algo_names() const;
};

// Formats a UUID as the kernel's %pU does (lower-case, 8-4-4-4-12).
std::string format_uuid(const std::array<uint8_t, 16>& uuid);
// Parses like the kernel's uuid_parse(): the first 36 characters must be a canonical UUID;
// anything after them is ignored, as the kernel ignores it.
std::optional<std::array<uint8_t, 16>> parse_uuid_kernel(std::string_view s);

}  // namespace nsima::policy

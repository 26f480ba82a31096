// SPDX-License-Identifier: Apache-2.0
// Name tables shared by the parser, the engine and the read-back printer, and Rule::to_string(),
// which reproduces the kernel's ima_policy_show() output byte for byte (ima-facts §1.8).
#include "policy/rule.h"

#include <cstdio>

#include "nsima/bpf_abi.h"

namespace nsima::policy {
namespace {

struct FuncName {
  std::string_view name;
  Func func;
};

// Canonical names first: func_name() returns the first entry of a func.
constexpr FuncName kFuncNames[] = {
    {"FILE_CHECK", Func::kFileCheck},
    {"MMAP_CHECK", Func::kMmapCheck},
    {"MMAP_CHECK_REQPROT", Func::kMmapCheckReqprot},
    {"BPRM_CHECK", Func::kBprmCheck},
    {"CREDS_CHECK", Func::kCredsCheck},
    {"MODULE_CHECK", Func::kModuleCheck},
    {"FIRMWARE_CHECK", Func::kFirmwareCheck},
    {"KEXEC_KERNEL_CHECK", Func::kKexecKernelCheck},
    {"KEXEC_INITRAMFS_CHECK", Func::kKexecInitramfsCheck},
    {"KEXEC_CMDLINE", Func::kKexecCmdline},
    {"POLICY_CHECK", Func::kPolicyCheck},
    {"KEY_CHECK", Func::kKeyCheck},
    {"CRITICAL_DATA", Func::kCriticalData},
    {"SETXATTR_CHECK", Func::kSetxattrCheck},
    // Backward-compatible aliases the kernel still accepts.
    {"PATH_CHECK", Func::kFileCheck},
    {"FILE_MMAP", Func::kMmapCheck},
};

// ima_template.c builtin_templates (6.12 and mainline 2026 carry the same list; there is no
// "ima-sigv3" although the ABI document shows one).
const std::vector<TemplateDesc> kTemplates = {
    {"ima", "d|n"},
    {"ima-ng", "d-ng|n-ng"},
    {"ima-ngv2", "d-ngv2|n-ng"},
    {"ima-sig", "d-ng|n-ng|sig"},
    {"ima-sigv2", "d-ngv2|n-ng|sig"},
    {"ima-buf", "d-ng|n-ng|buf"},
    {"ima-modsig", "d-ng|n-ng|sig|d-modsig|modsig"},
    {"evm-sig", "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode"},
};

// crypto/hash_info.c hash_algo_name[], indexed by enum hash_algo (uapi, stable).
constexpr std::string_view kHashAlgos[kHashAlgoCount] = {
    "md4",    "md5",    "sha1",        "rmd160",      "sha256",   "sha384",   "sha512",   "sha224",
    "rmd128", "rmd256", "rmd320",      "wp256",       "wp384",    "wp512",    "tgr128",   "tgr160",
    "tgr192", "sm3",    "streebog256", "streebog512", "sha3-256", "sha3-384", "sha3-512",
};

constexpr std::string_view kLsmNames[kLsmFieldCount] = {"obj_user",  "obj_role",  "obj_type",
                                                        "subj_user", "subj_role", "subj_type"};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

const char* op_text(CmpOp op) {
  switch (op) {
    case CmpOp::kEq:
      return "=";
    case CmpOp::kGt:
      return ">";
    case CmpOp::kLt:
      return "<";
  }
  return "=";
}

// The kernel prints ids with %d from the raw kuid value, so ids above INT_MAX come out negative.
void append_id(std::string& out, const char* key, const IdCond& c) {
  out += key;
  out += op_text(c.op);
  out += std::to_string(static_cast<int32_t>(c.value));
  out += ' ';
}

void append_list(std::string& out, const char* key, const std::vector<std::string>& items) {
  out += key;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += '|';
    out += items[i];
  }
  out += ' ';
}

}  // namespace

std::string_view func_name(Func f) {
  for (const auto& e : kFuncNames)
    if (e.func == f) return e.name;
  return "NONE";
}

std::optional<Func> func_from_name(std::string_view name) {
  for (const auto& e : kFuncNames)
    if (e.name == name) return e.func;
  return std::nullopt;
}

bool func_observable(Func f) {
  switch (f) {
    case Func::kFileCheck:
    case Func::kMmapCheck:
    case Func::kMmapCheckReqprot:
    case Func::kBprmCheck:
    case Func::kCredsCheck:
      return true;
    default:
      return false;
  }
}

std::string_view action_name(Action a) {
  switch (a) {
    case Action::kMeasure:
      return "measure";
    case Action::kDontMeasure:
      return "dont_measure";
    case Action::kAppraise:
      return "appraise";
    case Action::kDontAppraise:
      return "dont_appraise";
    case Action::kAudit:
      return "audit";
    case Action::kHash:
      return "hash";
    case Action::kDontHash:
      return "dont_hash";
  }
  return "?";
}

std::string_view lsm_field_name(LsmField f) { return kLsmNames[static_cast<size_t>(f)]; }

const std::vector<TemplateDesc>& builtin_templates() { return kTemplates; }

const TemplateDesc* find_template(std::string_view name_or_fmt) {
  for (const auto& t : kTemplates)
    if (t.name == name_or_fmt || t.fmt == name_or_fmt) return &t;
  return nullptr;
}

bool template_produced(std::string_view name) {
  // Keep in step with the templates the pipeline encodes (measure::TemplateKind kIma, kImaNg,
  // kImaSig) and with README.md.
  return name == "ima-ng" || name == "ima-sig" || name == "ima";
}

std::string_view produced_templates() { return "ima-ng, ima-sig and ima"; }

std::string_view hash_algo_name(size_t id) { return id < kHashAlgoCount ? kHashAlgos[id] : ""; }

std::optional<size_t> hash_algo_from_name(std::string_view name) {
  for (size_t i = 0; i < kHashAlgoCount; ++i)
    if (kHashAlgos[i] == name) return i;
  return std::nullopt;
}

bool hash_algo_available(size_t id) {
  switch (id) {
    case 8:   // rmd128
    case 9:   // rmd256
    case 10:  // rmd320
    case 14:  // tgr128
    case 15:  // tgr160
    case 16:  // tgr192
    case 17:  // sm3
      return false;
    default:
      return id < kHashAlgoCount;
  }
}

std::string format_uuid(const std::array<uint8_t, 16>& uuid) {
  char buf[37];
  std::snprintf(buf, sizeof buf,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", uuid[0],
                uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6], uuid[7], uuid[8], uuid[9],
                uuid[10], uuid[11], uuid[12], uuid[13], uuid[14], uuid[15]);
  return buf;
}

std::optional<std::array<uint8_t, 16>> parse_uuid_kernel(std::string_view s) {
  // lib/uuid.c uuid_is_valid() checks exactly the first 36 characters.
  constexpr size_t kLen = 36;
  if (s.size() < kLen) return std::nullopt;
  for (size_t i = 0; i < kLen; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return std::nullopt;
    } else if (hex_value(s[i]) < 0) {
      return std::nullopt;
    }
  }
  static constexpr size_t kPos[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
  std::array<uint8_t, 16> out{};
  for (size_t i = 0; i < 16; ++i)
    out[i] = static_cast<uint8_t>(hex_value(s[kPos[i]]) << 4 | hex_value(s[kPos[i] + 1]));
  return out;
}

bool Rule::has_cred_condition() const {
  return uid.set || gid.set || !lsm[static_cast<size_t>(LsmField::kSubjUser)].empty() ||
         !lsm[static_cast<size_t>(LsmField::kSubjRole)].empty() ||
         !lsm[static_cast<size_t>(LsmField::kSubjType)].empty();
}

bool Rule::has_lsm_condition() const {
  for (const auto& l : lsm)
    if (!l.empty()) return true;
  return false;
}

std::vector<std::string> Rule::appraise_algo_names() const {
  std::vector<std::string> out;
  for (size_t i = 0; i < kHashAlgoCount; ++i)
    if (appraise_algos & (1u << i)) out.emplace_back(kHashAlgos[i]);
  return out;
}

std::string Rule::to_string() const {
  std::string out(action_name(action));
  out += ' ';
  if (func != Func::kNone) {
    out += "func=";
    out += func_name(func);
    out += ' ';
  }
  if (mask) {
    // One mask= token per bit, in EXEC, WRITE, READ, APPEND order; '^' kept for inclusive.
    static constexpr std::pair<uint32_t, const char*> kBits[] = {{NSIMA_MAY_EXEC, "MAY_EXEC"},
                                                                 {NSIMA_MAY_WRITE, "MAY_WRITE"},
                                                                 {NSIMA_MAY_READ, "MAY_READ"},
                                                                 {NSIMA_MAY_APPEND, "MAY_APPEND"}};
    for (const auto& [bit, name] : kBits) {
      if (!(mask & bit)) continue;
      out += "mask=";
      if (mask_inclusive) out += '^';
      out += name;
    }
    out += ' ';
  }
  if (fsmagic) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "fsmagic=0x%llx ", static_cast<unsigned long long>(*fsmagic));
    out += buf;
  }
  if (fsname) {
    // The kernel formats fsname through a 64-byte buffer: longer names are cut to 63 bytes.
    out += "fsname=";
    out += fsname->substr(0, 63);
    out += ' ';
  }
  if (keyrings) append_list(out, "keyrings=", *keyrings);
  if (labels) append_list(out, "label=", *labels);
  if (pcr) {
    out += "pcr=";
    out += std::to_string(*pcr);
    out += ' ';
  }
  if (fsuuid) {
    out += "fsuuid=";
    out += format_uuid(*fsuuid);
    out += ' ';
  }
  if (uid.set) append_id(out, uid.effective ? "euid" : "uid", uid);
  if (gid.set) append_id(out, gid.effective ? "egid" : "gid", gid);
  if (fowner.set) append_id(out, "fowner", fowner);
  if (fgroup.set) append_id(out, "fgroup", fgroup);
  if (appraise_algos) {
    out += "appraise_algos=";
    bool first = true;
    for (size_t i = 0; i < kHashAlgoCount; ++i) {
      if (!(appraise_algos & (1u << i))) continue;
      if (!first) out += ',';
      first = false;
      out += kHashAlgos[i];
    }
    out += ' ';
  }
  for (size_t i = 0; i < kLsmFieldCount; ++i) {
    if (lsm[i].empty()) continue;
    out += kLsmNames[i];
    out += '=';
    out += lsm[i];
    out += ' ';
  }
  if (!template_name.empty()) {
    out += "template=";
    out += template_name;
    out += ' ';
  }
  if (digsig_required) {
    if (verity_required)
      out += "appraise_type=sigv3 ";
    else if (modsig_allowed)
      out += "appraise_type=imasig|modsig ";
    else
      out += "appraise_type=imasig ";
  }
  if (verity_required) out += "digest_type=verity ";
  if (permit_directio) out += "permit_directio ";
  return out;
}

}  // namespace nsima::policy

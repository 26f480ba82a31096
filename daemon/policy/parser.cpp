// SPDX-License-Identifier: Apache-2.0
// Parser for the kernel IMA policy grammar. The structure follows the kernel on purpose, so that
// differences are easy to spot when ima_policy.c changes: tokens are handled left to right with
// the same per-token checks as ima_parse_rule() (duplicates, token order for template= and
// digest_type=/appraise_type=, number syntax of kstrtoul()/kstrtoint()), then the whole rule is
// checked like ima_validate_rule() does, using the same flag bits. Unlike the kernel, which only
// says EINVAL, every failure is reported with the token that caused it.
#include "policy/parser.h"

#include <algorithm>
#include <cerrno>
#include <limits>
#include <string>
#include <vector>

#include "nsima/bpf_abi.h"

namespace nsima::policy {
namespace {

// ima_policy.c rule flags (and integrity.h non-action flags) that ima_validate_rule() checks.
constexpr uint32_t kFlagFunc = 0x0001;
constexpr uint32_t kFlagMask = 0x0002;
constexpr uint32_t kFlagFsmagic = 0x0004;
constexpr uint32_t kFlagUid = 0x0008;
constexpr uint32_t kFlagFowner = 0x0010;
constexpr uint32_t kFlagFsuuid = 0x0020;
constexpr uint32_t kFlagInmask = 0x0040;
constexpr uint32_t kFlagEuid = 0x0080;
constexpr uint32_t kFlagPcr = 0x0100;
constexpr uint32_t kFlagFsname = 0x0200;
constexpr uint32_t kFlagKeyrings = 0x0400;
constexpr uint32_t kFlagLabel = 0x0800;
constexpr uint32_t kFlagAlgos = 0x1000;
constexpr uint32_t kFlagGid = 0x2000;
constexpr uint32_t kFlagEgid = 0x4000;
constexpr uint32_t kFlagFgroup = 0x8000;
constexpr uint32_t kFlagDigsig = 0x01000000;
constexpr uint32_t kFlagDirectio = 0x02000000;
constexpr uint32_t kFlagModsig = 0x20000000;
constexpr uint32_t kFlagBlacklist = 0x40000000;
constexpr uint32_t kFlagVerity = 0x80000000;

// Allowed flags per func group (ima_validate_rule, 6.12).
constexpr uint32_t kAllowedFileFuncs =
    kFlagFunc | kFlagMask | kFlagFsmagic | kFlagUid | kFlagFowner | kFlagFsuuid | kFlagInmask |
    kFlagEuid | kFlagPcr | kFlagFsname | kFlagGid | kFlagEgid | kFlagFgroup | kFlagDigsig |
    kFlagDirectio | kFlagAlgos | kFlagBlacklist | kFlagVerity;
constexpr uint32_t kAllowedModuleFuncs =
    kFlagFunc | kFlagMask | kFlagFsmagic | kFlagUid | kFlagFowner | kFlagFsuuid | kFlagInmask |
    kFlagEuid | kFlagPcr | kFlagFsname | kFlagGid | kFlagEgid | kFlagFgroup | kFlagDigsig |
    kFlagDirectio | kFlagModsig | kFlagBlacklist | kFlagAlgos;
constexpr uint32_t kAllowedKexecCmdline = kFlagFunc | kFlagFsmagic | kFlagUid | kFlagFowner |
                                          kFlagFsuuid | kFlagEuid | kFlagPcr | kFlagFsname |
                                          kFlagGid | kFlagEgid | kFlagFgroup;
constexpr uint32_t kAllowedKeyCheck = kFlagFunc | kFlagUid | kFlagGid | kFlagPcr | kFlagKeyrings;
constexpr uint32_t kAllowedCriticalData = kFlagFunc | kFlagUid | kFlagGid | kFlagPcr | kFlagLabel;
constexpr uint32_t kAllowedSetxattr = kFlagFunc | kFlagAlgos;

struct Token {
  std::string_view text;
  size_t col;  // 1-based byte column in the line
};

// Splits on spaces and tabs, the only separators strsep(&rule, " \t") knows.
std::vector<Token> tokenize(std::string_view line) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back({line.substr(start, i - start), start + 1});
  }
  return out;
}

enum class NumErr { kOk, kInvalid, kRange };

// lib/kstrtox.c _kstrtoull(): optional "0x"/"0X" for base 16, at least one digit, nothing after.
NumErr parse_ull_raw(std::string_view s, unsigned base, uint64_t* out) {
  if (base == 16 && s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
    s.remove_prefix(2);
  uint64_t v = 0;
  size_t n = 0;
  bool overflow = false;
  for (; n < s.size(); ++n) {
    char c = s[n];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      break;
    if (d >= base) break;
    if (v > (std::numeric_limits<uint64_t>::max() - d) / base) overflow = true;
    v = v * base + d;
  }
  if (overflow) return NumErr::kRange;
  if (n == 0 || n != s.size()) return NumErr::kInvalid;
  *out = v;
  return NumErr::kOk;
}

// kstrtoull()/kstrtoul(): like _kstrtoull() plus one optional leading '+'.
NumErr parse_ull(std::string_view s, unsigned base, uint64_t* out) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  return parse_ull_raw(s, base, out);
}

// kstrtoint(s, 10): optional '+' or '-', int range.
NumErr parse_int(std::string_view s, int* out) {
  uint64_t mag;
  if (!s.empty() && s[0] == '-') {
    NumErr e = parse_ull_raw(s.substr(1), 10, &mag);
    if (e != NumErr::kOk) return e;
    if (mag > static_cast<uint64_t>(std::numeric_limits<int>::max()) + 1) return NumErr::kRange;
    *out = static_cast<int>(-static_cast<int64_t>(mag));
    return NumErr::kOk;
  }
  NumErr e = parse_ull(s, 10, &mag);
  if (e != NumErr::kOk) return e;
  if (mag > static_cast<uint64_t>(std::numeric_limits<int>::max())) return NumErr::kRange;
  *out = static_cast<int>(mag);
  return NumErr::kOk;
}

// ima_alloc_rule_opt_list(): '|'-separated, no empty item.
bool parse_opt_list(std::string_view s, std::vector<std::string>* out) {
  out->clear();
  size_t start = 0;
  while (true) {
    size_t bar = s.find('|', start);
    std::string_view item = s.substr(start, bar == std::string_view::npos ? bar : bar - start);
    if (item.empty()) return false;
    out->emplace_back(item);
    if (bar == std::string_view::npos) return true;
    start = bar + 1;
  }
}

std::string known_funcs() {
  return "FILE_CHECK, MMAP_CHECK, MMAP_CHECK_REQPROT, BPRM_CHECK, CREDS_CHECK, MODULE_CHECK, "
         "FIRMWARE_CHECK, KEXEC_KERNEL_CHECK, KEXEC_INITRAMFS_CHECK, KEXEC_CMDLINE, POLICY_CHECK, "
         "KEY_CHECK, CRITICAL_DATA, SETXATTR_CHECK (aliases PATH_CHECK, FILE_MMAP)";
}

std::string known_templates() {
  std::string out;
  for (const auto& t : builtin_templates()) {
    if (!out.empty()) out += ", ";
    out += t.name;
  }
  return out;
}

// A token or value as an error message shows it: bytes outside printable ASCII escaped (\r,
// \t, \xNN), cut after 120 characters, so binary input or a megabyte token never reaches a
// terminal raw.
std::string shown(std::string_view s) {
  constexpr size_t kMax = 120;
  std::string out;
  size_t i = 0;
  for (; i < s.size() && out.size() < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (i < s.size()) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

// Levenshtein distance, case-insensitive; stops counting above `limit`.
size_t edit_distance(std::string_view a, std::string_view b, size_t limit) {
  if (a.size() > b.size() + limit || b.size() > a.size() + limit) return limit + 1;
  auto low = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (low(a[i - 1]) == low(b[j - 1]) ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The candidate nearest to `s` (a typo: at most 1 edit for short words, 2 for longer ones),
// or "" when none is near enough to suggest.
template <typename Names>
std::string nearest(std::string_view s, const Names& names) {
  const size_t limit = s.size() <= 4 ? 1 : 2;
  std::string best;
  size_t best_d = limit + 1;
  for (std::string_view n : names) {
    size_t d = edit_distance(s, n, limit);
    if (d < best_d) best_d = d, best = std::string(n);
  }
  return best;
}

std::string did_you_mean(const std::string& near) {
  return near.empty() ? "" : " (did you mean '" + near + "'?)";
}

constexpr std::string_view kActionNames[] = {"measure", "dont_measure", "appraise", "dont_appraise",
                                             "audit",   "hash",         "dont_hash", "permit_directio"};
constexpr std::string_view kKeyNames[] = {
    "func",      "mask",      "fsmagic",   "fsname",        "fsuuid",   "keyrings",
    "label",     "obj_user",  "obj_role",  "obj_type",      "subj_user", "subj_role",
    "subj_type", "digest_type", "appraise_type", "pcr",     "template", "appraise_flag",
    "appraise_algos", "uid", "euid", "gid", "egid", "fowner", "fgroup"};
constexpr std::string_view kFuncNamesShown[] = {
    "FILE_CHECK",   "MMAP_CHECK",    "MMAP_CHECK_REQPROT", "BPRM_CHECK",
    "CREDS_CHECK",  "MODULE_CHECK",  "FIRMWARE_CHECK",     "KEXEC_KERNEL_CHECK",
    "KEXEC_INITRAMFS_CHECK", "KEXEC_CMDLINE", "POLICY_CHECK", "KEY_CHECK",
    "CRITICAL_DATA", "SETXATTR_CHECK", "PATH_CHECK", "FILE_MMAP"};
constexpr std::string_view kMaskNames[] = {"MAY_EXEC", "MAY_WRITE", "MAY_READ", "MAY_APPEND"};

// State of one rule while its tokens are read.
class RuleParser {
 public:
  RuleParser(std::string_view line, std::string_view filename, size_t line_no)
      : line_(line), filename_(filename), line_no_(line_no) {
    rule_.line = line_no;
    rule_.text = std::string(line);
  }

  Result<Rule> run() {
    tokens_ = tokenize(line_);
    for (const Token& t : tokens_) {
      if (auto err = token(t); !err.empty()) return fail(t.col, t.text, err);
    }
    return validate();
  }

 private:
  tl::unexpected<Error> fail(size_t col, std::string_view tok, const std::string& why) {
    std::string where =
        std::string(filename_) + ":" + std::to_string(line_no_) + ":" + std::to_string(col);
    std::string msg = "'" + shown(tok) + "': " + why;
    if (tok.find('\r') != std::string_view::npos && why.find("CRLF") == std::string::npos)
      msg += " (a carriage return is part of it: CRLF line endings?)";
    return make_error(EINVAL, std::move(msg), std::move(where));
  }

  void set_flag(uint32_t flag, size_t col) {
    if (!(flags_ & flag)) {
      for (int b = 0; b < 32; ++b)
        if (flag & (1u << b)) flag_col_[b] = col;
    }
    flags_ |= flag;
  }

  // Column of the left-most token that set any of `flags`.
  size_t col_of(uint32_t flags) const {
    size_t best = 0;
    for (int b = 0; b < 32; ++b) {
      if (!(flags & flags_ & (1u << b))) continue;
      if (best == 0 || flag_col_[b] < best) best = flag_col_[b];
    }
    return best;
  }

  std::string_view token_at(size_t col) const {
    for (const Token& t : tokens_)
      if (t.col == col) return t.text;
    return {};
  }

  // Returns "" when the token is accepted, else why it is not.
  std::string token(const Token& t) {
    std::string_view s = t.text;
    if (auto a = action_of(s)) return set_action(*a, t);
    if (s == "permit_directio") {
      rule_.permit_directio = true;
      set_flag(kFlagDirectio, t.col);
      return "";
    }
    // key=value, key>value, key<value: split at the first operator character.
    size_t op_pos = s.find_first_of("=<>");
    if (op_pos == std::string_view::npos) return unknown(s);
    std::string_view key = s.substr(0, op_pos);
    char op = s[op_pos];
    std::string_view value = s.substr(op_pos + 1);

    if (key == "uid" || key == "euid" || key == "gid" || key == "egid" || key == "fowner" ||
        key == "fgroup") {
      if (value.empty()) return "empty value";
      return id_cond(key, op, value, t.col);
    }
    if (op != '=') return unknown(s);
    if (value.empty())
      return key_known(key) ? "empty value (the kernel does not recognise the token)" : unknown(s);

    if (key == "func") return func(value, t.col);
    if (key == "mask") return mask(value, t.col);
    if (key == "fsmagic") return fsmagic(value, t.col);
    if (key == "fsname") {
      rule_.fsname = std::string(value);  // may repeat: the last one wins, as in the kernel
      set_flag(kFlagFsname, t.col);
      return "";
    }
    if (key == "fsuuid") return fsuuid(value, t.col);
    if (key == "keyrings" || key == "label") return opt_list(key, value, t.col);
    for (size_t i = 0; i < kLsmFieldCount; ++i) {
      if (key != lsm_field_name(static_cast<LsmField>(i))) continue;
      if (!rule_.lsm[i].empty()) return "duplicate " + std::string(key) + "= condition";
      rule_.lsm[i] = std::string(value);
      lsm_col_[i] = t.col;
      return "";
    }
    if (key == "digest_type") return digest_type(value, t.col);
    if (key == "appraise_type") return appraise_type(value, t.col);
    if (key == "appraise_flag") return "";  // deprecated since 6.6: parsed and ignored
    if (key == "appraise_algos") return appraise_algos(value, t.col);
    if (key == "pcr") return pcr(value, t.col);
    if (key == "template") return template_opt(value, t.col);
    return unknown(s);
  }

  static bool key_known(std::string_view key) {
    static constexpr std::string_view kKeys[] = {
        "func",      "mask",      "fsmagic",       "fsname",        "fsuuid",
        "keyrings",  "label",     "obj_user",      "obj_role",      "obj_type",
        "subj_user", "subj_role", "subj_type",     "digest_type",   "appraise_type",
        "pcr",       "template",  "appraise_flag", "appraise_algos"};
    for (auto k : kKeys)
      if (k == key) return true;
    return false;
  }

  static std::optional<Action> action_of(std::string_view s) {
    static constexpr std::pair<std::string_view, Action> kActions[] = {
        {"measure", Action::kMeasure},   {"dont_measure", Action::kDontMeasure},
        {"appraise", Action::kAppraise}, {"dont_appraise", Action::kDontAppraise},
        {"audit", Action::kAudit},       {"hash", Action::kHash},
        {"dont_hash", Action::kDontHash}};
    for (const auto& [name, a] : kActions)
      if (name == s) return a;
    return std::nullopt;
  }

  std::string unknown(std::string_view s) {
    if (s == "dont_audit") return "unknown action: the kernel has no dont_audit";
    if (!s.empty() && s[0] == '#')
      return "unknown token: a comment must be on a line of its own (first non-blank character)";
    if (s.find('\r') != std::string_view::npos)
      return "unknown token: carriage return in the rule (CRLF line endings?)";
    if (s.find('\0') != std::string_view::npos) return "unknown token: NUL byte in the rule";
    size_t op = s.find_first_of("=<>");
    if (op != std::string_view::npos && op + 1 < s.size() && s[op] != '=' &&
        key_known(s.substr(0, op)))
      return "unknown token: " + std::string(s.substr(0, op)) + "= takes only the = operator";
    if (op == std::string_view::npos) return "unknown token" + did_you_mean(nearest(s, kActionNames));
    std::string key = nearest(s.substr(0, op), kKeyNames);
    return "unknown token" + did_you_mean(key.empty() ? "" : key + shown(s.substr(op)));
  }

  std::string set_action(Action a, const Token& t) {
    if (has_action_)
      return "second action in one rule (the rule already has '" +
             std::string(action_name(rule_.action)) + "')";
    has_action_ = true;
    rule_.action = a;
    action_col_ = t.col;
    return "";
  }

  std::string func(std::string_view value, size_t col) {
    if (rule_.func != Func::kNone) return "duplicate func= condition";
    auto f = func_from_name(value);
    const std::string near_func = f ? "" : nearest(value, kFuncNamesShown);
    if (!f) return "unknown func '" + shown(value) + "'" +
             (near_func.empty() ? " (known: " + known_funcs() + ")" : did_you_mean(near_func));
    rule_.func = *f;
    set_flag(kFlagFunc, col);
    return "";
  }

  std::string mask(std::string_view value, size_t col) {
    if (rule_.mask) return "duplicate mask= condition";
    bool inclusive = !value.empty() && value[0] == '^';
    std::string_view name = inclusive ? value.substr(1) : value;
    uint32_t bit = 0;
    if (name == "MAY_EXEC")
      bit = NSIMA_MAY_EXEC;
    else if (name == "MAY_WRITE")
      bit = NSIMA_MAY_WRITE;
    else if (name == "MAY_READ")
      bit = NSIMA_MAY_READ;
    else if (name == "MAY_APPEND")
      bit = NSIMA_MAY_APPEND;
    else
      return "unknown mask '" + shown(value) + "'" +
             (nearest(name, kMaskNames).empty()
                  ? " (MAY_EXEC, MAY_WRITE, MAY_READ or MAY_APPEND, optionally prefixed by ^)"
                  : did_you_mean((inclusive ? "^" : "") + nearest(name, kMaskNames)));
    rule_.mask = bit;
    rule_.mask_inclusive = inclusive;
    set_flag(inclusive ? kFlagInmask : kFlagMask, col);
    return "";
  }

  std::string fsmagic(std::string_view value, size_t col) {
    // The kernel's duplicate test is "fsmagic != 0", so fsmagic=0 may be followed by another.
    if (rule_.fsmagic && *rule_.fsmagic != 0) return "duplicate fsmagic= condition";
    uint64_t v;
    switch (parse_ull(value, 16, &v)) {
      case NumErr::kOk:
        break;
      case NumErr::kRange:
        return "fsmagic value out of range (64 bits)";
      case NumErr::kInvalid:
        return "fsmagic must be a hexadecimal number (0x prefix optional)";
    }
    rule_.fsmagic = v;
    set_flag(kFlagFsmagic, col);
    return "";
  }

  std::string fsuuid(std::string_view value, size_t col) {
    static constexpr std::array<uint8_t, 16> kNull{};
    if (rule_.fsuuid && *rule_.fsuuid != kNull) return "duplicate fsuuid= condition";
    auto u = parse_uuid_kernel(value);
    if (!u) return "fsuuid must be a UUID like 8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6";
    rule_.fsuuid = *u;
    set_flag(kFlagFsuuid, col);
    return "";
  }

  std::string opt_list(std::string_view key, std::string_view value, size_t col) {
    bool is_keyrings = key == "keyrings";
    auto& slot = is_keyrings ? rule_.keyrings : rule_.labels;
    if (slot) return "duplicate " + std::string(key) + "= option";
    std::vector<std::string> items;
    if (!parse_opt_list(value, &items))
      return std::string(key) + "= must be a '|'-separated list without empty items";
    slot = std::move(items);
    set_flag(is_keyrings ? kFlagKeyrings : kFlagLabel, col);
    return "";
  }

  std::string id_cond(std::string_view key, char op_char, std::string_view value, size_t col) {
    CmpOp op = op_char == '>' ? CmpOp::kGt : op_char == '<' ? CmpOp::kLt : CmpOp::kEq;
    IdCond* slot;
    uint32_t flag;
    bool effective = false;
    std::string dup;
    if (key == "uid" || key == "euid") {
      slot = &rule_.uid;
      effective = key == "euid";
      flag = effective ? kFlagEuid : kFlagUid;
      dup = "uid and euid share one slot: the rule already has a uid/euid condition";
    } else if (key == "gid" || key == "egid") {
      slot = &rule_.gid;
      effective = key == "egid";
      flag = effective ? kFlagEgid : kFlagGid;
      dup = "gid and egid share one slot: the rule already has a gid/egid condition";
    } else if (key == "fowner") {
      slot = &rule_.fowner;
      flag = kFlagFowner;
      dup = "duplicate fowner condition";
    } else {
      slot = &rule_.fgroup;
      flag = kFlagFgroup;
      dup = "duplicate fgroup condition";
    }
    if (slot->set) return dup;
    uint64_t v;
    NumErr e = parse_ull(value, 10, &v);
    if (e == NumErr::kInvalid)
      return std::string(key) + " must be a decimal number (operators: =, <, >)";
    // (uid_t)lnum != lnum, and make_kuid() of (uid_t)-1 is INVALID_UID: both EINVAL.
    if (e == NumErr::kRange || v >= 0xffffffffull)
      return std::string(key) + " out of range (0..4294967294)";
    slot->set = true;
    slot->effective = effective;
    slot->op = op;
    slot->value = static_cast<uint32_t>(v);
    set_flag(flag, col);
    return "";
  }

  std::string digest_type(std::string_view value, size_t col) {
    if (flags_ & kFlagDigsig)
      return "digest_type= must come before appraise_type= in the rule (kernel token order)";
    if (value != "verity") return "unknown digest_type '" + shown(value) + "' (only verity)";
    rule_.verity_required = true;
    set_flag(kFlagVerity, col);
    return "";
  }

  std::string appraise_type(std::string_view value, size_t col) {
    bool verity = flags_ & kFlagVerity;
    if (value == "imasig") {
      if (verity) return "appraise_type=imasig cannot follow digest_type=verity (use sigv3)";
      set_flag(kFlagDigsig | kFlagBlacklist, col);
    } else if (value == "sigv3") {
      if (!verity) return "appraise_type=sigv3 requires digest_type=verity before it";
      set_flag(kFlagDigsig | kFlagBlacklist, col);
    } else if (value == "imasig|modsig") {
      if (verity) return "appraise_type=imasig|modsig cannot follow digest_type=verity";
      set_flag(kFlagDigsig | kFlagModsig | kFlagBlacklist, col);
      rule_.modsig_allowed = true;
    } else {
      return "unknown appraise_type '" + shown(value) + "' (imasig, imasig|modsig, sigv3)";
    }
    rule_.digsig_required = true;
    rule_.check_blacklist = true;
    return "";
  }

  std::string appraise_algos(std::string_view value, size_t col) {
    if (rule_.appraise_algos) return "duplicate appraise_algos= option";
    uint32_t bits = 0;
    size_t start = 0;
    while (true) {
      size_t comma = value.find(',', start);
      std::string_view name =
          value.substr(start, comma == std::string_view::npos ? comma : comma - start);
      auto id = hash_algo_from_name(name);
      if (!id) return "unknown hash algorithm '" + shown(name) + "' in appraise_algos";
      if (!hash_algo_available(*id))
        return "hash algorithm '" + shown(name) +
               "' is not available in the kernel crypto API";
      bits |= 1u << *id;
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    rule_.appraise_algos = bits;
    set_flag(kFlagAlgos, col);
    return "";
  }

  std::string pcr(std::string_view value, size_t col) {
    int v;
    // INVALID_PCR(): the index must fit the unsigned long measured_pcrs bitmap (64 bits).
    if (parse_int(value, &v) != NumErr::kOk || v < 0 || v >= 64)
      return "pcr must be a decimal number from 0 to 63";
    rule_.pcr = v;  // no duplicate check in the kernel: the last pcr= wins
    set_flag(kFlagPcr, col);
    return "";
  }

  std::string template_opt(std::string_view value, size_t col) {
    // Checked while parsing, so the action must come before template= and be measure.
    if (!has_action_ || rule_.action != Action::kMeasure)
      return "template= is only valid after the measure action";
    const TemplateDesc* t = find_template(value);
    if (!t) {
      std::string why = "unknown template '" + shown(value) + "'";
      if (value == "ima-sigv3")
        why += " (no kernel defines ima-sigv3; ima-sigv2 carries verity signatures)";
      return why + " (known: " + known_templates() + ", or their format strings; nsima produces " +
             std::string(produced_templates()) + ")";
    }
    if (!rule_.template_name.empty()) return "duplicate template= option";
    rule_.template_name = std::string(t->name);
    template_col_ = col;
    return "";
  }

  Result<Rule> validate() {
    if (!has_action_) {
      size_t col = tokens_.empty() ? 1 : tokens_.front().col;
      return fail(col, tokens_.empty() ? line_ : tokens_.front().text,
                  "rule has no action (measure, dont_measure, appraise, dont_appraise, audit, "
                  "hash or dont_hash)");
    }
    Action a = rule_.action;
    if (a != Action::kMeasure && (flags_ & kFlagPcr)) {
      size_t col = col_of(kFlagPcr);
      return fail(col, token_at(col), "pcr= is only valid on measure rules");
    }
    if (a != Action::kAppraise &&
        (flags_ & (kFlagDigsig | kFlagModsig | kFlagBlacklist | kFlagAlgos))) {
      size_t col = col_of(kFlagDigsig | kFlagModsig | kFlagBlacklist | kFlagAlgos);
      return fail(col, token_at(col), "only valid on appraise rules");
    }

    Func f = rule_.func;
    uint32_t allowed = 0;
    bool measure_only = false;
    switch (f) {
      case Func::kNone:
      case Func::kFileCheck:
      case Func::kMmapCheck:
      case Func::kMmapCheckReqprot:
      case Func::kBprmCheck:
      case Func::kCredsCheck:
      case Func::kFirmwareCheck:
      case Func::kPolicyCheck:
        allowed = kAllowedFileFuncs;
        break;
      case Func::kModuleCheck:
      case Func::kKexecKernelCheck:
      case Func::kKexecInitramfsCheck:
        allowed = kAllowedModuleFuncs;
        break;
      case Func::kKexecCmdline:
        allowed = kAllowedKexecCmdline;
        measure_only = true;
        break;
      case Func::kKeyCheck:
        allowed = kAllowedKeyCheck;
        measure_only = true;
        break;
      case Func::kCriticalData:
        allowed = kAllowedCriticalData;
        measure_only = true;
        break;
      case Func::kSetxattrCheck:
        allowed = kAllowedSetxattr;
        break;
    }
    std::string with_func = "func=" + std::string(func_name(f));
    if (measure_only && a != Action::kMeasure && a != Action::kDontMeasure)
      return fail(action_col_, action_name(a),
                  "action not allowed with " + with_func + " (only measure and dont_measure)");
    if (f == Func::kSetxattrCheck) {
      if (a != Action::kAppraise)
        return fail(action_col_, action_name(a),
                    "func=SETXATTR_CHECK rules must be appraise rules");
      if (!(flags_ & kFlagAlgos)) {
        size_t col = col_of(kFlagFunc);
        return fail(col, token_at(col), "func=SETXATTR_CHECK requires appraise_algos=");
      }
    }
    if (uint32_t bad = flags_ & ~allowed) {
      size_t col = col_of(bad);
      std::string why = "not allowed with ";
      why += f == Func::kNone ? "a rule without func=" : with_func;
      if (bad & kFlagModsig)
        why +=
            " (imasig|modsig needs func=MODULE_CHECK, KEXEC_KERNEL_CHECK or KEXEC_INITRAMFS_CHECK)";
      else if (f == Func::kSetxattrCheck)
        why += " (only appraise_algos= may be given)";
      return fail(col, token_at(col), why);
    }
    if ((f == Func::kKeyCheck || f == Func::kCriticalData) && rule_.has_lsm_condition()) {
      size_t i = first_lsm();
      return fail(lsm_col_[i], token_at(lsm_col_[i]),
                  "LSM conditions are not allowed with " + with_func);
    }
    if (a == Action::kAppraise && (flags_ & kFlagVerity) && !(flags_ & kFlagDigsig)) {
      size_t col = col_of(kFlagVerity);
      return fail(col, token_at(col),
                  "appraise rules with digest_type=verity must require a signature "
                  "(appraise_type=sigv3)");
    }
    // nsima's own limit: BPF events carry no LSM labels, so such a rule could never be
    // evaluated the way the kernel would.
    if (rule_.has_lsm_condition()) {
      size_t i = first_lsm();
      return fail(
          lsm_col_[i], token_at(lsm_col_[i]),
          "nsima cannot see LSM labels: " + std::string(lsm_field_name(static_cast<LsmField>(i))) +
              "= conditions cannot be evaluated (remove the condition or the rule)");
    }
    // nsima's own limit: a template the pipeline cannot fill would otherwise be replaced by the
    // namespace's default without a word, and the list would not say what the rule asked for.
    if (!rule_.template_name.empty() && !template_produced(rule_.template_name)) {
      return fail(template_col_, token_at(template_col_),
                  "nsima cannot produce the " + rule_.template_name +
                      " template yet: it writes " + std::string(produced_templates()) +
                      " entries only (name one of them, or drop template= for the namespace's "
                      "default)");
    }
    return std::move(rule_);
  }

  size_t first_lsm() const {
    size_t best = kLsmFieldCount;
    for (size_t i = 0; i < kLsmFieldCount; ++i) {
      if (rule_.lsm[i].empty()) continue;
      if (best == kLsmFieldCount || lsm_col_[i] < lsm_col_[best]) best = i;
    }
    return best;
  }

  std::string_view line_;
  std::string_view filename_;
  size_t line_no_;
  std::vector<Token> tokens_;
  Rule rule_;
  bool has_action_ = false;
  size_t action_col_ = 0;
  uint32_t flags_ = 0;
  std::array<size_t, 32> flag_col_{};
  std::array<size_t, kLsmFieldCount> lsm_col_{};
  size_t template_col_ = 0;
};

// ima_parse_add_rule(): skip leading blanks; '#' or nothing left means "not a rule".
bool is_rule_line(std::string_view line) {
  size_t i = line.find_first_not_of(" \t");
  return i != std::string_view::npos && line[i] != '#';
}

// Walks the lines of `text`, calling fn(line, line_no) for each rule line.
template <class Fn>
void for_each_rule_line(std::string_view text, Fn&& fn) {
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    ++line_no;
    if (is_rule_line(line) && !fn(line, line_no)) return;
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
}

}  // namespace

Result<Rule> parse_rule(std::string_view line, std::string_view filename, size_t line_no) {
  return RuleParser(line, filename, line_no).run();
}

static std::optional<Error> too_large(std::string_view text, std::string_view filename) {
  if (text.size() <= kMaxPolicyBytes) return std::nullopt;
  return Error{EFBIG,
               "policy is " + std::to_string(text.size()) + " bytes, more than the " +
                   std::to_string(kMaxPolicyBytes) + " bytes nsima loads",
               std::string(filename)};
}

Result<std::vector<Rule>> parse_rules(std::string_view text, std::string_view filename) {
  if (auto e = too_large(text, filename)) return tl::unexpected(std::move(*e));
  std::vector<Rule> rules;
  std::optional<Error> error;
  for_each_rule_line(text, [&](std::string_view line, size_t line_no) {
    auto r = parse_rule(line, filename, line_no);
    if (!r) {
      error = std::move(r.error());
      return false;
    }
    rules.push_back(std::move(*r));
    return true;
  });
  if (error) return tl::unexpected<Error>(std::move(*error));
  if (rules.empty())
    return make_error(EINVAL, "policy has no rules (the kernel refuses an empty policy)",
                      std::string(filename) + ":1:1");
  return rules;
}

std::vector<Error> check_rules(std::string_view text, std::string_view filename) {
  std::vector<Error> errors;
  if (auto e = too_large(text, filename)) return {std::move(*e)};
  size_t count = 0;
  for_each_rule_line(text, [&](std::string_view line, size_t line_no) {
    ++count;
    if (auto r = parse_rule(line, filename, line_no); !r) errors.push_back(std::move(r.error()));
    return true;
  });
  if (count == 0)
    errors.push_back(Error{EINVAL, "policy has no rules (the kernel refuses an empty policy)",
                           std::string(filename) + ":1:1"});
  return errors;
}

}  // namespace nsima::policy

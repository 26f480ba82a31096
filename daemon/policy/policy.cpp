// SPDX-License-Identifier: Apache-2.0
// Policy evaluation, a transcription of ima_match_policy()/ima_match_rules() (6.12) over nsima's
// Access instead of an inode and a cred. The rules are compiled once into a packed array plus, per
// func, the list of rules that can match it (func= equal, or no func=), so a walk only touches
// candidate rules and never allocates.
#include "policy/policy.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "policy/parser.h"

namespace nsima::policy {
namespace {

// Kernel action bits (ima_policy.c): the DO bit of each kind, its DONT bit one above.
constexpr uint16_t kActMeasure = 0x0001;
constexpr uint16_t kActDontMeasure = 0x0002;
constexpr uint16_t kActAppraise = 0x0004;
constexpr uint16_t kActDontAppraise = 0x0008;
constexpr uint16_t kActAudit = 0x0040;
constexpr uint16_t kActHash = 0x0100;
constexpr uint16_t kActDontHash = 0x0200;
constexpr uint16_t kActDoMask = kActMeasure | kActAppraise | kActAudit | kActHash;

constexpr uint16_t kCondMask = 0x0001;
constexpr uint16_t kCondInmask = 0x0002;
constexpr uint16_t kCondFsmagic = 0x0004;
constexpr uint16_t kCondFsname = 0x0008;
constexpr uint16_t kCondFsuuid = 0x0010;
constexpr uint16_t kCondUid = 0x0020;
constexpr uint16_t kCondEuid = 0x0040;
constexpr uint16_t kCondGid = 0x0080;
constexpr uint16_t kCondEgid = 0x0100;
constexpr uint16_t kCondFowner = 0x0200;
constexpr uint16_t kCondFgroup = 0x0400;
constexpr uint16_t kCondData = 0x0800;  // keyrings=/label=: needs the event's keyring or label
constexpr uint16_t kCondCred = kCondUid | kCondEuid | kCondGid | kCondEgid;

constexpr uint8_t kNaDigsig = 0x01;
constexpr uint8_t kNaDirectio = 0x02;
constexpr uint8_t kNaModsig = 0x04;
constexpr uint8_t kNaVerity = 0x08;

uint16_t action_bit(Action a) {
  switch (a) {
    case Action::kMeasure:
      return kActMeasure;
    case Action::kDontMeasure:
      return kActDontMeasure;
    case Action::kAppraise:
      return kActAppraise;
    case Action::kDontAppraise:
      return kActDontAppraise;
    case Action::kAudit:
      return kActAudit;
    case Action::kHash:
      return kActHash;
    case Action::kDontHash:
      return kActDontHash;
  }
  return 0;
}

// Quick key: an access's fs and owner values hashed into one word, so that a rule's equality
// conditions become one mask-and-compare. Collisions only let a rule through to the full check.
constexpr int kQkMaskShift = 0;     // 4 bits: the access mask (exact mask= rules)
constexpr int kQkFsmagicShift = 4;  // 16 bits
constexpr int kQkFsnameShift = 20;  // 16 bits
constexpr int kQkFsuuidShift = 36;  // 12 bits
constexpr int kQkFownerShift = 48;  // 8 bits (fowner= rules only, not < or >)
constexpr int kQkFgroupShift = 56;  // 8 bits

inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

inline uint64_t hash_bytes(const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
  while (len >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = mix(h ^ w);
    p += 8;
    len -= 8;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, len);
  return mix(h ^ w);
}

inline uint64_t field(uint64_t hash, int bits, int shift) { return (hash >> (64 - bits)) << shift; }

inline uint64_t fs_key(uint64_t fsmagic, const char* fsname, size_t fsname_len,
                       const std::array<uint8_t, 16>& uuid) {
  return field(mix(fsmagic), 16, kQkFsmagicShift) |
         field(hash_bytes(fsname, fsname_len), 16, kQkFsnameShift) |
         field(hash_bytes(uuid.data(), uuid.size()), 12, kQkFsuuidShift);
}

inline uint64_t access_key(const Access& a) {
  return (uint64_t{a.mask & 0xf} << kQkMaskShift) |
         fs_key(a.fsmagic, a.fsname.data(), a.fsname.size(), a.fsuuid) |
         field(mix(a.fowner), 8, kQkFownerShift) | field(mix(a.fgroup), 8, kQkFgroupShift);
}

constexpr uint64_t bits_mask(int bits, int shift) { return ((uint64_t{1} << bits) - 1) << shift; }

inline bool cmp(uint8_t op, uint32_t id, uint32_t value) {
  switch (static_cast<CmpOp>(op)) {
    case CmpOp::kEq:
      return id == value;
    case CmpOp::kGt:
      return id > value;
    case CmpOp::kLt:
      return id < value;
  }
  return false;
}

}  // namespace

std::vector<Access> accesses_of(const nsima::Event& ev) {
  Access base;
  base.fowner = ev.i_uid;
  base.fgroup = ev.i_gid;
  base.fsmagic = ev.fs_magic;
  base.fsname = ev.fs_name;
  base.fsuuid = ev.fs_uuid;
  auto with = [&base](Func func, uint32_t mask, const Creds& ids, const Creds& caps) {
    Access a = base;
    a.func = func;
    a.mask = mask;
    a.uid = ids.uid;
    a.euid = ids.euid;
    a.suid = ids.suid;
    a.gid = ids.gid;
    a.egid = ids.egid;
    a.sgid = ids.sgid;
    a.cap_setuid = caps.cap_setuid();
    a.cap_setgid = caps.cap_setgid();
    return a;
  };
  std::vector<Access> out;
  switch (ev.hook) {
    case Hook::kFileOpen:
      out.push_back(with(Func::kFileCheck, ev.mask, ev.cred, ev.cred));
      break;
    case Hook::kMmapFile:
      // ima_file_mmap(): the requested protection is judged first, then the effective one.
      if (ev.reqprot & NSIMA_PROT_EXEC)
        out.push_back(with(Func::kMmapCheckReqprot, NSIMA_MAY_EXEC, ev.cred, ev.cred));
      if (ev.prot & NSIMA_PROT_EXEC)
        out.push_back(with(Func::kMmapCheck, NSIMA_MAY_EXEC, ev.cred, ev.cred));
      break;
    case Hook::kBprmCheck:
      out.push_back(with(Func::kBprmCheck, NSIMA_MAY_EXEC, ev.cred, ev.cred));
      // CREDS_CHECK matches ids against bprm->cred, but CAP_SETUID/SETGID are still those of
      // current (has_capability_noaudit(current, ...)), which has not committed the new creds.
      out.push_back(with(Func::kCredsCheck, NSIMA_MAY_EXEC, ev.new_cred, ev.cred));
      break;
    case Hook::kSetxattr:
    case Hook::kProtect:
      break;  // not an access: no func
  }
  return out;
}

Result<Policy> Policy::parse(std::string_view text, std::string_view filename) {
  auto rules = parse_rules(text, filename);
  if (!rules) return tl::unexpected<Error>(std::move(rules.error()));
  return from_rules(std::move(*rules), std::string(filename));
}

Policy Policy::from_rules(std::vector<Rule> rules, std::string filename) {
  Policy p;
  p.filename_ = std::move(filename);
  p.rules_ = std::move(rules);
  p.compile();
  return p;
}

void Policy::compile() {
  compiled_.clear();
  compiled_.reserve(rules_.size());
  fsnames_.clear();
  for (auto& index : by_func_) {
    index.rules.clear();
    index.qmask.clear();
    index.qval.clear();
  }
  requested_ = 0;
  const auto& templates = builtin_templates();

  for (size_t i = 0; i < rules_.size(); ++i) {
    const Rule& r = rules_[i];
    Compiled c{};
    c.action = action_bit(r.action);
    c.mask = static_cast<uint8_t>(r.mask);
    if (r.mask) c.cond |= r.mask_inclusive ? kCondInmask : kCondMask;
    if (r.fsmagic) {
      c.cond |= kCondFsmagic;
      c.fsmagic = *r.fsmagic;
    }
    if (r.fsname) {
      c.cond |= kCondFsname;
      c.fsname_off = static_cast<uint32_t>(fsnames_.size());
      c.fsname_len = static_cast<uint32_t>(r.fsname->size());
      fsnames_ += *r.fsname;
    }
    if (r.fsuuid) {
      c.cond |= kCondFsuuid;
      c.fsuuid = *r.fsuuid;
    }
    if (r.uid.set) {
      c.cond |= r.uid.effective ? kCondEuid : kCondUid;
      c.uid = r.uid.value;
      c.uid_op = static_cast<uint8_t>(r.uid.op);
    }
    if (r.gid.set) {
      c.cond |= r.gid.effective ? kCondEgid : kCondGid;
      c.gid = r.gid.value;
      c.gid_op = static_cast<uint8_t>(r.gid.op);
    }
    if (r.fowner.set) {
      c.cond |= kCondFowner;
      c.fowner = r.fowner.value;
      c.fowner_op = static_cast<uint8_t>(r.fowner.op);
    }
    if (r.fgroup.set) {
      c.cond |= kCondFgroup;
      c.fgroup = r.fgroup.value;
      c.fgroup_op = static_cast<uint8_t>(r.fgroup.op);
    }
    if (r.keyrings || r.labels) c.cond |= kCondData;
    c.pcr = static_cast<int8_t>(r.pcr ? *r.pcr : -1);
    if (!r.template_name.empty()) {
      for (size_t t = 0; t < templates.size(); ++t)
        if (templates[t].name == r.template_name) c.template_id = static_cast<uint8_t>(t + 1);
    }
    if (r.digsig_required) c.nonaction |= kNaDigsig;
    if (r.permit_directio) c.nonaction |= kNaDirectio;
    if (r.modsig_allowed) c.nonaction |= kNaModsig;
    if (r.verity_required) c.nonaction |= kNaVerity;
    c.appraise_algos = r.appraise_algos;
    compiled_.push_back(c);

    // Quick key of the rule's equality conditions.
    uint64_t qmask = 0, qval = 0;
    if (c.cond & kCondMask) {
      qmask |= bits_mask(4, kQkMaskShift);
      qval |= uint64_t{c.mask} << kQkMaskShift;
    }
    static const std::array<uint8_t, 16> kNoUuid{};
    uint64_t fk = fs_key(c.fsmagic, r.fsname ? r.fsname->data() : "",
                         r.fsname ? r.fsname->size() : 0, r.fsuuid ? *r.fsuuid : kNoUuid);
    if (c.cond & kCondFsmagic) qmask |= bits_mask(16, kQkFsmagicShift);
    if (c.cond & kCondFsname) qmask |= bits_mask(16, kQkFsnameShift);
    if (c.cond & kCondFsuuid) qmask |= bits_mask(12, kQkFsuuidShift);
    qval |= fk & qmask;
    if ((c.cond & kCondFowner) && r.fowner.op == CmpOp::kEq) {
      qmask |= bits_mask(8, kQkFownerShift);
      qval |= field(mix(c.fowner), 8, kQkFownerShift);
    }
    if ((c.cond & kCondFgroup) && r.fgroup.op == CmpOp::kEq) {
      qmask |= bits_mask(8, kQkFgroupShift);
      qval |= field(mix(c.fgroup), 8, kQkFgroupShift);
    }
    if (r.has_lsm_condition()) {
      qmask = 0;  // (k & 0) != 1: never a candidate
      qval = 1;
    }
    auto add = [&](size_t f) {
      by_func_[f].rules.push_back(static_cast<uint32_t>(i));
      // Buffer funcs (KEY_CHECK, CRITICAL_DATA) match no inode: their rules always pass.
      bool data =
          static_cast<Func>(f) == Func::kKeyCheck || static_cast<Func>(f) == Func::kCriticalData;
      bool lsm = r.has_lsm_condition();
      by_func_[f].qmask.push_back(data && !lsm ? 0 : qmask);
      by_func_[f].qval.push_back(data && !lsm ? 0 : qval);
    };
    if (r.func == Func::kNone) {
      // A rule without func= matches every func except the buffer ones: ima_match_rules()
      // requires rule->func == func for KEY_CHECK and CRITICAL_DATA.
      for (size_t f = 0; f < kFuncCount; ++f) {
        auto ff = static_cast<Func>(f);
        if (ff != Func::kKeyCheck && ff != Func::kCriticalData) add(f);
      }
    } else {
      add(static_cast<size_t>(r.func));
    }
    // ima_update_policy_flags(): only DO actions count, and SETXATTR_CHECK rules do not.
    if (r.func != Func::kSetxattrCheck) requested_ |= c.action & kActDoMask;
  }
  // Pad each list to whole blocks with entries no key passes ((k & 0) != 1).
  for (auto& index : by_func_) {
    while (index.qmask.size() % kQuickBlock) {
      index.qmask.push_back(0);
      index.qval.push_back(1);
    }
  }
}

Decision Policy::evaluate(const Access& a) const {
  Decision d;
  evaluate_into(a, d);
  return d;
}

void Policy::evaluate_into(const Access& a, Decision& d) const {
  d.measure = d.appraise = d.audit = d.hash = false;
  d.pcr = -1;
  d.template_name.clear();
  d.digsig_required = d.permit_directio = d.modsig_allowed = d.verity_required = false;
  d.appraise_algos.clear();
  d.appraise_algos_mask = 0;
  d.measure_rule = d.appraise_rule = d.audit_rule = d.hash_rule = -1;
  d.cred_dependent = false;

  auto fi = static_cast<size_t>(a.func);
  if (fi >= kFuncCount) return;
  // The kernel only asks for the kinds some DO rule of the policy can give (ima_policy_flag);
  // a dont_X rule of a kind nobody asks for is skipped, flags and all.
  uint32_t actmask = requested_ | (requested_ << 1);
  const bool data_func = a.func == Func::kKeyCheck || a.func == Func::kCriticalData;
  uint8_t nonaction = 0;
  uint8_t template_id = 0;
  const char* fsnames = fsnames_.data();
  const size_t fsname_len = a.fsname.size();

  const FuncIndex& index = by_func_[fi];
  const uint64_t key = access_key(a);
  const uint64_t* qmask = index.qmask.data();
  const uint64_t* qval = index.qval.data();
  const size_t padded = index.qmask.size();
  uint32_t pending = 0;  // candidates of the current block, one bit per rule
  size_t base = 0;

  while (actmask) {
    if (!pending) {
      // Find the next block with a candidate: eight branch-free mask-and-compares per branch.
      while (base < padded) {
        uint32_t bits = 0;
        for (size_t k = 0; k < kQuickBlock; ++k)
          bits |= static_cast<uint32_t>((key & qmask[base + k]) == qval[base + k]) << k;
        base += kQuickBlock;
        if (bits) {
          pending = bits;
          break;
        }
      }
      if (!pending) break;
    }
    const size_t pos = base - kQuickBlock + static_cast<size_t>(__builtin_ctz(pending));
    pending &= pending - 1;
    const uint32_t idx = index.rules[pos];
    const Compiled& r = compiled_[idx];
    if (!(r.action & actmask)) continue;
    const uint16_t c = r.cond;
    if (data_func) {
      // ima_match_rule_data(): only uid= is checked; a keyrings=/label= list needs the keyring or
      // label name, which an Access does not carry, so such rules do not match.
      if (c & kCondData) continue;
      if (c & kCondUid) {
        d.cred_dependent = true;
        if (!cmp(r.uid_op, a.uid, r.uid)) continue;
      }
    } else {
      if ((c & kCondMask) && r.mask != a.mask) continue;
      if ((c & kCondInmask) && !(r.mask & a.mask)) continue;
      if ((c & kCondFsmagic) && r.fsmagic != a.fsmagic) continue;
      if ((c & kCondFsname) &&
          (r.fsname_len != fsname_len ||
           std::memcmp(fsnames + r.fsname_off, a.fsname.data(), fsname_len) != 0))
        continue;
      if ((c & kCondFsuuid) && r.fsuuid != a.fsuuid) continue;
      if ((c & kCondFowner) && !cmp(r.fowner_op, a.fowner, r.fowner)) continue;
      if ((c & kCondFgroup) && !cmp(r.fgroup_op, a.fgroup, r.fgroup)) continue;
      if (c & kCondCred) {
        // Everything but the credentials matched: other credentials could flip this rule.
        d.cred_dependent = true;
        if ((c & kCondUid) && !cmp(r.uid_op, a.uid, r.uid)) continue;
        if (c & kCondEuid) {
          // With CAP_SETUID the task could become suid or uid at will, so those count too.
          bool ok = cmp(r.uid_op, a.euid, r.uid) ||
                    (a.cap_setuid && (cmp(r.uid_op, a.suid, r.uid) || cmp(r.uid_op, a.uid, r.uid)));
          if (!ok) continue;
        }
        if ((c & kCondGid) && !cmp(r.gid_op, a.gid, r.gid)) continue;
        if (c & kCondEgid) {
          bool ok = cmp(r.gid_op, a.egid, r.gid) ||
                    (a.cap_setgid && (cmp(r.gid_op, a.sgid, r.gid) || cmp(r.gid_op, a.gid, r.gid)));
          if (!ok) continue;
        }
      }
    }

    // The rule matched and its kind was still open.
    nonaction |= r.nonaction;
    const int rule = static_cast<int>(idx);
    switch (r.action) {
      case kActMeasure:
        d.measure = true;
        [[fallthrough]];
      case kActDontMeasure:
        d.measure_rule = rule;
        break;
      case kActAppraise:
        d.appraise = true;
        d.hash = false;  // appraisal takes precedence over a hash rule matched before it
        if (r.appraise_algos) d.appraise_algos_mask = r.appraise_algos;
        [[fallthrough]];
      case kActDontAppraise:
        d.appraise_rule = rule;
        break;
      case kActAudit:
        d.audit = true;
        d.audit_rule = rule;
        break;
      case kActHash:
        d.hash = true;
        [[fallthrough]];
      case kActDontHash:
        d.hash_rule = rule;
        break;
    }
    if (r.action & kActDoMask)
      actmask &= ~(uint32_t{r.action} | uint32_t{r.action} << 1);
    else
      actmask &= ~(uint32_t{r.action} | uint32_t{r.action} >> 1);
    if (r.pcr >= 0) d.pcr = r.pcr;
    if (r.template_id) template_id = r.template_id;
  }

  d.digsig_required = nonaction & kNaDigsig;
  d.permit_directio = nonaction & kNaDirectio;
  d.modsig_allowed = nonaction & kNaModsig;
  d.verity_required = nonaction & kNaVerity;
  if (template_id) d.template_name = builtin_templates()[template_id - 1].name;
  if (d.appraise_algos_mask) {
    for (size_t i = 0; i < kHashAlgoCount; ++i)
      if (d.appraise_algos_mask & (1u << i)) d.appraise_algos.emplace_back(hash_algo_name(i));
  }
}

std::string Policy::to_string() const {
  std::string out;
  for (const Rule& r : rules_) {
    out += r.to_string();
    out += '\n';
  }
  return out;
}

bool Policy::has_action(Action kind) const {
  for (const Rule& r : rules_)
    if (r.action == kind && r.func != Func::kSetxattrCheck) return true;
  return false;
}

Result<Policy> load_policy_file(const std::string& path) {
  auto text = read_policy_text(path);
  if (!text) return tl::unexpected(text.error());
  return Policy::parse(*text, path);
}

Result<std::string> read_policy_text(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode))
      return make_error(EISDIR, "cannot open policy file: it is a directory", path);
    if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > kMaxPolicyBytes)
      return make_error(EFBIG,
                        "policy is " + std::to_string(st.st_size) + " bytes, more than the " +
                            std::to_string(kMaxPolicyBytes) + " bytes nsima loads",
                        path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return make_error(err ? err : ENOENT,
                      std::string("cannot open policy file: ") + std::strerror(err ? err : ENOENT),
                      path);
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return make_error(EIO, "cannot read policy file", path);
  return buf.str();
}

}  // namespace nsima::policy

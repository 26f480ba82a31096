// SPDX-License-Identifier: Apache-2.0
#include "ns/judge.h"

#include <algorithm>

namespace nsima::ns {

namespace {

// The measure decision of one namespace for all the funcs an event stands for (the kernel
// calls process_measurement once per func; a file is measured once per PCR).
struct NsDecision {
  bool measure = false;
  int pcr = -1;
  std::string tmpl;
  bool cred_dependent = false;
  bool appraise = false, audit = false;
  policy::Decision appraisal;  // the first func's decision that appraises (or audits)
};

NsDecision decide(const policy::Policy& p, const std::vector<policy::Access>& accesses) {
  NsDecision out;
  policy::Decision d;
  for (auto& a : accesses) {
    p.evaluate_into(a, d);
    out.cred_dependent |= d.cred_dependent;
    if (d.measure && !out.measure) {
      out.measure = true;
      out.pcr = d.pcr;
      out.tmpl = d.template_name;
    }
    if ((d.appraise && !out.appraise) || (d.audit && !out.appraise && !out.audit)) {
      bool audit = out.audit || d.audit;
      out.appraisal = d;
      out.appraise = d.appraise;
      out.audit = audit;
    } else if (d.audit) {
      out.audit = true;
    }
  }
  return out;
}

void add_algo(std::vector<measure::HashAlgo>& v, measure::HashAlgo a) {
  if (std::find(v.begin(), v.end(), a) == v.end()) v.push_back(a);
}

}  // namespace

std::string_view appraise_mode_name(AppraiseMode m) {
  switch (m) {
    case AppraiseMode::kOff: return "off";
    case AppraiseMode::kLog: return "log";
    case AppraiseMode::kEnforce: return "enforce";
  }
  return "enforce";
}

std::optional<AppraiseMode> parse_appraise_mode(std::string_view s) {
  if (s == "off") return AppraiseMode::kOff;
  if (s == "log") return AppraiseMode::kLog;
  if (s == "enforce") return AppraiseMode::kEnforce;
  return std::nullopt;
}

uint32_t appraise_classes(const policy::Policy& p) {
  uint32_t out = 0;
  for (const policy::Rule& r : p.rules()) {
    if (r.action != policy::Action::kAppraise) continue;
    auto exec_ok = [&r] {  // mmap and exec accesses have mask MAY_EXEC
      return r.mask == 0 || (r.mask_inclusive ? (r.mask & NSIMA_MAY_EXEC) != 0
                                              : r.mask == NSIMA_MAY_EXEC);
    };
    const bool any = r.func == policy::Func::kNone;
    if (any || r.func == policy::Func::kFileCheck)
      for (uint32_t c = 0; c < 16; ++c)
        if (r.mask == 0 || (r.mask_inclusive ? (c & r.mask) != 0 : c == r.mask)) out |= 1u << c;
    // Both mmap classes for either func: which prot the kernel looks at moved in 6.3.
    if ((any || r.func == policy::Func::kMmapCheck || r.func == policy::Func::kMmapCheckReqprot) &&
        exec_ok())
      out |= 1u << NSIMA_CLASS_MMAP_PROT | 1u << NSIMA_CLASS_MMAP_REQPROT;
    if ((any || r.func == policy::Func::kBprmCheck || r.func == policy::Func::kCredsCheck) &&
        exec_ok())
      out |= 1u << NSIMA_CLASS_BPRM;
  }
  return out;
}

ListTrust list_trust(const policy::Policy& p) {
  ListTrust out = ListTrust::kNoRule;
  for (const policy::Rule& r : p.rules()) {
    if (r.action != policy::Action::kAppraise) continue;
    using F = policy::Func;
    const bool hook_func = r.func == F::kNone || r.func == F::kFileCheck ||
                           r.func == F::kMmapCheck || r.func == F::kMmapCheckReqprot ||
                           r.func == F::kBprmCheck || r.func == F::kCredsCheck;
    if (!hook_func) continue;  // mask not looked at: an over-estimate only trusts less
    ListTrust t = ListTrust::kListed;
    if (r.verity_required ||
        (r.appraise_algos && !(r.appraise_algos & (1u << NSIMA_HASH_ALGO_SHA256))))
      t = ListTrust::kNever;
    else if (r.digsig_required)
      t = ListTrust::kSigned;
    out = std::max(out, t);
  }
  return out;
}

bool template_has_sig(measure::TemplateKind k) {
  return k == measure::TemplateKind::kImaSig || k == measure::TemplateKind::kImaSigV2;
}

Judgement judge(const Event& ev, std::span<const ChainLink> chain, measure::HashAlgo base_algo) {
  Judgement j;
  const auto accesses = policy::accesses_of(ev);
  const bool file_check = ev.hook == Hook::kFileOpen;
  const bool write_open = file_check && (ev.mask & NSIMA_MAY_WRITE);
  const bool named = ev.path_known();
  const uint8_t group = appraise_group(ev.hook);

  for (const ChainLink& l : chain) {
    if (l.policy->empty()) continue;
    NsDecision d = decide(*l.policy, accesses);
    const bool current = l.file && l.file->stamp == ev.stamp;
    if ((d.appraise && l.appraise != AppraiseMode::kOff) || d.audit) {
      AppraiseNeed need;
      need.ns_id = l.ns_id;
      need.mode = l.appraise;
      need.appraise = d.appraise && l.appraise != AppraiseMode::kOff &&
                      !(current && l.file->appraised(group));
      need.audit = d.audit && !(current && l.file->audited);
      if (d.appraise && l.appraise == AppraiseMode::kEnforce && current &&
          (l.file->appraised_fail & group))
        j.known_fail = true;
      // Appraised or audited, the next access with other credentials may be decided otherwise.
      if (d.cred_dependent) j.quiet = false;
      if (need.appraise || need.audit) {
        need.decision = std::move(d.appraisal);
        j.appraise.push_back(std::move(need));
      }
    }
    if (!d.measure) {
      // The same access with other credentials might be measured: keep reporting it.
      if (d.cred_dependent) j.quiet = false;
      continue;
    }
    if (!l.measuring) continue;
    if (!write_open) {
      j.must.push_back(l.ns_id);
      // open_writers: recorded before the file's own entry, as the kernel does.
      if (file_check && ev.i_writecount > 0 && named)
        j.violations.push_back({l.ns_id, ev.path});
    }
    uint32_t pcr = d.pcr >= 0 ? static_cast<uint32_t>(d.pcr) : l.default_pcr;
    if (l.file && l.file->stamp == ev.stamp && (l.file->pcrs >> pcr & 1))
      continue;  // measured once per file version and PCR
    auto kind = d.tmpl.empty() ? l.default_template
                               : measure::template_kind(d.tmpl).value_or(l.default_template);
    j.targets.push_back({l.ns_id, pcr, kind});
  }
  // ToMToU: a write open while the file is open for read by an open that had to be measured
  // in that namespace (the reader may have been measured before this write changes it).
  if (write_open && ev.i_readcount > 0 && named) {
    for (const ChainLink& l : chain)
      if (l.file && l.file->must && l.measuring && l.policy->has_action(policy::Action::kMeasure))
        j.violations.push_back({l.ns_id, ev.path});
  }
  if (!j.read_needed()) return j;
  if (!named) {
    j.path_unknown = true;
    j.quiet = false;
    return j;
  }
  add_algo(j.algos, base_algo);
  for (const ChainLink& l : chain)
    for (const Target& t : j.targets)
      if (t.ns_id == l.ns_id) {
        add_algo(j.algos, l.hash_algo);
        if (t.tmpl == measure::TemplateKind::kIma) add_algo(j.algos, measure::HashAlgo::kSha1);
        j.want_ima_xattr |= template_has_sig(t.tmpl);
      }
  if (!j.appraise.empty()) {
    // The kernel hashes with security.ima's algorithm; digest lists are sha256 manifests.
    add_algo(j.algos, measure::HashAlgo::kSha256);
    for (const ChainLink& l : chain)
      for (const AppraiseNeed& a : j.appraise)
        if (a.ns_id == l.ns_id) add_algo(j.algos, l.hash_algo);
    j.want_ima_xattr = true;
    j.algo_from_xattr = true;
  }
  return j;
}

}  // namespace nsima::ns

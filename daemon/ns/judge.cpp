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
  }
  return out;
}

void add_algo(std::vector<measure::HashAlgo>& v, measure::HashAlgo a) {
  if (std::find(v.begin(), v.end(), a) == v.end()) v.push_back(a);
}

}  // namespace

bool template_has_sig(measure::TemplateKind k) {
  return k == measure::TemplateKind::kImaSig || k == measure::TemplateKind::kImaSigV2;
}

Judgement judge(const Event& ev, std::span<const ChainLink> chain, measure::HashAlgo base_algo) {
  Judgement j;
  const auto accesses = policy::accesses_of(ev);
  const bool file_check = ev.hook == Hook::kFileOpen;
  const bool write_open = file_check && (ev.mask & NSIMA_MAY_WRITE);
  const bool named = ev.path_known();

  for (const ChainLink& l : chain) {
    if (l.policy->empty()) continue;
    NsDecision d = decide(*l.policy, accesses);
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
  if (j.targets.empty()) return j;
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
  return j;
}

}  // namespace nsima::ns

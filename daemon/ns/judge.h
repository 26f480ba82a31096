// SPDX-License-Identifier: Apache-2.0
// The judge: what one access means for every namespace that sees it, as a pure function of the
// event, the namespace chain (the event's namespace first, then each ancestor up to host: their
// policies and what each already measured of this file) and nothing else. No I/O, no locks, no
// state of its own: the pipeline applies what it returns. Appraisal is a second pure stage of
// the same shape, run on the file's facts once they are read.
//
// Kernel IMA semantics kept here (security/integrity/ima/ima_main.c, process_measurement and
// ima_rdwr_violation_check; ima-facts.md §2.8, §3.1):
//   - each namespace decides with its own policy, once per func the event stands for;
//   - a file is measured once per version and PCR in each namespace (measured_pcrs);
//   - open_writers: a read open that must be measured while the file is open for write is a
//     violation, recorded before the file's own entry;
//   - ToMToU: a write open while the file is open for read by an open that had to be measured;
//   - IMA_MUST_MEASURE is set by read-side opens only.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/event.h"
#include "measure/hash_algo.h"
#include "measure/template.h"
#include "policy/policy.h"

namespace nsima::ns {

// What one namespace knows of one inode (kernel IMA's ima_iint_cache, per namespace).
struct FileState {
  Stamp stamp;        // the file version `pcrs` is for
  uint64_t pcrs = 0;  // measured_pcrs of that version
  bool must = false;  // IMA_MUST_MEASURE: a read open matched a measure rule
};

// One namespace of the chain, as the judge sees it.
struct ChainLink {
  uint32_t ns_id = 0;
  const policy::Policy* policy = nullptr;  // never null
  bool measuring = true;                   // false: the namespace stopped measuring (disabled)
  uint32_t default_pcr = 0;
  measure::TemplateKind default_template = measure::TemplateKind::kImaNg;
  measure::HashAlgo hash_algo = measure::HashAlgo::kSha256;
  const FileState* file = nullptr;  // this inode in this namespace, null if never seen
};

struct Target {  // one list that must get an entry for this file version
  uint32_t ns_id = 0;
  uint32_t pcr = 0;
  measure::TemplateKind tmpl = measure::TemplateKind::kImaNg;
  bool operator==(const Target&) const = default;
};

struct JudgedViolation {  // recorded at once, before any entry of the file
  uint32_t ns_id = 0;
  std::string name;
  bool operator==(const JudgedViolation&) const = default;
};

struct Judgement {
  std::vector<Target> targets;
  std::vector<JudgedViolation> violations;
  std::vector<uint32_t> must;  // namespaces that now hold IMA_MUST_MEASURE for this inode
  // The verdict may silence this access class: no namespace's decision depends on credentials
  // that another access of the same class could have.
  bool quiet = true;
  // What reading the file must produce for the targets (empty when there are none).
  std::vector<measure::HashAlgo> algos;
  bool want_ima_xattr = false;
  // Targets exist but the event has no usable path: each target becomes a violation instead.
  bool path_unknown = false;
};

// `base_algo` is always among `algos` when there are targets (the digest cache's key algorithm).
Judgement judge(const Event& ev, std::span<const ChainLink> chain, measure::HashAlgo base_algo);

bool template_has_sig(measure::TemplateKind k);

}  // namespace nsima::ns

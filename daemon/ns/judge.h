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

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <span>
#include <string>
#include <vector>

#include "common/event.h"
#include "measure/hash_algo.h"
#include "measure/template.h"
#include "policy/policy.h"

namespace nsima::ns {

// Func groups of the appraisal status (FileState::appraised_pass/_fail): FILE_CHECK, MMAP_CHECK
// (and MMAP_CHECK_REQPROT), BPRM_CHECK (with CREDS_CHECK: one access class here).
inline constexpr uint8_t kAppraisedFile = 1, kAppraisedMmap = 2, kAppraisedBprm = 4,
                         kAppraisedAll = 7;
inline uint8_t appraise_group(Hook h) {
  return h == Hook::kMmapFile ? kAppraisedMmap : h == Hook::kBprmCheck ? kAppraisedBprm
                                                                        : kAppraisedFile;
}

// What one namespace knows of one inode (kernel IMA's ima_iint_cache, per namespace).
struct FileState {
  Stamp stamp;        // the file version `pcrs` is for
  uint64_t pcrs = 0;  // measured_pcrs of that version
  bool must = false;  // IMA_MUST_MEASURE: a read open matched a measure rule
  // Appraisal of `stamp` in this namespace, per func group (kernel: IMA_FILE_APPRAISED,
  // IMA_MMAP_APPRAISED, IMA_BPRM_APPRAISED and their cached status): bits of kAppraisedFile...
  // passed, or failed. A read open that passed a hash rule says nothing of an exec under an
  // imasig rule: each group is appraised on its own first access. Reset with the version, and
  // when keys or lists change.
  uint8_t appraised_pass = 0, appraised_fail = 0;
  bool appraised(uint8_t group) const { return ((appraised_pass | appraised_fail) & group) != 0; }
  void set_appraised(uint8_t group, bool pass) {
    appraised_pass = static_cast<uint8_t>(pass ? appraised_pass | group : appraised_pass & ~group);
    appraised_fail = static_cast<uint8_t>(pass ? appraised_fail & ~group : appraised_fail | group);
  }
  bool audited = false;  // an audit rule already logged this version (ima_audit_measurement)
  // In the access's own namespace: appraisal in its chain judged this version, with this
  // content (for revocations: the files already allowed are denied at once) and outcome.
  bool denied = false;  // a judged deny is in the verdict map for this version
  // (The sha256 of an appraised version, for revocations, is kept apart: NsRuntime::sha256s.
  // Every (namespace, file) pair has a FileState; few need the digest.)
};
static_assert(sizeof(FileState) <= 48, "one per (namespace, file): keep it small");

// Kernel ima_appraise= per namespace: off (appraise rules are ignored), log (failures are logged,
// nothing denied), enforce (failures are denied; the default, as the kernel's).
enum class AppraiseMode : uint8_t { kOff, kLog, kEnforce };
std::string_view appraise_mode_name(AppraiseMode m);
std::optional<AppraiseMode> parse_appraise_mode(std::string_view s);

// One namespace of the chain, as the judge sees it.
struct ChainLink {
  uint32_t ns_id = 0;
  const policy::Policy* policy = nullptr;  // never null
  bool measuring = true;                   // false: the namespace stopped measuring (disabled)
  uint32_t default_pcr = 0;
  measure::TemplateKind default_template = measure::TemplateKind::kImaNg;
  measure::HashAlgo hash_algo = measure::HashAlgo::kSha256;
  const FileState* file = nullptr;  // this inode in this namespace, null if never seen
  AppraiseMode appraise = AppraiseMode::kEnforce;
};

// A namespace of the chain whose policy appraises (or audits) this access: the second pure stage
// (appraise::appraise_chain) runs on the file's facts with that namespace's keys and lists.
struct AppraiseNeed {
  uint32_t ns_id = 0;
  policy::Decision decision;  // appraise / audit fields of that namespace's decision
  AppraiseMode mode = AppraiseMode::kEnforce;
  bool appraise = false;  // an appraise rule matched (and this version is not appraised yet)
  bool audit = false;     // an audit rule matched (and this version was not logged yet)
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
  // It would be quiet, but the namespace's workload model must see every access (set with
  // quiet = false by Pipeline::model_adjust): quiet once the model knows the access.
  bool model_quiet = false;
  std::vector<AppraiseNeed> appraise;  // chain order (event's namespace first)
  // What reading the file must produce for the targets and appraisals (empty when neither).
  std::vector<measure::HashAlgo> algos;
  bool want_ima_xattr = false;
  bool algo_from_xattr = false;  // also hash with security.ima's algorithm (appraisal)
  // A file appraised earlier in some namespace of the chain failed in an enforcing one: deny
  // (the verdict map already says so unless it was lost; no read needed).
  bool known_fail = false;
  bool read_needed() const { return !targets.empty() || !appraise.empty(); }
  // Targets exist but the event has no usable path: each target becomes a violation instead.
  bool path_unknown = false;
};

// `base_algo` is always among `algos` when there are targets (the digest cache's key algorithm).
Judgement judge(const Event& ev, std::span<const ChainLink> chain, measure::HashAlgo base_algo);

bool template_has_sig(measure::TemplateKind k);

// The access classes (bit NSIMA_CLASS_*) some appraise rule of `p` can match: where an enforcing
// namespace's hooks deny a first access until nsimad has appraised the file. An over-estimate
// (conditions other than func and mask are not looked at, nor dont_appraise rules) costs one
// spurious first deny of a file no rule appraises; an under-estimate would let a file run
// unappraised, so it must never happen.
uint32_t appraise_classes(const policy::Policy& p);

// What the appraise rules of a policy accept from a digest list, for the kernel's decision of a
// first exec, open or executable mmap (bpf/trust.bpf.h): one answer for every access the hooks
// decide (one trusted map for all of them). Conservative: every appraise rule that can match an
// access of a hook (func FILE_CHECK, MMAP_CHECK, MMAP_CHECK_REQPROT, BPRM_CHECK, CREDS_CHECK or
// none) counts, whatever its mask and other conditions, and the strictest wins: a stricter
// read rule also narrows what a first exec may be allowed in the kernel (never widens it).
enum class ListTrust : uint8_t {
  kNoRule,  // no appraise rule can match an access of a hook
  kListed,  // a listed digest passes (hash rules)
  kSigned,  // only a digest from a signed manifest passes (appraise_type=imasig)
  kNever,   // no list passes (digest_type=verity, or appraise_algos= without sha256)
};
ListTrust list_trust(const policy::Policy& p);

}  // namespace nsima::ns

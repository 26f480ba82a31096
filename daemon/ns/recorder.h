// SPDX-License-Identifier: Apache-2.0
// The recorder: measurement lists, their owners' copies, extends, crash reconciliation.
//
// Who extends what (the invariant: every extend into a (TPM, PCR) is recorded in the one list
// that owns that PCR, so each owning list replays alone to its TPM):
//   host      the host TPM (--host-tcti), PCR --host-pcr (default 23; see daemon/tpm/README.md)
//   --vtpm    its own swtpm, PCR 10 (and any pcr= of its policy)
//   others    no PCR of their own: each entry of their list is also appended, byte for byte, to
//             the list of the nearest ancestor that owns a TPM ("owner"), which extends it. A
//             verifier replays the owner's list against its TPM, then checks that every entry of
//             the child's list (after its first) is in the owner's list.
// An entry is appended (written to the page cache) before its extend is queued on the owner's
// extender; after a crash reconcile() finishes the extends the list has but the PCR lacks.
//
// Runs on the pipeline's thread (like the registry); the only other threads are the extenders,
// which report failures through the callback given at construction.
#pragma once

#include <functional>
#include <string>

#include "measure/hash_algo.h"
#include "measure/measurement_list.h"
#include "measure/template.h"
#include "ns/registry.h"

namespace nsima::ns {

struct RecorderOptions {
  std::string state_dir = "/var/lib/nsima";
  measure::HashAlgo hash_algo = measure::HashAlgo::kSha256;
  measure::TemplateKind default_template = measure::TemplateKind::kImaNg;
  // A namespace was suspended or resumed (state "suspended" | "resumed"): for its audit log.
  std::function<void(Namespace*, const std::string& state, const std::string& why)> on_suspend =
      nullptr;
};

struct RecorderCounters {
  uint64_t measured = 0;    // entries added (all lists, owner copies not counted)
  uint64_t violations = 0;  // violation entries added (all lists)
};

class Recorder {
 public:
  // `on_extend_error` runs on an extender thread: it must only hand the failure over.
  // `gen`: the NsRuntime::tpm_gen of the extender that failed.
  using ExtendErrorFn =
      std::function<void(uint32_t owner_ns, uint64_t gen, const ExtendJob&, const Error&)>;
  Recorder(RecorderOptions o, Registry& reg, ExtendErrorFn on_extend_error);

  // Gives `n` an extender for its own TPM (r.own_tpm must be set).
  void attach_tpm(Namespace* n, NsRuntime& r);
  // Opens n's list (creating it with its first entry, boot_aggregate, if empty) with the PCR and
  // banks of n's owner.
  Result<void> open_list(Namespace* n, NsRuntime& r);
  // After a restart: finishes logged but unextended extends; stops a list that does not replay.
  Result<void> reconcile(Namespace* n, NsRuntime& r);
  // The list cannot continue (its owner changed): archive it and start a new one.
  Result<void> restart_list(Namespace* n, NsRuntime& r, const std::string& why);

  // Appends to the list of n's owner (when n owns no PCR) and then to n's list; queues extends.
  // Owner first: a failure between the two leaves an owner entry the child lacks, never a child
  // entry the owner lacks. A list without space suspends n (see NsRuntime::suspended); one that
  // cannot be appended to otherwise stops measuring (and the host list says so). False: nothing
  // recorded in n's list.
  bool entry(Namespace* n, const measure::Entry& e);
  bool violation(Namespace* n, const std::string& name);
  // A suspended n tries to record its violation nsima:suspended:<what>:<lost>; on success it
  // measures again. Called by the pipeline's tick.
  void try_resume(Namespace* n);
  // n stops measuring; the host list records it (nsima:ns-<id>-stopped:<what>).
  void disable(Namespace* n, const std::string& what, const std::string& why);

  const RecorderCounters& counters() const { return counters_; }

 private:
  using AppendFn = std::function<Result<measure::AppendOutcome>(measure::MeasurementList&)>;
  bool append(Namespace* n, const AppendFn& fn);
  void failed(Namespace* n, const Error& e);  // suspend (no space) or disable
  void suspend(Namespace* n, const std::string& why);
  void queue_extend(Namespace* owner, NsRuntime& owner_rt, const measure::AppendOutcome& out);

  RecorderOptions opts_;
  Registry& reg_;
  ExtendErrorFn on_extend_error_;
  RecorderCounters counters_;
};

std::vector<tpm::BankDigest> to_bank_digests(const std::vector<measure::Digest>& ds);
std::optional<tpm::Bank> bank_of(measure::HashAlgo a);

}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
// The namespace registry: the tree of namespaces and everything a namespace is (its policy, its
// list and TPM handles, what it measured of each inode), its persistence (ns.json per namespace,
// the id high-water mark), its BPF registration and every topology change.
//
// Owned by the pipeline's thread: nothing here is locked, and nothing here is touched from another
// thread once nsimad runs (control requests run as tasks on that thread).
//
// Topology changes (a namespace created above existing ones, a namespace deleted between others)
// can change which namespace owns the TPM that records a namespace's extends. insert() and
// remove() compute the owner of every namespace before and after, check each moved namespace's
// policy against its new owner (pcr= rules), undo the change if one would become invalid, and
// return the namespaces whose owner changed: their lists cannot continue (their entries were
// recorded in the old owner's list) and are restarted by the recorder.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "capture/bpf_maps.h"
#include "common/result.h"
#include "measure/measurement_list.h"
#include "ns/extender.h"
#include "ns/file_table.h"
#include "ns/judge.h"
#include "ns/kernel_trust.h"
#include "appraise/digest_list.h"
#include "appraise/keyring.h"
#include "ns/audit_log.h"
#include "ns/namespace_tree.h"
#include "model/model.h"
#include "ns/agent_link.h"
#include "ns/ns_config.h"
#include "ns/verdict_writer.h"
#include "policy/policy.h"
#include "tpm/tpm.h"

namespace nsima::ns {

// At most this many namespaces live at once (the BPF maps are sized for it).
inline constexpr size_t kMaxNamespaces = 4095;

struct NsRuntime {
  NsConfig cfg;
  std::shared_ptr<const policy::Policy> policy;  // never null
  std::shared_ptr<measure::MeasurementList> list;
  std::shared_ptr<tpm::Tpm> own_tpm;  // host TPM (host) or vTPM (--vtpm)
  std::shared_ptr<Extender> extender;  // with own_tpm
  uint64_t tpm_gen = 0;  // bumped with each extender: failures of a replaced one are ignored
  FileTable files;
  // The sha256 of the version of a file appraised in this namespace as the access's own
  // (files[f].stamp == stamp), so that a revocation finds the files already allowed with it.
  struct AppraisedDigest {
    Stamp stamp;
    std::array<uint8_t, 32> sha256{};
  };
  std::unordered_map<FileRef, AppraisedDigest, FileRefHash> sha256s;
  // The sha256 recorded for the current version of f, or null.
  const std::array<uint8_t, 32>* sha256_of(const FileRef& f, const FileState& st) const {
    auto it = sha256s.find(f);
    return it != sha256s.end() && it->second.stamp == st.stamp ? &it->second.sha256 : nullptr;
  }
  // Appraisal: the namespace's keys (<dir>/keys) and digest lists (<dir>/digests), kept across
  // restarts; its audit log (<dir>/audit.log).
  AppraiseMode appraise = AppraiseMode::kEnforce;
  std::shared_ptr<appraise::Keyring> keys;
  std::shared_ptr<appraise::DigestStore> digests;
  std::unique_ptr<AuditLog> audit;
  bool disabled = false;
  std::string disabled_reason;
  // Suspended (fail-safe): its list (or its owner's) could not be appended to for want of space
  // (ENOSPC, EDQUOT). Nothing is recorded or judged allowed meanwhile; a non-host namespace
  // denies every access not judged before (first-access deny of every class). `lost` counts
  // the entries not recorded; resuming records them as the violation nsima:suspended:<what>:<lost>.
  bool suspended = false;
  std::string suspended_reason;
  uint64_t lost = 0;
  uint64_t drops_seen = 0;  // lost events already recorded
  // Workload model (cfg.model_mode not empty; ns/pipeline_model.cpp): the modeler, whether its
  // points changed since <dir>/model was written, and the model PCR's extends so far.
  std::unique_ptr<model::Modeler> modeler;
  bool model_dirty = false;
  uint64_t model_extends = 0;
  uint64_t model_untrusted = 0;  // processes this namespace marked untrusted
  uint64_t model_mark_errors = 0;
  uint64_t model_quiet_written = 0;  // model_quiet entries written (accesses the model knew)
  std::unique_ptr<AgentLink> agent;  // cfg.model_agent: the agent decides untrust
  // NSIMA_CG_MODEL_EXEC is set for its cgroup: the kernel refuses an exec of content that is
  // not a known executable of its enforcing model (Registry::set_model_exec).
  bool model_exec_gate = false;
};

struct RegistryOptions {
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string state_dir = "/var/lib/nsima";
  int host_pcr = 23;
};

class Registry {
 public:
  Registry(RegistryOptions o, capture::BpfMaps* maps);

  // Reads the id high-water mark. `host_cgroup_id`: the id of the cgroup root.
  Result<void> init(uint64_t host_cgroup_id);

  Namespace& host() { return tree_.host(); }
  const std::string& cgroup_root() const { return tree_.cgroup_root(); }
  Namespace* find(uint32_t id) { return tree_.find(id); }
  Namespace* find(const std::string& name_or_id) { return tree_.find(name_or_id); }
  Namespace* find_by_cgroup(const std::string& dir) { return tree_.find_by_cgroup(dir); }
  std::vector<Namespace*> all() const { return tree_.all(); }
  std::vector<Namespace*> chain(Namespace* n) const { return tree_.chain(n); }
  std::vector<Namespace*> subtree(Namespace* n) const { return tree_.subtree(n); }
  std::vector<uint32_t> chain_ids(Namespace* n) const;
  std::vector<uint32_t> subtree_ids(Namespace* n) const;

  bool has_rt(const Namespace* n) const { return rt_.count(n->id) != 0; }
  NsRuntime& rt(const Namespace* n) { return *rt_.at(n->id); }
  void set_rt(const Namespace* n, std::unique_ptr<NsRuntime> r) { rt_[n->id] = std::move(r); }

  bool owns_pcr(const Namespace* n) const;
  Namespace* owner_of(Namespace* n);
  // The PCR a namespace's list records by default: host_pcr under the host, 10 under a vTPM.
  uint32_t default_pcr_of(Namespace* n);

  // pcr= rules must not reach a PCR another component of the host owns (under the host TPM only
  // host_pcr; under a vTPM any of its 24).
  Result<void> validate_policy(const policy::Policy& p, Namespace* owner) const;

  // A fresh id: never one issued before, across restarts (the mark is persisted first).
  Result<uint32_t> allocate_id();

  // Creates the namespace of `dir` (restored namespaces pass their id and config), checks the
  // limits (count, cgroup depth) and what the move does to existing namespaces. Returns the new
  // namespace and the existing ones whose owner changed (their lists restart). `cfg.vtpm` and the
  // policy decide ownership; the runtime is installed with `cfg` and `policy` (list not opened).
  struct Inserted {
    Namespace* ns = nullptr;
    std::vector<Namespace*> owner_changed;
  };
  Result<Inserted> insert(const std::string& dir, uint64_t cgroup_id, NsConfig cfg,
                          std::shared_ptr<const policy::Policy> policy);
  // Removes a namespace from the tree (its runtime is returned to the caller, which closes it).
  // Its children move to its parent; those whose owner changes are returned. Refused (nothing
  // changed) if a moved namespace's policy would become invalid under its new owner.
  struct Removed {
    std::unique_ptr<NsRuntime> runtime;
    uint32_t parent_id = 0;
    std::vector<Namespace*> moved;          // every namespace of the subtree that moved up
    std::vector<Namespace*> owner_changed;  // of those, the ones whose owner changed
  };
  Result<Removed> remove(Namespace* n);
  // The parent a deleted namespace had (events still in flight for it are judged by that chain).
  std::optional<uint32_t> former_parent(uint32_t deleted_id) const;

  // BPF: binds the namespace's cgroup to its id (its descendants follow through the hooks'
  // ancestor walk). No-op without maps.
  Result<void> register_bpf(Namespace* n);
  // Registers `n` and every namespace below it again (their first-access flags follow from
  // every enforcing ancestor's appraise rules).
  Result<void> refresh_bpf(Namespace* n);
  // NSIMA_CG_FIRST_DENY and the classes it covers: the union over `n` and its ancestors of the
  // appraise classes of each namespace that enforces appraisal (a child never relaxes).
  uint32_t first_access_flags(Namespace* n);
  Result<void> unregister_bpf(Namespace* n);

  // The sha256 digests whose first exec, open or executable mmap the kernel may allow in `n`
  // (bpf/trust.bpf.h): empty unless some enforcing namespace of n's chain appraises an access
  // class (then the hooks deny a first access of it); else those listed in every such
  // namespace's store as its rules require (list_trust, the strictest rule of every hook: a
  // signed manifest for imasig, nothing for verity), revoked in no store of the chain. A child
  // never relaxes an ancestor: the set only shrinks down the tree.
  std::vector<capture::Sha256> kernel_trusted(Namespace* n);
  // Writes kernel_trusted() of `n` and of every namespace below it into the trusted map.
  Result<void> refresh_trust(Namespace* n);
  // An enforcing model's known executables (bpf/access.bpf.h, NSIMA_CG_MODEL_EXEC): `on`
  // writes `exec_digests` as NSIMA_TRUST_MODEL pairs, then sets the cgroup flag; off clears
  // the flag, then the pairs. A pair that did not fit (full map) is an exec the kernel refuses.
  Result<void> set_model_exec(Namespace* n, bool on, std::vector<capture::Sha256> exec_digests);
  // A deleted namespace's pairs.
  Result<void> drop_trust(uint32_t ns_id) { return trust_.drop(ns_id); }
  KernelTrust::Counters trust_counters() const { return trust_.counters(); }

  Result<void> save(const NsRuntime& r) const;

  size_t size() const { return rt_.size(); }

 private:
  std::map<uint32_t, uint32_t> owners();  // ns id -> owner id
  Result<void> check_moves(const std::map<uint32_t, uint32_t>& before,
                           std::vector<Namespace*>& changed, Namespace* skip);

  RegistryOptions opts_;
  capture::BpfMaps* maps_;
  KernelTrust trust_;
  NamespaceTree tree_;
  std::map<uint32_t, std::unique_ptr<NsRuntime>> rt_;
  uint32_t next_id_ = kHostNsId + 1;
  std::map<uint32_t, uint32_t> tombstones_;  // deleted id -> its parent then
  std::deque<uint32_t> tombstone_order_;
};

}  // namespace nsima::ns

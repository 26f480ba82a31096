// SPDX-License-Identifier: Apache-2.0
// The one writer of the BPF verdict map. Two kinds of verdict meet there:
//   - judged verdicts: what the pipeline decided for one version of a file (allow, with the access
//     classes that need no further event); replaced whenever the file changes or a policy is
//     loaded;
//   - operator overrides (`nsimactl deny`): a deny for an inode in a namespace and every namespace
//     below it, for every version of the file (a rewrite does not lift it), persisted in
//     <state_dir>/overrides.json apart from the verdict cache, so that policy loads, namespace
//     creation below a denied one, and nsimad restarts keep them.
// Every write goes through one mutex, so a judged allow can never overwrite an override written
// meanwhile (the read-modify-write of the old code raced `nsimactl deny`). No other lock is held
// while the map is written.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "capture/bpf_maps.h"
#include "common/event.h"
#include "common/result.h"

namespace nsima::ns {

struct FileRef {  // an inode as the hooks key it
  uint64_t kdev = 0;
  uint64_t ino = 0;
  uint32_t generation = 0;
  bool operator==(const FileRef&) const = default;
  static FileRef of(const Event& ev) { return {ev.kdev, ev.ino, ev.generation}; }
};

struct Override {
  uint32_t ns_id = 0;  // the namespace the operator named; applies to its subtree
  FileRef file;
  std::string path;  // as the operator gave it, for `nsimactl` and logs
  Stamp stamp;       // the version seen when it was denied (informational)
  bool operator==(const Override&) const = default;
};

class VerdictWriter {
 public:
  // `maps` may be null (no BPF: overrides are still kept and persisted).
  VerdictWriter(capture::BpfMaps* maps, std::string state_dir);

  // Reads <state_dir>/overrides.json. A file that cannot be parsed is an error naming it: nsimad
  // must not start and silently forget denies.
  Result<void> load();

  // A judged allow for one version of a file in namespace `ns_id` (the event's namespace).
  // Ignored when an override of `chain` (ns_id and its ancestors) denies the inode.
  // `judged_bits`: the access classes this decision covers (quiet_bits is a subset); an
  // enforcing namespace's hooks treat every other class as a first access.
  // `model_quiet_bits`: classes quiet but for chain[0]'s workload model (BpfMaps::allow).
  void judged_allow(std::span<const uint32_t> chain, const FileRef& f, const Stamp& stamp,
                    uint32_t quiet_bits, uint32_t judged_bits, uint32_t model_quiet_bits = 0);

  // A judged deny (appraisal failed) for one version of a file in chain[0], for the access
  // classes `classes` (the others keep their verdict, or get quiet_bits/judged_bits); an
  // override wins.
  void judged_deny(std::span<const uint32_t> chain, const FileRef& f, const Stamp& stamp,
                   uint32_t classes, uint32_t quiet_bits = 0, uint32_t judged_bits = 0);
  // Removes chain[0]'s judged verdict of `f` (the file is judged again on its next access);
  // an override of the chain stays.
  void forget_judged(std::span<const uint32_t> chain, const FileRef& f);

  // Adds a deny override in `ns_id`, written for every namespace of `subtree` (ns_id first).
  Result<void> deny(uint32_t ns_id, const FileRef& f, const Stamp& stamp, const std::string& path,
                    std::span<const uint32_t> subtree);
  // Removes ns_id's override of `f` and every cached verdict of `f` in `subtree`, so the file is
  // judged again. ancestors: the chain above ns_id; an ancestor's override is an error naming it.
  Result<void> allow(uint32_t ns_id, const FileRef& f, std::span<const uint32_t> ancestors,
                     std::span<const uint32_t> subtree);

  // The override of `chain` that denies `f`, if any.
  std::optional<Override> denied_by(std::span<const uint32_t> chain, const FileRef& f) const;

  // Makes the denies of chain[0] in the map exactly the overrides of `chain` (chain[0] first, then
  // its ancestors): a namespace created (or moved) below a denied one is denied too, one whose
  // denying ancestor was deleted is not any more. Idempotent.
  Result<void> apply(std::span<const uint32_t> chain);
  // Drops the judged verdicts of `ns_id` (policy change, list restarted); overrides stay.
  Result<size_t> invalidate(uint32_t ns_id);
  // A deleted namespace: its overrides are forgotten (persisted) and all its verdicts removed.
  Result<void> forget(uint32_t ns_id);

  std::vector<Override> overrides() const;
  uint64_t errors() const;

 private:
  Result<void> save_locked();
  Result<void> write_deny_locked(uint32_t ns_id, const FileRef& f, const Stamp& stamp);
  bool covers_locked(std::span<const uint32_t> chain, const FileRef& f) const;

  capture::BpfMaps* maps_;
  std::string path_;
  mutable std::mutex mu_;
  std::vector<Override> overrides_;        // guarded by mu_
  std::vector<std::pair<uint32_t, FileRef>> written_;  // (ns, file) denies in the map; mu_
  uint64_t errors_ = 0;                    // guarded by mu_
};

}  // namespace nsima::ns

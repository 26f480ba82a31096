// SPDX-License-Identifier: Apache-2.0
// The only writer (and reader) of nsima's BPF maps on the daemon side: registered cgroups and
// the epoch that invalidates the hooks' cgroup cache, nsimad's identity, the verdict cache,
// counters, lost events per namespace, and the stamps of nsimad's own opens. Works on any
// object carrying these maps (the LSM object in production, the selftest object in host
// tests), given their fds. Thread-safe.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/event.h"
#include "common/result.h"
#include "nsima/bpf_abi.h"

namespace nsima::capture {

// (New maps go at the end: positional initializers written for fewer maps stay right.)
struct MapFds {
  int cgroups = -1;  // registered cgroups (daemon-written)
  int verdicts = -1;
  int stats = -1;
  int ns_drops = -1;
  int self_opens = -1;
  int cg_cache = -1;  // the hooks' LRU cache of ancestor walks
  int ctl = -1;       // struct nsima_ctl (mmapable array)
  int trusted = -1;   // (namespace, sha256) whose first exec the kernel allows
  int model_untrusted = -1;  // slot 0: the model hooks' untrusted map (set by ModelHooks::load)
  int model_quiet = -1;      // accesses a namespace's model knows (struct nsima_model_quiet_key)
};

using Sha256 = std::array<uint8_t, 32>;

// Counters summed over CPUs, per hook (index NSIMA_HOOK_*), and the resolution/loss counters.
struct Stats {
  uint64_t emitted[NSIMA_HOOK_MAX] = {};
  uint64_t dropped[NSIMA_HOOK_MAX] = {};
  uint64_t denied[NSIMA_HOOK_MAX] = {};
  uint64_t quiet[NSIMA_HOOK_MAX] = {};
  uint64_t cg_uncached = 0;  // NSIMA_STAT_CG_UNCACHED: resolved without caching (harmless)
  uint64_t unresolved = 0;   // NSIMA_STAT_UNRESOLVED: accesses of unknown namespace (violation)
  uint64_t drop_no_ns = 0;   // NSIMA_STAT_DROP_NO_NS: drops no namespace counter recorded
  uint64_t trusted = 0;      // NSIMA_STAT_TRUSTED: first execs allowed by the trusted map
  uint64_t trust_nohash = 0; // NSIMA_STAT_TRUST_NOHASH: first accesses the kernel could not hash
  uint64_t trust_unstable = 0;  // NSIMA_STAT_TRUST_UNSTABLE: ... it would not trust (a writer,
                                // a change while hashed, not open for read)
  uint64_t trusted_open = 0;    // NSIMA_STAT_TRUSTED_OPEN: first opens allowed by the trusted map
  uint64_t trusted_mmap = 0;    // NSIMA_STAT_TRUSTED_MMAP: first exec mmaps allowed likewise
  uint64_t kernel_digest = 0;   // NSIMA_STAT_KERNEL_DIGEST: events sent with the kernel's sha256
  uint64_t model_exec_denied = 0;  // NSIMA_STAT_MODEL_EXEC_DENIED: execs an enforcing model refused
  uint64_t lost_untrusted = 0;     // NSIMA_STAT_LOST_UNTRUSTED: lost file events whose process
                                   // the hooks made untrusted (enforcing model)
  uint64_t lost_mark_failed = 0;   // NSIMA_STAT_LOST_MARK_FAILED: ... not markable: refused
  uint64_t model_quiet = 0;        // NSIMA_STAT_MODEL_QUIET: modeled accesses model_quiet silenced
  uint64_t model_pending = 0;      // NSIMA_STAT_MODEL_PENDING: ... reported, put in as pending
  uint64_t setxattr = 0;     // NSIMA_STAT_SETXATTR: security.ima writes sent to nsimad
  uint64_t setxattr_dropped = 0;  // NSIMA_STAT_SETXATTR_DROPPED: ... that found no ring space
  // self-protection (bpf/protect.bpf.c): refusals per kind (index NSIMA_PROTECT_KIND_*, 1..5),
  // and what became of their reports
  uint64_t protect_refused[6] = {};
  uint64_t protect_reported = 0;    // NSIMA_STAT_PROTECT_REPORTED
  uint64_t protect_suppressed = 0;  // NSIMA_STAT_PROTECT_SUPPRESSED: over the rate limit
  uint64_t protect_dropped = 0;     // NSIMA_STAT_PROTECT_DROPPED: the ring buffer was full
  uint64_t total_emitted() const;
  uint64_t total_dropped() const;
  uint64_t total_denied() const;
  uint64_t total_quiet() const;
};

struct RegisteredCgroup {
  uint64_t cgroup_id = 0;
  uint32_t ns_id = 0;
  uint32_t flags = 0;  // NSIMA_CG_* as registered (NSIMA_CG_REGISTERED always set)
};

nsima_stamp to_abi(const Stamp& s);

// The model_quiet key of a file event, as the hooks build it for the same access
// (bpf/access.bpf.h, nsima_model_quiet): nullopt for an event the hooks never keep quiet this
// way (an exec, no usable or too long a path, an unlinked file, an open IMA's violation checks
// must see). Pure.
std::optional<nsima_model_quiet_key> model_quiet_key_of(const Event& ev);
Stamp from_abi(const nsima_stamp& s);

// The absolute level of cgroup2 directory `dir` (0 = the hierarchy's root), what
// bpf_get_current_ancestor_cgroup_id counts. Fails if `dir` is not on cgroup2, or if the
// cgroup2 mount it is on is not the hierarchy's root (inside a cgroup namespace, or a bind
// mount of a sub-tree): levels seen from there are not the kernel's.
Result<uint32_t> cgroup_level(const std::string& dir);

// Start time of process `pid` in clock ticks (/proc/PID/stat field 22), as struct nsima_ctl
// wants it.
Result<uint64_t> process_start_ticks(pid_t pid);

// A u32 -> u64 hash map of counters (ns_drops, model_drops) read whole; `name` for errors.
Result<std::map<uint32_t, uint64_t>> read_counter_map(int fd, const char* name);

class BpfMaps {
 public:
  // Maps the ctl map; if that fails, every call that needs it returns the error.
  explicit BpfMaps(MapFds fds);
  ~BpfMaps();
  BpfMaps(const BpfMaps&) = delete;
  BpfMaps& operator=(const BpfMaps&) = delete;

  // Binds cgroup `cgroup_id` at `level` (cgroup_level(), 0 = root) and, through the hooks'
  // ancestor walk, its descendants, to ns_id. Refuses a level >= NSIMA_MAX_CGROUP_DEPTH (the
  // walk would not see it) and a full map (NSIMA_MAX_NAMESPACES). Both calls bump the epoch, so
  // no cached answer computed before them is used after they return.
  Result<void> register_cgroup(uint64_t cgroup_id, uint32_t ns_id, uint32_t flags,
                               uint32_t level);
  Result<void> unregister_cgroup(uint64_t cgroup_id);
  std::optional<nsima_cgroup> cgroup(uint64_t cgroup_id) const;  // registered entry
  // What the hooks registered: after a restart, the daemon reconciles these with its own
  // namespaces (unregister_cgroup those it does not restore).
  Result<std::vector<RegisteredCgroup>> registered_cgroups() const;
  // The hooks' cached answer for a cgroup (diagnostics and tests).
  std::optional<nsima_cg_cache> cached_cgroup(uint64_t cgroup_id) const;
  Result<uint64_t> epoch() const;
  Result<void> bump_epoch();  // invalidates every cached answer

  // nsimad's identity for the hooks (its own opens are never events): tgid and start time.
  Result<void> set_self(uint32_t tgid, uint64_t start_ticks);
  Result<nsima_ctl> ctl() const;

  Result<void> set_verdict(const nsima_verdict_key& key, const nsima_verdict& v);
  // Allow + add `quiet_bits` and `judged_bits` (quiet implies judged) if the stored verdict has
  // the same stamp, else replace it. With keep_deny, a deny for the same stamp stays (an event
  // that raced with `nsimactl deny`) for the classes it refuses, while the bits of the other
  // classes are added; a deny of every version stays whatever the stamp. `model_quiet_bits`:
  // classes that would be quiet but for the namespace's workload model (added like quiet).
  Result<void> allow(const nsima_verdict_key& key, const Stamp& stamp, uint32_t quiet_bits,
                     bool keep_deny = true, uint32_t judged_bits = 0,
                     uint32_t model_quiet_bits = 0);
  // Denies this version of the file (`stamp`) for the access classes `classes` (bit per
  // NSIMA_CLASS_*: where appraisal failed; added to a same-version deny, and a same-version
  // verdict keeps its bits for the other classes; quiet_bits/judged_bits for the other classes),
  // or with every_version the inode for every class whatever its content becomes
  // (NSIMA_VERDICT_DENY_ALWAYS: only allow(keep_deny=false) lifts it).
  Result<void> deny(const nsima_verdict_key& key, const Stamp& stamp, bool every_version = false,
                    uint32_t classes = NSIMA_CLASS_ALL, uint32_t quiet_bits = 0,
                    uint32_t judged_bits = 0);
  Result<void> remove_verdict(const nsima_verdict_key& key);
  std::optional<nsima_verdict> verdict(const nsima_verdict_key& key) const;
  // Removes all verdicts of one namespace (policy change, namespace deleted). Returns the count.
  Result<size_t> remove_namespace_verdicts(uint32_t ns_id);

  // model_quiet: an access of a modeled namespace whose coefficient its model knows (the
  // hooks keep the next equal access quiet), and the removal of all of one namespace's (its
  // model replaced or reloaded, the namespace deleted). A full LRU evicts: never an error.
  Result<void> add_model_quiet(const nsima_model_quiet_key& key);  // NSIMA_MODEL_QUIET_KNOWN
  Result<void> remove_model_quiet(const nsima_model_quiet_key& key);  // absent: fine
  Result<size_t> clear_model_quiet(uint32_t ns_id);
  Result<size_t> model_quiet_count(uint32_t ns_id) const;

  Result<Stats> stats() const;
  Result<std::map<uint32_t, uint64_t>> ns_drops() const;
  Result<void> init_ns_drops(uint32_t ns_id);    // so the hooks only need a lookup + atomic add
  Result<void> remove_ns_drops(uint32_t ns_id);  // a deleted namespace's counter

  // The trusted map (first execs decided in the kernel). trust() returns false, changing
  // nothing, when the map is full (E2BIG): that digest is then simply not trusted by the
  // kernel (its first exec takes the first-access rule). untrust() of an absent pair is fine.
  // `bit`: NSIMA_TRUST_LISTED (digest lists) or NSIMA_TRUST_MODEL (a model's executables);
  // each set adds and removes only its own bit of a pair.
  Result<bool> trust(uint32_t ns_id, const Sha256& sha256, uint32_t bit = NSIMA_TRUST_LISTED);
  Result<void> untrust(uint32_t ns_id, const Sha256& sha256, uint32_t bit = NSIMA_TRUST_LISTED);
  bool trusted(uint32_t ns_id, const Sha256& sha256) const;
  // Every pair in the map (a restarted nsimad clears what it did not write).
  Result<std::vector<nsima_trust_key>> trusted_keys() const;

  // Stamp of the file the calling thread opened last (nsimad's own opens are not events).
  std::optional<nsima_self_open> self_open(uint32_t tid) const;

  const MapFds& fds() const { return fds_; }

 private:
  Result<nsima_ctl*> ctl_page() const;

  MapFds fds_;
  nsima_ctl* ctl_ = nullptr;  // mmap of the ctl map
  size_t ctl_len_ = 0;
  int ctl_errno_ = 0;
};

}  // namespace nsima::capture

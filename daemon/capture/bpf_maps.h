// SPDX-License-Identifier: Apache-2.0
// The only writer (and reader) of nsima's BPF maps on the daemon side: registered cgroups, the
// verdict cache, counters, lost events per namespace, and the stamps of nsimad's own opens.
// Works on any object carrying these maps (the LSM object in production, the selftest object in
// host tests), given their fds.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

#include "common/event.h"
#include "common/result.h"
#include "nsima/bpf_abi.h"

namespace nsima::capture {

struct MapFds {
  int cgroups = -1;
  int verdicts = -1;
  int stats = -1;
  int ns_drops = -1;
  int self_opens = -1;
};

// Counters summed over CPUs, per hook (index NSIMA_HOOK_*).
struct Stats {
  uint64_t emitted[NSIMA_HOOK_MAX] = {};
  uint64_t dropped[NSIMA_HOOK_MAX] = {};
  uint64_t denied[NSIMA_HOOK_MAX] = {};
  uint64_t quiet[NSIMA_HOOK_MAX] = {};
  uint64_t total_emitted() const;
  uint64_t total_dropped() const;
  uint64_t total_denied() const;
  uint64_t total_quiet() const;
};

nsima_stamp to_abi(const Stamp& s);
Stamp from_abi(const nsima_stamp& s);

class BpfMaps {
 public:
  explicit BpfMaps(MapFds fds) : fds_(fds) {}

  // Binds cgroup `cgroup_id` (and, through the hooks' ancestor walk, its descendants) to ns_id.
  Result<void> register_cgroup(uint64_t cgroup_id, uint32_t ns_id, uint32_t flags);
  Result<void> unregister_cgroup(uint64_t cgroup_id);
  // Drops every entry the hooks derived from an ancestor walk: call after any registration
  // change so no cgroup keeps a stale answer.
  Result<void> flush_derived();
  std::optional<nsima_cgroup> cgroup(uint64_t cgroup_id) const;

  Result<void> set_verdict(const nsima_verdict_key& key, const nsima_verdict& v);
  // Allow + add `quiet_bits` if the stored verdict has the same stamp, else replace it. With
  // keep_deny, a deny for the same stamp stays (an event that raced with `nsimactl deny`).
  Result<void> allow(const nsima_verdict_key& key, const Stamp& stamp, uint32_t quiet_bits,
                     bool keep_deny = true);
  Result<void> deny(const nsima_verdict_key& key, const Stamp& stamp);
  Result<void> remove_verdict(const nsima_verdict_key& key);
  std::optional<nsima_verdict> verdict(const nsima_verdict_key& key) const;
  // Removes all verdicts of one namespace (policy change, namespace deleted). Returns the count.
  Result<size_t> remove_namespace_verdicts(uint32_t ns_id);

  Result<Stats> stats() const;
  Result<std::map<uint32_t, uint64_t>> ns_drops() const;
  Result<void> init_ns_drops(uint32_t ns_id);  // so the hooks only need a lookup + atomic add

  // Stamp of the file the calling thread opened last (nsimad's own opens are not events).
  std::optional<nsima_self_open> self_open(uint32_t tid) const;

  const MapFds& fds() const { return fds_; }

 private:
  MapFds fds_;
};

}  // namespace nsima::capture

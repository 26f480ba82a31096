// SPDX-License-Identifier: Apache-2.0
#include "capture/bpf_maps.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <string.h>

#include <string>
#include <vector>

namespace nsima::capture {

namespace {

tl::unexpected<Error> map_error(const char* op, const char* map, int err) {
  return make_error(err, std::string(op) + " failed: " + strerror(err), std::string("map ") + map);
}

int cpus() {
  static const int n = libbpf_num_possible_cpus();
  return n > 0 ? n : 1;
}

}  // namespace

namespace {
uint64_t sum(const uint64_t (&per_hook)[NSIMA_HOOK_MAX]) {
  uint64_t t = 0;
  for (auto v : per_hook) t += v;
  return t;
}
}  // namespace

uint64_t Stats::total_emitted() const { return sum(emitted); }
uint64_t Stats::total_dropped() const { return sum(dropped); }
uint64_t Stats::total_denied() const { return sum(denied); }
uint64_t Stats::total_quiet() const { return sum(quiet); }

nsima_stamp to_abi(const Stamp& s) {
  nsima_stamp out{};
  out.ctime_sec = s.ctime_sec;
  out.ctime_nsec = s.ctime_nsec;
  out.i_version = s.i_version;
  out.size = s.size;
  return out;
}

Stamp from_abi(const nsima_stamp& s) { return Stamp{s.ctime_sec, s.ctime_nsec, s.i_version, s.size}; }

Result<void> BpfMaps::register_cgroup(uint64_t cgroup_id, uint32_t ns_id, uint32_t flags) {
  nsima_cgroup v{ns_id, flags | NSIMA_CG_REGISTERED};
  if (bpf_map_update_elem(fds_.cgroups, &cgroup_id, &v, BPF_ANY))
    return map_error("update", "cgroups", errno);
  return {};
}

Result<void> BpfMaps::unregister_cgroup(uint64_t cgroup_id) {
  if (bpf_map_delete_elem(fds_.cgroups, &cgroup_id) && errno != ENOENT)
    return map_error("delete", "cgroups", errno);
  return {};
}

Result<void> BpfMaps::flush_derived() {
  // Collect first: deleting while iterating restarts get_next_key from the beginning.
  std::vector<uint64_t> derived;
  uint64_t key = 0, next = 0;
  uint64_t* prev = nullptr;
  while (bpf_map_get_next_key(fds_.cgroups, prev, &next) == 0) {
    nsima_cgroup v{};
    if (bpf_map_lookup_elem(fds_.cgroups, &next, &v) == 0 && !(v.flags & NSIMA_CG_REGISTERED))
      derived.push_back(next);
    key = next;
    prev = &key;
  }
  for (uint64_t k : derived)
    if (bpf_map_delete_elem(fds_.cgroups, &k) && errno != ENOENT)
      return map_error("delete", "cgroups", errno);
  return {};
}

std::optional<nsima_cgroup> BpfMaps::cgroup(uint64_t cgroup_id) const {
  nsima_cgroup v{};
  if (bpf_map_lookup_elem(fds_.cgroups, &cgroup_id, &v)) return std::nullopt;
  return v;
}

Result<void> BpfMaps::set_verdict(const nsima_verdict_key& key, const nsima_verdict& v) {
  if (bpf_map_update_elem(fds_.verdicts, &key, &v, BPF_ANY))
    return map_error("update", "verdicts", errno);
  return {};
}

Result<void> BpfMaps::allow(const nsima_verdict_key& key, const Stamp& stamp,
                            uint32_t quiet_bits, bool keep_deny) {
  nsima_verdict v{};
  v.stamp = to_abi(stamp);
  v.verdict = NSIMA_VERDICT_ALLOW;
  v.quiet = quiet_bits;
  auto old = verdict(key);
  if (old && from_abi(old->stamp) == stamp) {
    if (old->verdict == NSIMA_VERDICT_DENY && keep_deny) return {};
    if (old->verdict == NSIMA_VERDICT_ALLOW) v.quiet |= old->quiet;
  }
  return set_verdict(key, v);
}

Result<void> BpfMaps::deny(const nsima_verdict_key& key, const Stamp& stamp) {
  nsima_verdict v{};
  v.stamp = to_abi(stamp);
  v.verdict = NSIMA_VERDICT_DENY;
  return set_verdict(key, v);
}

Result<void> BpfMaps::remove_verdict(const nsima_verdict_key& key) {
  if (bpf_map_delete_elem(fds_.verdicts, &key) && errno != ENOENT)
    return map_error("delete", "verdicts", errno);
  return {};
}

std::optional<nsima_verdict> BpfMaps::verdict(const nsima_verdict_key& key) const {
  nsima_verdict v{};
  if (bpf_map_lookup_elem(fds_.verdicts, &key, &v)) return std::nullopt;
  return v;
}

Result<size_t> BpfMaps::remove_namespace_verdicts(uint32_t ns_id) {
  std::vector<nsima_verdict_key> doomed;
  nsima_verdict_key key{}, next{};
  nsima_verdict_key* prev = nullptr;
  while (bpf_map_get_next_key(fds_.verdicts, prev, &next) == 0) {
    if (next.ns_id == ns_id) doomed.push_back(next);
    key = next;
    prev = &key;
  }
  for (auto& k : doomed)
    if (bpf_map_delete_elem(fds_.verdicts, &k) && errno != ENOENT)
      return map_error("delete", "verdicts", errno);
  return doomed.size();
}

Result<Stats> BpfMaps::stats() const {
  Stats s;
  std::vector<uint64_t> per_cpu(cpus());
  for (uint32_t i = 0; i < NSIMA_STAT_MAX; ++i) {
    if (bpf_map_lookup_elem(fds_.stats, &i, per_cpu.data()))
      return map_error("lookup", "stats", errno);
    uint64_t sum = 0;
    for (auto v : per_cpu) sum += v;
    uint32_t hook = i % 4, kind = i / 4;
    uint64_t* row = kind == 0 ? s.emitted : kind == 1 ? s.dropped : kind == 2 ? s.denied : s.quiet;
    if (hook < NSIMA_HOOK_MAX) row[hook] = sum;
  }
  return s;
}

Result<std::map<uint32_t, uint64_t>> BpfMaps::ns_drops() const {
  std::map<uint32_t, uint64_t> out;
  uint32_t key = 0, next = 0;
  uint32_t* prev = nullptr;
  while (bpf_map_get_next_key(fds_.ns_drops, prev, &next) == 0) {
    uint64_t v = 0;
    if (bpf_map_lookup_elem(fds_.ns_drops, &next, &v) == 0) out[next] = v;
    key = next;
    prev = &key;
  }
  return out;
}

Result<void> BpfMaps::init_ns_drops(uint32_t ns_id) {
  uint64_t zero = 0;
  if (bpf_map_update_elem(fds_.ns_drops, &ns_id, &zero, BPF_NOEXIST) && errno != EEXIST)
    return map_error("update", "ns_drops", errno);
  return {};
}

std::optional<nsima_self_open> BpfMaps::self_open(uint32_t tid) const {
  nsima_self_open v{};
  if (bpf_map_lookup_elem(fds_.self_opens, &tid, &v)) return std::nullopt;
  return v;
}

}  // namespace nsima::capture

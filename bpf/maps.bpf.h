/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every map and global of nsima's BPF side, declared __weak so that several .bpf.c files can
 * include this header and `bpftool gen object` links them into one instance each.
 */
#ifndef NSIMA_MAPS_BPF_H
#define NSIMA_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "nsima/bpf_abi.h"
#include "nsima/model_abi.h"

/* Registered cgroup id -> namespace. Written only by the daemon (one entry per namespace),
 * which bumps ctl.epoch after every change. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NSIMA_MAX_NAMESPACES);
	__type(key, __u64);
	__type(value, struct nsima_cgroup);
} cgroups SEC(".maps") __weak;

/* Any cgroup id -> the hooks' resolution of it (see ns.bpf.h), tagged with the epoch it was
 * computed in. LRU: entries of dead or idle cgroups are collected; size set by nsimad. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NSIMA_CG_CACHE_ENTRIES);
	__type(key, __u64);
	__type(value, struct nsima_cg_cache);
} cg_cache SEC(".maps") __weak;

/* Run-time settings from the daemon (epoch, nsimad's identity): struct nsima_ctl. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct nsima_ctl);
} ctl SEC(".maps") __weak;

/* Identity of the loaded object (struct nsima_tag), written by nsimad after load; no program
 * reads it. Pinned with the rest, it tells a restarted nsimad whether it may resume. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nsima_tag);
} tag SEC(".maps") __weak;

/* (namespace, dev, ino, generation) -> verdict with the change stamp it was given for. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct nsima_verdict_key);
	__type(value, struct nsima_verdict);
} verdicts SEC(".maps") __weak;

/* Events to the daemon (size set by nsimad before load). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps") __weak;

/* Per-CPU counters, NSIMA_STAT_* + hook. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NSIMA_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps") __weak;

/* Lost events per namespace: the daemon turns increases into violation entries. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NSIMA_MAX_NAMESPACES);
	__type(key, __u32);
	__type(value, __u64);
} ns_drops SEC(".maps") __weak;

/* One more in a u32 namespace id -> u64 counter hash map (ns_drops, model_drops), the entry
 * made on first use. 0 if the map had no room for it: the caller counts that elsewhere. */
static __always_inline int nsima_ns_counter_add(void *map, __u32 ns_id)
{
	__u64 *d = bpf_map_lookup_elem(map, &ns_id);
	if (!d) {
		__u64 zero = 0;
		bpf_map_update_elem(map, &ns_id, &zero, BPF_NOEXIST);
		d = bpf_map_lookup_elem(map, &ns_id);
	}
	if (!d)
		return 0;
	__sync_fetch_and_add(d, 1);
	return 1;
}

/* The model hooks' untrusted map (model_maps.bpf.h, struct nsima_proc_key -> namespace id), put
 * in slot 0 by nsimad once it has loaded them: a file event lost in an enforcing model's
 * namespace makes its process untrusted there (access.bpf.h), as a lost model event does.
 * Empty until then (such a loss refuses the access). */
struct nsima_untrusted_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NSIMA_MAX_UNTRUSTED);
	/* sizes, not __type: a struct only pointed to here would be a BTF forward declaration in
	 * the objects whose code does not use it */
	__uint(key_size, sizeof(struct nsima_proc_key));
	__uint(value_size, sizeof(__u32));
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct nsima_untrusted_inner);
} model_untrusted SEC(".maps") __weak;

/* The key an untrusted mark has: the process (tgid, group leader's start time). */
static __always_inline void nsima_model_key(struct task_struct *t, struct nsima_proc_key *k)
{
	k->tgid = BPF_CORE_READ(t, tgid);
	k->pad = 0;
	k->start = BPF_CORE_READ(t, group_leader, start_boottime);
}

/* Marks `proc` untrusted in `marks` (an untrusted map), judged by namespace ns_id. 0: it was
 * already (an earlier mark stands, its namespace kept), 1: marked here, -1: the mark did not
 * fit (full map): the caller must refuse instead. */
static __always_inline int nsima_untrust(void *marks, const struct nsima_proc_key *proc,
					 __u32 ns_id)
{
	if (bpf_map_lookup_elem(marks, proc))
		return 0;
	return bpf_map_update_elem(marks, proc, &ns_id, BPF_ANY) == 0 ? 1 : -1;
}

/* Accesses of modeled namespaces whose coefficient the model knows (struct
 * nsima_model_quiet_key; value unused): written by nsimad after its model judged one, looked
 * up by the hooks when a verdict is quiet but for the model (access.bpf.h). LRU: an evicted
 * entry only means an event again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NSIMA_MODEL_QUIET_ENTRIES);
	__type(key, struct nsima_model_quiet_key);
	__type(value, __u32);
} model_quiet SEC(".maps") __weak;

/* Per-task buffer the hooks build a model_quiet key in (408 bytes: not the stack, and not a
 * per-CPU buffer a preempted sleepable hook would share). One per task that ever looked. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct nsima_model_quiet_key);
} task_quiet SEC(".maps") __weak;

/* Per-CPU scratch event: too large for the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nsima_event);
} scratch SEC(".maps") __weak;

/* Daemon thread id -> stamp of the file that thread opened last. nsimad's own opens never
 * become events; this is how it learns the kernel's stamp (i_version is not visible to
 * userspace) of a file it is about to judge. LRU: the pinned map outlives every nsimad, and
 * the entries of their dead threads must not fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct nsima_self_open);
} self_opens SEC(".maps") __weak;

/* (namespace, sha256) -> NSIMA_TRUST_LISTED: contents whose first exec the kernel allows in an
 * enforcing namespace (trust.bpf.h). Written only by nsimad (ns/kernel_trust), from each
 * namespace's digest lists and its ancestors'; a revoked digest is never in it. A full map
 * only means a digest is missing: its first exec takes the first-access rule (deny until
 * appraised), never the other way round. Preallocated: the lookup runs in a sleepable program
 * and never allocates. Size set by nsimad. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NSIMA_TRUSTED_ENTRIES);
	__type(key, struct nsima_trust_key);
	__type(value, __u32);
} trusted SEC(".maps") __weak;

static __always_inline struct nsima_ctl *nsima_ctl(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&ctl, &zero);
}

#endif

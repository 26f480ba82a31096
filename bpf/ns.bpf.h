/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Which nsima namespace an access belongs to: the deepest registered cgroup among the task's
 * cgroup and its ancestors. The answer is cached per cgroup id in the cgroups map (DERIVED
 * entries, ns_id 0 for "none"), so a process outside every namespace pays one lookup.
 */
#ifndef NSIMA_NS_BPF_H
#define NSIMA_NS_BPF_H

#include "maps.bpf.h"

#ifdef NSIMA_SELFTEST
/* selftest.bpf.c feeds the ancestor chain through a global: syscall programs have no task
 * cgroup worth testing against. */
__u64 selftest_ancestors[NSIMA_MAX_CGROUP_DEPTH];
static __always_inline __u64 nsima_ancestor_cgroup(int level)
{
	if (level < 0 || level >= NSIMA_MAX_CGROUP_DEPTH)
		return 0;
	return selftest_ancestors[level];
}
#else
static __always_inline __u64 nsima_ancestor_cgroup(int level)
{
	return bpf_get_current_ancestor_cgroup_id(level);
}
#endif

/* Returns the namespace entry of cgroup `cgid` (ns_id 0 when in no namespace), or NULL if the
 * cache is full; callers treat NULL as "not ours". */
static __always_inline struct nsima_cgroup *nsima_resolve_ns(__u64 cgid)
{
	struct nsima_cgroup *cg = bpf_map_lookup_elem(&cgroups, &cgid);
	if (cg)
		return cg;

	struct nsima_cgroup val = { .ns_id = 0, .flags = NSIMA_CG_DERIVED };
	for (int level = NSIMA_MAX_CGROUP_DEPTH - 1; level >= 0; level--) {
		__u64 anc = nsima_ancestor_cgroup(level);
		if (!anc)
			continue;
		struct nsima_cgroup *a = bpf_map_lookup_elem(&cgroups, &anc);
		if (a && (a->flags & NSIMA_CG_REGISTERED)) {
			val.ns_id = a->ns_id;
			val.flags |= a->flags & NSIMA_CG_FIRST_DENY;
			break;
		}
	}
	bpf_map_update_elem(&cgroups, &cgid, &val, BPF_NOEXIST);
	return bpf_map_lookup_elem(&cgroups, &cgid);
}

#endif

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Which nsima namespace an access belongs to: the deepest registered cgroup among the task's
 * cgroup and its ancestors. Never fails open.
 *
 * Two maps (maps.bpf.h): `cgroups` holds the REGISTERED cgroups, written by the daemon only;
 * `cg_cache` (LRU) is the hooks' cache of ancestor walks, one entry per cgroup id seen, each
 * tagged with the epoch (ctl.epoch) it was computed in.
 *
 * Exact for every task, however deep:
 *  - the walk looks at ancestor levels NSIMA_MAX_CGROUP_DEPTH-1 .. 0 of the task's cgroup
 *    (bpf_get_current_ancestor_cgroup_id: level 0 is the root, the task's own level is its
 *    cgroup; levels below the task's return 0 and are skipped);
 *  - the daemon refuses to register a cgroup at a level >= NSIMA_MAX_CGROUP_DEPTH
 *    (BpfMaps::register_cgroup), and a cgroup never changes level (cgroup2 renames stay within
 *    the parent), so every registered ancestor of any task is at a level the walk looks at: a
 *    task at level 40 is still matched to a namespace registered at level 5 or 31, and the
 *    deepest registered ancestor found is the right one.
 *  - the cache cannot make it wrong: an entry is used only while its epoch equals ctl.epoch.
 *    The daemon bumps the epoch after every registration change; the hook reads the epoch
 *    BEFORE walking. A walk that raced with a registration (read epoch E, daemon registers and
 *    bumps to E+1, walk misses the registration, insert tagged E) leaves an entry that the next
 *    access recomputes.
 *  - the cache cannot make it fail: when the insert fails (LRU under extreme contention, or a
 *    plain hash in tests) the computed answer is used anyway and NSIMA_STAT_CG_UNCACHED counts
 *    it; dead cgroups' entries are collected by the LRU.
 * The one case left is a walk that cannot run at all: no ancestor id, not even the root's
 * (level 0 always exists for a task on cgroup v2). It is counted (NSIMA_STAT_UNRESOLVED, which
 * the daemon turns into a host violation) and the access treated as in no namespace.
 */
#ifndef NSIMA_NS_BPF_H
#define NSIMA_NS_BPF_H

#include "maps.bpf.h"
#include "verdict.bpf.h" /* nsima_count */

#ifdef NSIMA_SELFTEST
/* selftest.bpf.c feeds the ancestor chain through a global: syscall programs have no task
 * cgroup worth testing against. */
__u64 selftest_ancestors[NSIMA_MAX_CGROUP_DEPTH];
/* The race of a registration with a walk: when the walk reaches level `selftest_race_level`
 * (after the epoch was read and deeper levels were looked at), the program itself does what
 * the daemon does: registers selftest_race_cgid -> selftest_race_ns, then bumps the epoch. */
int selftest_race_level = -1;
__u64 selftest_race_cgid;
__u32 selftest_race_ns;
static __always_inline __u64 nsima_ancestor_cgroup(int level)
{
	if (level < 0 || level >= NSIMA_MAX_CGROUP_DEPTH)
		return 0;
	if (level == selftest_race_level) {
		struct nsima_cgroup reg = { .ns_id = selftest_race_ns, .flags = NSIMA_CG_REGISTERED };
		struct nsima_ctl *c = nsima_ctl();
		bpf_map_update_elem(&cgroups, &selftest_race_cgid, &reg, BPF_ANY);
		if (c)
			__sync_fetch_and_add(&c->epoch, 1);
	}
	return selftest_ancestors[level];
}
#else
static __always_inline __u64 nsima_ancestor_cgroup(int level)
{
	return bpf_get_current_ancestor_cgroup_id(level);
}
#endif

/* Fills `out` with the namespace of cgroup `cgid` (ns_id 0: in no namespace). */
static __always_inline void nsima_resolve_ns(__u64 cgid, struct nsima_cgroup *out)
{
	struct nsima_ctl *c = nsima_ctl();
	/* the epoch first: a registration after this read makes the entry below stale */
	__u64 epoch = c ? *(volatile __u64 *)&c->epoch : 0;

	struct nsima_cg_cache *hit = bpf_map_lookup_elem(&cg_cache, &cgid);
	if (hit && c && hit->epoch == epoch) {
		out->ns_id = hit->ns_id;
		out->flags = hit->flags;
		return;
	}

	struct nsima_cg_cache val = { .ns_id = 0, .flags = NSIMA_CG_DERIVED, .epoch = epoch };
	int walked = 0;
	for (int level = NSIMA_MAX_CGROUP_DEPTH - 1; level >= 0; level--) {
		__u64 anc = nsima_ancestor_cgroup(level);
		if (!anc)
			continue;
		walked = 1;
		struct nsima_cgroup *a = bpf_map_lookup_elem(&cgroups, &anc);
		if (a) {
			val.ns_id = a->ns_id;
			if (anc == cgid)
				val.flags = a->flags | NSIMA_CG_REGISTERED;
			else
				val.flags |= a->flags & (NSIMA_CG_FIRST_DENY | NSIMA_CG_FIRST_DENY_MASK |
							 NSIMA_CG_MODEL_EXEC);
			break;
		}
	}
	out->ns_id = val.ns_id;
	out->flags = val.flags;
	if (!walked) {
		nsima_count(NSIMA_STAT_UNRESOLVED);
		return; /* nothing to cache: the next access tries again */
	}
	/* without the ctl map there is no epoch to validate an entry with: do not cache */
	if (!c || bpf_map_update_elem(&cg_cache, &cgid, &val, BPF_ANY))
		nsima_count(NSIMA_STAT_CG_UNCACHED);
}

#endif

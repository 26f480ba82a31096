/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The hook's decision for a file in a namespace, from the verdict map alone. Pure: no side
 * effects besides the map lookup, so selftest.bpf.c can run it with BPF_PROG_TEST_RUN.
 */
#ifndef NSIMA_VERDICT_BPF_H
#define NSIMA_VERDICT_BPF_H

#include "maps.bpf.h"

#include "selftest_abi.h" /* NSIMA_DECIDE_* */

static __always_inline int nsima_stamp_eq(const struct nsima_stamp *a, const struct nsima_stamp *b)
{
	return a->ctime_sec == b->ctime_sec && a->ctime_nsec == b->ctime_nsec &&
	       a->i_version == b->i_version && a->size == b->size;
}

/* `flags` gets NSIMA_EV_STALE when a verdict exists for an older version of the file: a file
 * whose stamp changed is treated as never seen. NSIMA_VERDICT_DENY_ALWAYS ignores the stamp. */
static __always_inline int nsima_decide(const struct nsima_verdict_key *key,
					const struct nsima_stamp *now, __u32 class, __u32 *flags)
{
	struct nsima_verdict *v = bpf_map_lookup_elem(&verdicts, key);
	if (!v)
		return NSIMA_DECIDE_EMIT;
	/* an operator's deny of the inode itself: whatever the file's content becomes */
	if (v->verdict == NSIMA_VERDICT_DENY_ALWAYS)
		return NSIMA_DECIDE_DENY;
	if (!nsima_stamp_eq(&v->stamp, now)) {
		*flags |= NSIMA_EV_STALE;
		return NSIMA_DECIDE_EMIT;
	}
	if (class >= 32)
		return v->verdict == NSIMA_VERDICT_DENY ? NSIMA_DECIDE_DENY : NSIMA_DECIDE_EMIT;
	/* appraisal failed for this access class (per class, as kernel IMA's per-func status):
	 * another class the policy does not appraise is not refused by it */
	if (v->verdict == NSIMA_VERDICT_DENY && (v->denied & (1u << class)))
		return NSIMA_DECIDE_DENY;
	if (v->quiet & (1u << class))
		return NSIMA_DECIDE_QUIET;
	if (v->model_quiet & v->judged & (1u << class))
		return NSIMA_DECIDE_REPORT_MODEL;
	/* judged and allowed for this version, but the daemon wants to see this access class */
	if (v->judged & (1u << class))
		return NSIMA_DECIDE_REPORT;
	/* judged for other classes only: for this one it is a first access (an exec of a file
	 * that was only read so far must still be appraised before it runs) */
	return NSIMA_DECIDE_EMIT;
}

static __always_inline void nsima_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&stats, &idx);
	/* atomic: the sleepable bprm_check program can be preempted on this CPU by another hook */
	if (c)
		__sync_fetch_and_add(c, 1);
}

#endif

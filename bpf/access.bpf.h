/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one path every hook takes: whose access is it (nsimad itself? which namespace?), what
 * does the verdict map say about this version of the file, then allow, deny or tell the daemon.
 */
#ifndef NSIMA_ACCESS_BPF_H
#define NSIMA_ACCESS_BPF_H

#include "emit.bpf.h"
#include "ns.bpf.h"
#include "trust.bpf.h"

#define S_IFMT 00170000
#define S_IFREG 0100000

struct nsima_access {
	__u32 hook;
	__u32 mask;  /* NSIMA_MAY_* */
	__u32 class; /* NSIMA_CLASS_* */
	__u32 prot;
	__u32 reqprot;
	__u32 mmap_flags;
	__u32 flags;    /* NSIMA_EV_* known up front (IN_EXECVE) */
	int may_deny;   /* 0 where denying would hurt more than it protects (see callers) */
};

static __always_inline void nsima_key_of(struct inode *inode, __u32 ns_id,
					 struct nsima_verdict_key *key)
{
	key->ns_id = ns_id;
	key->generation = BPF_CORE_READ(inode, i_generation);
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->ino = BPF_CORE_READ(inode, i_ino);
}

/* Is the process `tgid`, started at `start_ns` (group leader's start_boottime), the nsimad
 * that ctl names? By tgid AND start time: after a crash nsimad's pid may be reused. Pure. */
static __always_inline int nsima_ctl_is_self(struct nsima_ctl *c, __u32 tgid, __u64 start_ns)
{
	__u32 self_tgid = *(volatile __u32 *)&c->self_tgid;
	if (!self_tgid || tgid != self_tgid)
		return 0;
	__u32 tick_ns = *(volatile __u32 *)&c->tick_ns;
	__u64 self_start = *(volatile __u64 *)&c->self_start;
	return tick_ns && start_ns / tick_ns == self_start;
}

/* nsimad's own opens never become events; file_open records their stamp in self_opens. */
static __always_inline int nsima_is_self(struct inode *inode, int record)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct nsima_ctl *c = nsima_ctl();
	if (!c || (__u32)(pid_tgid >> 32) != *(volatile __u32 *)&c->self_tgid)
		return 0; /* the common case: one compare, no task read */
	struct task_struct *task = bpf_get_current_task_btf();
	if (!nsima_ctl_is_self(c, (__u32)(pid_tgid >> 32),
			       BPF_CORE_READ(task, group_leader, start_boottime)))
		return 0;
	if (record) {
		struct nsima_verdict_key key;
		struct nsima_self_open so = {};
		__u32 tid = (__u32)pid_tgid;
		nsima_key_of(inode, 0, &key);
		so.dev = key.dev;
		so.ino = key.ino;
		so.generation = key.generation;
		nsima_read_stamp(inode, &so.stamp);
		bpf_map_update_elem(&self_opens, &tid, &so, BPF_ANY);
	}
	return 1;
}

/*
 * Returns 0 to allow or -EACCES. `new_cred` is bprm->cred for bprm_check, else NULL.
 * `sleepable` (a constant: 1 only in the lsm.s bprm_check program) decides a first exec in the
 * kernel from the trusted map (trust.bpf.h) and builds the event in its own ring-buffer record
 * instead of the per-CPU scratch buffer, which a preemptible program must not share with the
 * other hooks running on its CPU.
 */
static __always_inline int nsima_access(struct file *file, struct inode *inode,
					const struct nsima_access *a, const struct cred *new_cred,
					const int sleepable)
{
	if (nsima_is_self(inode, a->hook == NSIMA_HOOK_FILE_OPEN))
		return 0;

	struct nsima_cgroup cg;
	nsima_resolve_ns(bpf_get_current_cgroup_id(), &cg);
	if (!cg.ns_id)
		return 0; /* not in any namespace: one cached lookup, nothing else */
	/* IMA judges regular files only (process_measurement: !S_ISREG -> nothing to do) */
	if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFREG)
		return 0;
	__u32 cg_flags = cg.flags;

	struct nsima_verdict_key key;
	struct nsima_stamp now;
	__u32 flags = a->flags;
	nsima_key_of(inode, cg.ns_id, &key);
	nsima_read_stamp(inode, &now);

	/* IMA's violation checks need every open that meets a writer (read open) or a reader
	 * (write open), even of a file otherwise silenced. */
	__s32 writers = BPF_CORE_READ(inode, i_writecount.counter);
	__s32 readers = -1;
	if (bpf_core_field_exists(inode->i_readcount))
		readers = BPF_CORE_READ(inode, i_readcount.counter);
	if (a->hook == NSIMA_HOOK_FILE_OPEN) {
		if (!(a->mask & NSIMA_MAY_WRITE) && writers > 0)
			flags |= NSIMA_EV_WRITERS;
		if ((a->mask & NSIMA_MAY_WRITE) && readers > 0)
			flags |= NSIMA_EV_READERS;
	}

	int ret = 0;
	/* An enforcing workload model (issue 13) refuses, before it runs, an executable whose
	 * content is not one its model ever executed: that exec's coefficient (TASK_ID) cannot be
	 * known. Safe for the same reason as the trusted map (trust.bpf.h): the file cannot change
	 * between this hash and the load. The event still goes to the daemon (forensics). */
	if (sleepable && (cg_flags & NSIMA_CG_MODEL_EXEC) && a->may_deny &&
	    !(nsima_trust_bits(file, cg.ns_id) & NSIMA_TRUST_MODEL)) {
		flags |= NSIMA_EV_DENIED | NSIMA_EV_MODEL_UNKNOWN;
		nsima_count(NSIMA_STAT_MODEL_EXEC_DENIED);
		ret = -EACCES;
		goto report;
	}
	switch (nsima_decide(&key, &now, a->class, &flags)) {
	case NSIMA_DECIDE_QUIET:
		if (flags & (NSIMA_EV_WRITERS | NSIMA_EV_READERS))
			break;
		nsima_count(NSIMA_STAT_QUIET + (a->hook & 3));
		return 0;
	case NSIMA_DECIDE_DENY:
		if (a->may_deny) {
			/* Denied for this version of the file (or every version): refuse, count, no
			 * event (an attacker retrying must not flood the ring buffer). */
			nsima_count(NSIMA_STAT_DENIED + (a->hook & 3));
			return -EACCES;
		}
		break;
	case NSIMA_DECIDE_REPORT:
		break; /* judged and allowed: the daemon only wants to see it */
	default:
		/* First access (never judged, or changed) in a namespace that enforces appraisal for
		 * this access class: refuse until the daemon has appraised the file; the event
		 * below asks it to. */
		if ((cg_flags & NSIMA_CG_FIRST_DENY) && a->class < NSIMA_CLASS_COUNT &&
		    (cg_flags & NSIMA_CG_FIRST_DENY_CLASS(a->class)) && a->may_deny) {
			/* ... unless its content is trusted in this namespace: allowed now, and the
			 * event below still goes to the daemon, which measures and appraises it as
			 * any first access (nothing is lost by deciding here). */
			if (sleepable && nsima_trusted(file, cg.ns_id)) {
				flags |= NSIMA_EV_TRUSTED;
				nsima_count(NSIMA_STAT_TRUSTED);
				break;
			}
			flags |= NSIMA_EV_DENIED | NSIMA_EV_FIRST_DENY;
			nsima_count(NSIMA_STAT_DENIED + (a->hook & 3));
			ret = -EACCES;
		}
		break;
	}

report:;
	struct nsima_event *e;
	if (sleepable) {
		/* A whole record (path at its full size): exec events are few. */
		e = bpf_ringbuf_reserve(&events, sizeof(struct nsima_event), 0);
		if (!e) {
			nsima_count(NSIMA_STAT_DROPPED + (a->hook & 3));
			nsima_add_drop(cg.ns_id);
			return ret;
		}
	} else {
		__u32 zero = 0;
		e = bpf_map_lookup_elem(&scratch, &zero);
		if (!e)
			return ret;
	}
	nsima_fill_event(e, a->hook, flags, &key, &now, file, inode);
	e->mask = a->mask;
	e->prot = a->prot;
	e->reqprot = a->reqprot;
	e->mmap_flags = a->mmap_flags;
	e->i_writecount = writers;
	e->i_readcount = readers;
	if (new_cred)
		nsima_read_cred(new_cred, &e->new_cred);
	nsima_fill_path(e, file);
	if (sleepable) {
		bpf_ringbuf_submit(e, 0);
		nsima_count(NSIMA_STAT_EMITTED + (a->hook & 3));
	} else {
		nsima_submit(e);
	}
	return ret;
}

#endif

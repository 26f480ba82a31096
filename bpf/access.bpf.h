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
	key->generation = NSIMA_LOAD(inode, i_generation);
	key->dev = NSIMA_LOAD(NSIMA_LOAD(inode, i_sb), s_dev);
	key->ino = NSIMA_LOAD(inode, i_ino);
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
			       task->group_leader->start_boottime))
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
 * Per-task event buffer of the sleepable programs. A sleepable program can be preempted (it
 * sleeps in bpf_ima_file_hash), so it must not build its event in the per-CPU `scratch` buffer
 * another program on its CPU may be filling meanwhile. A task runs one access hook at a time
 * (the hash reads through the hooked file, never opens another: trust.bpf.h), so its own
 * buffer is never shared. Unlike a whole ring-buffer record per event (4.4 KiB), the record is
 * cut after the path as nsima_submit does, so the many open events cost the ring buffer what
 * they did from `scratch`. Memory: one struct nsima_event per task that ever reported from a
 * sleepable hook, freed with the task.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct nsima_event);
} task_events SEC(".maps") __weak;

/* The NSIMA_STAT_* counting an access the trusted map allowed in the kernel, per hook. */
static __always_inline __u32 nsima_trusted_stat(__u32 hook)
{
	if (hook == NSIMA_HOOK_FILE_OPEN)
		return NSIMA_STAT_TRUSTED_OPEN;
	if (hook == NSIMA_HOOK_MMAP_FILE)
		return NSIMA_STAT_TRUSTED_MMAP;
	return NSIMA_STAT_TRUSTED;
}

/*
 * The model_quiet key of this access (struct nsima_model_quiet_key: equal keys, equal
 * coefficients), or NULL if it has none. Built in the task's own buffer from the fields the
 * event would carry, the path by bpf_d_path (as nsima_fill_path), its tail zeroed: bpf_d_path
 * leaves what d_path wrote behind the string. A path longer than NSIMA_QUIET_PATH has no key.
 */
static __always_inline struct nsima_model_quiet_key *
nsima_model_quiet_key(struct file *file, struct inode *inode, const struct nsima_access *a,
		      const struct nsima_verdict_key *vk, const struct nsima_stamp *now)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct nsima_model_quiet_key *k =
		bpf_task_storage_get(&task_quiet, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!k)
		return 0;
	long n = bpf_d_path(&file->f_path, k->path, sizeof(k->path));
	if (n <= 0 || n > NSIMA_QUIET_PATH)
		return 0;
	__u64 *w = (__u64 *)k->path;
	for (int i = 0; i < NSIMA_QUIET_PATH / 8; i++) {
		long at = (long)i * 8;
		if (at >= n)
			w[i] = 0;
		else if (at + 8 > n)
			w[i] &= (1ull << ((n - at) * 8)) - 1; /* little-endian: keep the low bytes */
	}
	k->path_len = (__u32)n;
	k->ns_id = vk->ns_id;
	k->hook = a->hook;
	k->tgid = (__u32)(bpf_get_current_pid_tgid() >> 32);
	k->start_boottime = NSIMA_LOAD(NSIMA_LOAD(task, group_leader), start_boottime);
	k->self_exec_id = NSIMA_LOAD(task, self_exec_id);
	nsima_read_cred(BPF_CORE_READ(task, cred), &k->cred);
	k->dev = vk->dev;
	k->ino = vk->ino;
	k->generation = vk->generation;
	k->i_mode = NSIMA_LOAD(inode, i_mode);
	k->i_uid = NSIMA_LOAD(inode, i_uid.val);
	k->i_gid = NSIMA_LOAD(inode, i_gid.val);
	k->stamp = *now;
	k->f_flags = NSIMA_LOAD(file, f_flags);
	k->prot = a->prot;
	k->mmap_flags = a->mmap_flags;
	k->pad = 0;
	return k;
}

/*
 * Returns 0 to allow or -EACCES. `new_cred` is bprm->cred for bprm_check, else NULL.
 * `sleepable` (a constant: 1 in the lsm.s programs) decides a first access in the kernel from
 * the trusted map (trust.bpf.h) and builds the event in the task's own buffer (task_events)
 * instead of the per-CPU scratch buffer, which a preemptible program must not share with the
 * other hooks running on its CPU. The quiet path (a cached verdict) is the same either way.
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
	if ((NSIMA_LOAD(inode, i_mode) & S_IFMT) != S_IFREG)
		return 0;
	__u32 cg_flags = cg.flags;

	struct nsima_verdict_key key;
	struct nsima_stamp now;
	__u32 flags = a->flags;
	nsima_key_of(inode, cg.ns_id, &key);
	nsima_read_stamp(inode, &now);

	/* IMA's violation checks need every open that meets a writer (read open) or a reader
	 * (write open), even of a file otherwise silenced. */
	__s32 writers = NSIMA_LOAD(inode, i_writecount.counter);
	__s32 readers = -1;
	if (bpf_core_field_exists(inode->i_readcount))
		readers = NSIMA_LOAD(inode, i_readcount.counter);
	if (a->hook == NSIMA_HOOK_FILE_OPEN) {
		if (!(a->mask & NSIMA_MAY_WRITE) && writers > 0)
			flags |= NSIMA_EV_WRITERS;
		if ((a->mask & NSIMA_MAY_WRITE) && readers > 0)
			flags |= NSIMA_EV_READERS;
	}

	int ret = 0;
	struct nsima_model_quiet_key *mq = 0; /* reported for the model: pending once submitted */
	__u8 sha256[32];
	int hashed = -1; /* -1: not hashed, else nsima_hash_stable()'s result (sleepable only) */
	/* An enforcing workload model (issue 13) refuses, before it runs, an executable whose
	 * content is not one its model ever executed: that exec's coefficient (TASK_ID) cannot be
	 * known. Safe for the same reason as the trusted map (trust.bpf.h): the file cannot change
	 * between this hash and the load. The event still goes to the daemon (forensics). */
	if (sleepable && a->hook == NSIMA_HOOK_BPRM_CHECK && (cg_flags & NSIMA_CG_MODEL_EXEC) &&
	    a->may_deny) {
		hashed = nsima_hash_stable(file, inode, &now, writers, sha256);
		if (hashed != NSIMA_HASHED ||
		    !(nsima_trust_of(cg.ns_id, sha256) & NSIMA_TRUST_MODEL)) {
			flags |= NSIMA_EV_DENIED | NSIMA_EV_MODEL_UNKNOWN;
			nsima_count(NSIMA_STAT_MODEL_EXEC_DENIED);
			ret = -EACCES;
			goto report;
		}
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
	case NSIMA_DECIDE_REPORT_MODEL:
		/* quiet but for the namespace's workload model: quiet if the model knows this
		 * process's access (never an exec: it makes a new TASK_ID; never an open that IMA's
		 * violation checks must see) */
		if (a->hook != NSIMA_HOOK_BPRM_CHECK &&
		    !(flags & (NSIMA_EV_WRITERS | NSIMA_EV_READERS)))
			mq = nsima_model_quiet_key(file, inode, a, &key, &now);
		if (mq && bpf_map_lookup_elem(&model_quiet, mq)) {
			nsima_count(NSIMA_STAT_MODEL_QUIET);
			return 0;
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
			/* ... unless its content is trusted in this namespace (and could not change
			 * under the hash): allowed now, and the event below still goes to the daemon,
			 * which measures and appraises it as any first access (nothing is lost by
			 * deciding here). Only here does a hook hash: never on the quiet path. */
			if (sleepable) {
				int trusted;
				if (hashed == NSIMA_HASHED)
					trusted = (nsima_trust_of(cg.ns_id, sha256) &
						   NSIMA_TRUST_LISTED) != 0;
				else
					trusted = nsima_first_trusted(file, inode, cg.ns_id, &now,
								      writers, sha256, &hashed);
				if (trusted) {
					flags |= NSIMA_EV_TRUSTED;
					nsima_count(nsima_trusted_stat(a->hook));
					break;
				}
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
		e = bpf_task_storage_get(&task_events, bpf_get_current_task_btf(), 0,
					 BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!e) {
			/* no memory for the task's buffer, or the task-storage lock busy on this
			 * CPU: a lost event, counted as every other (the decision stands) */
			nsima_count(NSIMA_STAT_DROPPED + (a->hook & 3));
			nsima_add_drop(cg.ns_id);
			return nsima_lost_access(cg_flags, cg.ns_id, ret, a->may_deny);
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
	if (hashed == NSIMA_HASHED) {
		/* the digest of the version e->stamp names: nsimad need not hash it again */
		__builtin_memcpy(e->kernel_sha256, sha256, sizeof(e->kernel_sha256));
		e->flags |= NSIMA_EV_KERNEL_DIGEST;
		nsima_count(NSIMA_STAT_KERNEL_DIGEST);
	}
	nsima_fill_path(e, file);
	if (nsima_submit(e))
		return nsima_lost_access(cg_flags, cg.ns_id, ret, a->may_deny);
	if (mq) {
		/* Its repeats are the same coefficient: quiet while nsimad judges this one, which
		 * then marks the key known or removes it (unknown: the next repeat is an event). */
		__u32 pending = NSIMA_MODEL_QUIET_PENDING;
		if (!bpf_map_update_elem(&model_quiet, mq, &pending, BPF_NOEXIST))
			nsima_count(NSIMA_STAT_MODEL_PENDING);
	}
	return ret;
}

#endif

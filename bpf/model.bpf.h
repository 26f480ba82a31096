/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The model hooks' logic (model.bpf.c), as inline helpers that model_selftest.bpf.c runs on
 * hosts without BPF-LSM through SEC("syscall") programs. Every task read goes through
 * BPF_CORE_READ, so the helpers take any task pointer (the hook's trusted one, or
 * bpf_get_current_task() in a test).
 *
 * Order in every hook: is the current process in a modeled namespace (one cached lookup, as
 * the file hooks), is it untrusted, what does the namespace's flag word decide
 * (nsima_model_decide: pure), then report and allow or refuse.
 */
#ifndef NSIMA_MODEL_BPF_H
#define NSIMA_MODEL_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "errno.bpf.h"
#include "model_maps.bpf.h"
#include "ns.bpf.h"

#define NSIMA_PROT_EXEC_BIT 0x4
#define NSIMA_SIGURG 23
#define NSIMA_SI_KERNEL_MIN 1 /* si_code > 0: SI_FROMKERNEL() */
/* a target whose namespace the walk could not find within its bound: treated as foreign */
#define NSIMA_NS_UNRESOLVED 0xffffffffu
#define NSIMA_MODEL_KN_WALK 64

/* 6.15, "kernfs: Use RCU to access kernfs_node::parent.": parent became __parent. */
struct kernfs_node___6_15 {
	struct kernfs_node *__parent;
} __attribute__((preserve_access_index));

static __always_inline void nsima_mcount(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&mstats, &idx);
	if (c)
		*c += 1;
}

/* What the hook does for one event: report it (EMIT) and/or refuse it (DENY). Pure. */
static __always_inline __u32 nsima_model_decide(__u32 ns_flags, int untrusted, __u32 hook,
						 int cross)
{
	if (!(ns_flags & NSIMA_MODEL_ON))
		return 0;
	__u32 d = NSIMA_MDECIDE_EMIT;
	if (hook == NSIMA_MHOOK_FORK || hook == NSIMA_MHOOK_EXIT)
		return d; /* tracepoints: nothing to refuse */
	/* enforce: an untrusted process (and its later children) may do nothing more */
	if (untrusted && (ns_flags & NSIMA_MODEL_ENFORCE))
		d |= NSIMA_MDECIDE_DENY;
	/* TSEM refuses signals across modeling namespaces (whatever the mode) */
	if (hook == NSIMA_MHOOK_TASK_KILL && cross && !(ns_flags & NSIMA_MODEL_CROSS_SIGNALS))
		d |= NSIMA_MDECIDE_DENY;
	return d;
}

static __always_inline int nsima_model_is_untrusted(const struct nsima_proc_key *k)
{
	return bpf_map_lookup_elem(&untrusted, k) != NULL;
}

/* fork: a child of an untrusted process is untrusted. Returns 1 if it was marked. */
static __always_inline int nsima_model_inherit(const struct nsima_proc_key *parent,
					       const struct nsima_proc_key *child)
{
	__u32 *judged_by = bpf_map_lookup_elem(&untrusted, parent);
	if (!judged_by)
		return 0;
	__u32 v = *judged_by;
	if (bpf_map_update_elem(&untrusted, child, &v, BPF_ANY)) {
		/* full map: nsimad marks it from the fork event (it tracks the lineage) */
		nsima_mcount(NSIMA_MSTAT_INHERIT_FAILED);
		return 0;
	}
	return 1;
}

static __always_inline void nsima_model_read_cred(const struct cred *c,
						  struct nsima_model_cred *o)
{
	o->uid = BPF_CORE_READ(c, uid.val);
	o->euid = BPF_CORE_READ(c, euid.val);
	o->suid = BPF_CORE_READ(c, suid.val);
	o->gid = BPF_CORE_READ(c, gid.val);
	o->egid = BPF_CORE_READ(c, egid.val);
	o->sgid = BPF_CORE_READ(c, sgid.val);
	o->fsuid = BPF_CORE_READ(c, fsuid.val);
	o->fsgid = BPF_CORE_READ(c, fsgid.val);
	/* kernel_cap_t is 8 bytes on every kernel: __u32 cap[2] before 6.3, u64 val after */
	o->cap_effective = 0;
	bpf_core_read(&o->cap_effective, sizeof(o->cap_effective), &c->cap_effective);
}

static __always_inline struct kernfs_node *nsima_kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->parent))
		return BPF_CORE_READ(kn, parent);
	return BPF_CORE_READ((struct kernfs_node___6_15 *)kn, __parent);
}

/* The namespace of a cgroup given by its kernfs node: its deepest registered ancestor-or-self
 * (the file hooks' rule), walking up at most NSIMA_MODEL_KN_WALK levels. */
static __always_inline __u32 nsima_model_kn_ns(struct kernfs_node *kn)
{
	for (int i = 0; i < NSIMA_MODEL_KN_WALK; i++) {
		if (!kn)
			return 0; /* above the root: in no namespace */
		__u64 id = BPF_CORE_READ(kn, id);
		struct nsima_cgroup *cg = bpf_map_lookup_elem(&cgroups, &id);
		if (cg)
			return cg->ns_id;
		kn = nsima_kn_parent(kn);
	}
	return kn ? NSIMA_NS_UNRESOLVED : 0;
}

/* Another task's namespace (signal and ptrace targets): cg_cache first, as the file hooks fill
 * it for every cgroup they see, then the walk. */
static __always_inline __u32 nsima_model_task_ns(struct task_struct *t)
{
	struct kernfs_node *kn = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn);
	__u64 cgid = BPF_CORE_READ(kn, id);
	struct nsima_ctl *c = nsima_ctl();
	struct nsima_cg_cache *hit = bpf_map_lookup_elem(&cg_cache, &cgid);
	if (hit && c && hit->epoch == *(volatile __u64 *)&c->epoch)
		return hit->ns_id;
	return nsima_model_kn_ns(kn);
}

/* Copies at most NSIMA_MODEL_ADDR_MAX bytes of a kernel sockaddr into the event. */
static __always_inline void nsima_model_copy_addr(struct nsima_model_event *e, const void *addr,
						  int addrlen)
{
	__u32 n = addrlen > 0 ? (__u32)addrlen : 0;
	if (n > NSIMA_MODEL_ADDR_MAX) {
		n = NSIMA_MODEL_ADDR_MAX;
		e->flags |= NSIMA_MEV_ADDR_TRUNCATED;
	}
	/* keep the bound in the register the helper gets (see emit.bpf.h) */
	asm volatile("%0 &= 0xff" : "+r"(n));
	if (n > NSIMA_MODEL_ADDR_MAX)
		n = NSIMA_MODEL_ADDR_MAX;
	if (!addr || bpf_probe_read_kernel(e->addr, n, addr))
		n = 0;
	e->addr_len = n;
}

/* A signal the kernel generated (SIGCHLD to a parent, SIGSEGV, timers): not the process's
 * doing, never modeled (TSEM: SI_FROMKERNEL). SEND_SIG_NOINFO (0) and SEND_SIG_PRIV (1) are
 * not pointers. */
static __always_inline int nsima_signal_from_kernel(struct kernel_siginfo *info)
{
	if ((unsigned long)info <= 1)
		return (unsigned long)info == 1; /* SEND_SIG_PRIV: sent by the kernel */
	return BPF_CORE_READ(info, si_code) >= NSIMA_SI_KERNEL_MIN;
}

struct nsima_model_ctx {
	__u32 ns_id;
	__u32 ns_flags;
	struct nsima_proc_key proc;
	int untrusted;
};

/* 1 if the process is in a modeled namespace (ctx filled), else 0: the hook returns 0. */
static __always_inline int nsima_model_enter(struct task_struct *task, __u64 cgid,
					     struct nsima_model_ctx *c)
{
	struct nsima_cgroup cg;
	nsima_resolve_ns(cgid, &cg);
	if (!cg.ns_id)
		return 0;
	struct nsima_model_ns *m = bpf_map_lookup_elem(&model_ns, &cg.ns_id);
	if (!m || !(m->flags & NSIMA_MODEL_ON))
		return 0;
	c->ns_id = cg.ns_id;
	c->ns_flags = m->flags;
	nsima_model_key(task, &c->proc);
	c->untrusted = nsima_model_is_untrusted(&c->proc);
	return 1;
}

/* An event of namespace c->ns_id that found no ring space: counted in model_drops (nsimad
 * records each increase as lost). nsimad cannot judge it, so in an enforcing namespace it is
 * taken as unknown: `proc` (the process the event would have judged; NULL: none, an exit)
 * becomes untrusted here and now, as nsimad would mark it for an unknown coefficient. If the
 * mark does not fit, the event itself is refused (*decision gets DENY): never fail open. */
static __always_inline void nsima_model_lost(const struct nsima_model_ctx *c,
					     const struct nsima_proc_key *proc, __u32 *decision)
{
	if (!nsima_ns_counter_add(&model_drops, c->ns_id))
		nsima_mcount(NSIMA_MSTAT_DROP_NO_NS);
	if (!(c->ns_flags & NSIMA_MODEL_ENFORCE) || !proc)
		return;
	int m = nsima_untrust(&untrusted, proc, c->ns_id);
	if (m > 0) {
		nsima_mcount(NSIMA_MSTAT_LOST_UNTRUSTED);
	} else if (m < 0) {
		nsima_mcount(NSIMA_MSTAT_LOST_MARK_FAILED);
		*decision |= NSIMA_MDECIDE_DENY;
	}
}

/* Reserves and fills the common part of an event. NULL if nothing is to be reported, or if
 * the ring buffer is full: then counted and handled by nsima_model_lost (for `lost`, the
 * process the event is about), which may add DENY to *decision. The caller fills the hook's
 * fields and calls nsima_model_submit with *decision. */
static __always_inline struct nsima_model_event *
nsima_model_start(const struct nsima_model_ctx *c, __u32 hook, __u32 *decision,
		  struct task_struct *task, const struct nsima_proc_key *lost)
{
	__u32 h = hook < NSIMA_MHOOK_MAX ? hook : 0;
	if (!(*decision & NSIMA_MDECIDE_EMIT))
		return NULL;
	struct nsima_model_event *e = bpf_ringbuf_reserve(&mevents, sizeof(*e), 0);
	if (!e) {
		nsima_mcount(NSIMA_MSTAT_DROPPED + h);
		nsima_model_lost(c, lost, decision);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->hook = hook;
	e->ktime_ns = bpf_ktime_get_boot_ns();
	e->ns_id = c->ns_id;
	e->pid = BPF_CORE_READ(task, pid);
	e->proc = c->proc;
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);
	nsima_model_key(parent, &e->parent);
	nsima_model_read_cred(BPF_CORE_READ(task, cred), &e->cred);
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	if (c->untrusted)
		e->flags |= NSIMA_MEV_UNTRUSTED;
	if (*decision & NSIMA_MDECIDE_DENY)
		e->flags |= NSIMA_MEV_DENIED;
	return e;
}

/* Submits `e` (if any), counts, and returns the hook's verdict. */
static __always_inline int nsima_model_submit(struct nsima_model_event *e, __u32 hook,
					      __u32 decision)
{
	__u32 h = hook < NSIMA_MHOOK_MAX ? hook : 0;
	if (e) {
		bpf_ringbuf_submit(e, 0);
		nsima_mcount(NSIMA_MSTAT_EMITTED + h);
	}
	if (decision & NSIMA_MDECIDE_DENY) {
		nsima_mcount(NSIMA_MSTAT_DENIED + h);
		return -EPERM; /* TSEM's answer for an untrusted task */
	}
	return 0;
}

/* An event about another task (ptrace, kill): target key and namespace. */
static __always_inline int nsima_model_task_event(struct task_struct *task, __u64 cgid,
						  __u32 hook, struct task_struct *target,
						  __u32 arg0)
{
	struct nsima_model_ctx c;
	if (!nsima_model_enter(task, cgid, &c))
		return 0;
	__u32 tns = nsima_model_task_ns(target);
	int cross = tns != c.ns_id;
	__u32 d = nsima_model_decide(c.ns_flags, c.untrusted, hook, cross);
	struct nsima_model_event *e = nsima_model_start(&c, hook, &d, task, &c.proc);
	if (e) {
		nsima_model_key(target, &e->target);
		e->target_ns = tns;
		e->arg0 = arg0;
		if (cross)
			e->flags |= NSIMA_MEV_CROSS;
	}
	return nsima_model_submit(e, hook, d);
}

/* socket_connect / socket_bind */
static __always_inline int nsima_model_sock_event(struct task_struct *task, __u64 cgid,
						  __u32 hook, struct socket *sock,
						  const void *addr, int addrlen)
{
	struct nsima_model_ctx c;
	if (!nsima_model_enter(task, cgid, &c))
		return 0;
	__u32 d = nsima_model_decide(c.ns_flags, c.untrusted, hook, 0);
	struct nsima_model_event *e = nsima_model_start(&c, hook, &d, task, &c.proc);
	if (e) {
		struct sock *sk = BPF_CORE_READ(sock, sk);
		e->arg0 = BPF_CORE_READ(sk, __sk_common.skc_family);
		e->arg1 = BPF_CORE_READ(sock, type);
		e->arg2 = BPF_CORE_READ(sk, sk_protocol);
		e->arg3 = addrlen;
		nsima_model_copy_addr(e, addr, addrlen);
	}
	return nsima_model_submit(e, hook, d);
}

/* file_open / mmap_file / bprm_check of an untrusted process in an enforcing namespace: -EPERM.
 * The file hooks report these accesses; this only refuses them. */
static __always_inline int nsima_model_gate(struct task_struct *task, __u64 cgid)
{
	/* Untrusted first: almost no process is, and this one lookup spares every other access
	 * the namespace resolution and the model_ns lookup (the quiet path: issue 12 item 1).
	 * Same answer: refused only if untrusted and its namespace enforces. */
	struct nsima_proc_key k;
	nsima_model_key(task, &k);
	if (!nsima_model_is_untrusted(&k))
		return 0;
	struct nsima_model_ctx c;
	if (!nsima_model_enter(task, cgid, &c))
		return 0;
	if (c.untrusted && (c.ns_flags & NSIMA_MODEL_ENFORCE)) {
		nsima_mcount(NSIMA_MSTAT_DENIED_ACCESS);
		return -EPERM;
	}
	return 0;
}

#endif

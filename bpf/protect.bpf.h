/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Self-protection (issue 12 item 4): the decisions of bpf/protect.bpf.c as inline helpers,
 * so that SEC("syscall") programs (protect_selftest.bpf.c) run them on hosts without BPF-LSM.
 *
 * Who is refused (a "subject"): a process whose nsima namespace is a registered one other than
 * the host's (ns_id > NSIMA_PROTECT_HOST_NS: the host namespace holds the operator's shell,
 * systemd and nsimactl, which must keep managing nsima). Processes in no registered namespace
 * are not subjects either (see daemon/README.md, "Self-protection": what remains open).
 * With NSIMA_PROTECT_LOCKDOWN, nsima's BPF objects refuse everyone but processes running the
 * nsimad executable (protect_cfg.exe_dev/exe_ino), whatever their namespace.
 *
 * What is protected, each set written by nsimad only (daemon/capture/protect.cpp):
 *  - processes: nsimad (ctl.self_tgid + start time) and its swtpm (protected_pids: tgid ->
 *    start time in clock ticks, as ctl keeps nsimad's: a reused pid is not protected);
 *  - BPF objects: protected_objs (type, id) of every map, program and link nsimad holds;
 *  - files: protected_dirs (dev, ino): a file is nsima's when it, or one of its
 *    NSIMA_PROTECT_DEPTH - 1 parent directories, is in the set (state dir, run dir, pin dir,
 *    /etc/nsima). The walk follows d_parent, so a bind mount of a state directory into a
 *    container is still recognised (dentries belong to the filesystem, not to the mount);
 *  - cgroups: a subject may write a cgroup2 file only inside its namespace's cgroup subtree
 *    (the file's cgroup or one of its ancestors is registered with the subject's ns_id).
 * Nothing is protected until nsimad sets NSIMA_PROTECT_ON (protect_cfg), after filling the
 * sets. Pinned, the programs keep protecting while no nsimad runs: signals from the host
 * (systemctl stop/restart) are never refused, so the host can always restart it.
 *
 * Reports: each refusal is counted (NSIMA_STAT_PROTECT_<kind>); at most NSIMA_PROTECT_BURST
 * per (namespace, kind) per second are sent to nsimad as NSIMA_HOOK_PROTECT events, the rest
 * only counted (NSIMA_STAT_PROTECT_SUPPRESSED), so a subject retrying in a loop cannot flood
 * the ring buffer or the host list.
 */
#ifndef NSIMA_PROTECT_BPF_H
#define NSIMA_PROTECT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "access.bpf.h" /* nsima_ctl_is_self */
#include "emit.bpf.h"
#include "errno.bpf.h"
#include "maps.bpf.h"
#include "ns.bpf.h"
#include "nsima/protect_abi.h"

#define NSIMA_PROTECT_HOST_NS 1 /* daemon/ns/namespace_tree.h kHostNsId */
#define NSIMA_CGROUP2_MAGIC 0x63677270
#define NSIMA_PROTECT_NAME 256 /* bytes of the target's name in a report */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nsima_protect_cfg);
} protect_cfg SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NSIMA_PROTECT_MAX_PIDS);
	__type(key, __u32);   /* tgid */
	__type(value, __u64); /* start time in clock ticks (/proc/PID/stat field 22) */
} protected_pids SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NSIMA_PROTECT_MAX_OBJS);
	__type(key, struct nsima_protect_obj);
	__type(value, __u32);
} protected_objs SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NSIMA_PROTECT_MAX_DIRS);
	__type(key, struct nsima_protect_dir);
	__type(value, __u32);
} protected_dirs SEC(".maps") __weak;

/* Reports per (namespace, kind) in the current second. LRU: an attacker creating namespaces
 * cannot fill it (its oldest entries go; a new entry starts a new second). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct nsima_protect_rate_key);
	__type(value, struct nsima_protect_rate);
} protect_rate SEC(".maps") __weak;

static __always_inline struct nsima_protect_cfg *nsima_protect_cfg(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&protect_cfg, &zero);
}

/* A namespace whose processes are refused: registered, and not the host's. Pure. */
static __always_inline int nsima_protect_is_subject_ns(__u32 ns_id)
{
	return ns_id > NSIMA_PROTECT_HOST_NS;
}

/* Is process (tgid, start_ns) nsimad or one of its swtpm? start_ns: the group leader's
 * start_boottime. A pid reused by another process is not protected. */
static __always_inline int nsima_protect_is_pid(__u32 tgid, __u64 start_ns)
{
	struct nsima_ctl *c = nsima_ctl();
	if (!c || !tgid)
		return 0;
	if (nsima_ctl_is_self(c, tgid, start_ns))
		return 1;
	__u64 *ticks = bpf_map_lookup_elem(&protected_pids, &tgid);
	if (!ticks)
		return 0;
	__u32 tick_ns = *(volatile __u32 *)&c->tick_ns;
	return tick_ns && start_ns / tick_ns == *ticks;
}

static __always_inline int nsima_protect_is_obj(__u32 type, __u32 id)
{
	struct nsima_protect_obj k = { .type = type, .id = id };
	return id && bpf_map_lookup_elem(&protected_objs, &k) != NULL;
}

/* May a process with exe (dev, ino) in namespace ns_id reach one of nsima's BPF objects?
 * Subjects never; with lockdown only the nsimad executable. Pure. */
static __always_inline int nsima_protect_bpf_allowed(const struct nsima_protect_cfg *cfg,
						     __u32 ns_id, __u64 exe_dev, __u64 exe_ino)
{
	int nsimad = cfg->exe_ino && exe_ino == cfg->exe_ino && exe_dev == cfg->exe_dev;
	if (nsima_protect_is_subject_ns(ns_id) && !nsimad)
		return 0;
	if ((cfg->flags & NSIMA_PROTECT_LOCKDOWN) && !nsimad)
		return 0;
	return 1;
}

/* Rate limit of reports: 1 if this refusal of (ns_id, kind) at now_ns may be reported. */
static __always_inline int nsima_protect_rate_ok(__u32 ns_id, __u32 kind, __u64 now_ns)
{
	struct nsima_protect_rate_key k = { .ns_id = ns_id, .kind = kind };
	__u64 second = now_ns / 1000000000ull;
	struct nsima_protect_rate *r = bpf_map_lookup_elem(&protect_rate, &k);
	if (!r) {
		struct nsima_protect_rate fresh = { .second = second, .count = 1 };
		/* a full or contended map: report (the LRU makes room; never silence a first) */
		bpf_map_update_elem(&protect_rate, &k, &fresh, BPF_ANY);
		return 1;
	}
	if (r->second != second) {
		/* a new second (two CPUs may both start it: at most one extra report) */
		r->second = second;
		r->count = 1;
		return 1;
	}
	return __sync_fetch_and_add(&r->count, 1) < NSIMA_PROTECT_BURST;
}

/* Is dentry `d`, or one of its parents (NSIMA_PROTECT_DEPTH levels in all), in
 * protected_dirs? Negative dentries (a name being created) are skipped. */
static __always_inline int nsima_protect_dentry(struct dentry *d)
{
	for (int i = 0; i < NSIMA_PROTECT_DEPTH; i++) {
		if (!d)
			return 0;
		struct inode *inode = BPF_CORE_READ(d, d_inode);
		if (inode) {
			struct nsima_protect_dir k = {
				.dev = BPF_CORE_READ(inode, i_sb, s_dev),
				.ino = BPF_CORE_READ(inode, i_ino),
			};
			if (bpf_map_lookup_elem(&protected_dirs, &k))
				return 1;
		}
		struct dentry *parent = BPF_CORE_READ(d, d_parent);
		if (parent == d)
			return 0; /* the filesystem's root */
		d = parent;
	}
	return 0;
}

/* Is cgroup `cgid` (one level of the target's chain, deepest first) registered to ns_id? The
 * target is inside the writer's subtree iff some level of its chain is. */
static __always_inline int nsima_protect_cg_is_ns(__u64 cgid, __u32 ns_id)
{
	struct nsima_cgroup *a = bpf_map_lookup_elem(&cgroups, &cgid);
	return a && a->ns_id == ns_id;
}

/* May a subject of namespace ns_id write a file of the cgroup2 directory `dir` (its dentry)?
 * Walks dir and its parents up to the hierarchy's root: on cgroup2 a directory's inode number
 * is its cgroup id. */
static __always_inline int nsima_protect_cg_inside(struct dentry *dir, __u32 ns_id)
{
	for (int i = 0; i <= NSIMA_MAX_CGROUP_DEPTH; i++) {
		if (!dir)
			return 0;
		struct inode *inode = BPF_CORE_READ(dir, d_inode);
		if (inode && nsima_protect_cg_is_ns(BPF_CORE_READ(inode, i_ino), ns_id))
			return 1;
		struct dentry *parent = BPF_CORE_READ(dir, d_parent);
		if (parent == dir)
			return 0;
		dir = parent;
	}
	return 0;
}

/* The calling process's namespace (0: none). */
static __always_inline __u32 nsima_protect_current_ns(void)
{
	struct nsima_cgroup cg;
	nsima_resolve_ns(bpf_get_current_cgroup_id(), &cg);
	return cg.ns_id;
}

static __always_inline void nsima_protect_exe(__u64 *dev, __u64 *ino)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct inode *exe = BPF_CORE_READ(task, mm, exe_file, f_inode);
	*dev = exe ? BPF_CORE_READ(exe, i_sb, s_dev) : 0;
	*ino = exe ? BPF_CORE_READ(exe, i_ino) : 0;
}

/* Counts the refusal and, within the rate limit, reports it to nsimad. `name`: a kernel
 * string naming the target (NULL: none). */
static __always_inline void nsima_protect_report(__u32 ns_id, __u32 kind, __u32 detail,
						 __u32 target, __u64 dev, __u64 ino,
						 const void *name)
{
	nsima_count(NSIMA_STAT_PROTECT_SIGNAL + kind - 1);
	if (!nsima_protect_rate_ok(ns_id, kind, bpf_ktime_get_boot_ns())) {
		nsima_count(NSIMA_STAT_PROTECT_SUPPRESSED);
		return;
	}
	struct nsima_event *e =
		bpf_ringbuf_reserve(&events, NSIMA_EVENT_HEADER_SIZE + NSIMA_PROTECT_NAME, 0);
	if (!e) {
		nsima_count(NSIMA_STAT_PROTECT_DROPPED);
		return;
	}
	__builtin_memset(e, 0, NSIMA_EVENT_HEADER_SIZE);
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	e->hook = NSIMA_HOOK_PROTECT;
	e->ktime_ns = bpf_ktime_get_boot_ns();
	e->pid = (__u32)pid_tgid;
	e->tgid = pid_tgid >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->ns_id = ns_id;
	e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->user_ns = BPF_CORE_READ(task, cred, user_ns, ns.inum);
	e->pid_ns = nsima_pid_ns(task);
	nsima_read_cred(BPF_CORE_READ(task, cred), &e->cred);
	e->mask = kind;
	e->prot = detail;
	e->reqprot = target;
	e->dev = dev;
	e->ino = ino;
	e->i_readcount = -1;
	e->start_boottime = BPF_CORE_READ(task, group_leader, start_boottime);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	long n = 0;
	if (name)
		n = bpf_probe_read_kernel_str(e->path, NSIMA_PROTECT_NAME, name);
	if (n <= 0) {
		e->path[0] = 0;
		n = 1;
	}
	e->path_len = (__s32)n;
	bpf_ringbuf_submit(e, 0);
	nsima_count(NSIMA_STAT_PROTECT_REPORTED);
}

/* task_kill and ptrace_access_check: may the calling process act on task `p`? 0 or -EPERM. */
static __always_inline int nsima_protect_task(struct task_struct *p, __u32 kind, __u32 detail)
{
	struct nsima_protect_cfg *cfg = nsima_protect_cfg();
	if (!cfg || !(cfg->flags & NSIMA_PROTECT_ON))
		return 0;
	__u32 tgid = BPF_CORE_READ(p, tgid);
	if (!nsima_protect_is_pid(tgid, BPF_CORE_READ(p, group_leader, start_boottime)))
		return 0; /* the common case: one compare and at most one lookup */
	__u32 ns_id = nsima_protect_current_ns();
	if (!nsima_protect_is_subject_ns(ns_id))
		return 0; /* the host (systemctl, the operator) and nsimad itself */
	nsima_protect_report(ns_id, kind, detail, tgid, 0, 0, p->comm);
	return -EPERM;
}

/* bpf_map, bpf_prog, bpf(BPF_LINK_GET_FD_BY_ID): may the caller get an fd of object (type, id)? */
static __always_inline int nsima_protect_obj(__u32 type, __u32 id)
{
	struct nsima_protect_cfg *cfg = nsima_protect_cfg();
	if (!cfg || !(cfg->flags & NSIMA_PROTECT_ON) || !nsima_protect_is_obj(type, id))
		return 0;
	__u32 ns_id = nsima_protect_current_ns();
	__u64 exe_dev, exe_ino;
	nsima_protect_exe(&exe_dev, &exe_ino);
	if (nsima_protect_bpf_allowed(cfg, ns_id, exe_dev, exe_ino))
		return 0;
	nsima_protect_report(ns_id, NSIMA_PROTECT_KIND_BPF, type, id, 0, 0, NULL);
	return -EPERM;
}

/* The inode hooks: may the caller do `op` on dentry `d` (or a name in its directory)? */
static __always_inline int nsima_protect_file(struct dentry *d, __u32 op)
{
	struct nsima_protect_cfg *cfg = nsima_protect_cfg();
	if (!cfg || !(cfg->flags & NSIMA_PROTECT_ON))
		return 0;
	__u32 ns_id = nsima_protect_current_ns();
	if (!nsima_protect_is_subject_ns(ns_id))
		return 0;
	if (!nsima_protect_dentry(d))
		return 0;
	struct inode *inode = BPF_CORE_READ(d, d_inode);
	__u64 dev = 0, ino = 0;
	if (inode) {
		dev = BPF_CORE_READ(inode, i_sb, s_dev);
		ino = BPF_CORE_READ(inode, i_ino);
	}
	nsima_protect_report(ns_id, NSIMA_PROTECT_KIND_FILE, op, 0, dev, ino,
			     BPF_CORE_READ(d, d_name.name));
	return -EPERM;
}

#endif

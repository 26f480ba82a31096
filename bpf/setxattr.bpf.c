// SPDX-License-Identifier: GPL-2.0
/*
 * lsm.s/inode_post_setxattr: a security.ima value written at run time (setxattr(2),
 * `evmctl ima_sign`, `cp --preserve=xattr`, `tar --xattrs`) by a process of a namespace whose
 * chain enforces appraisal. Not an access: nothing is refused or measured here. The event asks
 * nsimad to appraise the file at once, with the value just written, so that its verdict is in
 * the map before the file's first exec (or open, mmap) and the first-access deny never fires.
 *
 * Why this hook: inode_post_setxattr runs after the filesystem stored the value (and moved
 * ctime / i_version), with the inode still locked, so the stamp read here is the version nsimad
 * judges; inode_setxattr runs before, when the value may still be refused. Both are in 6.1's
 * sleepable_lsm_hooks (kernel/bpf/bpf_lsm.c); the program is sleepable only to build its event
 * in its own ring-buffer record (it may be preempted: the per-CPU scratch is not for it).
 *
 * It has a dentry, not a path (bpf_d_path needs a struct path): the path is rebuilt from the
 * dentry's parents up to the writer's root (nsima_dentry_path). When the walk leaves the
 * filesystem first (the file is on another mount than the writer's root) the event carries no
 * path (NSIMA_EV_PATH_ERROR) and nsimad opens the inode by handle where the filesystem has
 * them (ext4); otherwise the file stays undecided (first access denied until appraised).
 * A lost record is counted (NSIMA_STAT_SETXATTR_DROPPED), never a violation: nothing was
 * accessed, the file is only left to the first-access rule.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "access.bpf.h"

#define NSIMA_DPATH_DEPTH 24   /* directory levels walked up from the file */
#define NSIMA_DPATH_MAX 2048   /* longer paths are not rebuilt (the handle is tried) */

/* "/a/b/c" of `d` relative to `root` into e->path; its length with the NUL, or -1. */
static __always_inline int nsima_dentry_path(struct nsima_event *e, struct dentry *d,
					     struct dentry *root)
{
	struct dentry *cur = d;
	__u32 total = 1; /* the NUL */
	int i;

	for (i = 0; i < NSIMA_DPATH_DEPTH; i++) {
		if (cur == root)
			break;
		struct dentry *parent = BPF_CORE_READ(cur, d_parent);
		if (parent == cur)
			return -1; /* a filesystem's root that is not the writer's: another mount */
		total += BPF_CORE_READ(cur, d_name.len) + 1;
		cur = parent;
	}
	if (cur != root || cur == d || total > NSIMA_DPATH_MAX)
		return -1;

	/* second walk: each name at its place, from the leaf back to the first '/' */
	__u32 end = total - 1;
	e->path[end & (NSIMA_DPATH_MAX - 1)] = 0;
	cur = d;
	for (i = 0; i < NSIMA_DPATH_DEPTH; i++) {
		if (cur == root)
			break;
		__u32 len = BPF_CORE_READ(cur, d_name.len);
		if (len > 255 || len + 1 > end)
			return -1; /* renamed meanwhile */
		__u32 start = end - len;
		bpf_probe_read_kernel(&e->path[start & (NSIMA_DPATH_MAX - 1)], len & 255,
				      BPF_CORE_READ(cur, d_name.name));
		e->path[(start - 1) & (NSIMA_DPATH_MAX - 1)] = '/';
		end = start - 1;
		cur = BPF_CORE_READ(cur, d_parent);
	}
	if (end != 0 || cur != root)
		return -1;
	return (int)total;
}

static __always_inline int nsima_is_ima_xattr(const char *name)
{
	char b[16] = {};
	if (bpf_probe_read_kernel_str(b, sizeof(b), name) != 13)
		return 0;
	return b[0] == 's' && b[1] == 'e' && b[2] == 'c' && b[3] == 'u' && b[4] == 'r' &&
	       b[5] == 'i' && b[6] == 't' && b[7] == 'y' && b[8] == '.' && b[9] == 'i' &&
	       b[10] == 'm' && b[11] == 'a';
}

SEC("lsm.s/inode_post_setxattr")
int BPF_PROG(nsima_setxattr, struct dentry *dentry, const char *name, const void *value,
	     size_t size, int flags)
{
	if (!nsima_is_ima_xattr(name))
		return 0;
	struct inode *inode = dentry->d_inode; /* BTF-typed: the shared readers load directly */
	if (!inode || (inode->i_mode & S_IFMT) != S_IFREG)
		return 0;
	if (nsima_is_self(inode, 0))
		return 0;
	struct nsima_cgroup cg;
	nsima_resolve_ns(bpf_get_current_cgroup_id(), &cg);
	/* only where a first access can be refused: elsewhere there is nothing to decide early */
	if (!cg.ns_id || !(cg.flags & NSIMA_CG_FIRST_DENY))
		return 0;

	struct nsima_event *e = bpf_ringbuf_reserve(&events, sizeof(struct nsima_event), 0);
	if (!e) {
		nsima_count(NSIMA_STAT_SETXATTR_DROPPED);
		return 0;
	}
	struct nsima_verdict_key key;
	struct nsima_stamp now;
	nsima_key_of(inode, cg.ns_id, &key);
	nsima_read_stamp(inode, &now);
	/* no struct file: its fields (f_flags, f_mode) read as 0 */
	nsima_fill_event(e, NSIMA_HOOK_SETXATTR, 0, &key, &now, NULL, inode);
	if (!BPF_CORE_READ(dentry, d_hash.pprev) && BPF_CORE_READ(dentry, d_parent) != dentry)
		e->flags |= NSIMA_EV_DELETED;
	e->i_writecount = BPF_CORE_READ(inode, i_writecount.counter);
	struct task_struct *task = bpf_get_current_task_btf();
	int n = nsima_dentry_path(e, dentry, BPF_CORE_READ(task, fs, root.dentry));
	if (n > 0) {
		e->path_len = n;
	} else {
		e->path_len = -ENOENT;
		e->path[0] = 0;
		e->flags |= NSIMA_EV_PATH_ERROR;
	}
	bpf_ringbuf_submit(e, 0);
	nsima_count(NSIMA_STAT_SETXATTR);
	return 0;
}

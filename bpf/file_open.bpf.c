// SPDX-License-Identifier: GPL-2.0
/*
 * lsm.s/file_open: every open of a file by a process in a namespace (IMA's FILE_CHECK).
 * IMA computes the access mask from the open's acc_mode; here it is rebuilt from f_mode and
 * f_flags (file_open has no mask argument): exec opens (open_exec) are MAY_EXEC only.
 *
 * Sleepable (file_open is in 6.1's sleepable LSM set) so that a first open the namespace's
 * first-access rule would deny can be decided from the trusted map (trust.bpf.h), as a first
 * exec is. The quiet path (a cached verdict) never hashes and emits nothing; a sleepable
 * program's entry costs what a non-sleepable one's does (rcu_read_lock_trace instead of
 * rcu_read_lock, both a counter: measured in tests/bench/vm-hotpath). Being preemptible, it
 * builds its events in the task's buffer (access.bpf.h task_events), never in `scratch`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "access.bpf.h"

#define FMODE_READ 0x1
#define FMODE_WRITE 0x2
#define FMODE_EXEC 0x20
#define __FMODE_EXEC 0x20 /* in f_flags: open_exec(); f_mode gets FMODE_EXEC only after open */
#define O_TRUNC 01000
#define O_APPEND 02000

static __always_inline __u32 nsima_open_mask(__u32 f_mode, __u32 f_flags)
{
	if ((f_mode & FMODE_EXEC) || (f_flags & __FMODE_EXEC))
		return NSIMA_MAY_EXEC;
	__u32 mask = 0;
	if (f_mode & FMODE_READ)
		mask |= NSIMA_MAY_READ;
	if ((f_mode & FMODE_WRITE) || (f_flags & O_TRUNC))
		mask |= NSIMA_MAY_WRITE;
	if (f_flags & O_APPEND)
		mask |= NSIMA_MAY_APPEND;
	return mask;
}

static __always_inline int nsima_file_open_access(struct file *file, int ret, const int sleepable)
{
	if (ret)
		return ret; /* an earlier program already refused */

	struct inode *inode = file->f_inode;
	/* Stacked filesystems (overlayfs) open the real file internally with the overlay's path:
	 * f_inode is then not the path's inode. The user-visible open was already seen. */
	if (BPF_CORE_READ(file, f_path.dentry, d_inode) != inode)
		return 0;

	struct nsima_access a = {
		.hook = NSIMA_HOOK_FILE_OPEN,
		.mask = nsima_open_mask(BPF_CORE_READ(file, f_mode), BPF_CORE_READ(file, f_flags)),
		.may_deny = 1, /* the open fails with EACCES; exec opens fail execve cleanly */
	};
	a.class = NSIMA_CLASS_FILE(a.mask);
	return nsima_access(file, inode, &a, NULL, sleepable);
}

SEC("lsm.s/file_open")
int BPF_PROG(nsima_file_open, struct file *file, int ret)
{
	return nsima_file_open_access(file, ret, 1);
}

/* The non-sleepable program file_open was before first opens were decided in the kernel (no
 * hash, the first-access rule alone; events from `scratch`). Not loaded unless nsimad runs
 * with NSIMA_BPF_NONSLEEPABLE_HOOKS=1 (then instead of nsima_file_open): the baseline of
 * tests/bench/vm-hotpath --nonsleepable, measured in the same build. */
SEC("lsm/file_open")
int BPF_PROG(nsima_file_open_nosleep, struct file *file, int ret)
{
	return nsima_file_open_access(file, ret, 0);
}

// SPDX-License-Identifier: GPL-2.0
/*
 * lsm/file_open: every open of a file by a process in a namespace (IMA's FILE_CHECK).
 * IMA computes the access mask from the open's acc_mode; here it is rebuilt from f_mode and
 * f_flags (file_open has no mask argument): exec opens (open_exec) are MAY_EXEC only.
 *
 * Not sleepable, so a first open is not decided from the trusted map as a first exec or mmap
 * is: file_open runs in do_dentry_open() before f_op->open and before FMODE_CAN_READ is set, so
 * bpf_ima_file_hash cannot read the file there (__kernel_read refuses it: -EINVAL, hence
 * -EOPNOTSUPP; seen in the VM as bpf.trust_unhashed). Kernel IMA measures a FILE_CHECK after the
 * open (ima_file_check in do_open); 6.1 has no LSM hook there. A sleepable program would only
 * add a hash attempt that fails to every first read.
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

SEC("lsm/file_open")
int BPF_PROG(nsima_file_open, struct file *file, int ret)
{
	if (ret)
		return ret; /* an earlier program already refused */

	struct inode *inode = file->f_inode;
	/* Stacked filesystems (overlayfs) open the real file internally with the overlay's path:
	 * f_inode is then not the path's inode. The user-visible open was already seen. */
	if (file->f_path.dentry->d_inode != inode)
		return 0;

	struct nsima_access a = {
		.hook = NSIMA_HOOK_FILE_OPEN,
		.mask = nsima_open_mask(file->f_mode, file->f_flags),
		.may_deny = 1, /* the open fails with EACCES; exec opens fail execve cleanly */
	};
	a.class = NSIMA_CLASS_FILE(a.mask);
	return nsima_access(file, inode, &a, NULL, 0);
}

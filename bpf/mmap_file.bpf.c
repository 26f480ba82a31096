// SPDX-License-Identifier: GPL-2.0
/*
 * lsm.s/mmap_file: executable file mappings (IMA's MMAP_CHECK on prot, MMAP_CHECK_REQPROT on
 * reqprot). Mappings made by execve itself (the main binary and ld.so, mapped after the point
 * of no return) are reported but never denied: refusing them kills the process with SIGSEGV
 * instead of failing execve; bprm_check_security and the exec open are where an exec is denied.
 *
 * Sleepable (mmap_file is in 6.1's sleepable LSM set; security_mmap_file runs before mmap_lock
 * is taken) so that a first executable mapping the first-access rule would deny is decided from
 * the trusted map (trust.bpf.h); as file_open, it emits from the task's buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "access.bpf.h"

static __always_inline int nsima_mmap_access(struct file *file, unsigned long reqprot,
					     unsigned long prot, unsigned long flags, int ret,
					     const int sleepable)
{
	if (ret)
		return ret;
	if (!file || !((prot | reqprot) & NSIMA_PROT_EXEC))
		return 0; /* anonymous or not executable: not ours */

	struct task_struct *task = bpf_get_current_task_btf();
	int in_execve = BPF_CORE_READ_BITFIELD(task, in_execve); /* direct: task is BTF-typed */
	struct nsima_access a = {
		.hook = NSIMA_HOOK_MMAP_FILE,
		.mask = NSIMA_MAY_EXEC,
		.class = (prot & NSIMA_PROT_EXEC) ? NSIMA_CLASS_MMAP_PROT : NSIMA_CLASS_MMAP_REQPROT,
		.prot = (__u32)prot,
		.reqprot = (__u32)reqprot,
		.mmap_flags = (__u32)flags,
		.flags = in_execve ? NSIMA_EV_IN_EXECVE : 0,
		.may_deny = !in_execve,
	};
	return nsima_access(file, file->f_inode, &a, NULL, sleepable);
}

SEC("lsm.s/mmap_file")
int BPF_PROG(nsima_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	return nsima_mmap_access(file, reqprot, prot, flags, ret, 1);
}

/* The non-sleepable program mmap_file was before first exec mmaps were decided in the kernel
 * (no hash, the first-access rule alone; events from `scratch`). Not loaded unless nsimad runs
 * with NSIMA_BPF_NONSLEEPABLE_HOOKS=1 (then instead of nsima_mmap_file): the baseline of
 * tests/bench/vm-hotpath --nonsleepable, measured in the same build. */
SEC("lsm/mmap_file")
int BPF_PROG(nsima_mmap_file_nosleep, struct file *file, unsigned long reqprot,
	     unsigned long prot, unsigned long flags, int ret)
{
	return nsima_mmap_access(file, reqprot, prot, flags, ret, 0);
}

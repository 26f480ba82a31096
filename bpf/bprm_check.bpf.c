// SPDX-License-Identifier: GPL-2.0
/*
 * lsm.s/bprm_check_security: each binfmt level of an execve (a #! script, then its interpreter),
 * before the point of no return, so a denial fails execve with EACCES (IMA's BPRM_CHECK with the
 * current creds, CREDS_CHECK with bprm->cred: both travel in the event).
 *
 * Sleepable (bprm_check_security is in the kernel's sleepable LSM set since 5.11), so that a
 * first exec in an enforcing namespace can be decided here: bpf_ima_file_hash hashes the file
 * and the trusted map says whether that content is listed (trust.bpf.h). Being preemptible, it
 * builds its event in its own ring-buffer record, never in the shared per-CPU scratch buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "access.bpf.h"

SEC("lsm.s/bprm_check_security")
int BPF_PROG(nsima_bprm_check, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	/* bprm->file read directly stays a trusted pointer, as bpf_d_path requires */
	struct file *file = bprm->file;
	struct nsima_access a = {
		.hook = NSIMA_HOOK_BPRM_CHECK,
		.mask = NSIMA_MAY_EXEC,
		.class = NSIMA_CLASS_BPRM,
		.may_deny = 1,
	};
	return nsima_access(file, file->f_inode, &a, bprm->cred, 1);
}

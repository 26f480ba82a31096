/* SPDX-License-Identifier: GPL-2.0 */
/*
 * CO-RE flavors for kernel fields that moved after 6.1 (the vendored vmlinux.h is 6.1's).
 * Each flavor names the kernel change that made it necessary. Never LINUX_VERSION_CODE.
 */
#ifndef NSIMA_CORE_FIXES_BPF_H
#define NSIMA_CORE_FIXES_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

#include "nsima/bpf_abi.h"

/*
 * A kernel field read on the hooks' paths: in the LSM programs a direct load through the
 * BTF-typed pointer (the verifier makes it one fault-safe PROBE_MEM load, no helper call), in the
 * SEC("syscall") selftests a BPF_CORE_READ (their pointers are plain scalars, which a direct load
 * cannot go through). Both relocate by CO-RE (vmlinux.h is preserve_access_index), so the
 * selftests still prove the hooks' field offsets. `f` may be a nested member (i_ctime.tv_sec);
 * chains of pointers nest the macro. The quiet path of every access reads a dozen fields: one
 * bpf_probe_read_kernel call each was most of its cost beside kernel IMA's (issue 12 item 1).
 */
#ifdef NSIMA_SELFTEST
#define NSIMA_LOAD(p, f) BPF_CORE_READ(p, f)
#else
#define NSIMA_LOAD(p, f) ((p)->f)
#endif

/* 6.6: the multigrain-ctime preparation series renamed inode->i_ctime to __i_ctime. */
struct inode___ctime_6_6 {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));

/* 6.11: "fs: switch timespec64 fields in inode to discrete integers" (i_ctime_sec/nsec). */
struct inode___ctime_6_11 {
	time64_t i_ctime_sec;
	__u32 i_ctime_nsec;
} __attribute__((preserve_access_index));

/*
 * i_version keeps a "queried" flag in bit 0 (include/linux/iversion.h, I_VERSION_QUERIED_SHIFT);
 * the flag flips without the file changing, so the stamp keeps only the counter.
 */
#define NSIMA_I_VERSION_QUERIED_SHIFT 1

static __always_inline void nsima_read_stamp(struct inode *inode, struct nsima_stamp *s)
{
	if (bpf_core_field_exists(inode->i_ctime)) {
		s->ctime_sec = NSIMA_LOAD(inode, i_ctime.tv_sec);
		s->ctime_nsec = NSIMA_LOAD(inode, i_ctime.tv_nsec);
	} else if (bpf_core_field_exists(((struct inode___ctime_6_6 *)inode)->__i_ctime)) {
		struct inode___ctime_6_6 *i = (void *)inode;
		s->ctime_sec = NSIMA_LOAD(i, __i_ctime.tv_sec);
		s->ctime_nsec = NSIMA_LOAD(i, __i_ctime.tv_nsec);
	} else {
		struct inode___ctime_6_11 *i = (void *)inode;
		s->ctime_sec = NSIMA_LOAD(i, i_ctime_sec);
		s->ctime_nsec = NSIMA_LOAD(i, i_ctime_nsec);
	}
	/* 6.13: multigrain timestamps (Documentation/filesystems/multigrain-ts.rst) keep
	 * I_CTIME_QUERIED in bit 31 of i_ctime_nsec; a nanosecond count never reaches it, so
	 * masking is right on every kernel (found by tests/bpf on a 6.18 host). */
	s->ctime_nsec &= 0x7fffffff;
	s->pad = 0;
	s->i_version = (__u64)NSIMA_LOAD(inode, i_version.counter) >> NSIMA_I_VERSION_QUERIED_SHIFT;
	s->size = NSIMA_LOAD(inode, i_size);
}

#endif

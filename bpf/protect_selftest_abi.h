/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Context of the self-protection self-test (protect_selftest.bpf.c <-> tests/bpf). */
#ifndef NSIMA_PROTECT_SELFTEST_ABI_H
#define NSIMA_PROTECT_SELFTEST_ABI_H

#include "nsima/protect_abi.h"

#define NSIMA_PT_SUBJECT 1     /* nsima_protect_is_subject_ns(ns_id) */
#define NSIMA_PT_PID 2         /* nsima_protect_is_pid(tgid, start_ns) */
#define NSIMA_PT_BPF 3         /* nsima_protect_bpf_allowed(protect_cfg, ns_id, exe_dev, exe_ino) */
#define NSIMA_PT_RATE 4        /* nsima_protect_rate_ok(ns_id, kind, now_ns) */
#define NSIMA_PT_CWD_FILE 5    /* nsima_protect_dentry(the calling process's cwd) */
#define NSIMA_PT_CWD_CGROUP 6  /* nsima_protect_cg_inside(cwd, ns_id): cwd in cgroup2 */
#define NSIMA_PT_OBJ 7         /* nsima_protect_is_obj(type, id) */

struct nsima_protect_test_args {
	__u32 op;
	__u32 ns_id;
	__u32 kind;
	__u32 tgid;
	__u64 start_ns;
	__u64 now_ns;
	__u64 exe_dev;
	__u64 exe_ino;
	__u32 type;
	__u32 id;
	__u32 result; /* out */
	__u32 pad;
};

#endif

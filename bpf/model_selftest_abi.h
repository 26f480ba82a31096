/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Context of the model SEC("syscall") self-test programs (model_selftest.bpf.c <-> tests/bpf). */
#ifndef NSIMA_MODEL_SELFTEST_ABI_H
#define NSIMA_MODEL_SELFTEST_ABI_H

#include "nsima/bpf_abi.h"
#include "nsima/model_abi.h"

/* nsima_mtest_decide: nsima_model_decide() on its inputs */
struct nsima_mtest_decide {
	__u32 ns_flags;
	__s32 untrusted;
	__u32 hook;
	__s32 cross;
	__u32 decision; /* out */
};

/* nsima_mtest_task: the calling process, in the namespace of `cgroup_id` (through the selftest
 * ancestor chain), makes event `hook` about itself (target = the caller); the event goes to
 * mevents. Also the gate (file access refusal) for the same process. */
struct nsima_mtest_task {
	__u64 cgroup_id;
	__u32 hook;
	__u32 arg0;
	__s32 verdict;      /* out: the hook's return value */
	__s32 gate;         /* out: nsima_model_gate() */
	__u32 entered;      /* out: nsima_model_enter() */
	__u32 ns_id;        /* out */
	__u32 target_ns;    /* out: nsima_model_task_ns(caller) */
	__u32 untrusted;    /* out */
	struct nsima_proc_key proc; /* out: the caller's key as the hooks compute it */
};

/* nsima_mtest_inherit: nsima_model_inherit(parent, child) */
struct nsima_mtest_inherit {
	struct nsima_proc_key parent;
	struct nsima_proc_key child;
	__s32 marked; /* out */
	__u32 pad;
};

/* nsima_mtest_addr: nsima_model_copy_addr(ev, src, addrlen); nsima_signal_from_kernel() */
struct nsima_mtest_addr {
	__u8 src[160];
	__s32 addrlen;
	__s32 si_code;      /* for the signal check: a fake siginfo's si_code */
	__u64 info_mode;    /* 0: SEND_SIG_NOINFO, 1: SEND_SIG_PRIV, 2: the fake siginfo */
	__s32 from_kernel;  /* out */
	__u32 pad;
	struct nsima_model_event ev; /* out */
};

#endif

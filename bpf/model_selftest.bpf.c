// SPDX-License-Identifier: GPL-2.0
/*
 * SEC("syscall") wrappers around the model hooks' helpers (model.bpf.h), run with
 * BPF_PROG_TEST_RUN on hosts whose kernel refuses LSM programs: the real verifier, real maps
 * and the running kernel's task and cgroup structures. tests/bpf/model_prog_test.cpp drives
 * them.
 */
#define NSIMA_SELFTEST 1
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "model.bpf.h"
#include "model_selftest_abi.h"

SEC("syscall")
int nsima_mtest_decide(struct nsima_mtest_decide *a)
{
	a->decision = nsima_model_decide(a->ns_flags, a->untrusted, a->hook, a->cross);
	return 0;
}

SEC("syscall")
int nsima_mtest_task(struct nsima_mtest_task *a)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct nsima_model_ctx c = {};
	a->entered = nsima_model_enter(task, a->cgroup_id, &c);
	a->ns_id = c.ns_id;
	a->untrusted = c.untrusted;
	nsima_model_key(task, &a->proc);
	a->target_ns = nsima_model_task_ns(task);
	a->verdict = nsima_model_task_event(task, a->cgroup_id, a->hook, task, a->arg0);
	a->gate = nsima_model_gate(task, a->cgroup_id);
	return 0;
}

SEC("syscall")
int nsima_mtest_inherit(struct nsima_mtest_inherit *a)
{
	struct nsima_proc_key p = a->parent, c = a->child;
	a->marked = nsima_model_inherit(&p, &c);
	return 0;
}

SEC("syscall")
int nsima_mtest_addr(struct nsima_mtest_addr *a)
{
	/* probe reads cannot write into the context: build the event on the stack */
	struct nsima_model_event ev = {};
	nsima_model_copy_addr(&ev, a->src, a->addrlen);
	a->ev.addr_len = ev.addr_len;
	a->ev.flags = ev.flags;
	__builtin_memcpy(a->ev.addr, ev.addr, sizeof(ev.addr));
	struct kernel_siginfo *info = (struct kernel_siginfo *)a->info_mode;
	if (a->info_mode > 1) {
		struct kernel_siginfo *z = 0;
		info = (struct kernel_siginfo *)((char *)&a->si_code -
						 bpf_core_field_offset(z->si_code));
	}
	a->from_kernel = nsima_signal_from_kernel(info);
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * SEC("syscall") wrapper of self-protection's decision helpers (protect.bpf.h), for
 * BPF_PROG_TEST_RUN on hosts whose kernel refuses LSM programs (tests/bpf/protect_prog_test.cpp):
 * the real verifier, real maps, and for the walks the calling process's real cwd dentry.
 */
#define NSIMA_SELFTEST 1
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "protect.bpf.h"
#include "protect_selftest_abi.h"

SEC("syscall")
int nsima_test_protect(struct nsima_protect_test_args *a)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct dentry *cwd = BPF_CORE_READ(task, fs, pwd.dentry);
	struct nsima_protect_cfg *cfg;

	switch (a->op) {
	case NSIMA_PT_SUBJECT:
		a->result = nsima_protect_is_subject_ns(a->ns_id);
		return 0;
	case NSIMA_PT_PID:
		a->result = nsima_protect_is_pid(a->tgid, a->start_ns);
		return 0;
	case NSIMA_PT_BPF:
		cfg = nsima_protect_cfg();
		if (!cfg)
			return -1;
		a->result = nsima_protect_bpf_allowed(cfg, a->ns_id, a->exe_dev, a->exe_ino);
		return 0;
	case NSIMA_PT_RATE:
		a->result = nsima_protect_rate_ok(a->ns_id, a->kind, a->now_ns);
		return 0;
	case NSIMA_PT_CWD_FILE:
		a->result = nsima_protect_dentry(cwd);
		return 0;
	case NSIMA_PT_CWD_CGROUP:
		a->result = nsima_protect_cg_inside(cwd, a->ns_id);
		return 0;
	case NSIMA_PT_OBJ:
		a->result = nsima_protect_is_obj(a->type, a->id);
		return 0;
	}
	return -2;
}

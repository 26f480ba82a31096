// SPDX-License-Identifier: GPL-2.0
/*
 * SEC("syscall") wrappers around the hooks' pure helpers (namespace resolution, verdict
 * decision), run with BPF_PROG_TEST_RUN on hosts whose kernel refuses LSM programs: the real
 * verifier and real maps, without a VM. tests/bpf/verdict_prog_test.cpp drives them.
 */
#define NSIMA_SELFTEST 1
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "ns.bpf.h"
#include "selftest_abi.h"
#include "verdict.bpf.h"

SEC("syscall")
int nsima_test_resolve(struct nsima_selftest_args *args)
{
	struct nsima_cgroup *cg = nsima_resolve_ns(args->cgroup_id);
	if (!cg)
		return -1;
	args->ns_id = cg->ns_id;
	args->cg_flags = cg->flags;
	return 0;
}

SEC("syscall")
int nsima_test_decide(struct nsima_selftest_args *args)
{
	struct nsima_verdict_key key = args->key;
	struct nsima_stamp stamp = args->stamp;
	__u32 flags = 0;
	args->decision = nsima_decide(&key, &stamp, args->class_, &flags);
	args->flags = flags;
	return 0;
}

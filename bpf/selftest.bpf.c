// SPDX-License-Identifier: GPL-2.0
/*
 * SEC("syscall") wrappers around the hooks' pure helpers (namespace resolution, verdict
 * decision), run with BPF_PROG_TEST_RUN on hosts whose kernel refuses LSM programs: the real
 * verifier and real maps, without a VM. tests/bpf/verdict_prog_test.cpp drives them.
 */
#define NSIMA_SELFTEST 1
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "access.bpf.h"
#include "emit.bpf.h"
#include "ns.bpf.h"
#include "selftest_abi.h"
#include "trust.bpf.h"
#include "verdict.bpf.h"

SEC("syscall")
int nsima_test_resolve(struct nsima_selftest_args *args)
{
	struct nsima_cgroup cg = {};
	nsima_resolve_ns(args->cgroup_id, &cg);
	args->ns_id = cg.ns_id;
	args->cg_flags = cg.flags;
	return 0;
}

/* Is (tgid, start_ns) the nsimad that ctl names? (nsima_is_self without the task read) */
SEC("syscall")
int nsima_test_self(struct nsima_selftest_self *args)
{
	struct nsima_ctl *c = nsima_ctl();
	if (!c)
		return -1;
	args->is_self = nsima_ctl_is_self(c, args->tgid, args->start_ns);
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

/* The kernel's decision of a first exec (trust.bpf.h), the file's hash fed from globals. */
SEC("syscall")
int nsima_test_trust(struct nsima_selftest_trust *args)
{
	args->trusted = nsima_trusted(NULL, args->ns_id);
	return 0;
}

/* A first open or mmap decided in the kernel (trust.bpf.h), the hash and the file's state after
 * it fed from globals. */
SEC("syscall")
int nsima_test_first_trust(struct nsima_selftest_first_trust *args)
{
	struct nsima_stamp before = args->before;
	__u8 sha256[32] = {};
	int state = -1;
	args->trusted = nsima_first_trusted(NULL, NULL, args->ns_id, &before,
					    args->writers_before, sha256, &state);
	args->state = state;
	__builtin_memcpy(args->sha256, sha256, sizeof(sha256));
	return 0;
}

static long flood_one(__u32 i, void *ctx)
{
	struct nsima_selftest_flood *f = ctx;
	__u32 zero = 0;
	struct nsima_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 1;
	e->hook = NSIMA_HOOK_FILE_OPEN;
	e->flags = 0;
	e->pid = i;
	e->tgid = i;
	e->ns_id = f->ns_id ? f->ns_id : 1;
	e->ino = i;
	e->mask = NSIMA_MAY_READ;
	e->path_len = f->path_len > 0 && f->path_len <= 256 ? f->path_len : 1;
	for (int k = 0; k < 255; k++)
		e->path[k] = 'a' + (k % 26);
	e->path[0] = '/';
	e->path[(e->path_len - 1) & 0xff] = 0;
	nsima_submit(e);
	f->submitted++;
	return 0;
}

/* Feeds the ring buffer for the consumer benchmark (tests/bench/capture_bench.cpp). */
SEC("syscall")
int nsima_test_flood(struct nsima_selftest_flood *args)
{
	struct nsima_selftest_flood f = *args;
	f.submitted = 0;
	bpf_loop(f.n, flood_one, &f, 0);
	args->submitted = f.submitted;
	return 0;
}

/* Userspace-built events through the hooks' submit path (syscall programs are sleepable, so
 * bpf_copy_from_user may fault the array in). */
SEC("syscall")
int nsima_test_emit(struct nsima_selftest_emit *args)
{
	__u32 zero = 0;
	__u32 n = args->n;
	__u64 src = args->events;

	args->submitted = 0;
	for (__u32 i = 0; i < NSIMA_SELFTEST_EMIT_MAX; i++) {
		if (i >= n)
			break;
		struct nsima_event *e = bpf_map_lookup_elem(&scratch, &zero);
		if (!e)
			return -1;
		if (bpf_copy_from_user(e, sizeof(*e), (const void *)(src + (__u64)i * sizeof(*e))))
			return -2;
		nsima_submit(e);
		args->submitted++;
	}
	return 0;
}

SEC("syscall")
int nsima_test_lost_access(struct nsima_selftest_lost *args)
{
	args->ret = nsima_lost_access(args->cg_flags, args->ns_id, args->ret, args->may_deny);
	return 0;
}

/* The calling thread's credentials, read with the hooks' code (nsima_read_cred). */
SEC("syscall")
int nsima_test_cred(struct nsima_selftest_cred *args)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct nsima_cred c = {};
	nsima_read_cred(BPF_CORE_READ(task, cred), &c);
	args->cred = c;
	return 0;
}

/* The stamp of the calling process's executable, read with the hooks' CO-RE code: run on a
 * kernel newer than the vendored 6.1 vmlinux.h, it proves the ctime flavors relocate. */
SEC("syscall")
int nsima_test_stamp(struct nsima_selftest_stamp *args)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	struct nsima_stamp s = {};
	nsima_read_stamp(inode, &s);
	args->stamp = s;
	args->ino = BPF_CORE_READ(inode, i_ino);
	return 0;
}

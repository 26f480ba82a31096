/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Context of the SEC("syscall") self-test programs (selftest.bpf.c <-> tests/bpf). */
#ifndef NSIMA_SELFTEST_ABI_H
#define NSIMA_SELFTEST_ABI_H

#include "nsima/bpf_abi.h"

struct nsima_selftest_args {
	__u64 cgroup_id;
	struct nsima_verdict_key key;
	struct nsima_stamp stamp;
	__u32 class_; /* "class" is a C++ keyword */
	__u32 flags;    /* out: NSIMA_EV_* */
	__s32 decision; /* out: NSIMA_DECIDE_* */
	__u32 ns_id;    /* out */
	__u32 cg_flags; /* out */
	__u32 pad;
};

/* nsima_test_flood: submit n synthetic events (path of path_len bytes) through nsima_submit */
struct nsima_selftest_flood {
	__u32 n;
	__u32 path_len;
	__u32 submitted; /* out */
	__u32 ns_id;     /* namespace the records are tagged with (0: 1) */
};

/* nsima_test_emit: submit n (<= NSIMA_SELFTEST_EMIT_MAX) events built by userspace, read from
 * the user array at `events` (n struct nsima_event back to back), through nsima_submit: the
 * ring buffer and the drop counters (per namespace) as the hooks use them
 * (tests/bench/load_pipeline.cpp) */
#define NSIMA_SELFTEST_EMIT_MAX 64
struct nsima_selftest_emit {
	__u64 events;    /* user pointer */
	__u32 n;
	__u32 submitted; /* out: offered to the ring buffer (emitted or dropped) */
};

/* nsima_test_self: would the hooks take process (tgid, start_ns) for nsimad? */
struct nsima_selftest_self {
	__u64 start_ns; /* group leader's start_boottime */
	__u32 tgid;
	__u32 is_self; /* out */
};

/* nsima_test_stamp: the CO-RE stamp of the calling process's executable (checks the ctime
 * flavors on the running kernel against statx from userspace) */
struct nsima_selftest_stamp {
	struct nsima_stamp stamp; /* out */
	__u64 ino;                /* out */
};

/* nsima_test_lost_access: nsima_lost_access(cg_flags, ns_id, ret, may_deny) for the caller */
struct nsima_selftest_lost {
	__u32 cg_flags;
	__u32 ns_id;
	__s32 ret;      /* in: the hook's verdict so far; out: nsima_lost_access's */
	__u32 may_deny;
};

/* nsima_test_cred: the calling thread's credentials as the hooks put them in an event */
struct nsima_selftest_cred {
	struct nsima_cred cred; /* out */
};

/* nsima_test_trust: would a first exec of content selftest_file_sha256 (as bpf_ima_file_hash
 * would give it, with return value selftest_hash_ret) be trusted in namespace ns_id? */
struct nsima_selftest_trust {
	__u32 ns_id;
	__u32 trusted; /* out */
};

/* nsima_test_first_trust: a first access the first-access rule would deny, decided in the
 * kernel (trust.bpf.h nsima_first_trusted). The hash is fed from selftest_file_sha256 and
 * selftest_hash_ret, what the file reads after it from selftest_readable,
 * selftest_writers_after and selftest_stamp_after. */
struct nsima_selftest_first_trust {
	struct nsima_stamp before; /* the stamp the hook read before hashing */
	__s32 writers_before;      /* i_writecount then */
	__u32 ns_id;
	__u32 trusted;   /* out */
	__s32 state;     /* out: NSIMA_HASHED or NSIMA_HASH_* */
	__u8 sha256[32]; /* out: what the event would carry (meaningful with NSIMA_HASHED) */
};

/* nsima_hash_stable() results (trust.bpf.h) */
#define NSIMA_HASHED 0        /* sha256 holds the digest of the version `before` names */
#define NSIMA_HASH_FAILED 1   /* not hashable as sha256 (NSIMA_STAT_TRUST_NOHASH) */
#define NSIMA_HASH_UNSTABLE 2 /* a writer before or after the hash, a stamp changed while
				 hashed, or not open for read (NSIMA_STAT_TRUST_UNSTABLE): neither
				 trusted nor carried in the event */

#define NSIMA_DECIDE_EMIT 0  /* never judged, or changed since: tell the daemon */
#define NSIMA_DECIDE_QUIET 1 /* allowed, unchanged, nothing left to do: the hot path */
#define NSIMA_DECIDE_DENY 2  /* denied and unchanged */
#define NSIMA_DECIDE_REPORT 3 /* allowed for this version, but this access class is reported */
#define NSIMA_DECIDE_REPORT_MODEL 4 /* ... only for the workload model: quiet if model_quiet
				       knows this process's access (access.bpf.h) */

#endif

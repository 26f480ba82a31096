/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A first access decided in the kernel: is the content of the file in the namespace's trusted
 * map? Only the sleepable programs call it (bpf_ima_file_hash may sleep: it hashes the file
 * when IMA has no digest cached, with or without an IMA policy): bprm_check, file_open and
 * mmap_file (all three in 6.1's sleepable LSM set, kernel/bpf/bpf_lsm.c sleepable_lsm_hooks).
 *
 * Why the hash is the content that is accessed:
 *  - exec (bprm_check): do_open_execat() took deny_write_access() on bprm->file, so nobody can
 *    write the file between this hash and the loader reading it (ETXTBSY); i_writecount < 0.
 *  - open and mmap: nothing stops a writer, so the hash is trusted only if no writer exists
 *    (i_writecount <= 0) before and after it and the stamp (ctime, i_version, size) is the same
 *    before and after it. A writer that opens later is a later change: IMA's own FILE_CHECK and
 *    MMAP_CHECK trust the content at open/mmap time the same way (a write afterwards is a
 *    ToMToU violation, seen here as NSIMA_EV_READERS on the write open, and a new stamp).
 *  - A digest IMA cached (IMA_COLLECTED) is the current content's: IMA clears it when the last
 *    writer closes a changed file (ima_check_last_writer); with a writer open it may be stale,
 *    which the writer check refuses.
 *
 * Fails closed: a hash error, a digest in another algorithm than sha256 (IMA cached the
 * xattr's algorithm), a writer or a change (NSIMA_STAT_TRUST_UNSTABLE), or no entry (never
 * listed, revoked, or the map was full when nsimad wrote it) all answer "not trusted", and the
 * caller applies the first-access rule.
 */
#ifndef NSIMA_TRUST_BPF_H
#define NSIMA_TRUST_BPF_H

#include "maps.bpf.h"
#include "core_fixes.bpf.h" /* nsima_read_stamp */
#include "verdict.bpf.h" /* nsima_count, nsima_stamp_eq */

#define NSIMA_FMODE_READ 0x1

#ifdef NSIMA_SELFTEST
/* syscall programs cannot call bpf_ima_file_hash: the self-test feeds what it would return,
 * and what the file and inode would read (open for read, stamp and writers after the hash) */
__u8 selftest_file_sha256[32];
long selftest_hash_ret = NSIMA_HASH_ALGO_SHA256;
__u32 selftest_readable = 1;
__s32 selftest_writers_after;
struct nsima_stamp selftest_stamp_after;
static __always_inline long nsima_file_sha256(struct file *file, __u8 *out)
{
	__builtin_memcpy(out, selftest_file_sha256, 32);
	return selftest_hash_ret;
}
static __always_inline int nsima_file_readable(struct file *file)
{
	return selftest_readable != 0;
}
static __always_inline void nsima_after_hash(struct inode *inode, struct nsima_stamp *stamp,
					     __s32 *writers)
{
	*stamp = selftest_stamp_after;
	*writers = selftest_writers_after;
}
#else
static __always_inline long nsima_file_sha256(struct file *file, __u8 *out)
{
	/* returns the enum hash_algo of what it copied (at most 32 bytes) or -EOPNOTSUPP */
	return bpf_ima_file_hash(file, out, 32);
}
/* bpf_ima_file_hash reads through this file when it is open for read; otherwise IMA would
 * open another instance of the file, i.e. run file_open again inside this program. */
static __always_inline int nsima_file_readable(struct file *file)
{
	return (BPF_CORE_READ(file, f_mode) & NSIMA_FMODE_READ) != 0;
}
static __always_inline void nsima_after_hash(struct inode *inode, struct nsima_stamp *stamp,
					     __s32 *writers)
{
	nsima_read_stamp(inode, stamp);
	*writers = BPF_CORE_READ(inode, i_writecount.counter);
}
#endif

/* nsima_hash_stable() results: NSIMA_HASHED, NSIMA_HASH_* (selftest_abi.h) */
/* Hashes the content of `file` if it cannot change under the hash: `before` is the stamp and
 * `writers_before` the i_writecount the hook read before. Counts what it refuses. */
static __always_inline int nsima_hash_stable(struct file *file, struct inode *inode,
					     const struct nsima_stamp *before,
					     __s32 writers_before, __u8 *sha256)
{
	if (writers_before > 0 || !nsima_file_readable(file)) {
		nsima_count(NSIMA_STAT_TRUST_UNSTABLE);
		return NSIMA_HASH_UNSTABLE;
	}
	if (nsima_file_sha256(file, sha256) != NSIMA_HASH_ALGO_SHA256) {
		nsima_count(NSIMA_STAT_TRUST_NOHASH);
		return NSIMA_HASH_FAILED;
	}
	struct nsima_stamp after;
	__s32 writers_after;
	nsima_after_hash(inode, &after, &writers_after);
	if (writers_after > 0 || !nsima_stamp_eq(before, &after)) {
		nsima_count(NSIMA_STAT_TRUST_UNSTABLE);
		return NSIMA_HASH_UNSTABLE;
	}
	return NSIMA_HASHED;
}

/* The NSIMA_TRUST_* bits of content `sha256` in namespace ns_id (0: none). */
static __always_inline __u32 nsima_trust_of(__u32 ns_id, const __u8 *sha256)
{
	struct nsima_trust_key key;
	__builtin_memset(&key, 0, sizeof(key));
	key.ns_id = ns_id;
	__builtin_memcpy(key.sha256, sha256, 32);
	__u32 *v = bpf_map_lookup_elem(&trusted, &key);
	return v ? *v : 0;
}

/* A first access the namespace's first-access rule would deny: is its content listed
 * (NSIMA_TRUST_LISTED) in namespace ns_id, hashed while it could not change? 1: allow it.
 * *state gets nsima_hash_stable()'s result: NSIMA_HASHED means sha256 holds the digest of the
 * version `now` names, whatever the answer (the event carries it to nsimad). */
static __always_inline int nsima_first_trusted(struct file *file, struct inode *inode,
					       __u32 ns_id, const struct nsima_stamp *now,
					       __s32 writers, __u8 *sha256, int *state)
{
	*state = nsima_hash_stable(file, inode, now, writers, sha256);
	return *state == NSIMA_HASHED && (nsima_trust_of(ns_id, sha256) & NSIMA_TRUST_LISTED);
}

/* The NSIMA_TRUST_* bits of the content of `file` in namespace ns_id (0: none, or no hash),
 * with no stability check: for bprm_check only (deny_write_access holds the content). */
static __always_inline __u32 nsima_trust_bits(struct file *file, __u32 ns_id)
{
	__u8 sha256[32];
	if (nsima_file_sha256(file, sha256) != NSIMA_HASH_ALGO_SHA256) {
		nsima_count(NSIMA_STAT_TRUST_NOHASH);
		return 0;
	}
	return nsima_trust_of(ns_id, sha256);
}

/* 1 if the content of `file` is trusted in namespace ns_id, else 0. */
static __always_inline int nsima_trusted(struct file *file, __u32 ns_id)
{
	return (nsima_trust_bits(file, ns_id) & NSIMA_TRUST_LISTED) != 0;
}

#endif

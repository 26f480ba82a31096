/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A first exec decided in the kernel: is the executable's content in the namespace's trusted
 * map? Only the sleepable bprm_check program calls it (bpf_ima_file_hash may sleep: it hashes
 * the file when IMA has no digest cached, with or without an IMA policy).
 *
 * Why bprm_check and why it is safe to trust the hash: do_open_execat() took
 * deny_write_access() on bprm->file, so nobody can write the file between this hash and the
 * loader reading it (ETXTBSY). A digest IMA cached (IMA_COLLECTED) is the current content's:
 * IMA clears it when the last writer closes a changed file (ima_check_last_writer).
 *
 * Fails closed: a hash error, a digest in another algorithm than sha256 (IMA cached the
 * xattr's algorithm), or no entry (never listed, revoked, or the map was full when nsimad
 * wrote it) all answer "not trusted", and the caller applies the first-access rule.
 */
#ifndef NSIMA_TRUST_BPF_H
#define NSIMA_TRUST_BPF_H

#include "maps.bpf.h"
#include "verdict.bpf.h" /* nsima_count */

#ifdef NSIMA_SELFTEST
/* syscall programs cannot call bpf_ima_file_hash: the self-test feeds what it would return */
__u8 selftest_file_sha256[32];
long selftest_hash_ret = NSIMA_HASH_ALGO_SHA256;
static __always_inline long nsima_file_sha256(struct file *file, __u8 *out)
{
	__builtin_memcpy(out, selftest_file_sha256, 32);
	return selftest_hash_ret;
}
#else
static __always_inline long nsima_file_sha256(struct file *file, __u8 *out)
{
	/* returns the enum hash_algo of what it copied (at most 32 bytes) or -EOPNOTSUPP */
	return bpf_ima_file_hash(file, out, 32);
}
#endif

/* The NSIMA_TRUST_* bits of the content of `file` in namespace ns_id (0: none, or no hash). */
static __always_inline __u32 nsima_trust_bits(struct file *file, __u32 ns_id)
{
	struct nsima_trust_key key;
	__builtin_memset(&key, 0, sizeof(key));
	key.ns_id = ns_id;
	long algo = nsima_file_sha256(file, key.sha256);
	if (algo != NSIMA_HASH_ALGO_SHA256) {
		nsima_count(NSIMA_STAT_TRUST_NOHASH);
		return 0;
	}
	__u32 *v = bpf_map_lookup_elem(&trusted, &key);
	return v ? *v : 0;
}

/* 1 if the content of `file` is trusted in namespace ns_id, else 0. */
static __always_inline int nsima_trusted(struct file *file, __u32 ns_id)
{
	return (nsima_trust_bits(file, ns_id) & NSIMA_TRUST_LISTED) != 0;
}

#endif

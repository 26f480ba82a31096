/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Everything that crosses the BPF <-> userspace boundary in nsima, defined once.
 *
 * Compiled as C by clang -target bpf (vmlinux.h provides the __u* types) and as C++20 by the
 * daemon (<linux/types.h>). Only fixed-width fields: no pointers, no long, no bool, no enums in
 * structs. Sizes are pinned with static asserts below and checked against the BPF object's BTF
 * by tests/bpf/abi_test.cpp.
 */
#ifndef NSIMA_BPF_ABI_H
#define NSIMA_BPF_ABI_H

#ifndef __bpf__
#include <linux/types.h>
#endif

/* Hooks (struct nsima_event.hook). */
#define NSIMA_HOOK_FILE_OPEN 1
#define NSIMA_HOOK_MMAP_FILE 2
#define NSIMA_HOOK_BPRM_CHECK 3
#define NSIMA_HOOK_MAX 4 /* access hooks are 1..3; per-hook counters are indexed by them */
/* Not an access: security.ima written at run time (bpf/setxattr.bpf.c); nsimad appraises the
 * file then, before its first access. Outside 1..3: no per-hook counters, never denied. */
#define NSIMA_HOOK_SETXATTR 8
/* Not an access: an attempt on nsima itself refused by bpf/protect.bpf.c (self-protection,
 * include/nsima/protect_abi.h: the kind in .mask, its detail in .prot, the target in .reqprot,
 * .dev/.ino and .path). Never a per-hook counter, never measured: a host-list violation. */
#define NSIMA_HOOK_PROTECT 9

/* Kernel MAY_* access bits, as IMA's policy mask= uses them. */
#define NSIMA_MAY_EXEC 0x1
#define NSIMA_MAY_WRITE 0x2
#define NSIMA_MAY_READ 0x4
#define NSIMA_MAY_APPEND 0x8

/* mmap prot bits. */
#define NSIMA_PROT_READ 0x1
#define NSIMA_PROT_WRITE 0x2
#define NSIMA_PROT_EXEC 0x4

/* struct nsima_event.flags */
#define NSIMA_EV_PATH_TRUNCATED 0x1 /* bpf_d_path failed with ENAMETOOLONG: path is empty */
#define NSIMA_EV_PATH_ERROR 0x2     /* bpf_d_path failed for another reason (path_len < 0) */
#define NSIMA_EV_DELETED 0x4        /* the file had no links (path ends in " (deleted)") */
#define NSIMA_EV_DENIED 0x8         /* the hook returned -EACCES for this access */
#define NSIMA_EV_IN_EXECVE 0x10     /* mmap during execve (main binary or ld.so): never denied */
#define NSIMA_EV_STALE 0x20         /* a verdict existed but its stamp no longer matched */
#define NSIMA_EV_FIRST_DENY 0x40    /* denied by the namespace's first-access rule (enforce) */
#define NSIMA_EV_WRITERS 0x80       /* read open while the file is open for write elsewhere */
#define NSIMA_EV_READERS 0x100      /* write open while the file is open for read elsewhere */
#define NSIMA_EV_TRUSTED 0x200      /* a first exec the namespace's rule would deny, allowed in
				       the kernel: the file's sha256 is in the trusted map */
#define NSIMA_EV_MODEL_UNKNOWN 0x400 /* an exec refused by an enforcing model: the file's sha256
					is not a known executable of it (NSIMA_CG_MODEL_EXEC) */
#define NSIMA_EV_KERNEL_DIGEST 0x800 /* kernel_sha256 holds the sha256 of the file's content at
					`stamp`: the hook hashed it (bpf_ima_file_hash) with no writer
					and the same stamp before and after (bpf/trust.bpf.h) */

/* Verdicts (struct nsima_verdict.verdict). */
#define NSIMA_VERDICT_ALLOW 1
#define NSIMA_VERDICT_DENY 2        /* this version of the file (stamp must match) */
#define NSIMA_VERDICT_DENY_ALWAYS 3 /* every version of the inode: the stamp is ignored */

/*
 * Access classes: one bit each in struct nsima_verdict.quiet. A verdict silences an access only
 * if the bit of its class is set (IMA decides per func and mask, so an exec-mmap being done does
 * not mean a read-open is). FILE_CHECK classes are indexed by the MAY_* mask (0..15).
 */
#define NSIMA_CLASS_FILE(mask) ((mask) & 0xf)
#define NSIMA_CLASS_MMAP_PROT 16    /* prot has PROT_EXEC (MMAP_CHECK) */
#define NSIMA_CLASS_MMAP_REQPROT 17 /* only reqprot has PROT_EXEC (MMAP_CHECK_REQPROT) */
#define NSIMA_CLASS_BPRM 18         /* BPRM_CHECK and CREDS_CHECK */
#define NSIMA_CLASS_ALL 0x7ffff
#define NSIMA_CLASS_COUNT 19

/* cgroup value flags (struct nsima_cgroup.flags, struct nsima_cg_cache.flags) */
#define NSIMA_CG_REGISTERED 0x1  /* written by the daemon: this cgroup is bound to ns_id */
#define NSIMA_CG_DERIVED 0x2     /* resolved through an ancestor walk (ns_id 0 = none) */
#define NSIMA_CG_FIRST_DENY 0x4  /* first-access rule: deny until the daemon gives a verdict */
#define NSIMA_CG_MODEL_EXEC 0x8  /* an enforcing workload model (issue 13): bprm_check refuses an
				    executable whose sha256 is not NSIMA_TRUST_MODEL in the trusted
				    map. Holds for the namespace's whole cgroup subtree (its ns_id),
				    not for a namespace registered below it (its own flags). */
/* ... for the access classes whose bit is set here (bits 8..26: class 0..18): the classes some
 * appraise rule of an enforcing namespace can match. Inherited with NSIMA_CG_FIRST_DENY. */
#define NSIMA_CG_FIRST_DENY_SHIFT 8
#define NSIMA_CG_FIRST_DENY_CLASS(c) (1u << (NSIMA_CG_FIRST_DENY_SHIFT + (c)))
#define NSIMA_CG_FIRST_DENY_MASK (NSIMA_CLASS_ALL << NSIMA_CG_FIRST_DENY_SHIFT)

/* Per-CPU counters (stats map index). */
#define NSIMA_STAT_EMITTED 0   /* + hook: events submitted, per hook */
#define NSIMA_STAT_DROPPED 4   /* + hook: ring-buffer reservations that failed */
#define NSIMA_STAT_DENIED 8    /* + hook: accesses refused with -EACCES */
#define NSIMA_STAT_QUIET 12    /* + hook: accesses silenced by a verdict (hot path) */
/* Namespace resolution and loss accounting (one counter each, not per hook). */
#define NSIMA_STAT_CG_UNCACHED 16 /* resolved, but the cg_cache insert failed (value still used) */
#define NSIMA_STAT_UNRESOLVED 17  /* the ancestor walk could not run (no root cgroup id): the
				     access was treated as in no namespace; a host violation */
#define NSIMA_STAT_DROP_NO_NS 18  /* a drop (also in DROPPED) that ns_drops could not record */
#define NSIMA_STAT_TRUSTED 19     /* first execs allowed in the kernel by the trusted map (first
				     opens: NSIMA_STAT_TRUSTED_OPEN, first mmaps: ..._MMAP) */
#define NSIMA_STAT_TRUST_NOHASH 20 /* first accesses the kernel could not hash with sha256
				      (bpf_ima_file_hash failed or gave another algorithm): the
				      first-access rule applied */
#define NSIMA_STAT_MODEL_EXEC_DENIED 21 /* execs refused before they ran: not a known
					  executable of the namespace's enforcing model */
#define NSIMA_STAT_SETXATTR 22 /* security.ima writes sent to nsimad (setxattr.bpf.c) */
#define NSIMA_STAT_SETXATTR_DROPPED 23 /* ... whose record could not be reserved: the file is
					  left to the first-access rule */
#define NSIMA_STAT_TRUST_UNSTABLE 24 /* first accesses not trusted in the kernel because the
					content could change under the hash: a writer (i_writecount
					> 0) before or after it, the stamp changed while hashing, or
					the file not open for read; the first-access rule applied */
#define NSIMA_STAT_TRUSTED_OPEN 25 /* first opens allowed in the kernel by the trusted map */
#define NSIMA_STAT_TRUSTED_MMAP 26 /* first executable mmaps allowed in the kernel likewise */
#define NSIMA_STAT_KERNEL_DIGEST 27 /* events sent with NSIMA_EV_KERNEL_DIGEST */
/* Self-protection (bpf/protect.bpf.c), 28..35: refusals per kind, then their reports. */
#define NSIMA_STAT_PROTECT_SIGNAL 28   /* signals to nsimad or its swtpm refused */
#define NSIMA_STAT_PROTECT_PTRACE 29   /* ptrace / /proc access to them refused */
#define NSIMA_STAT_PROTECT_BPF 30      /* fds of nsima's BPF programs, maps, links refused */
#define NSIMA_STAT_PROTECT_FILE 31     /* writes, renames, unlinks ... of nsima's state refused */
#define NSIMA_STAT_PROTECT_CGROUP 32   /* cgroup writes outside the writer's subtree refused */
#define NSIMA_STAT_PROTECT_REPORTED 33 /* ... reported to nsimad (NSIMA_HOOK_PROTECT events) */
#define NSIMA_STAT_PROTECT_SUPPRESSED 34 /* ... not reported: over the rate limit */
#define NSIMA_STAT_PROTECT_DROPPED 35  /* ... not reported: the ring buffer was full */
#define NSIMA_STAT_LOST_UNTRUSTED 36 /* file events lost in an enforcing model's namespace whose
				       process the hooks made untrusted (model_untrusted) */
#define NSIMA_STAT_LOST_MARK_FAILED 37 /* ... whose mark did not fit (or no model hooks yet):
					 the access was refused instead */
#define NSIMA_STAT_MODEL_QUIET 38 /* cached accesses of a modeled namespace kept quiet: the
				    model_quiet map knew this process's access (its coefficient
				    is known to the model) */
#define NSIMA_STAT_MODEL_PENDING 39 /* ... reported, their key put in model_quiet as pending:
				      their repeats are quiet while nsimad judges the first */
#define NSIMA_STAT_MAX 40

#define NSIMA_COMM_LEN 16
#define NSIMA_FSNAME_LEN 16
#define NSIMA_PATH_MAX 4096

/* Ancestor levels 0..NSIMA_MAX_CGROUP_DEPTH-1 are walked when resolving a namespace; the
 * daemon refuses to register a cgroup at a level >= this (see bpf/ns.bpf.h). */
#define NSIMA_MAX_CGROUP_DEPTH 32
/* Registered cgroups and per-namespace drop counters (cgroups, ns_drops map sizes). */
#define NSIMA_MAX_NAMESPACES 4096
#define NSIMA_CG_CACHE_ENTRIES 65536 /* default size of the cg_cache LRU (nsimad may change it) */
/* Default size of the trusted map ((namespace, sha256) pairs; nsimad --trusted-digests). */
#define NSIMA_TRUSTED_ENTRIES 65536
/* enum hash_algo (include/uapi/linux/hash_info.h): what bpf_ima_file_hash returns */
#define NSIMA_HASH_ALGO_SHA256 4
/* trusted map value */
#define NSIMA_TRUST_LISTED 1
#define NSIMA_TRUST_MODEL 2 /* a known executable of the namespace's enforcing model (the
			       digest of an exec point's file: NSIMA_CG_MODEL_EXEC) */

/* Credentials as IMA's uid/euid/gid/egid conditions read them (and a model's COE: fsuid/fsgid). */
struct nsima_cred {
	__u32 uid;
	__u32 euid;
	__u32 suid;
	__u32 gid;
	__u32 egid;
	__u32 sgid;
	__u32 fsuid;
	__u32 fsgid;
	__u64 cap_effective; /* bit 7 CAP_SETUID, bit 6 CAP_SETGID widen euid/egid matches */
};

/*
 * What a change to a file looks like from the inode: ctime, i_version and size. A verdict is
 * valid only while all of them equal what they were when the daemon judged the file.
 */
struct nsima_stamp {
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 pad;
	__u64 i_version;
	__u64 size;
};

/*
 * One event. Records in the ring buffer are this struct cut after path[path_len]: the consumer
 * must read only the first `offsetof(path) + max(path_len, 0)` bytes.
 */
struct nsima_event {
	__u32 hook;  /* NSIMA_HOOK_* */
	__u32 flags; /* NSIMA_EV_* */
	__u64 ktime_ns; /* bpf_ktime_get_boot_ns() */
	__u32 pid;   /* thread id */
	__u32 tgid;  /* process id */
	__u64 cgroup_id; /* cgroup v2 id of the task */
	__u32 ns_id;     /* nsima namespace resolved by the hook */
	__u32 mnt_ns;    /* namespace inode numbers of the task */
	__u32 user_ns;
	__u32 pid_ns;
	struct nsima_cred cred;     /* current creds */
	struct nsima_cred new_cred; /* bprm->cred (CREDS_CHECK); zero unless BPRM_CHECK */
	__u64 dev;      /* i_sb->s_dev, kernel encoding (major << 20 | minor) */
	__u64 ino;
	__u32 generation;
	__u32 i_mode;
	__u32 i_uid;    /* fowner */
	__u32 i_gid;    /* fgroup */
	struct nsima_stamp stamp;
	__u64 fs_magic;
	__u8 fs_uuid[16];
	char fs_name[NSIMA_FSNAME_LEN];
	__u32 f_flags; /* file->f_flags (O_*) */
	__u32 f_mode;  /* file->f_mode (FMODE_*) */
	__u32 mask;    /* NSIMA_MAY_* as IMA computes it for this access */
	__u32 prot;    /* mmap_file: effective prot */
	__u32 reqprot; /* mmap_file: requested prot */
	__u32 mmap_flags;
	char comm[NSIMA_COMM_LEN];
	__s32 path_len; /* bytes in path including the NUL, or -errno from bpf_d_path */
	__s32 i_writecount; /* inode->i_writecount: open-for-write count (IMA's open_writers) */
	__s32 i_readcount;  /* inode->i_readcount: read-only opens (IMA's ToMToU); -1 if absent */
	__u32 pad;
	/* The task's root (fs->root: chroot / pivot_root aware) and its process's start time, so
	 * the daemon can tell which root a path is relative to, and whether the process it finds
	 * under `tgid` is the one that made the access (pids are reused). */
	__u64 root_dev;       /* fs->root.dentry->d_sb->s_dev, kernel encoding */
	__u64 root_ino;       /* fs->root.dentry->d_inode->i_ino */
	__u64 start_boottime; /* group_leader->start_boottime (ns; /proc/PID/stat field 22) */
	__u64 self_exec_id;   /* task->self_exec_id: bumped by each exec of the process (the
				 model's TASK_ID changes only there: struct nsima_model_quiet_key) */
	/* With NSIMA_EV_KERNEL_DIGEST: the sha256 the hook computed of the content at `stamp`, so
	 * nsimad need not hash that version again (zero otherwise). */
	__u8 kernel_sha256[32];
	char path[NSIMA_PATH_MAX];
};

#define NSIMA_EVENT_HEADER_SIZE 352 /* offsetof(struct nsima_event, path) */

/* verdict map key: verdicts are per namespace (two containers may trust different keys) */
struct nsima_verdict_key {
	__u32 ns_id;
	__u32 generation;
	__u64 dev;
	__u64 ino;
};

struct nsima_verdict {
	struct nsima_stamp stamp;
	__u32 verdict; /* NSIMA_VERDICT_* */
	__u32 quiet;   /* bit per access class that needs no further event */
	/* bit per access class the daemon judged (appraised where a rule says so) for this
	 * version: a class judged but not quiet is only reported; a class not judged is a first
	 * access (an enforcing namespace denies it until judged), even if another class is. */
	__u32 judged;
	/* with NSIMA_VERDICT_DENY: bit per access class refused for this version (the classes
	 * whose appraisal failed); the other classes are decided by quiet/judged as for an allow
	 * (kernel IMA keeps an appraisal status per func) */
	__u32 denied;
	/* bit per access class that would be quiet but for the namespace's workload model (it
	 * must see every access): such an access stays quiet when model_quiet knows it */
	__u32 model_quiet;
	__u32 pad;
};

/*
 * model_quiet map key (issue 13): one file access of one process whose security coefficient
 * the namespace's model knows, written by nsimad after judging it, looked up by the hooks when
 * the verdict says "quiet but for the model". It holds everything the coefficient is computed
 * from (daemon/model/README.md): the process (tgid, start time, exec count: PTASK_ID and
 * TASK_ID change only at fork and exec), its credentials (COE), the file's version (its
 * digest), the inode's owner and mode, the open flags, mmap's prot and flags, and the path as
 * bpf_d_path gives it (zero-padded; a longer path has no key: always an event). The
 * filesystem's magic and uuid follow from dev. Equal keys mean equal coefficients.
 */
#define NSIMA_QUIET_PATH 256
struct nsima_model_quiet_key {
	__u32 ns_id;
	__u32 hook; /* NSIMA_HOOK_FILE_OPEN or NSIMA_HOOK_MMAP_FILE */
	__u32 tgid;
	__u32 path_len; /* bytes of path including the NUL, 1..NSIMA_QUIET_PATH */
	__u64 start_boottime;
	__u64 self_exec_id;
	struct nsima_cred cred;
	__u64 dev;
	__u64 ino;
	__u32 generation;
	__u32 i_mode;
	__u32 i_uid;
	__u32 i_gid;
	struct nsima_stamp stamp;
	__u32 f_flags;
	__u32 prot;       /* mmap_file: effective prot (0 for file_open) */
	__u32 mmap_flags; /* mmap_file (0 for file_open) */
	__u32 pad;
	char path[NSIMA_QUIET_PATH];
};
#define NSIMA_MODEL_QUIET_ENTRIES 8192 /* default size of the model_quiet LRU */
/* model_quiet values */
#define NSIMA_MODEL_QUIET_PENDING 0 /* put by the hook that reported the access (its event is
				       in the ring buffer): nsimad's judgement of it follows */
#define NSIMA_MODEL_QUIET_KNOWN 1   /* nsimad: the model knows the coefficient */

/* cgroups map value (registered by the daemon), and the result of a resolution */
struct nsima_cgroup {
	__u32 ns_id; /* 0: not in any namespace */
	__u32 flags; /* NSIMA_CG_* */
};

/* cg_cache map value: the hooks' answer for one cgroup, valid while `epoch` equals
 * nsima_ctl.epoch (the registrations it was computed from have not changed since). */
struct nsima_cg_cache {
	__u32 ns_id; /* 0: in no namespace (negative entry) */
	__u32 flags; /* NSIMA_CG_* */
	__u64 epoch;
};

/*
 * ctl map (ARRAY, one entry, mmapable): what the daemon tells the hooks at run time. Written
 * only by nsimad through its mmap, field by field with single aligned stores, so a hook never
 * reads a torn value; read by the hooks on every access.
 */
struct nsima_ctl {
	__u64 epoch;     /* bumped after every change of the cgroups map */
	__u32 self_tgid; /* nsimad's process id (0: none): its own opens are never events */
	__u32 tick_ns;   /* length of a clock tick in ns (1e9 / sysconf(_SC_CLK_TCK)) */
	__u64 self_start; /* nsimad's start in clock ticks (/proc/PID/stat field 22): the pid of
			     a dead nsimad, reused by another process, is not exempt */
};

/*
 * trusted map key: a sha256 whose first exec in namespace ns_id the kernel may allow without
 * waiting for nsimad. nsimad writes a pair only if the digest passes the exec appraise rules of
 * every enforcing namespace of ns_id's chain by digest list, and is revoked in none of them.
 */
struct nsima_trust_key {
	__u32 ns_id;
	__u8 sha256[32];
};

/* tag map value (ARRAY, one entry): identity of the pinned object (sha256 of the BPF object
 * bytes and of the map sizes nsimad chose), so a restarted nsimad knows it may resume. */
struct nsima_tag {
	__u8 sha256[32];
};

/* self_opens map value: the stamp of the file a daemon thread opened last */
struct nsima_self_open {
	__u64 dev;
	__u64 ino;
	__u32 generation;
	__u32 pad;
	struct nsima_stamp stamp;
};

#ifdef __cplusplus
#include <cstddef>
static_assert(sizeof(struct nsima_cred) == 40);
static_assert(sizeof(struct nsima_stamp) == 32);
static_assert(offsetof(struct nsima_event, path) == NSIMA_EVENT_HEADER_SIZE);
static_assert(sizeof(struct nsima_event) == NSIMA_EVENT_HEADER_SIZE + NSIMA_PATH_MAX);
static_assert(sizeof(struct nsima_verdict_key) == 24);
static_assert(sizeof(struct nsima_verdict) == 56);
static_assert(sizeof(struct nsima_model_quiet_key) == 152 + NSIMA_QUIET_PATH);
static_assert(sizeof(struct nsima_cgroup) == 8);
static_assert(sizeof(struct nsima_cg_cache) == 16);
static_assert(sizeof(struct nsima_ctl) == 24);
static_assert(sizeof(struct nsima_tag) == 32);
static_assert(sizeof(struct nsima_self_open) == 56);
static_assert(sizeof(struct nsima_trust_key) == 36);
#else
_Static_assert(sizeof(struct nsima_cred) == 40, "nsima_cred");
_Static_assert(sizeof(struct nsima_stamp) == 32, "nsima_stamp");
_Static_assert(__builtin_offsetof(struct nsima_event, path) == NSIMA_EVENT_HEADER_SIZE,
	       "nsima_event header");
_Static_assert(sizeof(struct nsima_verdict_key) == 24, "nsima_verdict_key");
_Static_assert(sizeof(struct nsima_verdict) == 56, "nsima_verdict");
_Static_assert(sizeof(struct nsima_model_quiet_key) == 152 + NSIMA_QUIET_PATH, "nsima_model_quiet_key");
_Static_assert(sizeof(struct nsima_cg_cache) == 16, "nsima_cg_cache");
_Static_assert(sizeof(struct nsima_ctl) == 24, "nsima_ctl");
_Static_assert(sizeof(struct nsima_trust_key) == 36, "nsima_trust_key");
#endif

#endif /* NSIMA_BPF_ABI_H */

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Self-protection (bpf/protect.bpf.c, daemon/capture/protect.*): what crosses the boundary
 * besides bpf_abi.h's hook id and counters. A refusal is reported as a struct nsima_event with
 * hook NSIMA_HOOK_PROTECT, .mask = NSIMA_PROTECT_KIND_*, .prot = detail (signal number, ptrace
 * mode, bpf object type, NSIMA_PROTECT_OP_*), .reqprot = target (tgid, object id), .dev/.ino
 * the target inode (cgroup: .ino is the target cgroup id), .path the target's name.
 */
#ifndef NSIMA_PROTECT_ABI_H
#define NSIMA_PROTECT_ABI_H

#include "nsima/bpf_abi.h"

#define NSIMA_PROTECT_KIND_SIGNAL 1
#define NSIMA_PROTECT_KIND_PTRACE 2
#define NSIMA_PROTECT_KIND_BPF 3
#define NSIMA_PROTECT_KIND_FILE 4
#define NSIMA_PROTECT_KIND_CGROUP 5
#define NSIMA_PROTECT_KIND_MAX 6

/* bpf object types (protected_objs key .type, and .prot of a KIND_BPF report) */
#define NSIMA_PROTECT_OBJ_MAP 1
#define NSIMA_PROTECT_OBJ_PROG 2
#define NSIMA_PROTECT_OBJ_LINK 3

/* file operations (.prot of a KIND_FILE report) */
#define NSIMA_PROTECT_OP_WRITE 1  /* open for write or with O_TRUNC */
#define NSIMA_PROTECT_OP_UNLINK 2
#define NSIMA_PROTECT_OP_RENAME 3
#define NSIMA_PROTECT_OP_SETATTR 4 /* chmod, chown, truncate, utimes */
#define NSIMA_PROTECT_OP_LINK 5
#define NSIMA_PROTECT_OP_RMDIR 6
#define NSIMA_PROTECT_OP_CREATE 7 /* create, mkdir, mknod, symlink inside */

/* protect_cfg.flags */
#define NSIMA_PROTECT_ON 0x1       /* set by nsimad once the maps below are filled */
#define NSIMA_PROTECT_LOCKDOWN 0x2 /* nsima's BPF objects: the nsimad executable alone */

/* Reports per (namespace, kind) per second; more are counted (NSIMA_STAT_PROTECT_SUPPRESSED) */
#define NSIMA_PROTECT_BURST 8
/* Directory levels looked at above a file for a protected directory */
#define NSIMA_PROTECT_DEPTH 16
#define NSIMA_PROTECT_MAX_DIRS 64
#define NSIMA_PROTECT_MAX_PIDS 4096
#define NSIMA_PROTECT_MAX_OBJS 1024

/* protect_cfg map value (ARRAY, one entry) */
struct nsima_protect_cfg {
	__u32 flags;   /* NSIMA_PROTECT_* */
	__u32 pad;
	__u64 exe_dev; /* nsimad's executable (kernel dev encoding, inode): who may reach nsima's */
	__u64 exe_ino; /* BPF objects under lockdown (also a restarted nsimad, nsimad --unload) */
};

/* protected_dirs key: a directory whose every file (NSIMA_PROTECT_DEPTH levels down) is
 * nsima's; value: __u32 1 */
struct nsima_protect_dir {
	__u64 dev; /* kernel encoding (s_dev) */
	__u64 ino;
};

/* protected_objs key: one of nsima's BPF objects; value: __u32 1 */
struct nsima_protect_obj {
	__u32 type; /* NSIMA_PROTECT_OBJ_* */
	__u32 id;
};

/* protect_rate key and value: reports of one (namespace, kind) in the current second */
struct nsima_protect_rate_key {
	__u32 ns_id;
	__u32 kind;
};
struct nsima_protect_rate {
	__u64 second; /* bpf_ktime_get_boot_ns() / 1e9 */
	__u64 count;
};

#ifdef __cplusplus
static_assert(sizeof(struct nsima_protect_cfg) == 24);
static_assert(sizeof(struct nsima_protect_dir) == 16);
static_assert(sizeof(struct nsima_protect_obj) == 8);
static_assert(sizeof(struct nsima_protect_rate) == 16);
#else
_Static_assert(sizeof(struct nsima_protect_cfg) == 24, "nsima_protect_cfg");
_Static_assert(sizeof(struct nsima_protect_dir) == 16, "nsima_protect_dir");
#endif

#endif

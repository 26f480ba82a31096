/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Filling and submitting one event. The event is built in a per-CPU scratch buffer (4 KiB path
 * does not fit the stack) and copied into the ring buffer cut after the path, so a short path
 * costs a short record. A failed output is counted (stats DROPPED + ns_drops), never silent.
 */
#ifndef NSIMA_EMIT_BPF_H
#define NSIMA_EMIT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "core_fixes.bpf.h"
#include "errno.bpf.h"
#include "maps.bpf.h"
#include "verdict.bpf.h"

static __always_inline void nsima_read_cred(const struct cred *c, struct nsima_cred *out)
{
	out->uid = BPF_CORE_READ(c, uid.val);
	out->euid = BPF_CORE_READ(c, euid.val);
	out->suid = BPF_CORE_READ(c, suid.val);
	out->gid = BPF_CORE_READ(c, gid.val);
	out->egid = BPF_CORE_READ(c, egid.val);
	out->sgid = BPF_CORE_READ(c, sgid.val);
	out->fsuid = BPF_CORE_READ(c, fsuid.val);
	out->fsgid = BPF_CORE_READ(c, fsgid.val);
	/* kernel_cap_t is 8 bytes on every kernel: __u32 cap[2] before 6.3, u64 val after */
	out->cap_effective = 0;
	bpf_core_read(&out->cap_effective, sizeof(out->cap_effective), &c->cap_effective);
}

/* pid namespace of the task itself (not pid_ns_for_children) */
static __always_inline __u32 nsima_pid_ns(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid up = {};
	bpf_core_read(&up, sizeof(up), &pid->numbers[level]);
	return BPF_CORE_READ(up.ns, ns.inum);
}

/* One lost event of namespace ns_id. The caller has already counted it in stats DROPPED; if
 * ns_drops cannot record it (full), NSIMA_STAT_DROP_NO_NS says some namespace lost it. */
static __always_inline void nsima_add_drop(__u32 ns_id)
{
	if (!nsima_ns_counter_add(&ns_drops, ns_id))
		nsima_count(NSIMA_STAT_DROP_NO_NS);
}

/* Everything but the hook-specific fields (mask, prot, new_cred), which the caller sets. */
static __always_inline void nsima_fill_event(struct nsima_event *e, __u32 hook, __u32 flags,
					     const struct nsima_verdict_key *key,
					     const struct nsima_stamp *stamp, struct file *file,
					     struct inode *inode)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct super_block *sb = BPF_CORE_READ(inode, i_sb);
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);

	e->hook = hook;
	e->flags = flags;
	e->ktime_ns = bpf_ktime_get_boot_ns();
	e->pid = (__u32)pid_tgid;
	e->tgid = pid_tgid >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->ns_id = key->ns_id;
	e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->user_ns = BPF_CORE_READ(task, cred, user_ns, ns.inum);
	e->pid_ns = nsima_pid_ns(task);
	nsima_read_cred(BPF_CORE_READ(task, cred), &e->cred);
	__builtin_memset(&e->new_cred, 0, sizeof(e->new_cred));
	e->dev = key->dev;
	e->ino = key->ino;
	e->generation = key->generation;
	e->i_mode = BPF_CORE_READ(inode, i_mode);
	e->i_uid = BPF_CORE_READ(inode, i_uid.val);
	e->i_gid = BPF_CORE_READ(inode, i_gid.val);
	e->stamp = *stamp;
	e->fs_magic = BPF_CORE_READ(sb, s_magic);
	bpf_core_read(e->fs_uuid, sizeof(e->fs_uuid), &sb->s_uuid);
	e->fs_name[0] = 0;
	bpf_probe_read_kernel_str(e->fs_name, sizeof(e->fs_name), BPF_CORE_READ(sb, s_type, name));
	e->f_flags = BPF_CORE_READ(file, f_flags);
	e->f_mode = BPF_CORE_READ(file, f_mode);
	e->mask = 0;
	e->prot = 0;
	e->reqprot = 0;
	e->mmap_flags = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->i_writecount = 0;
	e->i_readcount = -1;
	e->pad = 0;
	e->root_dev = BPF_CORE_READ(task, fs, root.dentry, d_sb, s_dev);
	e->root_ino = BPF_CORE_READ(task, fs, root.dentry, d_inode, i_ino);
	e->start_boottime = BPF_CORE_READ(task, group_leader, start_boottime);
	e->self_exec_id = BPF_CORE_READ(task, self_exec_id);
	__builtin_memset(e->kernel_sha256, 0, sizeof(e->kernel_sha256));
	/* d_unlinked(): hashed out of the dcache and not a root; d_path appends " (deleted)" */
	if (!BPF_CORE_READ(dentry, d_hash.pprev) && BPF_CORE_READ(dentry, d_parent) != dentry)
		e->flags |= NSIMA_EV_DELETED;
}

/* bpf_d_path needs the trusted file pointer the hook received, so the caller passes it here. */
static __always_inline void nsima_fill_path(struct nsima_event *e, struct file *file)
{
	long n = bpf_d_path(&file->f_path, e->path, sizeof(e->path));
	e->path_len = (__s32)n;
	if (n == -ENAMETOOLONG)
		e->flags |= NSIMA_EV_PATH_TRUNCATED;
	else if (n <= 0)
		e->flags |= NSIMA_EV_PATH_ERROR;
}

/* Returns 0 if the event went into the ring buffer, 1 if it was lost (counted). */
static __always_inline int nsima_submit(struct nsima_event *e)
{
	__u32 hook = e->hook & 3;
	__u64 len = e->path_len > 0 ? (__u64)e->path_len : 0;
	/* Bound len in the register the helper call uses: clang otherwise tests a 32-bit copy
	 * and passes the sign-extended one, which the verifier sees as unbounded. */
	asm volatile("%0 &= 0x1fff" : "+r"(len));
	if (len > NSIMA_PATH_MAX)
		len = NSIMA_PATH_MAX;
	if (bpf_ringbuf_output(&events, e, NSIMA_EVENT_HEADER_SIZE + len, 0)) {
		nsima_count(NSIMA_STAT_DROPPED + hook);
		nsima_add_drop(e->ns_id);
		return 1;
	}
	nsima_count(NSIMA_STAT_EMITTED + hook);
	return 0;
}

/*
 * A file event of namespace ns_id that nsimad will never see. In a namespace whose workload
 * model enforces (NSIMA_CG_MODEL_EXEC), the model cannot judge the access, so it is taken as
 * an unknown coefficient, as a lost model event is (model.bpf.h, nsima_model_lost): the
 * process becomes untrusted here and now, in the model hooks' untrusted map (model_untrusted),
 * and the model hooks refuse its later accesses. If it cannot be marked (no model hooks loaded
 * yet, the map full), this access is refused instead where the hook may refuse (`may_deny`):
 * never fail open. Returns the hook's verdict (`ret` unless refused here).
 */
static __always_inline int nsima_lost_access(__u32 cg_flags, __u32 ns_id, int ret, int may_deny)
{
	if (!(cg_flags & NSIMA_CG_MODEL_EXEC))
		return ret;
	struct nsima_proc_key k;
	nsima_model_key((struct task_struct *)bpf_get_current_task(), &k);
	__u32 zero = 0;
	void *marks = bpf_map_lookup_elem(&model_untrusted, &zero);
	int m = marks ? nsima_untrust(marks, &k, ns_id) : -1;
	if (m > 0)
		nsima_count(NSIMA_STAT_LOST_UNTRUSTED);
	if (m >= 0)
		return ret;
	nsima_count(NSIMA_STAT_LOST_MARK_FAILED);
	return may_deny ? -EACCES : ret;
}

#endif

// SPDX-License-Identifier: GPL-2.0
/*
 * Self-protection (issue 12 item 4): a process of a registered namespace, root inside its
 * container included, cannot signal or ptrace nsimad or its swtpm, get an fd of nsima's BPF
 * maps, programs or links, change nsima's files, or write a cgroup file outside its own
 * namespace's cgroup subtree. Decisions in protect.bpf.h; every program chains the previous
 * verdict (`if (ret) return ret;`) and returns early unless protection is on and the target
 * is nsima's. Each refusal is -EPERM, counted and (rate limited) reported to nsimad.
 * Signatures are 6.1's (include/linux/lsm_hook_defs.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "protect.bpf.h"

#define FMODE_WRITE 0x2
#define O_TRUNC 01000

SEC("lsm/task_kill")
int BPF_PROG(nsima_protect_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	if (ret)
		return ret;
	if (!sig)
		return 0; /* kill -0: existence probe, changes nothing */
	return nsima_protect_task(p, NSIMA_PROTECT_KIND_SIGNAL, (__u32)sig);
}

/* ptrace attach, and every ptrace_may_access: /proc/PID/mem, environ, fd/, root, pidfd_getfd */
SEC("lsm/ptrace_access_check")
int BPF_PROG(nsima_protect_ptrace, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return ret;
	return nsima_protect_task(child, NSIMA_PROTECT_KIND_PTRACE, mode);
}

/* fds of maps and programs, however they are asked for (by id, by pin, at creation): the
 * object is known here, after its lookup */
SEC("lsm/bpf_map")
int BPF_PROG(nsima_protect_bpf_map, struct bpf_map *map, fmode_t fmode, int ret)
{
	if (ret)
		return ret;
	return nsima_protect_obj(NSIMA_PROTECT_OBJ_MAP, BPF_CORE_READ(map, id));
}

SEC("lsm/bpf_prog")
int BPF_PROG(nsima_protect_bpf_prog, struct bpf_prog *prog, int ret)
{
	if (ret)
		return ret;
	return nsima_protect_obj(NSIMA_PROTECT_OBJ_PROG, BPF_CORE_READ(prog, aux, id));
}

/* Links have no fd hook in 6.1: the id asked for is checked at the syscall. (A link pin
 * reached by path is not: daemon/README.md, "Self-protection".) */
SEC("lsm/bpf")
int BPF_PROG(nsima_protect_bpf, int cmd, union bpf_attr *attr, unsigned int size, int ret)
{
	if (ret)
		return ret;
	if (cmd != BPF_LINK_GET_FD_BY_ID)
		return 0;
	return nsima_protect_obj(NSIMA_PROTECT_OBJ_LINK, BPF_CORE_READ(attr, link_id));
}

/* Write opens: of nsima's files, and of cgroup2 files outside the writer's subtree (moving
 * itself out through cgroup.procs or cgroup.threads, or changing another cgroup's limits). */
SEC("lsm/file_open")
int BPF_PROG(nsima_protect_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	/* direct loads (file is BTF-typed): every read open of every process stops here */
	if (!(file->f_mode & FMODE_WRITE) && !(file->f_flags & O_TRUNC))
		return 0;
	struct nsima_protect_cfg *cfg = nsima_protect_cfg();
	if (!cfg || !(cfg->flags & NSIMA_PROTECT_ON))
		return 0;
	__u32 ns_id = nsima_protect_current_ns();
	if (!nsima_protect_is_subject_ns(ns_id))
		return 0;
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	if (BPF_CORE_READ(file, f_inode, i_sb, s_magic) == NSIMA_CGROUP2_MAGIC) {
		struct dentry *dir = BPF_CORE_READ(d, d_parent);
		if (nsima_protect_cg_inside(dir, ns_id))
			return 0;
		nsima_protect_report(ns_id, NSIMA_PROTECT_KIND_CGROUP, 0, 0,
				     BPF_CORE_READ(file, f_inode, i_sb, s_dev),
				     BPF_CORE_READ(dir, d_inode, i_ino), BPF_CORE_READ(d, d_name.name));
		return -EPERM;
	}
	if (!nsima_protect_dentry(d))
		return 0;
	nsima_protect_report(ns_id, NSIMA_PROTECT_KIND_FILE, NSIMA_PROTECT_OP_WRITE, 0,
			     BPF_CORE_READ(file, f_inode, i_sb, s_dev),
			     BPF_CORE_READ(file, f_inode, i_ino), BPF_CORE_READ(d, d_name.name));
	return -EPERM;
}

SEC("lsm/inode_unlink")
int BPF_PROG(nsima_protect_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return nsima_protect_file(dentry, NSIMA_PROTECT_OP_UNLINK);
}

SEC("lsm/inode_rmdir")
int BPF_PROG(nsima_protect_rmdir, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return nsima_protect_file(dentry, NSIMA_PROTECT_OP_RMDIR);
}

/* Out of a protected directory, or into one (over a file of it, or a new name in it) */
SEC("lsm/inode_rename")
int BPF_PROG(nsima_protect_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	ret = nsima_protect_file(old_dentry, NSIMA_PROTECT_OP_RENAME);
	if (ret)
		return ret;
	return nsima_protect_file(new_dentry, NSIMA_PROTECT_OP_RENAME);
}

/* A hard link of nsima's file elsewhere would be written through a path the walk does not see */
SEC("lsm/inode_link")
int BPF_PROG(nsima_protect_link, struct dentry *old_dentry, struct inode *dir,
	     struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	ret = nsima_protect_file(old_dentry, NSIMA_PROTECT_OP_LINK);
	if (ret)
		return ret;
	return nsima_protect_file(new_dentry, NSIMA_PROTECT_OP_LINK);
}

/* chmod, chown, truncate(2), utimes */
SEC("lsm/inode_setattr")
int BPF_PROG(nsima_protect_setattr, struct dentry *dentry, struct iattr *attr, int ret)
{
	if (ret)
		return ret;
	return nsima_protect_file(dentry, NSIMA_PROTECT_OP_SETATTR);
}

/* New names inside nsima's directories (a planted namespace config, policy or key) */
SEC("lsm/inode_create")
int BPF_PROG(nsima_protect_create, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return nsima_protect_file(dentry, NSIMA_PROTECT_OP_CREATE);
}

SEC("lsm/inode_mkdir")
int BPF_PROG(nsima_protect_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return nsima_protect_file(dentry, NSIMA_PROTECT_OP_CREATE);
}

SEC("lsm/inode_symlink")
int BPF_PROG(nsima_protect_symlink, struct inode *dir, struct dentry *dentry,
	     const char *old_name, int ret)
{
	if (ret)
		return ret;
	return nsima_protect_file(dentry, NSIMA_PROTECT_OP_CREATE);
}

SEC("lsm/inode_mknod")
int BPF_PROG(nsima_protect_mknod, struct inode *dir, struct dentry *dentry, umode_t mode,
	     dev_t dev, int ret)
{
	if (ret)
		return ret;
	return nsima_protect_file(dentry, NSIMA_PROTECT_OP_CREATE);
}

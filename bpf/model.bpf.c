// SPDX-License-Identifier: GPL-2.0
/*
 * Workload security model hooks (issue 13): for processes of modeled namespaces, the events
 * TSEM models beyond files, the lineage nsimad needs for TASK_IDs, and the kernel side of
 * "untrusted": every access of an untrusted process in an enforcing namespace is refused
 * (-EPERM, TSEM's answer), its later children inherit the mark here, at fork, without waiting
 * for nsimad. The logic is in model.bpf.h (tested by model_selftest.bpf.c).
 *
 * Hooks that cannot sleep (file_mprotect, task_kill: tasklist lock) only read and report; none
 * of these programs is sleepable.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "model.bpf.h"

/* Keeps struct nsima_model_event in the object's BTF (ring-buffer records have no map type),
 * for tests/bpf/model_prog_test.cpp's layout check. Never written. */
const volatile struct nsima_model_event *nsima_model_event_btf __attribute__((unused));

SEC("lsm/ptrace_access_check")
int BPF_PROG(nsima_m_ptrace, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return ret;
	return nsima_model_task_event(bpf_get_current_task_btf(), bpf_get_current_cgroup_id(),
				      NSIMA_MHOOK_PTRACE_ACCESS_CHECK, child, mode);
}

SEC("lsm/ptrace_traceme")
int BPF_PROG(nsima_m_traceme, struct task_struct *parent, int ret)
{
	if (ret)
		return ret;
	return nsima_model_task_event(bpf_get_current_task_btf(), bpf_get_current_cgroup_id(),
				      NSIMA_MHOOK_PTRACE_TRACEME, parent, 0);
}

SEC("lsm/task_kill")
int BPF_PROG(nsima_m_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	if (ret)
		return ret;
	/* the kernel's own signals and SIGURG are not the process's doing (as TSEM) */
	if (nsima_signal_from_kernel(info) || sig == NSIMA_SIGURG)
		return 0;
	return nsima_model_task_event(bpf_get_current_task_btf(), bpf_get_current_cgroup_id(),
				      NSIMA_MHOOK_TASK_KILL, p, (__u32)sig);
}

SEC("lsm/socket_create")
int BPF_PROG(nsima_m_sock, int family, int type, int protocol, int kern, int ret)
{
	if (ret)
		return ret;
	struct task_struct *task = bpf_get_current_task_btf();
	struct nsima_model_ctx c;
	if (!nsima_model_enter(task, bpf_get_current_cgroup_id(), &c))
		return 0;
	__u32 d = nsima_model_decide(c.ns_flags, c.untrusted, NSIMA_MHOOK_SOCKET_CREATE, 0);
	struct nsima_model_event *e = nsima_model_start(&c, NSIMA_MHOOK_SOCKET_CREATE, &d, task, &c.proc);
	if (e) {
		e->arg0 = family;
		e->arg1 = type;
		e->arg2 = protocol;
		e->arg3 = kern;
	}
	return nsima_model_submit(e, NSIMA_MHOOK_SOCKET_CREATE, d);
}

SEC("lsm/socket_connect")
int BPF_PROG(nsima_m_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return nsima_model_sock_event(bpf_get_current_task_btf(), bpf_get_current_cgroup_id(),
				      NSIMA_MHOOK_SOCKET_CONNECT, sock, address, addrlen);
}

SEC("lsm/socket_bind")
int BPF_PROG(nsima_m_bind, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return nsima_model_sock_event(bpf_get_current_task_btf(), bpf_get_current_cgroup_id(),
				      NSIMA_MHOOK_SOCKET_BIND, sock, address, addrlen);
}

SEC("lsm/file_mprotect")
int BPF_PROG(nsima_m_mprot, struct vm_area_struct *vma, unsigned long reqprot,
	     unsigned long prot, int ret)
{
	if (ret)
		return ret;
	if (!((prot | reqprot) & NSIMA_PROT_EXEC_BIT))
		return 0; /* only "to executable" is modeled */
	struct task_struct *task = bpf_get_current_task_btf();
	struct nsima_model_ctx c;
	if (!nsima_model_enter(task, bpf_get_current_cgroup_id(), &c))
		return 0;
	__u32 d = nsima_model_decide(c.ns_flags, c.untrusted, NSIMA_MHOOK_FILE_MPROTECT, 0);
	struct nsima_model_event *e = nsima_model_start(&c, NSIMA_MHOOK_FILE_MPROTECT, &d, task, &c.proc);
	if (e) {
		struct file *file = BPF_CORE_READ(vma, vm_file);
		e->arg0 = (__u32)reqprot;
		e->arg1 = (__u32)prot;
		if (file) {
			struct inode *inode = BPF_CORE_READ(file, f_inode);
			struct super_block *sb = BPF_CORE_READ(inode, i_sb);
			e->i_uid = BPF_CORE_READ(inode, i_uid.val);
			e->i_gid = BPF_CORE_READ(inode, i_gid.val);
			e->i_mode = BPF_CORE_READ(inode, i_mode);
			e->fs_magic = BPF_CORE_READ(sb, s_magic);
			bpf_core_read(e->fs_uuid, sizeof(e->fs_uuid), &sb->s_uuid);
		} else {
			e->flags |= NSIMA_MEV_ANONYMOUS;
		}
	}
	return nsima_model_submit(e, NSIMA_MHOOK_FILE_MPROTECT, d);
}

/* Lineage: a new process (not a thread) of a modeled namespace; an untrusted parent's child is
 * untrusted from its first instruction. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(nsima_m_fork, struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a thread: same process */
	struct nsima_proc_key pk, ck;
	nsima_model_key(parent, &pk);
	nsima_model_key(child, &ck);
	/* whatever the namespace's state: untrust is permanent and inherited */
	nsima_model_inherit(&pk, &ck);

	struct task_struct *task = bpf_get_current_task_btf();
	struct nsima_model_ctx c;
	if (!nsima_model_enter(task, bpf_get_current_cgroup_id(), &c))
		return 0;
	__u32 d = nsima_model_decide(c.ns_flags, c.untrusted, NSIMA_MHOOK_FORK, 0);
	/* a lost fork: nsimad never learns the child's lineage; in enforce the child is marked */
	struct nsima_model_event *e = nsima_model_start(&c, NSIMA_MHOOK_FORK, &d, task, &ck);
	if (e)
		e->target = ck;
	nsima_model_submit(e, NSIMA_MHOOK_FORK, d);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(nsima_m_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
		return 0; /* a thread of a process that lives on */
	struct nsima_model_ctx c;
	if (nsima_model_enter(p, bpf_get_current_cgroup_id(), &c)) {
		__u32 d = nsima_model_decide(c.ns_flags, c.untrusted, NSIMA_MHOOK_EXIT, 0);
		nsima_model_submit(nsima_model_start(&c, NSIMA_MHOOK_EXIT, &d, p, NULL),
				   NSIMA_MHOOK_EXIT, d);
	}
	/* the process is gone: its key (tgid + start time) is never seen again */
	struct nsima_proc_key k;
	nsima_model_key(p, &k);
	bpf_map_delete_elem(&untrusted, &k);
	return 0;
}

/* The accesses the file hooks report, refused for untrusted processes of enforcing namespaces
 * (a second program on each hook: the file hooks' objects stay as they are). */
SEC("lsm/file_open")
int BPF_PROG(nsima_m_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	return nsima_model_gate(bpf_get_current_task_btf(), bpf_get_current_cgroup_id());
}

SEC("lsm/mmap_file")
int BPF_PROG(nsima_m_mmap, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	if (ret)
		return ret;
	struct task_struct *task = bpf_get_current_task_btf();
	/* during execve a refused mapping is a SIGSEGV, not a failed exec (mmap_file.bpf.c) */
	if (BPF_CORE_READ_BITFIELD_PROBED(task, in_execve))
		return 0;
	return nsima_model_gate(task, bpf_get_current_cgroup_id());
}

SEC("lsm/bprm_check_security")
int BPF_PROG(nsima_m_exec, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	return nsima_model_gate(bpf_get_current_task_btf(), bpf_get_current_cgroup_id());
}

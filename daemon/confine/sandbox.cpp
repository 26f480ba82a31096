// SPDX-License-Identifier: Apache-2.0
#include "confine/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <pwd.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "confine/wire.h"

namespace nsima::confine {

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitizer = true;
#else
constexpr bool kSanitizer = false;
#endif
#else
constexpr bool kSanitizer = false;
#endif

tl::unexpected<Error> sys(const char* what) {
  return make_error(errno, std::string(what) + ": " + std::strerror(errno), "nsima-parse");
}

struct CtxDeleter {
  void operator()(void* c) const noexcept { seccomp_release(static_cast<scmp_filter_ctx>(c)); }
};

// max_fd: the highest descriptor RLIMIT_NOFILE lets the worker hold (the socket, fd 3, is one).
Result<void> install_filter(int max_fd) {
  std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(SCMP_ACT_KILL_PROCESS));
  if (!ctx) return make_error(ENOMEM, "seccomp_init failed", "nsima-parse");
  scmp_filter_ctx c = ctx.get();
  int rc = 0;
  auto allow = [&](int nr, unsigned n = 0, const scmp_arg_cmp* args = nullptr) {
    if (rc == 0) rc = seccomp_rule_add_array(c, SCMP_ACT_ALLOW, nr, n, args);
  };
  // {argument, operator, value, mask-or-second-value}: SCMP_A0() leaves datum_b implicit,
  // which clang's -Wmissing-field-initializers refuses.
  // read/write on the socket, and on the worker's own memfds (Op::kRpmHeader: librpm reads a
  // package from a descriptor only). RLIMIT_NOFILE leaves no descriptor above max_fd (the
  // socket, in a production build), and with no open or socket every other descriptor is one
  // the worker made with memfd_create. Under a sanitizer, fds 0-2 stay open and its runtime
  // needs a pipe, so the worker's memfds are above the socket: max_fd covers them there.
  const scmp_arg_cmp up_to_fd{0, SCMP_CMP_LE, static_cast<scmp_datum_t>(max_fd), 0};
  allow(SCMP_SYS(read), 1, &up_to_fd);
  allow(SCMP_SYS(write), 1, &up_to_fd);
  const scmp_arg_cmp cloexec{1, SCMP_CMP_EQ, MFD_CLOEXEC, 0};
  allow(SCMP_SYS(memfd_create), 1, &cloexec);
  allow(SCMP_SYS(lseek), 1, &up_to_fd);
  allow(SCMP_SYS(dup), 1, &up_to_fd);  // rpmio's fdDup: its only descriptor-to-FD_t call
  allow(SCMP_SYS(close), 1, &up_to_fd);
  // glibc's qsort (librpm sorts header entries) asks sysinfo for the machine's memory; it
  // copes with a failure, so it fails (ENOSYS) and tells the worker nothing about the host.
  auto fail = [&](int nr, int err) {
    if (rc == 0) rc = seccomp_rule_add_array(c, SCMP_ACT_ERRNO(err), nr, 0, nullptr);
  };
  fail(SCMP_SYS(sysinfo), ENOSYS);
  // rpmio's Fdescr names a descriptor for its error messages by readlink("/proc/self/fd/N")
  // and falls back to "[fd N]": it fails, so no path is ever resolved.
  fail(SCMP_SYS(readlink), ENOENT);
  fail(SCMP_SYS(readlinkat), ENOENT);
  allow(SCMP_SYS(exit));
  allow(SCMP_SYS(exit_group));
  // malloc: brk, anonymous maps (never executable), and giving memory back.
  const scmp_arg_cmp no_exec{2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0};
  allow(SCMP_SYS(brk));
  allow(SCMP_SYS(mmap), 1, &no_exec);
  allow(SCMP_SYS(mprotect), 1, &no_exec);
  allow(SCMP_SYS(munmap));
  allow(SCMP_SYS(mremap));
  allow(SCMP_SYS(madvise));
  allow(SCMP_SYS(futex));
  allow(SCMP_SYS(rt_sigreturn));
  allow(SCMP_SYS(rt_sigprocmask));
  allow(SCMP_SYS(clock_gettime));
  // abort(): raise(SIGABRT) is tgkill on itself (a crash then says SIGABRT, not SIGSYS).
  allow(SCMP_SYS(getpid));
  allow(SCMP_SYS(gettid));
  const scmp_arg_cmp self{0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(getpid()), 0};
  allow(SCMP_SYS(tgkill), 1, &self);
  if (kSanitizer) {
    // The sanitizer runtimes' allocators and fault reports: their own stack, yields, writes to
    // stderr. Still no open, socket or exec (a report that needs /proc/self/maps is cut short).
    const scmp_arg_cmp on_stderr{0, SCMP_CMP_EQ, 2, 0};
    allow(SCMP_SYS(write), 1, &on_stderr);
    allow(SCMP_SYS(sigaltstack));
    allow(SCMP_SYS(sched_yield));
    allow(SCMP_SYS(rt_sigaction));
    allow(SCMP_SYS(nanosleep));
    allow(SCMP_SYS(clock_nanosleep));
    allow(SCMP_SYS(prctl));
    // UBSan's vptr check and the unwinder test whether memory is readable by writing it into
    // a pipe (sanitizer_common IsAccessibleMemoryRange): pipe2, write and close on its ends.
    allow(SCMP_SYS(pipe));
    allow(SCMP_SYS(pipe2));
    allow(SCMP_SYS(write));
    allow(SCMP_SYS(close));
    allow(SCMP_SYS(ioctl), 1, &on_stderr);  // its reports ask whether stderr is a terminal
  }
  if (rc != 0) return make_error(-rc, "seccomp_rule_add failed", "nsima-parse");
  if ((rc = seccomp_load(c)) != 0)
    return make_error(-rc, std::string("seccomp_load: ") + std::strerror(-rc), "nsima-parse");
  return {};
}

}  // namespace

bool under_sanitizer() { return kSanitizer; }

Result<void> confine_self(const SandboxOptions& o) {
  // Die with the daemon; if it is already gone, do not serve anyone.
  const pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return sys("PR_SET_PDEATHSIG");
  if (getppid() != parent || parent == 1) return make_error(ESRCH, "the parent is gone", "nsima-parse");

  // Descriptors: only the socket (and stderr under a sanitizer, for its reports).
  const int keep = o.keep_fd;
  const int first = kSanitizer ? 3 : 0;
  if (keep > first && syscall(SYS_close_range, first, keep - 1, 0) != 0) return sys("close_range");
  if (syscall(SYS_close_range, keep + 1, ~0U, 0) != 0) return sys("close_range");

  if (geteuid() == 0 || getuid() == 0) {
    // Every capability out of the bounding set, then the ids (which clears the permitted and
    // effective sets: no SECBIT_KEEP_CAPS).
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return sys("PR_CAPBSET_DROP");
    if (setgroups(0, nullptr) != 0) return sys("setgroups");
    if (setresgid(o.gid, o.gid, o.gid) != 0) return sys("setresgid");
    if (setresuid(o.uid, o.uid, o.uid) != 0) return sys("setresuid");
    if (getuid() == 0 || geteuid() == 0 || getgid() == 0 || getegid() == 0)
      return make_error(EPERM, "still root after setresuid", "nsima-parse");
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    return sys("PR_CAP_AMBIENT_CLEAR_ALL");
  // A non-root start keeps its ids; it must hold no capability either.
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capset, &hdr, data) != 0) return sys("capset");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return sys("PR_SET_NO_NEW_PRIVS");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return sys("PR_SET_DUMPABLE");

  auto limit = [](int res, rlim_t v) { rlimit r{v, v}; return setrlimit(res, &r) == 0; };
  const int max_fd = keep + (kSanitizer ? 4 : 0);
  // FSIZE: the memfd of one rpm package (wire.h kMaxFrame); it can open no other file.
  if (!limit(RLIMIT_CORE, 0) || !limit(RLIMIT_FSIZE, kMaxFrame) || !limit(RLIMIT_NPROC, 0) ||
      // (under a sanitizer two more for the pipe of its memory-accessibility checks, and two
      // for the rpm op's memfd and its dup, which a production worker takes from fds 0-2)
      !limit(RLIMIT_NOFILE, static_cast<rlim_t>(max_fd + 1)) ||
      !limit(RLIMIT_MEMLOCK, 0) || !limit(RLIMIT_MSGQUEUE, 0))
    return sys("setrlimit");
  if (!kSanitizer && !limit(RLIMIT_AS, o.address_space)) return sys("setrlimit(RLIMIT_AS)");
  return install_filter(max_fd);
}

}  // namespace nsima::confine

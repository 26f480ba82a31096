// SPDX-License-Identifier: Apache-2.0
// ptrace_attach PID: PTRACE_ATTACH to PID and pidfd_getfd of its fd 0 (both ptrace-checked).
// Prints "attach: <strerror>" and "getfd: <strerror>" ("ok" on success, then detaches);
// exits 0 only if both were refused with EPERM (self-protection's answer).
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: ptrace_attach PID\n");
    return 2;
  }
  pid_t pid = (pid_t)atoi(argv[1]);
  int refused = 0;
  if (ptrace(PTRACE_ATTACH, pid, 0, 0) == 0) {
    printf("attach: ok\n");
    waitpid(pid, NULL, __WALL);
    ptrace(PTRACE_DETACH, pid, 0, 0);
  } else {
    printf("attach: %s\n", strerror(errno));
    refused += errno == EPERM;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    printf("getfd: pidfd_open: %s\n", strerror(errno));
    return 1;
  }
  int fd = (int)syscall(SYS_pidfd_getfd, pidfd, 0, 0);
  if (fd >= 0) {
    printf("getfd: ok\n");
  } else {
    printf("getfd: %s\n", strerror(errno));
    refused += errno == EPERM;
  }
  return refused == 2 ? 0 : 1;
}

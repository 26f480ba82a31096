// SPDX-License-Identifier: Apache-2.0
// cg_exec CGROUP_DIR PROG [ARGS...]: moves itself into CGROUP_DIR, then execs PROG. Exit
// status: PROG's, or 126 with the errno printed when execve fails (like a shell).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: cg_exec CGROUP_DIR PROG [ARGS...]\n");
    return 2;
  }
  char procs[4096];
  snprintf(procs, sizeof procs, "%s/cgroup.procs", argv[1]);
  int cg = open(procs, O_WRONLY);
  if (cg < 0 || dprintf(cg, "%d\n", getpid()) < 0) {
    perror(procs);
    return 2;
  }
  close(cg);
  execv(argv[2], argv + 2);
  printf("execve: %s\n", strerror(errno));
  return 126;
}

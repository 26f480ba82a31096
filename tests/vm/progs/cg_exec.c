// SPDX-License-Identifier: Apache-2.0
// cg_exec CGROUP_DIR PROG [ARGS...]: moves itself into CGROUP_DIR, then execs PROG. Exit
// status: PROG's, or 126 with the errno printed when execve fails (like a shell).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "join_cgroup.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: cg_exec CGROUP_DIR PROG [ARGS...]\n");
    return 2;
  }
  if (join_cgroup(argv[1]) != 0) return 2;
  execv(argv[2], argv + 2);
  printf("execve: %s\n", strerror(errno));
  return 126;
}

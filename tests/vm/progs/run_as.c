// SPDX-License-Identifier: Apache-2.0
// run_as UID GID PROG [ARGS...]: drops to UID/GID (real, effective and saved), then execs PROG.
#define _GNU_SOURCE
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: run_as UID GID PROG [ARGS...]\n");
    return 2;
  }
  uid_t uid = (uid_t)atoi(argv[1]);
  gid_t gid = (gid_t)atoi(argv[2]);
  if (setgroups(0, NULL) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid)) {
    perror("run_as");
    return 2;
  }
  execv(argv[3], argv + 3);
  perror(argv[3]);
  return 126;
}

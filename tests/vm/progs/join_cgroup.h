// SPDX-License-Identifier: Apache-2.0
// join_cgroup(DIR): moves the calling process into cgroup v2 directory DIR (writes its pid to
// DIR/cgroup.procs). Returns 0, or prints the error and returns -1.
#ifndef NSIMA_TEST_JOIN_CGROUP_H
#define NSIMA_TEST_JOIN_CGROUP_H

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static inline int join_cgroup(const char* dir) {
  char procs[4096];
  snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
  int cg = open(procs, O_WRONLY);
  if (cg < 0 || dprintf(cg, "%d\n", getpid()) < 0) {
    perror(procs);
    if (cg >= 0) close(cg);
    return -1;
  }
  close(cg);
  return 0;
}

#endif

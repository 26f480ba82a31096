// SPDX-License-Identifier: Apache-2.0
// open_flood CGROUP_DIR FILE...: moves itself into CGROUP_DIR, then opens each FILE read-only
// once and closes it, doing nothing else that opens a file, so the file_open hook sees exactly
// one access per FILE from this cgroup. Prints the number of failed opens.
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: open_flood CGROUP_DIR FILE...\n");
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
  int failed = 0;
  for (int i = 2; i < argc; ++i) {
    int fd = open(argv[i], O_RDONLY);
    if (fd < 0)
      failed++;
    else
      close(fd);
  }
  printf("%d\n", failed);
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// open_flood CGROUP_DIR FILE...: moves itself into CGROUP_DIR, then opens each FILE read-only
// once and closes it, doing nothing else that opens a file, so the file_open hook sees exactly
// one access per FILE from this cgroup. Prints the number of failed opens.
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "join_cgroup.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: open_flood CGROUP_DIR FILE...\n");
    return 2;
  }
  if (join_cgroup(argv[1]) != 0) return 2;
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

// SPDX-License-Identifier: Apache-2.0
// mmap_exec FILE: maps FILE with PROT_READ|PROT_EXEC (as ld.so maps a library's text).
// Prints "ok" and exits 0, or prints the errno name and exits 1.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: mmap_exec FILE\n");
    return 2;
  }
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) {
    printf("open: %s\n", strerror(errno));
    return 1;
  }
  void* p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) {
    printf("mmap: %s\n", strerror(errno));
    return 1;
  }
  printf("ok\n");
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// bench_access MODE ARGS: times N operations (CLOCK_MONOTONIC) and prints nanoseconds per
// operation. Used by tests/bench/vm-hotpath and tests/bench/vm-overhead.
//   open FILE N       open+close of FILE
//   mmap FILE N       mmap(PROT_READ|PROT_EXEC, MAP_PRIVATE)+munmap of FILE (fd kept open)
//   exec PROG N       fork+execve+wait of PROG
//   execeach DIR N    fork+execve+wait of DIR/f0 .. DIR/f<N-1>, each once (first execs)
//   read DIR N        open+read to EOF+close of DIR/f0 .. DIR/f<N-1>, each once
//   mmapeach DIR N    open+mmap(PROT_READ|PROT_EXEC)+munmap+close of DIR/f0 .. DIR/f<N-1>,
//                     each once (first exec mappings)
//   mkfiles DIR N KIB creates DIR/f0 .. DIR/f<N-1> of KIB KiB each, with content unique to the
//                     file (so no two share a digest); prints nothing
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int fail(const char* what) {
  perror(what);
  return 1;
}

static int mkfiles(const char* dir, long n, long kib) {
  static char buf[1 << 16];
  char path[4096];
  for (long i = 0; i < n; ++i) {
    snprintf(path, sizeof path, "%s/f%ld", dir, i);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return fail(path);
    for (long k = 0; k < kib; ++k) {
      // every 1 KiB block names its file, its offset and the time: unique content per file
      int len = snprintf(buf, 1024, "%s %ld %ld %.0f\n", path, i, k, now_ns());
      memset(buf + len, 'x', 1024 - len);
      if (write(fd, buf, 1024) != 1024) return fail(path);
    }
    if (close(fd) != 0) return fail(path);
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: bench_access open|mmap FILE N | exec PROG N | execeach|read|mmapeach DIR N | "
                    "mkfiles DIR N KIB\n");
    return 2;
  }
  long n = atol(argv[3]);
  if (n <= 0) return 2;
  if (strcmp(argv[1], "mkfiles") == 0) return argc == 5 ? mkfiles(argv[2], n, atol(argv[4])) : 2;
  double t0 = now_ns();
  if (strcmp(argv[1], "open") == 0) {
    for (long i = 0; i < n; ++i) {
      int fd = open(argv[2], O_RDONLY);
      if (fd < 0) return fail(argv[2]);
      close(fd);
    }
  } else if (strcmp(argv[1], "mmap") == 0) {
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return fail(argv[2]);
    t0 = now_ns();
    for (long i = 0; i < n; ++i) {
      void* p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) return fail("mmap");
      munmap(p, 4096);
    }
  } else if (strcmp(argv[1], "exec") == 0) {
    for (long i = 0; i < n; ++i) {
      pid_t pid = fork();
      if (pid == 0) {
        execl(argv[2], argv[2], (char*)NULL);
        _exit(127);
      }
      int st;
      waitpid(pid, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "%s failed\n", argv[2]);
        return 1;
      }
    }
  } else if (strcmp(argv[1], "execeach") == 0) {
    char path[4096];
    for (long i = 0; i < n; ++i) {
      snprintf(path, sizeof path, "%s/f%ld", argv[2], i);
      pid_t pid = fork();
      if (pid == 0) {
        execl(path, path, (char*)NULL);
        _exit(127);
      }
      int st;
      waitpid(pid, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "%s failed (status %d)\n", path, st);
        return 1;
      }
    }
  } else if (strcmp(argv[1], "read") == 0) {
    static char buf[1 << 16];
    char path[4096];
    for (long i = 0; i < n; ++i) {
      snprintf(path, sizeof path, "%s/f%ld", argv[2], i);
      int fd = open(path, O_RDONLY);
      if (fd < 0) return fail(path);
      ssize_t r;
      while ((r = read(fd, buf, sizeof buf)) > 0) {
      }
      if (r < 0) return fail(path);
      close(fd);
    }
  } else if (strcmp(argv[1], "mmapeach") == 0) {
    char path[4096];
    for (long i = 0; i < n; ++i) {
      snprintf(path, sizeof path, "%s/f%ld", argv[2], i);
      int fd = open(path, O_RDONLY);
      if (fd < 0) return fail(path);
      void* p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) return fail(path);
      munmap(p, 4096);
      close(fd);
    }
  } else {
    return 2;
  }
  printf("%.0f\n", (now_ns() - t0) / n);
  return 0;
}

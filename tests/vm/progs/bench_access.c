// SPDX-License-Identifier: Apache-2.0
// bench_access open FILE N | exec PROG N: times N open+close of FILE, or N fork+execve+wait of
// PROG (CLOCK_MONOTONIC), and prints nanoseconds per operation. Used by tests/bench/vm-hotpath.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: bench_access open FILE N | exec PROG N\n");
    return 2;
  }
  long n = atol(argv[3]);
  double t0 = now_ns();
  if (strcmp(argv[1], "open") == 0) {
    for (long i = 0; i < n; ++i) {
      int fd = open(argv[2], O_RDONLY);
      if (fd < 0) {
        perror(argv[2]);
        return 1;
      }
      close(fd);
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
  } else {
    return 2;
  }
  printf("%.0f\n", (now_ns() - t0) / n);
  return 0;
}

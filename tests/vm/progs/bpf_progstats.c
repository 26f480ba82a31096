// SPDX-License-Identifier: Apache-2.0
// bpf_progstats [PREFIX]: one line per loaded BPF program whose name starts with PREFIX
// (default "nsima_"): "name run_cnt run_time_ns", as the kernel counts them while
// /proc/sys/kernel/bpf_stats_enabled is 1 (the program's own run time, without its trampoline).
// Raw bpf(2), so that it links static with no libbpf. Exit 1 if a program could not be read.
#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long sys_bpf(int cmd, union bpf_attr* attr) {
  return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

int main(int argc, char** argv) {
  const char* prefix = argc > 1 ? argv[1] : "nsima_";
  unsigned int id = 0;
  int failed = 0;
  for (;;) {
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.start_id = id;
    if (sys_bpf(BPF_PROG_GET_NEXT_ID, &a) != 0) {
      if (errno == ENOENT) break;
      fprintf(stderr, "bpf_progstats: BPF_PROG_GET_NEXT_ID after %u: %s\n", id, strerror(errno));
      return 1;
    }
    id = a.next_id;
    memset(&a, 0, sizeof(a));
    a.prog_id = id;
    int fd = (int)sys_bpf(BPF_PROG_GET_FD_BY_ID, &a);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // unloaded meanwhile
      fprintf(stderr, "bpf_progstats: program %u: %s\n", id, strerror(errno));
      failed = 1;
      continue;
    }
    struct bpf_prog_info info;
    memset(&info, 0, sizeof(info));
    memset(&a, 0, sizeof(a));
    a.info.bpf_fd = (unsigned int)fd;
    a.info.info_len = sizeof(info);
    a.info.info = (unsigned long)&info;
    if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) != 0) {
      fprintf(stderr, "bpf_progstats: program %u info: %s\n", id, strerror(errno));
      failed = 1;
    } else if (strncmp(info.name, prefix, strlen(prefix)) == 0) {
      printf("%s %llu %llu\n", info.name, (unsigned long long)info.run_cnt,
             (unsigned long long)info.run_time_ns);
    }
    close(fd);
  }
  return failed;
}

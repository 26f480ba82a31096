// SPDX-License-Identifier: Apache-2.0
// model_probe: loads and attaches bpf/model.bpf.c's programs (nsima_model.bpf.o) on a kernel
// with BPF-LSM (the VM), makes cgroup DIR a modeled namespace, runs a workload in it, and
// prints every model event as one line; for tests/vm/e2e/model_hooks_test.sh.
//   model_probe --cgroup DIR --flags on[,enforce][,cross] [--untrust-first-fork FIFO] -- CMD...
// --untrust-first-fork: on the workload's first fork event, the forking process is written
// into the untrusted map (what nsimad does when a model says so), then "marked\n" is written
// to FIFO if a reader has it open.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "model/event_decode.h"
#include "nsima/bpf_abi.h"
#include "nsima_model.skel.h"

namespace {

const char* hook_name(uint32_t h) {
  static const char* names[] = {"?",           "fork",          "exit",          "ptrace_access_check",
                                "ptrace_traceme", "task_kill", "socket_create", "socket_connect",
                                "socket_bind", "file_mprotect"};
  return h < NSIMA_MHOOK_MAX ? names[h] : "?";
}

struct State {
  nsima_model_bpf* skel = nullptr;
  std::string fifo;
  bool marked = false;
};

int on_event(void* ctx, void* data, size_t size) {
  auto* st = static_cast<State*>(ctx);
  auto ev = nsima::model::decode_model_event({static_cast<uint8_t*>(data), size});
  if (!ev) {
    std::printf("bad-event %s\n", ev.error().to_string().c_str());
    return 0;
  }
  std::printf("event hook=%s flags=0x%x ns=%u tgid=%u comm=%s target_tgid=%u target_ns=%u "
              "arg0=%u arg1=%u arg2=%u uid=%u cap=0x%llx addr_len=%u\n",
              hook_name(ev->hook), ev->flags, ev->ns_id, ev->proc.tgid, ev->comm.c_str(),
              ev->target.tgid, ev->target_ns, ev->raw.arg0, ev->raw.arg1, ev->raw.arg2,
              ev->coe.uid, static_cast<unsigned long long>(ev->coe.cap_effective),
              ev->raw.addr_len);
  if (ev->hook == NSIMA_MHOOK_FORK && !st->fifo.empty() && !st->marked) {
    st->marked = true;
    uint32_t ns = ev->ns_id;
    nsima_proc_key k = ev->raw.proc;
    int err = bpf_map_update_elem(bpf_map__fd(st->skel->maps.untrusted), &k, &ns, BPF_ANY);
    std::printf("untrusted tgid=%u err=%d\n", k.tgid, err);
    // The workload may be about to open the FIFO (allowed: it was not marked yet) or be refused
    // the open (marked): try for 2 s, then go on.
    for (int tries = 0; tries < 200; ++tries) {
      int fd = ::open(st->fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) {
        (void)!::write(fd, "marked\n", 7);
        ::close(fd);
        break;
      }
      ::usleep(10000);
    }
  }
  std::fflush(stdout);
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: model_probe --cgroup DIR --flags on[,enforce][,cross] "
               "[--untrust-first-fork FIFO] -- CMD...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cgroup, flags_arg, fifo;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc) return usage();
    if (a == "--cgroup") cgroup = argv[++i];
    else if (a == "--flags") flags_arg = argv[++i];
    else if (a == "--untrust-first-fork") fifo = argv[++i];
    else return usage();
  }
  if (cgroup.empty() || flags_arg.empty() || i >= argc) return usage();
  uint32_t flags = 0;
  for (size_t p = 0; p <= flags_arg.size();) {
    size_t c = flags_arg.find(',', p);
    std::string f = flags_arg.substr(p, c == std::string::npos ? std::string::npos : c - p);
    if (f == "on") flags |= NSIMA_MODEL_ON;
    else if (f == "enforce") flags |= NSIMA_MODEL_ENFORCE;
    else if (f == "cross") flags |= NSIMA_MODEL_CROSS_SIGNALS;
    else return usage();
    if (c == std::string::npos) break;
    p = c + 1;
  }

  State st;
  st.fifo = fifo;
  st.skel = nsima_model_bpf::open_and_load();
  if (!st.skel) {
    std::fprintf(stderr, "model_probe: loading nsima_model.bpf.o failed: %s\n", std::strerror(errno));
    return 1;
  }
  if (nsima_model_bpf::attach(st.skel) != 0) {
    std::fprintf(stderr, "model_probe: attaching failed: %s\n", std::strerror(errno));
    return 1;
  }
  std::printf("attached\n");
  struct stat sb;
  if (::stat(cgroup.c_str(), &sb) != 0) {
    std::perror(cgroup.c_str());
    return 1;
  }
  uint64_t cgid = sb.st_ino;
  const uint32_t ns = 5;
  nsima_cgroup reg{ns, NSIMA_CG_REGISTERED};
  nsima_model_ns mns{flags, 0};
  if (bpf_map_update_elem(bpf_map__fd(st.skel->maps.cgroups), &cgid, &reg, BPF_ANY) ||
      bpf_map_update_elem(bpf_map__fd(st.skel->maps.model_ns), &ns, &mns, BPF_ANY)) {
    std::perror("model_probe: map update");
    return 1;
  }
  ring_buffer* rb = ring_buffer__new(bpf_map__fd(st.skel->maps.mevents), on_event, &st, nullptr);
  if (!rb) return 1;
  std::fflush(stdout);

  pid_t pid = ::fork();
  if (pid == 0) {
    std::string procs = cgroup + "/cgroup.procs";
    FILE* f = std::fopen(procs.c_str(), "w");
    if (!f || std::fprintf(f, "%d\n", getpid()) < 0 || std::fclose(f) != 0) {
      std::perror(procs.c_str());
      _exit(126);
    }
    ::execvp(argv[i], argv + i);
    std::perror(argv[i]);
    _exit(127);
  }
  int status = 0;
  for (;;) {
    ring_buffer__poll(rb, 50);
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
  }
  ring_buffer__consume(rb);
  std::printf("workload exit=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> v(static_cast<size_t>(ncpu));
  for (uint32_t idx : {uint32_t{NSIMA_MSTAT_DENIED_ACCESS}, uint32_t{NSIMA_MSTAT_INHERIT_FAILED}}) {
    uint64_t sum = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(st.skel->maps.mstats), &idx, v.data()) == 0)
      for (auto x : v) sum += x;
    std::printf("mstat %u=%llu\n", idx, static_cast<unsigned long long>(sum));
  }
  ring_buffer__free(rb);
  nsima_model_bpf::destroy(st.skel);
  return 0;
}

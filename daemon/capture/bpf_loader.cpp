// SPDX-License-Identifier: Apache-2.0
#include "capture/bpf_loader.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "common/log.h"
#include "nsima.skel.h"

namespace nsima::capture {

namespace {

constexpr const char* kLsmFile = "/sys/kernel/security/lsm";
constexpr const char* kBtfFile = "/sys/kernel/btf/vmlinux";

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) noexcept {
  // Verifier logs arrive as one multi-kilobyte message: format without truncation.
  char* buf = nullptr;
  int n = vasprintf(&buf, fmt, args);
  if (n <= 0 || !buf) return 0;
  std::string line(buf, static_cast<size_t>(n));
  free(buf);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  auto log = logger("libbpf");
  // libbpf blames RLIMIT_MEMLOCK for every EPERM; since 5.11 BPF memory is charged to the
  // memory cgroup, and that advice sends users the wrong way.
  if (line.find("try raising 'ulimit -l'") != std::string::npos) {
    log->debug("{} [nsima: not the cause; see the error below]", line);
    return n;
  }
  switch (level) {
    case LIBBPF_WARN: log->warn("{}", line); break;
    case LIBBPF_INFO: log->info("{}", line); break;
    default: log->debug("{}", line); break;
  }
  return n;
}

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

void route_libbpf_log() { libbpf_set_print(libbpf_print); }

Result<void> probe_bpf_lsm() {
  if (geteuid() != 0)
    return make_error(EPERM,
                      "nsimad must run as root (it loads BPF-LSM programs: CAP_BPF, CAP_PERFMON "
                      "and CAP_SYS_ADMIN are needed)");
  struct stat st;
  if (stat(kBtfFile, &st) != 0)
    return make_error(ENOENT,
                      std::string("the kernel exposes no BTF (") + kBtfFile +
                          " is missing): nsima's CO-RE programs need a kernel built with "
                          "CONFIG_DEBUG_INFO_BTF=y");
  if (stat(kLsmFile, &st) != 0)
    return make_error(ENOENT, std::string("cannot tell whether BPF-LSM is active: ") + kLsmFile +
                                  " is missing (mount securityfs: mount -t securityfs securityfs "
                                  "/sys/kernel/security)");
  std::string lsms = read_first_line(kLsmFile);
  std::stringstream ss(lsms);
  std::string item;
  bool found = false;
  while (std::getline(ss, item, ','))
    if (item == "bpf") found = true;
  if (!found)
    return make_error(EOPNOTSUPP,
                      "BPF-LSM is not active in this kernel: 'bpf' is not in " +
                          std::string(kLsmFile) + " (\"" + lsms +
                          "\"). Boot with lsm=" + (lsms.empty() ? "" : lsms + ",") +
                          "bpf on the kernel command line (the kernel needs CONFIG_BPF_LSM=y)");
  return {};
}

Result<std::unique_ptr<BpfProgram>> BpfProgram::load_and_attach(const LoaderOptions& opts) {
  auto log = logger("capture");
  route_libbpf_log();

  nsima_bpf* skel = nsima_bpf::open();
  if (!skel)
    return make_error(errno, std::string("opening the BPF object failed: ") + strerror(errno),
                      "nsima_bpf__open");
  std::unique_ptr<BpfProgram> prog(new BpfProgram(skel));

  // Configure between open and load.
  skel->rodata->self_tgid = opts.self_tgid;
  if (int err = bpf_map__set_max_entries(skel->maps.events, opts.ringbuf_bytes))
    return make_error(-err, "ring-buffer size " + std::to_string(opts.ringbuf_bytes) +
                                " refused (must be a power of two and a multiple of the page size)",
                      "bpf_map__set_max_entries(events)");
  if (int err = bpf_map__set_max_entries(skel->maps.verdicts, opts.verdict_entries))
    return make_error(-err, "verdict map size refused", "bpf_map__set_max_entries(verdicts)");

  if (int err = nsima_bpf::load(skel)) {
    int e = -err;
    std::string msg = std::string("loading the BPF-LSM programs failed: ") + strerror(e);
    if (e == EACCES)
      msg +=
          ". The BPF verifier rejected a program (its log is above, from the libbpf logger); "
          "this is a bug in nsima or a kernel nsima does not support";
    else if (e == EPERM || e == EINVAL)
      msg +=
          ". 'bpf' is listed in /sys/kernel/security/lsm, yet the kernel refused to load LSM "
          "programs: a sandbox or seccomp policy, kernel lockdown, or missing CAP_BPF and "
          "CAP_SYS_ADMIN forbids it (run nsimad as root on the host, outside such sandboxes). "
          "libbpf's hint to raise 'ulimit -l' does not apply: BPF memory is charged to the "
          "memory cgroup since Linux 5.11";
    return make_error(e, msg, "nsima_bpf__load");
  }
  log->debug("BPF object loaded: ring buffer {} bytes, verdict map {} entries", opts.ringbuf_bytes,
             opts.verdict_entries);

  if (int err = nsima_bpf::attach(skel))
    return make_error(-err,
                      std::string("attaching the LSM programs failed: ") + strerror(-err) +
                          " (is 'bpf' in /sys/kernel/security/lsm?)",
                      "nsima_bpf__attach");
  log->info("attached lsm/file_open, lsm/mmap_file, lsm/bprm_check_security");
  return prog;
}

BpfProgram::~BpfProgram() {
  if (skel_) nsima_bpf::destroy(skel_);
}

void BpfProgram::detach() {
  if (skel_) nsima_bpf::detach(skel_);
}

int BpfProgram::events_fd() const { return bpf_map__fd(skel_->maps.events); }

MapFds BpfProgram::map_fds() const {
  return MapFds{bpf_map__fd(skel_->maps.cgroups), bpf_map__fd(skel_->maps.verdicts),
                bpf_map__fd(skel_->maps.stats), bpf_map__fd(skel_->maps.ns_drops),
                bpf_map__fd(skel_->maps.self_opens)};
}

}  // namespace nsima::capture

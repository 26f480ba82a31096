// SPDX-License-Identifier: Apache-2.0
// Loading nsima's BPF-LSM programs: probe (root, BTF, BPF-LSM active), open -> configure
// (ring-buffer size, map sizes, nsimad's pid) -> load -> attach, each step checked and named.
// A failure ends in one sentence that says what is missing and how to enable it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "capture/bpf_maps.h"
#include "common/result.h"

struct nsima_bpf;

namespace nsima::capture {

struct LoaderOptions {
  uint32_t ringbuf_bytes = 8u << 20;  // power of two, multiple of the page size
  uint32_t verdict_entries = 262144;
  uint32_t self_tgid = 0;             // nsimad's pid: its own opens are never events
};

// Checks the kernel can run nsima's programs, without loading anything. The error message is
// the one sentence to show the user.
Result<void> probe_bpf_lsm();

// Routes libbpf's own log into the "libbpf" spdlog logger.
void route_libbpf_log();

class BpfProgram {
 public:
  static Result<std::unique_ptr<BpfProgram>> load_and_attach(const LoaderOptions& opts);
  ~BpfProgram();
  BpfProgram(const BpfProgram&) = delete;
  BpfProgram& operator=(const BpfProgram&) = delete;

  int events_fd() const;
  MapFds map_fds() const;
  void detach();

 private:
  explicit BpfProgram(nsima_bpf* skel) : skel_(skel) {}
  nsima_bpf* skel_;
};

}  // namespace nsima::capture

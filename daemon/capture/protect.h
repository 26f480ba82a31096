// SPDX-License-Identifier: Apache-2.0
// Self-protection's daemon side (bpf/protect.bpf.c decides in the kernel): the one writer of
// protect_cfg, protected_dirs, protected_objs and protected_pids.
//
// start(): nsimad's executable (who may reach nsima's BPF objects under lockdown), the
// protected directories (state, run, pin and config directories: each (dev, ino) as stat sees
// it), the BPF objects nsimad holds, the swtpm it runs; then NSIMA_PROTECT_ON. A thread then
// re-syncs the objects (the model hooks are loaded later) and the swtpm pids (vTPMs start,
// restart and stop) every `interval`. What is written stays in the pinned maps when nsimad
// exits: the hooks keep protecting the last known set while no nsimad runs.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/result.h"
#include "nsima/protect_abi.h"

namespace nsima::capture {

struct ProtectFds {
  int cfg = -1;   // protect_cfg
  int dirs = -1;  // protected_dirs
  int objs = -1;  // protected_objs
  int pids = -1;  // protected_pids
};

struct ProtectOptions {
  bool lockdown = false;
  std::vector<std::string> dirs;  // missing ones are skipped (logged)
  std::string vtpm_run_root;      // <run_dir>/vtpm: <ns>/swtpm.pid of each running swtpm
  // Other processes of nsimad's to protect as it protects itself (the confined parser's
  // workers, daemon/confine), asked at each sync.
  std::function<std::vector<pid_t>()> more_pids;
  std::chrono::milliseconds interval{500};
};

// The BPF objects (type, id) an fd table holds: /proc/<pid>/fd entries that are bpf-map,
// bpf-prog or bpf_link anon inodes, with a link's program. Pure parsing of /proc.
std::set<std::pair<uint32_t, uint32_t>> bpf_objects_of(pid_t pid);

// Pids named by <root>/*/swtpm.pid whose process is alive and is an swtpm, with their start
// time in clock ticks.
std::vector<std::pair<uint32_t, uint64_t>> swtpm_pids(const std::string& root);

class Protector {
 public:
  static Result<std::unique_ptr<Protector>> start(const ProtectFds& fds, const ProtectOptions& o);
  ~Protector();
  Protector(const Protector&) = delete;
  Protector& operator=(const Protector&) = delete;

  // One re-sync now (objects, pids). Thread-safe.
  Result<void> sync();
  size_t objects() const { return nobjs_.load(); }
  size_t processes() const { return npids_.load(); }
  size_t directories() const { return ndirs_; }
  bool lockdown() const { return opts_.lockdown; }

 private:
  Protector(const ProtectFds& fds, ProtectOptions o) : fds_(fds), opts_(std::move(o)) {}
  Result<void> write_dirs();

  ProtectFds fds_;
  ProtectOptions opts_;
  std::mutex mu_;  // one sync at a time
  std::set<std::pair<uint32_t, uint32_t>> objs_;
  std::map<uint32_t, uint64_t> pids_;  // pid -> start time, as last written to the map
  std::atomic<size_t> nobjs_{0}, npids_{0};
  size_t ndirs_ = 0;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace nsima::capture

// SPDX-License-Identifier: Apache-2.0
// One nsimad per run directory: <run_dir>/nsimad.pid, held with flock(2) for nsimad's life and
// holding its pid. A second nsimad takes it before anything else (before BPF is touched) and
// stops with "nsimad is already running (pid N)". The lock, not the file, is the truth: a file
// left by a killed nsimad is not locked, and is taken over.
#pragma once

#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nsima::service {

class InstanceLock {
 public:
  // Creates `dir` (0700) when missing, locks <dir>/nsimad.pid and writes this process's pid.
  // EBUSY: another process holds it; the message names its pid.
  static Result<InstanceLock> acquire(const std::string& dir);

  const std::string& path() const { return path_; }

 private:
  InstanceLock(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;  // the lock lives as long as this descriptor
  std::string path_;
};

}  // namespace nsima::service

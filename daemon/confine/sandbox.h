// SPDX-License-Identifier: Apache-2.0
// The confinement nsima-parse puts itself under before it reads any input (README.md):
// unprivileged uid/gid with no supplementary groups and no capabilities, PR_SET_NO_NEW_PRIVS,
// not dumpable, dies with its parent, every descriptor but its socket closed, rlimits, and a
// seccomp allow-list (libseccomp) whose default action kills the process.
#pragma once

#include <sys/types.h>

#include "common/result.h"

namespace nsima::confine {

// The descriptor the worker talks on (posix_spawn dups the socketpair's end there).
inline constexpr int kWorkerFd = 3;

struct SandboxOptions {
  int keep_fd = kWorkerFd;   // the one descriptor left open
  // When started as root: the ids to become ("nobody" from the passwd database, else 65534).
  uid_t uid = 65534;
  gid_t gid = 65534;
  size_t address_space = size_t{1} << 30;  // RLIMIT_AS (not under ASan/TSan: they reserve TBs)
};

// Whether this build runs under a sanitizer (the filter then also allows what its runtime
// needs to report a fault, and RLIMIT_AS is not set).
bool under_sanitizer();

// Everything above, in order; any step that fails is an error (the worker then exits before
// reading input, and the daemon sees no hello: parser-unavailable).
Result<void> confine_self(const SandboxOptions& opts);

}  // namespace nsima::confine

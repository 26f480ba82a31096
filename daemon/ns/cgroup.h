// SPDX-License-Identifier: Apache-2.0
// cgroup v2 helpers: the id the BPF side sees (bpf_get_current_cgroup_id) for a directory, and
// path normalisation relative to the cgroup2 mount.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"

namespace nsima::ns {

// The cgroup v2 id of directory `path` (the kernfs node id, as bpf_get_current_cgroup_id()
// returns it). Errors name the path and say when it is not on a cgroup2 filesystem.
Result<uint64_t> cgroup_id_of(const std::string& path);

// Absolute, normalised path (no trailing slash, no "." or ".."); errors if it does not exist.
Result<std::string> canonical_dir(const std::string& path);

// The cgroup (absolute directory) of process `pid`, from /proc/PID/cgroup ("0::/x/y").
Result<std::string> cgroup_of_pid(int pid, const std::string& cgroup_root);

}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
// What nsima-oci-hook reads: the OCI runtime state on stdin (runtime-spec "State", as runc and
// crun write it for hooks; they differ, see ../shared/validators.md §5), the container's cgroup
// from /proc/PID/cgroup, and the org.nsima.* annotations turned into an ns_create request.
// Every error is one sentence that says what was wrong with which input, e.g.
//   the OCI state on stdin is not valid JSON (at byte 57: unexpected end of input)
//   the OCI state has no "pid" (createRuntime needs the container's host pid)
//   process 4242 named by the OCI state is gone (no /proc/4242/cgroup)
//   this host uses cgroup v1 (/proc/4242/cgroup lists v1 controllers): nsima needs the unified
//   cgroup v2 hierarchy (boot with systemd.unified_cgroup_hierarchy=1)
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "config/config.h"

namespace nsima::hook {

// Annotations nsima reads (runtime-spec annotations, e.g. `podman run --annotation K=V`).
inline constexpr const char* kAnnBuiltin = "org.nsima.builtin";
inline constexpr const char* kAnnPolicy = "org.nsima.policy";     // absolute path of a policy file
inline constexpr const char* kAnnVtpm = "org.nsima.vtpm";         // "true" | "false"
inline constexpr const char* kAnnAppraise = "org.nsima.appraise"; // "enforce" | "log" | "off"
inline constexpr const char* kAnnKeys = "org.nsima.keys";         // directory of x509 certificates
inline constexpr const char* kAnnDigests = "org.nsima.digests";   // digest list file

struct OciState {
  std::string oci_version;
  std::string id;
  std::string status;
  std::optional<int64_t> pid;  // runc: absent after the container ended; crun: 0
  std::string bundle;
  std::map<std::string, std::string> annotations;
};

// Parses the state JSON. Unknown members are ignored (runtimes add their own, e.g. crun's "root").
Result<OciState> parse_state(std::string_view text);

// A container id usable as a file name (runc and crun allow [A-Za-z0-9_+.-]).
Result<void> check_container_id(const std::string& id);

// The cgroup v2 path ("/machine.slice/libpod-x.scope/container") in the text of a
// /proc/PID/cgroup file. v1 or hybrid hierarchies (lines "N:controllers:/path") are refused.
Result<std::string> cgroup_v2_path(std::string_view proc_cgroup, const std::string& where);

// The container's cgroup directory: <cgroup_root><path of PID's /proc/PID/cgroup>, checked to
// exist. `proc` is "/proc" except in tests.
Result<std::string> container_cgroup(int64_t pid, const std::string& cgroup_root,
                                     const std::string& proc = "/proc");

// The ns_create request for a container: cgroup, policy (annotations first, then the config's
// [container] defaults), vtpm, appraise/keys (passed through), rootfs (the bundle's root, for
// pre-appraisal, with appraise enforce or log). `read_file` reads a policy file (injected for
// tests). The digest list to load afterwards, if any, is returned in `digests`.
struct CreatePlan {
  nlohmann::json request;
  std::string digests;
  std::string policy_desc;  // for messages: "builtin container-default", "/etc/p.policy"
};
Result<CreatePlan> plan_create(
    const OciState& st, const std::string& cgroup_dir, const config::Settings& cfg,
    const std::function<Result<std::string>(const std::string&)>& read_file);

// The rootfs directory of a bundle: config.json's root.path, relative to the bundle unless
// absolute.
Result<std::string> bundle_rootfs(const std::string& bundle);

}  // namespace nsima::hook

// SPDX-License-Identifier: Apache-2.0
// nsimactl / OCI hook <-> nsimad control protocol: JSON objects, one per line, over the AF_UNIX
// stream socket below (root only: nsimad checks SO_PEERCRED).
//
// Request:  {"cmd": "<command>", ...fields}
// Response: {"ok": true, ...} or {"ok": false, "error": "<one sentence>"}
// Streaming commands (watch, log --follow) answer {"ok": true} and then send one JSON object per
// line until the client closes the connection.
#pragma once

namespace nsima::control {

inline constexpr const char* kDefaultSocket = "/run/nsima/nsimad.sock";

// Commands
inline constexpr const char* kCmdStatus = "status";          // counters, namespaces
inline constexpr const char* kCmdWatch = "watch";            // cgroup -> stream of events
inline constexpr const char* kCmdVerdict = "verdict";        // cgroup, path, verdict allow|deny
inline constexpr const char* kCmdNsCreate = "ns_create";     // cgroup, [policy_text, policy_name, builtin, vtpm]
inline constexpr const char* kCmdNsList = "ns_list";
inline constexpr const char* kCmdNsDelete = "ns_delete";     // ns
inline constexpr const char* kCmdPolicyLoad = "policy_load"; // ns, policy_text, policy_name
inline constexpr const char* kCmdPolicyShow = "policy_show"; // ns
inline constexpr const char* kCmdLog = "log";                // ns, format ascii|binary, follow
inline constexpr const char* kCmdPcr = "pcr";                // ns
inline constexpr const char* kCmdQuote = "quote";            // ns, nonce (hex), dir

// Common fields
inline constexpr const char* kFieldCmd = "cmd";
inline constexpr const char* kFieldOk = "ok";
inline constexpr const char* kFieldError = "error";
inline constexpr const char* kFieldCgroup = "cgroup";
inline constexpr const char* kFieldNs = "ns";
inline constexpr const char* kFieldPath = "path";
inline constexpr const char* kFieldVerdict = "verdict";
inline constexpr const char* kFieldRoot = "root";  // verdict: directory to resolve path in
inline constexpr const char* kFieldEvent = "event";

// Largest request line nsimad accepts (a policy travels inline).
inline constexpr size_t kMaxRequestBytes = 16u << 20;

}  // namespace nsima::control

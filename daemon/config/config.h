// SPDX-License-Identifier: Apache-2.0
// /etc/nsima/nsimad.conf: the settings of nsimad ([daemon], [control], [host], [measure]) and the
// defaults of the OCI hook ([container]), in TOML, read with toml++. Every key, its type, its
// default and its meaning are in one table (config.cpp, keys()); systemd/nsimad.conf documents
// each of them and a unit test holds the two together. A file that does not fit stops startup
// with one sentence naming the place:
//   /etc/nsima/nsimad.conf:4:1: unknown key "pcrr" in [host] (keys: tcti, pcr, policy, builtin)
//   /etc/nsima/nsimad.conf:7:7: [host] pcr must be an integer from 0 to 23, got 99
//   /etc/nsima/nsimad.conf:2:10: TOML syntax: expected '=' ... (toml++'s own description)
// Command-line flags override the file (nsimad: Overlay below).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nsima::config {

// Where nsimad and nsima-oci-hook look when --config is not given (a missing file there means
// every default; a missing --config file is an error).
inline constexpr const char* kDefaultPath = "/etc/nsima/nsimad.conf";

struct Settings {
  // [daemon]
  std::string log_level = "info";       // trace, debug, info, warn, error, off
  std::string log_format = "text";      // text | json (one JSON object per line)
  std::string state_dir = "/var/lib/nsima";
  std::string run_dir = "/run/nsima";
  std::string pin_dir = "/sys/fs/bpf/nsima";
  std::string cgroup_root = "/sys/fs/cgroup";
  int64_t cgroup_gone_grace_ms = 5000;
  bool lockdown = false;  // nsima's BPF objects reachable by nsimad alone (self-protection)
  // [control]
  std::string socket = "/run/nsima/nsimad.sock";
  std::string read_group;                // members may use the reading commands ("": nobody)
  int64_t max_connections = 128;
  std::string metrics_listen;            // loopback HOST:PORT of GET /metrics ("": off)
  int64_t line_timeout_ms = 5000;
  int64_t idle_timeout_ms = 60000;
  // [host]
  std::string host_tcti = "auto";
  int64_t host_pcr = 23;
  std::string host_policy;               // a policy file ...
  std::string host_builtin;              // ... or a builtin policy ("" and "": none)
  // [measure]
  std::string hash = "sha256";
  std::string template_name = "ima-ng";
  int64_t hash_threads = 2;
  int64_t digest_cache = 65536;
  int64_t hash_timeout_ms = 10000;
  int64_t barrier_timeout_ms = 20000;
  // [container] (nsima-oci-hook's defaults when a container has no annotation)
  std::string container_builtin = "container-default";
  std::string container_policy;          // a policy file; replaces container_builtin when set
  bool container_vtpm = false;
  std::string container_appraise;        // "" (nsimad's default), enforce, log, off
  std::string container_keys;            // directory of x509 certificates ("": none)
  std::string container_digests;         // digest list file ("": none)
  std::string container_on_error = "fail";  // fail (the container does not start) | allow
  int64_t container_timeout_ms = 30000;  // the hook's wait for nsimad
};

// One key of the file, for documentation and for the error messages.
struct KeyInfo {
  std::string_view section;
  std::string_view key;
  std::string_view type;        // "string", "integer", "boolean"
  std::string_view default_text;  // as TOML ("\"info\"", "23", "false")
  std::string_view doc;
};
const std::vector<KeyInfo>& keys();

// Parses `text` (TOML). `origin` names the file in messages. Keys not in the file keep their
// defaults.
Result<Settings> parse(std::string_view text, const std::string& origin);

// Reads and parses `path`. A missing file gives the defaults when `must_exist` is false.
Result<Settings> load(const std::string& path, bool must_exist);

}  // namespace nsima::config

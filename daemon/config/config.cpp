// SPDX-License-Identifier: Apache-2.0
#include "config/config.h"

// Header-only and without exceptions: parse errors come back as values (toml::parse_result), as
// every other expected failure in nsima. Only this file includes toml++.
#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>

#include "measure/hash_algo.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace nsima::config {

namespace {

using Check = std::function<std::string(const toml::node&, Settings&)>;  // "" = ok, else why

struct Key {
  KeyInfo info;
  Check apply;
};

std::string dq(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string got(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "the string " + dq(*n.value<std::string>());
    case toml::node_type::integer:
      return "the integer " + std::to_string(*n.value<int64_t>());
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return *n.value<bool>() ? "true" : "false";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "a date or time";
  }
}

std::string alternatives(const std::vector<std::string_view>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += i + 1 == v.size() ? " or " : ", ";
    out += dq(v[i]);
  }
  return out;
}

// string: any; one_of: only these; absolute: an absolute path ("" allowed when may_be_empty)
Check string_key(std::string Settings::*field, std::vector<std::string_view> one_of = {},
                 bool absolute = false, bool may_be_empty = false) {
  return [=](const toml::node& n, Settings& s) -> std::string {
    auto v = n.value_exact<std::string>();
    if (!v) return "must be a string, got " + got(n);
    if (v->empty() && !may_be_empty) return "must not be empty";
    if (!one_of.empty()) {
      bool ok = false;
      for (auto a : one_of) ok |= a == *v;
      if (!ok) return "must be " + alternatives(one_of) + ", got " + dq(*v);
    }
    if (absolute && !v->empty() && (*v)[0] != '/')
      return "must be an absolute path, got " + dq(*v);
    s.*field = *v;
    return "";
  };
}

Check int_key(int64_t Settings::*field, int64_t lo, int64_t hi) {
  return [=](const toml::node& n, Settings& s) -> std::string {
    auto v = n.value_exact<int64_t>();
    if (!v || *v < lo || *v > hi)
      return "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
             ", got " + got(n);
    s.*field = *v;
    return "";
  };
}

Check bool_key(bool Settings::*field) {
  return [=](const toml::node& n, Settings& s) -> std::string {
    auto v = n.value_exact<bool>();
    if (!v) return "must be true or false, got " + got(n);
    s.*field = *v;
    return "";
  };
}

const std::vector<Key>& table() {
  // Keep in step with Settings' defaults and with systemd/nsimad.conf (unit-tested).
  static const std::vector<Key> kKeys = {
      {{"daemon", "log_level", "string", "\"info\"",
        "trace, debug, info, warn, error or off (--log-level)"},
       string_key(&Settings::log_level, {"trace", "debug", "info", "warn", "error", "off"})},
      {{"daemon", "log_format", "string", "\"text\"",
        "text, or json: one object per line {time, level, logger, msg} (--log-format)"},
       string_key(&Settings::log_format, {"text", "json"})},
      {{"daemon", "state_dir", "string", "\"/var/lib/nsima\"",
        "lists, namespace configs, vTPM state, archives (--state-dir)"},
       string_key(&Settings::state_dir, {}, true)},
      {{"daemon", "run_dir", "string", "\"/run/nsima\"",
        "vTPM sockets, the intake journal, the OCI hook's container records (--run-dir)"},
       string_key(&Settings::run_dir, {}, true)},
      {{"daemon", "pin_dir", "string", "\"/sys/fs/bpf/nsima\"",
        "bpffs directory of the pinned hooks; \"\" runs without pins (--pin-dir)"},
       string_key(&Settings::pin_dir, {}, true, true)},
      {{"daemon", "cgroup_root", "string", "\"/sys/fs/cgroup\"",
        "the cgroup v2 mount point (--cgroup-root)"},
       string_key(&Settings::cgroup_root, {}, true)},
      {{"daemon", "cgroup_gone_grace_ms", "integer", "5000",
        "a namespace whose cgroup is removed without an OCI poststop (runtime killed) is ended "
        "and archived this long after the rmdir (--cgroup-gone-grace-ms)"},
       int_key(&Settings::cgroup_gone_grace_ms, 0, 3600000)},
      {{"daemon", "lockdown", "boolean", "false",
        "nsima's BPF maps, programs and links refuse every process but the nsimad executable, "
        "host root's bpftool included (--lockdown)"},
       bool_key(&Settings::lockdown)},
      {{"control", "socket", "string", "\"/run/nsima/nsimad.sock\"",
        "the control socket of nsimactl and the OCI hook (--socket)"},
       string_key(&Settings::socket, {}, true)},
      {{"control", "read_group", "string", "\"\"",
        "group whose members may use the reading commands (status, ns list, log, pcr, quote, "
        "audit, keys list, watch); \"\": root only (--read-group)"},
       string_key(&Settings::read_group, {}, false, true)},
      {{"control", "max_connections", "integer", "128",
        "connections at once; at the cap the longest-waiting idle one is closed for a newcomer"},
       int_key(&Settings::max_connections, 1, 65536)},
      {{"control", "line_timeout_ms", "integer", "5000",
        "a begun request line must end within this, or the connection is closed"},
       int_key(&Settings::line_timeout_ms, 10, 3600000)},
      {{"control", "idle_timeout_ms", "integer", "60000",
        "a connection without a request for this long is closed"},
       int_key(&Settings::idle_timeout_ms, 10, 86400000)},
      {{"control", "metrics_listen", "string", "\"\"",
        "loopback HOST:PORT (e.g. \"127.0.0.1:9464\") where GET /metrics serves what nsimactl "
        "metrics prints, for Prometheus; \"\": off (--metrics-listen)"},
       string_key(&Settings::metrics_listen, {}, false, true)},
      {{"host", "tcti", "string", "\"auto\"",
        "TPM of the host namespace: \"auto\" (/dev/tpmrm0 when present), \"none\", or a TCTI "
        "such as \"device:/dev/tpmrm0\" (--host-tcti)"},
       string_key(&Settings::host_tcti)},
      {{"host", "pcr", "integer", "23",
        "PCR the host namespace extends; kernel IMA's is refused (--host-pcr)"},
       int_key(&Settings::host_pcr, 0, 23)},
      {{"host", "policy", "string", "\"\"",
        "policy file of the host namespace; excludes builtin (--policy)"},
       string_key(&Settings::host_policy, {}, true, true)},
      {{"host", "builtin", "string", "\"\"",
        "builtin policy of the host namespace, e.g. \"tcb\"; \"\" and no policy: the host "
        "namespace measures nothing (--builtin)"},
       string_key(&Settings::host_builtin, {}, false, true)},
      {{"measure", "hash", "string", "\"sha256\"", "file hash algorithm of the lists (--hash)"},
       [](const toml::node& n, Settings& s) -> std::string {
         auto v = n.value_exact<std::string>();
         if (!v) return "must be a string, got " + got(n);
         if (!measure::hash_algo_from_name(*v))
           return "must be a kernel hash algorithm name (sha1, sha256, sha384, sha512, sm3, "
                  "...), got " + dq(*v);
         s.hash = *v;
         return "";
       }},
      {{"measure", "template", "string", "\"ima-ng\"",
        "default template: ima-ng, ima-sig or ima (--template)"},
       string_key(&Settings::template_name, {"ima-ng", "ima-sig", "ima"})},
      {{"measure", "hash_threads", "integer", "2", "hashing worker threads (--hash-threads)"},
       int_key(&Settings::hash_threads, 1, 64)},
      {{"measure", "digest_cache", "integer", "65536",
        "file versions whose digests are kept, so that another namespace reading the same "
        "version does not hash it again: at most 137 bytes each (--digest-cache)"},
       int_key(&Settings::digest_cache, 1024, 16777216)},
      {{"measure", "hash_timeout_ms", "integer", "10000",
        "a file not hashed within this time is an nsima:unreadable:timeout violation "
        "(--hash-timeout-ms)"},
       int_key(&Settings::hash_timeout_ms, 1, 3600000)},
      {{"measure", "barrier_timeout_ms", "integer", "20000",
        "how long log/pcr/quote wait for earlier accesses to be measured "
        "(--barrier-timeout-ms)"},
       int_key(&Settings::barrier_timeout_ms, 1, 3600000)},
      {{"container", "builtin", "string", "\"container-default\"",
        "builtin policy of a container without an org.nsima.builtin/org.nsima.policy "
        "annotation"},
       string_key(&Settings::container_builtin)},
      {{"container", "policy", "string", "\"\"",
        "policy file for such a container; replaces builtin when set"},
       string_key(&Settings::container_policy, {}, true, true)},
      {{"container", "vtpm", "boolean", "false",
        "give each container its own vTPM unless org.nsima.vtpm says otherwise"},
       bool_key(&Settings::container_vtpm)},
      {{"container", "appraise", "string", "\"\"",
        "appraise mode of a container without org.nsima.appraise: enforce, log or off; \"\" "
        "leaves it to nsimad"},
       string_key(&Settings::container_appraise, {"", "enforce", "log", "off"}, false, true)},
      {{"container", "keys", "string", "\"\"",
        "directory of x509 certificates for containers without org.nsima.keys"},
       string_key(&Settings::container_keys, {}, true, true)},
      {{"container", "digests", "string", "\"\"",
        "digest list loaded for containers without org.nsima.digests"},
       string_key(&Settings::container_digests, {}, true, true)},
      {{"container", "on_error", "string", "\"fail\"",
        "when the hook cannot put the policy in place: \"fail\" stops the container (fail "
        "closed), \"allow\" lets it run unmeasured with a warning"},
       string_key(&Settings::container_on_error, {"fail", "allow"})},
      {{"container", "timeout_ms", "integer", "30000",
        "how long the OCI hook waits for nsimad"},
       int_key(&Settings::container_timeout_ms, 100, 600000)},
  };
  return kKeys;
}

std::string place(const std::string& origin, const toml::source_region& r) {
  return origin + ":" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column);
}

std::string keys_of(std::string_view section) {
  std::string out;
  for (const auto& k : table())
    if (k.info.section == section) out += (out.empty() ? "" : ", ") + std::string(k.info.key);
  return out;
}

std::string sections() {
  std::string out;
  std::string_view last;
  for (const auto& k : table()) {
    if (k.info.section == last) continue;
    last = k.info.section;
    out += (out.empty() ? "[" : ", [") + std::string(last) + "]";
  }
  return out;
}

}  // namespace

const std::vector<KeyInfo>& keys() {
  static const std::vector<KeyInfo> kInfos = [] {
    std::vector<KeyInfo> v;
    for (const auto& k : table()) v.push_back(k.info);
    return v;
  }();
  return kInfos;
}

Result<Settings> parse(std::string_view text, const std::string& origin) {
  toml::parse_result res = toml::parse(text, std::string_view(origin));
  if (!res) {
    const auto& e = res.error();
    return make_error(EINVAL, "TOML syntax: " + std::string(e.description()),
                      place(origin, e.source()));
  }
  const toml::table& root = res.table();
  Settings s;
  for (const auto& [skey, snode] : root) {
    const std::string section(skey.str());
    const toml::table* t = snode.as_table();
    bool known = false;
    for (const auto& k : table()) known |= k.info.section == section;
    if (!known)
      return make_error(EINVAL, "unknown section " + dq(section) + " (sections: " + sections() + ")",
                        place(origin, skey.source()));
    if (!t)
      return make_error(EINVAL, dq(section) + " must be a table ([" + section + "]), got " + got(snode),
                        place(origin, skey.source()));
    for (const auto& [kkey, knode] : *t) {
      const std::string key(kkey.str());
      const Key* k = nullptr;
      for (const auto& c : table())
        if (c.info.section == section && c.info.key == key) k = &c;
      if (!k)
        return make_error(EINVAL,
                          "unknown key " + dq(key) + " in [" + section + "] (keys: " +
                              keys_of(section) + ")",
                          place(origin, kkey.source()));
      if (std::string why = k->apply(knode, s); !why.empty())
        return make_error(EINVAL, "[" + section + "] " + key + " " + why,
                          place(origin, knode.source()));
    }
  }
  if (!s.host_policy.empty() && !s.host_builtin.empty())
    return make_error(EINVAL, "[host] policy and builtin exclude each other", origin);
  return s;
}

Result<Settings> load(const std::string& path, bool must_exist) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    if (err == ENOENT && !must_exist) return Settings{};
    return make_error(err ? err : EIO, std::string("cannot read the config file: ") +
                                           std::strerror(err ? err : EIO),
                      path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(EIO, "cannot read the config file", path);
  return parse(ss.str(), path);
}

}  // namespace nsima::config

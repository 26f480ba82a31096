// SPDX-License-Identifier: Apache-2.0
#include "hook/oci_state.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/container_id.h"
#include "nsima/control_protocol.h"

namespace nsima::hook {

namespace {

using nlohmann::json;

tl::unexpected<Error> bad(std::string msg) { return make_error(EINVAL, std::move(msg)); }

std::string dq(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

Result<OciState> parse_state(std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return bad("the OCI state on stdin is empty (a runtime passes the container state as JSON)");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 58: ..."
    std::string what = e.what();
    auto p = what.find("parse error");
    return bad("the OCI state on stdin is not valid JSON (" +
               (p == std::string::npos ? what : what.substr(p)) + ")");
  }
  if (!j.is_object()) return bad("the OCI state on stdin is not a JSON object");
  OciState st;
  auto str = [&](const char* key, std::string& out, bool required) -> Result<void> {
    auto it = j.find(key);
    if (it == j.end()) {
      if (required) return bad(std::string("the OCI state has no \"") + key + "\"");
      return {};
    }
    if (!it->is_string())
      return bad(std::string("the OCI state's \"") + key + "\" is not a string");
    out = it->get<std::string>();
    return {};
  };
  if (auto r = str("ociVersion", st.oci_version, true); !r) return tl::unexpected(r.error());
  if (auto r = str("id", st.id, true); !r) return tl::unexpected(r.error());
  if (auto r = str("status", st.status, false); !r) return tl::unexpected(r.error());
  if (auto r = str("bundle", st.bundle, false); !r) return tl::unexpected(r.error());
  if (auto it = j.find("pid"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0)
      return bad("the OCI state's \"pid\" is not a non-negative integer");
    st.pid = it->get<int64_t>();
  }
  if (auto it = j.find("annotations"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return bad("the OCI state's \"annotations\" is not an object");
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string())
        return bad("the OCI state's annotation " + dq(k) + " is not a string");
      st.annotations[k] = v.get<std::string>();
    }
  }
  if (auto r = check_container_id(st.id); !r) return tl::unexpected(r.error());
  return st;
}

Result<void> check_container_id(const std::string& id) {
  if (!is_container_id(id))
    return bad("the OCI state's container id " + dq(id.substr(0, 80)) +
               " is not 1 to 1024 characters of A-Za-z0-9_+.- (nor . or ..)");
  return {};
}

Result<std::string> cgroup_v2_path(std::string_view text, const std::string& where) {
  std::optional<std::string> v2;
  bool v1 = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (line.empty()) continue;
    // "hierarchy-ID:controller-list:cgroup-path" (cgroups(7)); v2 is "0::PATH"
    size_t c1 = line.find(':');
    size_t c2 = c1 == line.npos ? line.npos : line.find(':', c1 + 1);
    if (c2 == line.npos) return bad(where + " has a line that is not ID:CONTROLLERS:PATH");
    std::string_view id = line.substr(0, c1), ctrl = line.substr(c1 + 1, c2 - c1 - 1);
    std::string_view path = line.substr(c2 + 1);
    if (id == "0" && ctrl.empty()) {
      v2 = std::string(path);
    } else if (!ctrl.empty() && ctrl != "name=systemd") {
      v1 = true;  // a v1 controller hierarchy (legacy or hybrid)
    } else {
      v1 = true;  // named v1 hierarchy (name=systemd in hybrid mode)
    }
  }
  if (v1)
    return bad("this host uses cgroup v1 (" + where +
               " lists v1 hierarchies): nsima needs the unified cgroup v2 hierarchy (boot with "
               "systemd.unified_cgroup_hierarchy=1)");
  if (!v2) return bad(where + " has no cgroup v2 entry (0::PATH)");
  if (v2->empty() || (*v2)[0] != '/')
    return bad(where + " gives the cgroup path " + dq(*v2) + ", which is not absolute");
  if (v2->find(" (deleted)") != std::string::npos)
    return bad("the container's cgroup " + *v2 + " is already deleted");
  return *v2;
}

Result<std::string> container_cgroup(int64_t pid, const std::string& cgroup_root,
                                     const std::string& proc) {
  const std::string file = proc + "/" + std::to_string(pid) + "/cgroup";
  std::ifstream in(file);
  if (!in) {
    int err = errno;
    if (err == ENOENT || err == ESRCH)
      return make_error(ESRCH, "process " + std::to_string(pid) +
                                   " named by the OCI state is gone (no " + file + ")");
    return make_error(err, "cannot read " + file + ": " + std::strerror(err));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto path = cgroup_v2_path(ss.str(), file);
  if (!path) return path;
  std::string dir = cgroup_root + (*path == "/" ? "" : *path);
  struct stat sb {};
  if (::stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode))
    return make_error(ENOENT, "the cgroup of process " + std::to_string(pid) + " (" + dir +
                                  ") is not a directory under " + cgroup_root +
                                  " (is cgroup v2 mounted there?)");
  if (*path == "/")
    return bad("process " + std::to_string(pid) +
               " is in the root cgroup: the runtime gave the container no cgroup of its own");
  return dir;
}

Result<std::string> bundle_rootfs(const std::string& bundle) {
  if (bundle.empty()) return bad("the OCI state has no \"bundle\" (needed for the rootfs)");
  const std::string file = bundle + "/config.json";
  std::ifstream in(file);
  if (!in) return make_error(ENOENT, "cannot read the bundle's " + file + ": " + std::strerror(errno));
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad(file + " is not valid JSON");
  auto root = j.find("root");
  if (root == j.end() || !root->is_object() || !root->contains("path") ||
      !(*root)["path"].is_string())
    return bad(file + " has no root.path");
  std::string p = (*root)["path"].get<std::string>();
  if (p.empty()) return bad(file + " has an empty root.path");
  return p[0] == '/' ? p : bundle + "/" + p;
}

Result<CreatePlan> plan_create(
    const OciState& st, const std::string& cgroup_dir, const config::Settings& cfg,
    const std::function<Result<std::string>(const std::string&)>& read_file) {
  using namespace nsima::control;
  auto ann = [&](const char* k) -> std::optional<std::string> {
    auto it = st.annotations.find(k);
    if (it == st.annotations.end()) return std::nullopt;
    return it->second;
  };
  CreatePlan plan;
  json& req = plan.request;
  req = {{kFieldCmd, kCmdNsCreate}, {kFieldCgroup, cgroup_dir}};

  auto builtin = ann(kAnnBuiltin), policy = ann(kAnnPolicy);
  if (builtin && policy)
    return bad(std::string("annotations ") + kAnnBuiltin + " and " + kAnnPolicy +
               " exclude each other");
  std::string policy_file;
  if (policy) {
    if (policy->empty() || (*policy)[0] != '/')
      return bad(std::string("annotation ") + kAnnPolicy + " must be an absolute path, got " +
                 dq(*policy));
    policy_file = *policy;
  } else if (!builtin && !cfg.container_policy.empty()) {
    policy_file = cfg.container_policy;
  }
  if (!policy_file.empty()) {
    auto text = read_file(policy_file);
    if (!text)
      return bad("the policy file " + policy_file +
                 (policy ? std::string(" named by annotation ") + kAnnPolicy : std::string(" of [container] policy")) +
                 " cannot be read: " + text.error().message);
    req[kFieldPolicyText] = *text;
    req[kFieldPolicyName] = policy_file;
    plan.policy_desc = policy_file;
  } else {
    std::string name = builtin ? *builtin : cfg.container_builtin;
    if (name.empty()) return bad(std::string("annotation ") + kAnnBuiltin + " is empty");
    req[kFieldBuiltin] = name;
    plan.policy_desc = "builtin " + name;
  }

  bool vtpm = cfg.container_vtpm;
  if (auto v = ann(kAnnVtpm)) {
    if (*v == "true")
      vtpm = true;
    else if (*v == "false")
      vtpm = false;
    else
      return bad(std::string("annotation ") + kAnnVtpm + " must be \"true\" or \"false\", got " +
                 dq(*v));
  }
  req[kFieldVtpm] = vtpm;
  req[kFieldContainer] = st.id;  // shown by ns list, kept in the archive if its cgroup goes

  // Appraisal (nsimad's ns_create fields "appraise", "keys", "rootfs"): passed through; nsimad
  // checks them and answers with the reason when it does not take them.
  std::string appraise = cfg.container_appraise;
  if (auto v = ann(kAnnAppraise)) {
    if (*v != "enforce" && *v != "log" && *v != "off")
      return bad(std::string("annotation ") + kAnnAppraise +
                 " must be \"enforce\", \"log\" or \"off\", got " + dq(*v));
    appraise = *v;
  }
  if (!appraise.empty()) req["appraise"] = appraise;
  std::string keys = ann(kAnnKeys).value_or(cfg.container_keys);
  if (!keys.empty()) {
    if (keys[0] != '/')
      return bad(std::string("annotation ") + kAnnKeys + " must be an absolute path, got " +
                 dq(keys));
    req["keys"] = keys;
  }
  if (appraise == "enforce" || appraise == "log") {
    auto rootfs = bundle_rootfs(st.bundle);
    if (!rootfs) return tl::unexpected(rootfs.error());
    req["rootfs"] = *rootfs;
  }
  plan.digests = ann(kAnnDigests).value_or(cfg.container_digests);
  if (!plan.digests.empty() && plan.digests[0] != '/')
    return bad(std::string("annotation ") + kAnnDigests + " must be an absolute path, got " +
               dq(plan.digests));
  return plan;
}

}  // namespace nsima::hook

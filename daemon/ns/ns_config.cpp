// SPDX-License-Identifier: Apache-2.0
#include "ns/ns_config.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

#include "common/atomic_file.h"
#include "common/container_id.h"
#include "common/json_int.h"
#include "common/log.h"

namespace nsima::ns {

namespace fs = std::filesystem;

std::string ns_dir(const std::string& state_dir, const std::string& name) {
  return (fs::path(state_dir) / "ns" / name).string();
}

std::string current_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

Result<void> save_ns_config(const std::string& state_dir, const NsConfig& cfg) {
  fs::path dir = ns_dir(state_dir, cfg.name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(ec.value(), ec.message(), dir.string());
  nlohmann::json j{{"name", cfg.name},
                   {"id", cfg.id},
                   {"cgroup", cfg.cgroup},
                   {"vtpm", cfg.vtpm},
                   {"appraise", cfg.appraise},
                   {"container", cfg.container},
                   {"model_mode", cfg.model_mode},
                   {"model_agent", cfg.model_agent},
                   {"model_agent_fail", cfg.model_agent_fail},
                   {"model_agent_timeout_ms", cfg.model_agent_timeout_ms},
                   {"template", cfg.template_name},
                   {"hash", cfg.hash},
                   {"policy_origin", cfg.policy_origin},
                   {"policy_text", cfg.policy_text},
                   {"boot_id", cfg.boot_id},
                   {"drops_seen", cfg.drops_seen},
                   {"unresolved_seen", cfg.unresolved_seen},
                   {"unattributed_drops_seen", cfg.unattributed_drops_seen},
                   {"model_lost_events", cfg.model_lost_events},
                   {"model_lost_file_events", cfg.model_lost_file_events},
                   {"model_drops_seen", cfg.model_drops_seen}};
  return write_file_atomic((dir / "ns.json").string(), j.dump(2) + "\n");
}

std::vector<NsConfig> load_ns_configs(const std::string& state_dir) {
  std::vector<NsConfig> out;
  std::error_code ec;
  fs::path root = fs::path(state_dir) / "ns";
  if (!fs::is_directory(root, ec)) return out;
  for (auto& d : fs::directory_iterator(root, ec)) {
    fs::path f = d.path() / "ns.json";
    std::ifstream in(f);
    if (!in) continue;
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      logger("ns")->error("{}: not valid JSON; namespace not restored", f.string());
      continue;
    }
    NsConfig c;
    try {  // json::value() throws when a field is there with another type
      c.name = j.value("name", "");
      c.cgroup = j.value("cgroup", "");
      c.vtpm = j.value("vtpm", false);
      c.appraise = j.value("appraise", "enforce");
      c.container = j.value("container", "");
      c.model_mode = j.value("model_mode", "");
      c.model_agent = j.value("model_agent", "");
      c.model_agent_fail = j.value("model_agent_fail", "");
      c.template_name = j.value("template", "");
      c.hash = j.value("hash", "");
      c.policy_origin = j.value("policy_origin", "");
      c.policy_text = j.value("policy_text", "");
      c.boot_id = j.value("boot_id", "");
    } catch (const nlohmann::json::exception& e) {
      logger("ns")->error("{}: {}; namespace not restored", f.string(), e.what());
      continue;
    }
    // Integers strictly (json_int.h): a float or negative value is damage, not a number.
    const char* bad = nullptr;
    auto num = [&](const char* key, auto& out) {
      auto v = json_int_field<std::remove_reference_t<decltype(out)>>(j, key, 0);
      if (v) out = *v;
      else if (!bad) bad = key;
    };
    num("id", c.id);
    num("drops_seen", c.drops_seen);
    num("unresolved_seen", c.unresolved_seen);
    num("unattributed_drops_seen", c.unattributed_drops_seen);
    num("model_lost_events", c.model_lost_events);
    num("model_lost_file_events", c.model_lost_file_events);
    num("model_drops_seen", c.model_drops_seen);
    num("model_agent_timeout_ms", c.model_agent_timeout_ms);
    if (bad) {
      logger("ns")->error("{}: \"{}\" is not an unsigned integer in range; namespace not restored",
                          f.string(), bad);
      continue;
    }
    if (!c.container.empty() && !is_container_id(c.container)) {
      logger("ns")->error("{}: \"container\" is not an OCI container id; namespace not restored",
                          f.string());
      continue;
    }
    if (!c.model_mode.empty() && c.model_mode != "learn" && c.model_mode != "seal" &&
        c.model_mode != "enforce") {
      logger("ns")->error("{}: \"model_mode\" must be learn, seal or enforce, got \"{}\"; "
                          "namespace not restored",
                          f.string(), c.model_mode);
      continue;
    }
    if (!c.model_agent_fail.empty() && c.model_agent_fail != "closed" &&
        c.model_agent_fail != "open") {
      logger("ns")->error("{}: \"model_agent_fail\" must be closed or open, got \"{}\"; "
                          "namespace not restored",
                          f.string(), c.model_agent_fail);
      continue;
    }
    if (c.model_agent_timeout_ms > kMaxAgentTimeoutMs) {
      logger("ns")->error("{}: \"model_agent_timeout_ms\" {} is above {}; namespace not restored",
                          f.string(), c.model_agent_timeout_ms, kMaxAgentTimeoutMs);
      continue;
    }
    if (c.name.empty() || c.id == 0 || c.name != d.path().filename().string()) {
      logger("ns")->error("{}: name/id missing or not matching its directory; not restored",
                          f.string());
      continue;
    }
    out.push_back(std::move(c));
  }
  return out;
}

Result<void> remove_ns_config(const std::string& state_dir, const std::string& name) {
  std::error_code ec;
  fs::remove(fs::path(ns_dir(state_dir, name)) / "ns.json", ec);
  if (ec) return make_error(ec.value(), ec.message(), ns_dir(state_dir, name));
  return {};
}

Result<std::string> archive_ns_dir(const std::string& state_dir, const std::string& name,
                                   const std::string& suffix) {
  fs::path src = ns_dir(state_dir, name);
  fs::path dst_dir = fs::path(state_dir) / "archive";
  std::error_code ec;
  fs::create_directories(dst_dir, ec);
  if (ec) return make_error(ec.value(), ec.message(), dst_dir.string());
  fs::path dst = dst_dir / (name + "." + suffix);
  for (int i = 1; fs::exists(dst, ec); ++i) dst = dst_dir / (name + "." + suffix + "." + std::to_string(i));
  fs::rename(src, dst, ec);
  if (ec) return make_error(ec.value(), ec.message(), src.string());
  return dst.string();
}

}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
#include "control/metrics.h"

#include <sstream>
#include <utility>
#include <vector>

namespace nsima::control {
namespace {

using nlohmann::json;

// `metrics`: nsimad's status answer in the Prometheus text exposition format (version 0.0.4):
// every family has HELP and TYPE, counters end in _total, per-hook / per-namespace / per-queue
// values are labelled.
class Metrics {
 public:
  // A family: its samples follow until the next family.
  void family(const std::string& name, const char* type, const char* help) {
    out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }
  void sample(const std::string& name, const json& v,
              const std::vector<std::pair<std::string, std::string>>& labels = {}) {
    out_ << name;
    if (!labels.empty()) {
      out_ << "{";
      for (size_t i = 0; i < labels.size(); ++i)
        out_ << (i ? "," : "") << labels[i].first << "=\"" << escape(labels[i].second) << "\"";
      out_ << "}";
    }
    out_ << " " << (v.is_number() ? v.dump() : v.is_boolean() ? (v.get<bool>() ? "1" : "0") : "0")
         << "\n";
  }
  std::string text() const { return out_.str(); }

 private:
  static std::string escape(const std::string& s) {
    std::string o;
    for (char c : s) {
      if (c == '\\' || c == '"') o += '\\';
      if (c == '\n') {
        o += "\\n";
        continue;
      }
      o += c;
    }
    return o;
  }
  std::ostringstream out_;
};

}  // namespace

std::string metrics_text(const json& r) {
  Metrics m;
  auto obj = [&](const char* k) { return r.contains(k) && r[k].is_object() ? r[k] : json::object(); };
  // One family per counter of an object: nsima_<prefix>_<key>[_total].
  auto counters = [&](const char* key, const std::string& prefix, const char* help_of,
                      std::initializer_list<std::pair<const char*, bool>> fields) {
    json o = obj(key);
    for (auto& [f, counter] : fields) {
      if (!o.contains(f)) continue;
      std::string name = "nsima_" + prefix + "_" + f + (counter ? "_total" : "");
      m.family(name, counter ? "counter" : "gauge",
               (std::string(help_of) + ": " + f + " (nsimactl status --json, \"" + key + "\")")
                   .c_str());
      m.sample(name, o[f]);
    }
  };
  if (r.contains("bpf_per_hook")) {
    for (const char* f : {"emitted", "dropped", "denied", "quiet"}) {
      std::string name = std::string("nsima_bpf_") + f + "_total";
      m.family(name, "counter",
               (std::string("BPF hook events ") + f + ", per hook (ring buffer records)").c_str());
      for (auto& [hook, v] : r["bpf_per_hook"].items()) m.sample(name, v.value(f, json(0)), {{"hook", hook}});
    }
  }
  counters("bpf", "bpf", "BPF side", {{"cgroup_uncached", true}, {"unresolved", true},
                                       {"dropped_unattributed", true}});
  counters("consumer", "consumer", "ring-buffer consumer", {{"decoded", true}, {"errors", true}});
  counters("pipeline", "pipeline", "pipeline",
           {{"processed", true}, {"unknown_namespace", true}, {"map_errors", true},
            {"measured", true}, {"violations", true}, {"hash_jobs", true}, {"unreadable", true},
            {"extends", true}, {"extends_failed", true}, {"overrides", false}});
  counters("access", "access", "file reads",
           {{"submitted", true}, {"cache_hits", true}, {"coalesced", true}, {"files_read", true},
            {"bytes_read", true}, {"timeouts", true}, {"rejected", true}, {"workers", false},
            {"stuck_workers", false}});
  counters("appraise", "appraise", "appraisal",
           {{"appraised", true}, {"failed", true}, {"denied", true}, {"pre_appraised", true},
            {"audit_lines", true}, {"audit_errors", true}});
  json queues = obj("access").value("queues", json::object());
  if (!queues.empty()) {
    m.family("nsima_access_queue_depth", "gauge", "file reads queued, per namespace queue");
    for (auto& [q, v] : queues.items()) m.sample("nsima_access_queue_depth", v.value("queued", json(0)), {{"queue", q}});
    m.family("nsima_access_queue_running", "gauge", "file reads running, per namespace queue");
    for (auto& [q, v] : queues.items()) m.sample("nsima_access_queue_running", v.value("running", json(0)), {{"queue", q}});
  }
  if (r.contains("ns_drops") && r["ns_drops"].is_object()) {
    m.family("nsima_ns_dropped_total", "counter", "events lost (ring buffer full), per namespace");
    for (auto& [ns, v] : r["ns_drops"].items()) m.sample("nsima_ns_dropped_total", v, {{"ns", ns}});
  }
  json nss = r.value("namespaces", json::array());
  m.family("nsima_namespaces", "gauge", "namespaces nsimad measures (host included)");
  m.sample("nsima_namespaces", json(nss.size()));
  struct PerNs {
    const char* name;
    const char* field;
    const char* type;
    const char* help;
  };
  for (const PerNs& f : {PerNs{"nsima_ns_entries", "entries", "gauge", "entries in the namespace's measurement list"},
                         PerNs{"nsima_ns_violations", "violations", "gauge", "violation entries in the namespace's list"},
                         PerNs{"nsima_ns_keys", "keys", "gauge", "appraisal keys of the namespace"}}) {
    m.family(f.name, f.type, f.help);
    for (auto& n : nss) m.sample(f.name, n.value(f.field, json(0)), {{"ns", n.value("id", "")}});
  }
  m.family("nsima_ns_disabled", "gauge", "1 when the namespace stopped measuring (its list is incomplete)");
  for (auto& n : nss) m.sample("nsima_ns_disabled", json(n.contains("disabled")), {{"ns", n.value("id", "")}});
  return m.text();
}

}  // namespace nsima::control

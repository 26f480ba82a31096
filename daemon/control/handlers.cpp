// SPDX-License-Identifier: Apache-2.0
#include "control/handlers.h"

#include <string>

#include "common/hex.h"
#include "nsima/control_protocol.h"
#include "policy/policy.h"
#include "tpm/tpm.h"

namespace nsima::control {

namespace {

using nlohmann::json;

json fail(const std::string& msg) { return {{kFieldOk, false}, {kFieldError, msg}}; }
json fail(const Error& e) { return fail(e.to_string()); }

// Fetches a required string field, or answers the error and returns nullopt.
std::optional<std::string> need_string(const json& req, const char* field, Connection& conn) {
  auto it = req.find(field);
  if (it == req.end() || !it->is_string() || it->get<std::string>().empty()) {
    conn.send(fail(std::string("missing or empty string field \"") + field + "\""));
    return std::nullopt;
  }
  return it->get<std::string>();
}

json ns_json(const ns::Pipeline::NsInfo& n) {
  json j{{"id", n.name},          {"ns_id", n.id},
         {"cgroup", n.cgroup_path}, {"cgroup_id", n.cgroup_id},
         {"parent", n.parent},      {"vtpm", n.vtpm},
         {"owner", n.owner},        {"pcr", n.pcr},
         {"tpm", n.tpm},            {"policy", n.policy_origin},
         {"policy_rules", n.policy_rules}, {"entries", n.entries},
         {"violations", n.violations},     {"list", n.list_path}};
  if (n.disabled) j["disabled"] = n.disabled_reason;
  return j;
}

// A policy from the request: "policy_text" (+ "policy_name" for messages) or "builtin".
struct PolicySource {
  std::string text, origin;
};
std::optional<PolicySource> policy_source(const json& req, Connection& conn, bool required) {
  if (req.contains("builtin") && req["builtin"].is_string()) {
    std::string name = req["builtin"].get<std::string>();
    auto text = policy::builtin_text(name);
    if (text.empty()) {
      std::string names;
      for (auto& n : policy::builtin_names()) names += (names.empty() ? "" : ", ") + n;
      conn.send(fail("no builtin policy \"" + name + "\" (builtins: " + names + ")"));
      return std::nullopt;
    }
    return PolicySource{std::string(text), "builtin:" + name};
  }
  if (req.contains("policy_text") && req["policy_text"].is_string())
    return PolicySource{req["policy_text"].get<std::string>(),
                        req.value("policy_name", std::string("policy"))};
  if (required) {
    conn.send(fail("missing \"policy_text\" or \"builtin\""));
    return std::nullopt;
  }
  return PolicySource{};
}

void do_status(DaemonContext& ctx, Connection& conn) {
  json out{{kFieldOk, true}};
  if (ctx.maps) {
    auto s = ctx.maps->stats();
    if (!s) return (void)conn.send(fail(s.error()));
    out["bpf"] = {{"emitted", s->total_emitted()},
                  {"dropped", s->total_dropped()},
                  {"denied", s->total_denied()},
                  {"quiet", s->total_quiet()}};
    json per_hook = json::object();
    const char* names[] = {"", "file_open", "mmap_file", "bprm_check"};
    for (int h = 1; h < NSIMA_HOOK_MAX; ++h)
      per_hook[names[h]] = {{"emitted", s->emitted[h]},
                            {"dropped", s->dropped[h]},
                            {"denied", s->denied[h]},
                            {"quiet", s->quiet[h]}};
    out["bpf_per_hook"] = per_hook;
    auto drops = ctx.maps->ns_drops();
    if (drops) {
      json d = json::object();
      for (auto& [ns, n] : *drops) d[std::to_string(ns)] = n;
      out["ns_drops"] = d;
    }
  }
  if (ctx.events)
    out["consumer"] = {{"decoded", ctx.events->decoded()}, {"errors", ctx.events->errors()}};
  auto c = ctx.pipeline->counters();
  out["pipeline"] = {{"processed", c.processed},
                     {"unknown_namespace", c.unknown_namespace},
                     {"map_errors", c.map_errors},
                     {"measured", c.measured},
                     {"violations", c.violations},
                     {"hash_jobs", c.hash_jobs},
                     {"extends", ctx.pipeline->extends_done()},
                     {"extends_failed", ctx.pipeline->extends_failed()}};
  json list = json::array();
  for (auto& n : ctx.pipeline->list_namespaces()) list.push_back(ns_json(n));
  out["namespaces"] = list;
  conn.send(out);
}

void do_watch(DaemonContext& ctx, const json& req, Connection& conn) {
  auto cg = need_string(req, kFieldCgroup, conn);
  if (!cg) return;
  auto id = ctx.pipeline->ensure_namespace(*cg);
  if (!id) return (void)conn.send(fail(id.error()));
  auto w = ctx.pipeline->watch(*id);
  if (!conn.send({{kFieldOk, true}, {kFieldNs, *id}})) return ctx.pipeline->unwatch(w);
  while (!ctx.stopping() && !conn.peer_closed()) {
    auto line = w->next(std::chrono::milliseconds(200));
    if (!line) continue;
    if (!conn.send_line(*line)) break;
  }
  ctx.pipeline->unwatch(w);
}

void do_verdict(DaemonContext& ctx, const json& req, Connection& conn) {
  auto cg = need_string(req, kFieldCgroup, conn);
  if (!cg) return;
  auto path = need_string(req, kFieldPath, conn);
  if (!path) return;
  auto v = need_string(req, kFieldVerdict, conn);
  if (!v) return;
  if (*v != "allow" && *v != "deny")
    return (void)conn.send(fail("field \"verdict\" must be \"allow\" or \"deny\", not \"" + *v +
                                "\""));
  std::string root;
  if (auto it = req.find(kFieldRoot); it != req.end()) {
    if (!it->is_string()) return (void)conn.send(fail("field \"root\" must be a string"));
    root = it->get<std::string>();
  }
  auto r = ctx.pipeline->set_file_verdict(*cg, *path, *v == "allow", root);
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}});
}

void do_ns_create(DaemonContext& ctx, const json& req, Connection& conn) {
  auto cg = need_string(req, kFieldCgroup, conn);
  if (!cg) return;
  auto src = policy_source(req, conn, false);
  if (!src) return;
  ns::Pipeline::CreateOptions o;
  o.vtpm = req.value("vtpm", false);
  o.policy_text = src->text;
  o.policy_origin = src->origin;
  auto id = ctx.pipeline->create_namespace(*cg, o);
  if (!id) return (void)conn.send(fail(id.error()));
  auto info = ctx.pipeline->namespace_info(std::to_string(*id));
  conn.send({{kFieldOk, true}, {"namespace", info ? ns_json(*info) : json()}});
}

void do_ns_list(DaemonContext& ctx, Connection& conn) {
  json list = json::array();
  for (auto& n : ctx.pipeline->list_namespaces()) list.push_back(ns_json(n));
  conn.send({{kFieldOk, true}, {"namespaces", list}});
}

void do_ns_delete(DaemonContext& ctx, const json& req, Connection& conn) {
  auto id = need_string(req, kFieldNs, conn);
  if (!id) return;
  auto r = ctx.pipeline->delete_namespace(*id);
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}});
}

void do_policy_load(DaemonContext& ctx, const json& req, Connection& conn) {
  auto id = need_string(req, kFieldNs, conn);
  if (!id) return;
  auto src = policy_source(req, conn, true);
  if (!src) return;
  auto n = ctx.pipeline->load_policy(*id, src->text, src->origin);
  if (!n) return (void)conn.send(fail(n.error()));
  conn.send({{kFieldOk, true}, {"rules", *n}});
}

void do_policy_show(DaemonContext& ctx, const json& req, Connection& conn) {
  auto id = need_string(req, kFieldNs, conn);
  if (!id) return;
  auto t = ctx.pipeline->policy_text(*id);
  if (!t) return (void)conn.send(fail(t.error()));
  conn.send({{kFieldOk, true}, {"policy", *t}});
}

void do_log(DaemonContext& ctx, const json& req, Connection& conn) {
  auto id = need_string(req, kFieldNs, conn);
  if (!id) return;
  // Every access that completed before this request is in the list by now.
  if (auto b = ctx.pipeline->barrier(*id); !b) return (void)conn.send(fail(b.error()));
  auto v = ctx.pipeline->list_view(*id);
  if (!v) return (void)conn.send(fail(v.error()));
  conn.send({{kFieldOk, true}, {"path", v->path}, {"bytes", v->bytes}, {"entries", v->entries}});
}

void do_pcr(DaemonContext& ctx, const json& req, Connection& conn) {
  auto id = need_string(req, kFieldNs, conn);
  if (!id) return;
  auto r = ctx.pipeline->pcr_report(*id);
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}, {"tpm", r->tpm}, {"pcr", r->pcr}, {"values", r->values},
             {"expected", r->expected}});
}

void do_quote(DaemonContext& ctx, const json& req, Connection& conn) {
  auto id = need_string(req, kFieldNs, conn);
  if (!id) return;
  auto nonce_hex = need_string(req, "nonce", conn);
  if (!nonce_hex) return;
  auto dir = need_string(req, "dir", conn);
  if (!dir) return;
  auto nonce = from_hex(*nonce_hex);
  if (!nonce || nonce->empty() || nonce->size() > 64)
    return (void)conn.send(fail("field \"nonce\" must be 1 to 64 bytes of hex"));
  auto q = ctx.pipeline->quote(*id, *nonce);
  if (!q) return (void)conn.send(fail(q.error()));
  if (auto w = tpm::write_quote_files(*q, *dir); !w) return (void)conn.send(fail(w.error()));
  conn.send({{kFieldOk, true}, {"dir", *dir}});
}

}  // namespace

void handle_request(DaemonContext& ctx, const json& req, Connection& conn) {
  const std::string cmd = req[kFieldCmd].get<std::string>();
  if (cmd == kCmdStatus) return do_status(ctx, conn);
  if (cmd == kCmdWatch) return do_watch(ctx, req, conn);
  if (cmd == kCmdVerdict) return do_verdict(ctx, req, conn);
  if (cmd == kCmdNsCreate) return do_ns_create(ctx, req, conn);
  if (cmd == kCmdNsList) return do_ns_list(ctx, conn);
  if (cmd == kCmdNsDelete) return do_ns_delete(ctx, req, conn);
  if (cmd == kCmdPolicyLoad) return do_policy_load(ctx, req, conn);
  if (cmd == kCmdPolicyShow) return do_policy_show(ctx, req, conn);
  if (cmd == kCmdLog) return do_log(ctx, req, conn);
  if (cmd == kCmdPcr) return do_pcr(ctx, req, conn);
  if (cmd == kCmdQuote) return do_quote(ctx, req, conn);
  conn.send(fail("unknown command \"" + cmd + "\""));
}

}  // namespace nsima::control

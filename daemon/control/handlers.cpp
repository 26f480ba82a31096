// SPDX-License-Identifier: Apache-2.0
#include "control/handlers.h"

#include <string>

#include "nsima/control_protocol.h"

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
  return {{"id", n.name}, {"ns_id", n.id}, {"cgroup", n.cgroup_path}, {"cgroup_id", n.cgroup_id},
          {"parent", n.parent}};
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
                     {"map_errors", c.map_errors}};
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
  auto r = ctx.pipeline->set_file_verdict(*cg, *path, *v == "allow");
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}});
}

void do_ns_create(DaemonContext& ctx, const json& req, Connection& conn) {
  auto cg = need_string(req, kFieldCgroup, conn);
  if (!cg) return;
  auto id = ctx.pipeline->create_namespace(*cg);
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

}  // namespace

void handle_request(DaemonContext& ctx, const json& req, Connection& conn) {
  const std::string cmd = req[kFieldCmd].get<std::string>();
  if (cmd == kCmdStatus) return do_status(ctx, conn);
  if (cmd == kCmdWatch) return do_watch(ctx, req, conn);
  if (cmd == kCmdVerdict) return do_verdict(ctx, req, conn);
  if (cmd == kCmdNsCreate) return do_ns_create(ctx, req, conn);
  if (cmd == kCmdNsList) return do_ns_list(ctx, conn);
  if (cmd == kCmdNsDelete) return do_ns_delete(ctx, req, conn);
  conn.send(fail("unknown command \"" + cmd + "\""));
}

}  // namespace nsima::control

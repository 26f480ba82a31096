// SPDX-License-Identifier: Apache-2.0
#include "control/handlers.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "common/hex.h"
#include "control/base64.h"
#include "control/schema.h"
#include "nsima/control_protocol.h"
#include "policy/policy.h"
#include "tpm/tpm.h"

namespace nsima::control {

namespace {

using nlohmann::json;

json fail(const std::string& msg) { return {{kFieldOk, false}, {kFieldError, msg}}; }
json fail(const Error& e) { return fail(e.to_string()); }

// Field accessors for requests that validate_request() accepted: types are already checked.
const std::string& str(const json& req, const char* field) {
  return req.at(field).get_ref<const std::string&>();
}
std::string opt_str(const json& req, const char* field, const std::string& dflt = {}) {
  auto it = req.find(field);
  return it == req.end() ? dflt : it->get<std::string>();
}
bool opt_bool(const json& req, const char* field, bool dflt) {
  auto it = req.find(field);
  return it == req.end() ? dflt : it->get<bool>();
}
uint64_t opt_u64(const json& req, const char* field, uint64_t dflt) {
  auto it = req.find(field);
  return it == req.end() ? dflt : it->get<uint64_t>();
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
  if (!n.suspended.empty()) j["suspended"] = {{"reason", n.suspended}, {"lost", n.lost}};
  j["appraise"] = n.appraise;
  j["template"] = n.template_name;
  j["hash"] = n.hash;
  j["keys"] = n.keys;
  j["digests"] = {{"listed", n.digests_listed}, {"revoked", n.digests_revoked}};
  j["audit_log"] = n.audit_path;
  j["container"] = n.container;
  j["model"] = n.model;
  return j;
}

json model_json(const ns::Pipeline::ModelInfo& m) {
  json j{{"mode", m.mode},
         {"state", m.state},
         {"measurement", m.measurement},
         {"base", m.base},
         {"aggregate", m.aggregate},
         {"known", m.known},
         {"forensic", m.forensic},
         {"tracked", m.tracked},
         {"untrusted", m.untrusted},
         {"mark_errors", m.mark_errors},
         {"quiet_written", m.quiet_written},
         {"quiet_entries", m.quiet_entries},
         {"forensics_dropped", m.forensics_dropped},
         {"lost_events", m.lost_events},
         {"lost_file_events", m.lost_file_events},
         {"extends", m.extends},
         {"kernel", m.kernel}};
  if (!m.agent.empty()) {
    j["agent"] = m.agent;
    j["agent_fail"] = m.agent_fail;
    j["agent_timeout_ms"] = m.agent_timeout_ms;
    j["agent_connected"] = m.agent_connected;
    j["agent_verdicts"] = m.agent_verdicts;
    j["agent_failures"] = m.agent_failures;
    j["agent_error"] = m.agent_error;
  }
  if (m.pcr >= 0) {
    j["pcr"] = m.pcr;
    j["pcr_sha256"] = m.pcr_sha256;
  }
  return j;
}

json key_json(const appraise::KeyInfo& k) {
  return {{"keyid", k.keyid_hex},          {"subject", k.subject},
          {"issuer", k.issuer},            {"algorithm", k.algorithm},
          {"not_before", k.not_before},    {"not_after", k.not_after},
          {"fingerprint", k.fingerprint},  {"keyid_from_skid", k.keyid_from_skid}};
}

// "certs": base64 certificates. Answers the error itself and returns nullopt on bad input.
std::optional<std::vector<std::vector<uint8_t>>> certs_of(const json& req, Connection& conn) {
  std::vector<std::vector<uint8_t>> out;
  auto it = req.find(kFieldCerts);
  if (it == req.end()) return out;
  for (size_t i = 0; i < it->size(); ++i) {
    auto d = base64_decode((*it)[i].get<std::string>());
    if (!d) {
      conn.send(fail("field \"certs\" item " + std::to_string(i + 1) + " is not base64"));
      return std::nullopt;
    }
    out.emplace_back(d->begin(), d->end());
  }
  return out;
}

// "keys": a directory of certificates as nsimad sees it (the OCI hook's annotation).
Result<std::vector<std::vector<uint8_t>>> certs_in_dir(const std::string& dir) {
  std::vector<std::vector<uint8_t>> out;
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) files.push_back(e.path());
  if (ec) return make_error(ec.value(), "cannot read key directory: " + ec.message(), dir);
  std::sort(files.begin(), files.end());
  for (auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
    if (!in.good() && !in.eof()) return make_error(EIO, "cannot read", f.string());
    out.push_back(std::move(bytes));
  }
  if (out.empty()) return make_error(ENOENT, "key directory holds no certificate", dir);
  return out;
}

// A policy from the request: "policy_text" (+ "policy_name" for messages) or "builtin".
struct PolicySource {
  std::string text, origin;
};
// The schema guarantees at most one of them (exactly one for policy_load).
std::optional<PolicySource> policy_source(const json& req, Connection& conn) {
  if (req.contains(kFieldBuiltin)) {
    const std::string& name = str(req, kFieldBuiltin);
    auto text = policy::builtin_text(name);
    if (text.empty()) {
      std::string names;
      for (auto& n : policy::builtin_names()) names += (names.empty() ? "" : ", ") + n;
      conn.send(fail("no builtin policy \"" + name + "\" (builtins: " + names + ")"));
      return std::nullopt;
    }
    return PolicySource{std::string(text), "builtin:" + name};
  }
  if (req.contains(kFieldPolicyText) && !str(req, kFieldPolicyText).empty())
    return PolicySource{str(req, kFieldPolicyText), opt_str(req, kFieldPolicyName, "policy")};
  // "policy_text": "" (ns_create only: the schema refuses it elsewhere): no policy
  return PolicySource{};
}

}  // namespace

Result<json> status_answer(DaemonContext& ctx) {
  json out{{kFieldOk, true}};
  if (ctx.maps) {
    auto s = ctx.maps->stats();
    if (!s) return tl::unexpected(s.error());
    out["bpf"] = {{"emitted", s->total_emitted()},
                  {"dropped", s->total_dropped()},
                  {"denied", s->total_denied()},
                  {"quiet", s->total_quiet()},
                  {"cgroup_uncached", s->cg_uncached},
                  {"unresolved", s->unresolved},
                  {"dropped_unattributed", s->drop_no_ns},
                  {"trusted", s->trusted},
                  {"trust_unhashed", s->trust_nohash},
                  {"model_exec_denied", s->model_exec_denied},
                  {"lost_file_untrusted", s->lost_untrusted},
                  {"lost_file_mark_failed", s->lost_mark_failed},
                  {"model_quiet", s->model_quiet},
                  {"model_pending", s->model_pending},
                  {"setxattr", s->setxattr},
                  {"setxattr_dropped", s->setxattr_dropped},
                  {"trust_unstable", s->trust_unstable},
                  {"trusted_open", s->trusted_open},
                  {"trusted_mmap", s->trusted_mmap},
                  {"kernel_digest", s->kernel_digest}};
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
  if (auto m = ctx.pipeline->model_kernel_stats(); !m.empty()) out["model_hooks"] = m;
  out["appraise"] = {{"appraised", c.appraised},
                     {"failed", c.appraise_failed},
                     {"denied", c.appraise_denied},
                     {"pre_appraised", c.pre_appraised},
                     {"setxattr_events", c.setxattr_events},
                     {"setxattr_passed", c.setxattr_passed},
                     {"setxattr_failed", c.setxattr_failed},
                     {"setxattr_undecided", c.setxattr_undecided},
                     {"setxattr_window_last_us", c.setxattr_window_last_us},
                     {"setxattr_window_max_us", c.setxattr_window_max_us},
                     {"audit_lines", c.audit_lines},
                     {"audit_errors", c.audit_errors}};
  {
    // Self-protection (bpf/protect.bpf.c): refusals per kind and what became of their reports
    json p = {{"events", c.protect_events}};
    if (ctx.maps)
      if (auto s = ctx.maps->stats()) {
        p["signal"] = s->protect_refused[NSIMA_PROTECT_KIND_SIGNAL];
        p["ptrace"] = s->protect_refused[NSIMA_PROTECT_KIND_PTRACE];
        p["bpf"] = s->protect_refused[NSIMA_PROTECT_KIND_BPF];
        p["file"] = s->protect_refused[NSIMA_PROTECT_KIND_FILE];
        p["cgroup"] = s->protect_refused[NSIMA_PROTECT_KIND_CGROUP];
        p["reported"] = s->protect_reported;
        p["suppressed"] = s->protect_suppressed;
        p["dropped"] = s->protect_dropped;
      }
    if (ctx.protector) {
      p["on"] = true;
      p["lockdown"] = ctx.protector->lockdown();
      p["directories"] = ctx.protector->directories();
      p["bpf_objects"] = ctx.protector->objects();
      p["processes"] = ctx.protector->processes() + 1;  // nsimad and its swtpm
    } else {
      p["on"] = false;
    }
    out["protect"] = p;
  }
  if (ctx.parser) {
    const auto ps = ctx.parser->stats();
    // Names of their own: tests and scripts grep status for other objects' "timeouts".
    out["confine"] = {{"parses", ps.parses},
                      {"parser_crashes", ps.crashed},
                      {"parse_timeouts", ps.timeouts},
                      {"bad_replies", ps.bad_replies},
                      {"workers_spawned", ps.spawned},
                      {"workers", ctx.parser->worker_pids().size()}};
  }
  out["kernel_trust"] = {{"entries", c.trust_entries},
                         {"not_in_map", c.trust_not_in_map},
                         {"full_events", c.trust_full_events}};
  out["pipeline"] = {{"processed", c.processed},
                     {"unknown_namespace", c.unknown_namespace},
                     {"map_errors", c.map_errors},
                     {"measured", c.measured},
                     {"violations", c.violations},
                     {"hash_jobs", c.hash_jobs},
                     {"unreadable", c.unreadable},
                     {"extends", ctx.pipeline->extends_done()},
                     {"extends_failed", ctx.pipeline->extends_failed()},
                     {"overrides", ctx.pipeline->overrides().size()}};
  auto a = ctx.pipeline->access_stats();
  json queues = json::object();
  for (auto& q : a.queues)
    queues[std::to_string(q.queue)] = {{"queued", q.queued}, {"running", q.running},
                                       {"done", q.done}, {"timeouts", q.timeouts},
                                       {"rejected", q.rejected}};
  out["access"] = {{"submitted", a.submitted}, {"cache_hits", a.cache_hits},
                   {"coalesced", a.coalesced}, {"files_read", a.files_read},
                   {"bytes_read", a.bytes_read}, {"timeouts", a.timeouts},
                   {"rejected", a.rejected}, {"workers", a.workers},
                   {"stuck_workers", a.stuck_workers}, {"queues", queues}};
  // Digests the hooks computed (NSIMA_EV_KERNEL_DIGEST): offered, used instead of a hash of
  // that version by nsimad, and found different from nsimad's own digest of the same version.
  auto dc = ctx.pipeline->digest_cache_stats();
  out["kernel_digests"] = {{"received", dc.kernel_puts}, {"used", dc.kernel_hits},
                           {"mismatches", dc.kernel_mismatches}};
  json list = json::array();
  std::string unanchored;  // namespaces whose extends reach no TPM (nsimad runs without one)
  for (auto& n : ctx.pipeline->list_namespaces()) {
    if (n.tpm.empty()) unanchored += (unanchored.empty() ? "" : ", ") + n.name;
    list.push_back(ns_json(n));
  }
  out["namespaces"] = list;
  json warnings = json::array();
  if (!unanchored.empty())
    warnings.push_back("no TPM: lists not anchored to any PCR (namespaces " + unanchored +
                       "); start nsimad with a host TPM (--host-tcti) or give them a vTPM");
  out["warnings"] = warnings;
  return out;
}

namespace {

void do_status(DaemonContext& ctx, Connection& conn) {
  auto out = status_answer(ctx);
  conn.send(out ? *out : fail(out.error()));
}

void do_watch(DaemonContext& ctx, const json& req, Connection& conn) {
  // Watching reads only: a cgroup without a namespace is an error, not a new namespace.
  auto id = ctx.pipeline->ensure_namespace(str(req, kFieldCgroup), /*create=*/false);
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
  auto r = ctx.pipeline->set_file_verdict(str(req, kFieldCgroup), str(req, kFieldPath),
                                          str(req, kFieldVerdict) == "allow",
                                          opt_str(req, kFieldRoot, ""));
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}});
}

// ns_create without builtin or policy_text: the configured default container policy.
std::optional<PolicySource> default_policy(const DaemonContext& ctx, Connection& conn) {
  if (!ctx.default_policy_file.empty()) {
    auto text = policy::read_policy_text(ctx.default_policy_file);
    if (!text) {
      conn.send(fail("the default container policy ([container] policy) cannot be used: " +
                     text.error().to_string()));
      return std::nullopt;
    }
    return PolicySource{std::move(*text), ctx.default_policy_file};
  }
  if (ctx.default_builtin.empty()) return PolicySource{};
  auto text = policy::builtin_text(ctx.default_builtin);
  if (text.empty()) {
    conn.send(fail("the default container policy ([container] builtin) names no builtin policy: "
                   "\"" + ctx.default_builtin + "\""));
    return std::nullopt;
  }
  return PolicySource{std::string(text), "builtin:" + ctx.default_builtin};
}

void do_ns_create(DaemonContext& ctx, const json& req, Connection& conn) {
  const bool by_default = !req.contains(kFieldBuiltin) && !req.contains(kFieldPolicyText);
  auto src = by_default ? default_policy(ctx, conn) : policy_source(req, conn);
  if (!src) return;
  ns::Pipeline::CreateOptions o;
  o.vtpm = opt_bool(req, kFieldVtpm, false);
  o.policy_text = src->text;
  o.policy_origin = src->origin;
  o.appraise = opt_str(req, kFieldAppraise, "enforce");
  auto certs = certs_of(req, conn);
  if (!certs) return;
  o.certs = std::move(*certs);
  if (req.contains(kFieldKeys)) {
    auto more = certs_in_dir(str(req, kFieldKeys));
    if (!more) return (void)conn.send(fail(more.error()));
    for (auto& c : *more) o.certs.push_back(std::move(c));
  }
  o.rootfs = opt_str(req, kFieldRootfs, "");
  o.container = opt_str(req, kFieldContainer, "");
  o.model_mode = opt_str(req, kFieldModelMode, "");
  o.model_text = opt_str(req, kFieldModelText, "");
  o.model_origin = opt_str(req, kFieldModelName, "model");
  o.model_agent = opt_str(req, kFieldModelAgent, "");
  o.model_agent_fail = opt_str(req, kFieldModelAgentFail, "closed");
  o.model_agent_timeout_ms = static_cast<uint32_t>(
      std::min<uint64_t>(opt_u64(req, kFieldModelAgentTimeout, 0), UINT32_MAX));
  o.template_name = opt_str(req, kFieldTemplate, "");
  o.hash = opt_str(req, kFieldHash, "");
  auto id = ctx.pipeline->create_namespace(str(req, kFieldCgroup), o);
  if (!id) return (void)conn.send(fail(id.error()));
  auto info = ctx.pipeline->namespace_info(std::to_string(*id));
  json out{{kFieldOk, true}, {"namespace", info ? ns_json(*info) : json()}};
  if (by_default && !src->origin.empty()) out["default_policy"] = src->origin;
  conn.send(out);
}

void do_ns_list(DaemonContext& ctx, Connection& conn) {
  json list = json::array();
  for (auto& n : ctx.pipeline->list_namespaces()) list.push_back(ns_json(n));
  conn.send({{kFieldOk, true}, {"namespaces", list}});
}

void do_ns_delete(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->delete_namespace(str(req, kFieldNs));
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}});
}

void do_policy_load(DaemonContext& ctx, const json& req, Connection& conn) {
  auto src = policy_source(req, conn);
  if (!src) return;
  auto n = ctx.pipeline->load_policy(str(req, kFieldNs), src->text, src->origin);
  if (!n) return (void)conn.send(fail(n.error()));
  conn.send({{kFieldOk, true}, {"rules", *n}});
}

void do_policy_show(DaemonContext& ctx, const json& req, Connection& conn) {
  auto t = ctx.pipeline->policy_text(str(req, kFieldNs));
  if (!t) return (void)conn.send(fail(t.error()));
  conn.send({{kFieldOk, true}, {"policy", *t}});
}

// Streams the list (protocol header: "The log stream").
void do_log(DaemonContext& ctx, const json& req, Connection& conn) {
  const std::string& id = str(req, kFieldNs);
  const std::string format = opt_str(req, kFieldFormat, kFormatAscii);
  const bool ascii = format == kFormatAscii;
  const bool follow = opt_bool(req, kFieldFollow, false);
  uint64_t next = opt_u64(req, kFieldFrom, 0);
  // Every access that completed before this request is in the list by now.
  if (auto b = ctx.pipeline->barrier(id); !b) return (void)conn.send(fail(b.error()));
  auto v = ctx.pipeline->list_view(id);
  if (!v) return (void)conn.send(fail(v.error()));
  const uint64_t at_request = v->entries;
  if (!conn.send({{kFieldOk, true}, {kFieldNs, id}, {kFieldFormat, format}, {kFieldFrom, next},
                  {kFieldEntries, at_request}}))
    return;
  uint64_t entries = at_request;
  for (;;) {
    // Send what the list holds now, kLogChunkEntries at a time.
    while (next < entries) {
      uint64_t to = std::min<uint64_t>(entries, next + kLogChunkEntries);
      auto chunk = ctx.pipeline->render_list(id, ascii, next, to);
      if (!chunk) return (void)conn.send(fail(chunk.error()));
      if (!conn.send({{kFieldData, base64_encode(*chunk)}, {kFieldFrom, next}, {kFieldNext, to}}))
        return;
      next = to;
    }
    if (!follow) break;
    // Follow: poll for new entries until the client leaves or nsimad stops.
    for (;;) {
      if (ctx.stopping && ctx.stopping()) return (void)conn.send({{kFieldEnd, true}, {kFieldNext, next}});
      if (conn.peer_closed()) return;
      auto now = ctx.pipeline->list_view(id);
      if (!now) return (void)conn.send(fail(now.error()));
      if (now->entries > next) {
        entries = now->entries;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  conn.send({{kFieldEnd, true}, {kFieldNext, next}});
}

void do_pcr(DaemonContext& ctx, const json& req, Connection& conn) {
  const bool all = opt_bool(req, kFieldAll, false);
  auto r = ctx.pipeline->pcr_report(str(req, kFieldNs), all);
  if (!r) return (void)conn.send(fail(r.error()));
  json out = r->json();
  out[kFieldOk] = true;
  if (all) out[kFieldAll] = r->all;
  conn.send(out);
}

// The quote travels in the answer; nsimactl writes the files (in its own mount namespace).
void do_quote(DaemonContext& ctx, const json& req, Connection& conn) {
  auto nonce = from_hex(str(req, kFieldNonce));
  if (!nonce || nonce->empty() || nonce->size() > 64)
    return (void)conn.send(fail("field \"nonce\" must be 1 to 64 bytes of hex"));
  auto q = ctx.pipeline->quote(str(req, kFieldNs), *nonce);
  if (!q) return (void)conn.send(fail(q.error()));
  auto b64 = [](const std::vector<uint8_t>& v) {
    return base64_encode(std::string_view(reinterpret_cast<const char*>(v.data()), v.size()));
  };
  conn.send({{kFieldOk, true},
             {kFieldQuoteMsg, b64(q->message)},
             {kFieldQuoteSig, b64(q->signature)},
             {kFieldQuotePcrs, b64(q->pcrs)},
             {kFieldAkPubPem, q->ak_public_pem},
             {kFieldNonce, to_hex(q->nonce)}});
}

std::string b64_of(const std::vector<uint8_t>& v) {
  return base64_encode(std::string_view(reinterpret_cast<const char*>(v.data()), v.size()));
}

void do_vtpm_ca(DaemonContext& ctx, Connection& conn) {
  auto ca = ctx.pipeline->vtpm_ca_certificate();
  if (!ca) return (void)conn.send(fail(ca.error()));
  conn.send({{kFieldOk, true}, {kFieldCaPem, *ca}});
}

void do_vtpm_identity(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->vtpm_identity(str(req, kFieldNs));
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true},
             {kFieldNs, r->owner},
             {kFieldEkPublic, b64_of(r->id.ek_public)},
             {kFieldEkCert, b64_of(r->id.ek_cert)},
             {kFieldChainPem, r->chain_pem},
             {kFieldAkPublic, b64_of(r->id.ak_public)},
             {kFieldAkName, to_hex(r->id.ak_name)}});
}

void do_vtpm_activate(DaemonContext& ctx, const json& req, Connection& conn) {
  auto id = base64_decode(str(req, kFieldIdObject));
  auto enc = base64_decode(str(req, kFieldEncSecret));
  if (!id) return (void)conn.send(fail("field \"id_object\" is not base64"));
  if (!enc) return (void)conn.send(fail("field \"enc_secret\" is not base64"));
  auto s = ctx.pipeline->activate_credential(str(req, kFieldNs),
                                             std::vector<uint8_t>(id->begin(), id->end()),
                                             std::vector<uint8_t>(enc->begin(), enc->end()));
  if (!s) return (void)conn.send(fail(s.error()));
  conn.send({{kFieldOk, true}, {kFieldSecret, to_hex(*s)}});
}

void do_keys_add(DaemonContext& ctx, const json& req, Connection& conn) {
  auto certs = certs_of(req, conn);
  if (!certs) return;
  auto r = ctx.pipeline->keys_add(str(req, kFieldNs), *certs);
  if (!r) return (void)conn.send(fail(r.error()));
  json keys = json::array();
  for (auto& k : *r) keys.push_back(key_json(k));
  conn.send({{kFieldOk, true}, {"keys", keys}});
}

void do_keys_list(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->keys_list(str(req, kFieldNs));
  if (!r) return (void)conn.send(fail(r.error()));
  json keys = json::array();
  for (auto& k : *r) keys.push_back(key_json(k));
  conn.send({{kFieldOk, true}, {"keys", keys}});
}

void do_keys_remove(DaemonContext& ctx, const json& req, Connection& conn) {
  auto id = appraise::parse_keyid(str(req, kFieldKeyid));
  if (!id) return (void)conn.send(fail("field \"keyid\" must be 8 hex digits, got \"" +
                                       str(req, kFieldKeyid) + "\""));
  auto r = ctx.pipeline->keys_remove(str(req, kFieldNs), *id);
  if (!r) return (void)conn.send(fail(r.error()));
  json keys = json::array();
  for (auto& k : *r) keys.push_back(key_json(k));
  conn.send({{kFieldOk, true}, {"removed", keys}});
}

void do_digests_load(DaemonContext& ctx, const json& req, Connection& conn) {
  std::vector<uint8_t> sig;
  if (req.contains(kFieldSig)) {
    auto d = base64_decode(str(req, kFieldSig));
    if (!d) return (void)conn.send(fail("field \"sig\" is not base64"));
    sig.assign(d->begin(), d->end());
  }
  auto r = ctx.pipeline->digests_load(str(req, kFieldNs), str(req, kFieldManifest),
                                      opt_str(req, kFieldName, "manifest"), sig);
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}, {"added", r->added}, {"already", r->already},
             {"signed", r->is_signed}, {"signer", r->signer}});
}

void do_digests_revoke(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->digests_revoke(str(req, kFieldNs), str(req, kFieldDigest));
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}, {"denied_now", *r}});
}

void do_appraise_mode(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->set_appraise_mode(str(req, kFieldNs), str(req, kFieldMode));
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}});
}

void do_appraise(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->pre_appraise(str(req, kFieldNs), str(req, kFieldRoot));
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}, {"files", r->files}, {"passed", r->passed}, {"failed", r->failed},
             {"not_covered", r->skipped}, {"bytes", r->bytes}, {"seconds", r->seconds},
             {"hash_seconds", r->hash_seconds}, {"workers", r->workers},
             {"problems", r->problems}});
}

void do_model_mode(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->model_set_mode(str(req, kFieldNs), str(req, kFieldMode));
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}, {"model", model_json(*r)}});
}

void do_model_load(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->model_load(str(req, kFieldNs), str(req, kFieldModelText),
                                    opt_str(req, kFieldModelName, "model"),
                                    opt_str(req, kFieldMode, "seal"));
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}, {"model", model_json(*r)}});
}

void do_model_save(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->model_save(str(req, kFieldNs));
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}, {kFieldModelText, *r}});
}

void do_model_state(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->model_state(str(req, kFieldNs), opt_bool(req, kFieldExtend, false));
  if (!r) return (void)conn.send(fail(r.error()));
  conn.send({{kFieldOk, true}, {"model", model_json(*r)}});
}

void do_model_forensics(DaemonContext& ctx, const json& req, Connection& conn) {
  auto r = ctx.pipeline->model_forensics(str(req, kFieldNs));
  if (!r) return (void)conn.send(fail(r.error()));
  json out = *r;
  out[kFieldOk] = true;
  conn.send(out);
}

// Streams the audit log: whole lines from byte offset "from", then (follow) new ones.
void do_audit(DaemonContext& ctx, const json& req, Connection& conn) {
  const std::string& id = str(req, kFieldNs);
  const bool follow = opt_bool(req, kFieldFollow, false);
  uint64_t next = opt_u64(req, kFieldFrom, 0);
  auto path = ctx.pipeline->audit_path(id);
  if (!path) return (void)conn.send(fail(path.error()));
  // Every access that completed before this request has been appraised and logged by now.
  if (auto b = ctx.pipeline->barrier(id); !b) return (void)conn.send(fail(b.error()));
  std::ifstream in(*path, std::ios::binary);
  if (!in) return (void)conn.send(fail("cannot open " + *path));
  if (!conn.send({{kFieldOk, true}, {kFieldNs, id}, {kFieldFrom, next}})) return;
  std::string buf(64 * 1024, '\0');
  for (;;) {
    in.clear();
    in.seekg(static_cast<std::streamoff>(next));
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::string_view got(buf.data(), static_cast<size_t>(in.gcount()));
    auto end = got.rfind('\n');  // whole lines only
    if (end != std::string_view::npos) {
      std::string_view chunk = got.substr(0, end + 1);
      if (!conn.send({{kFieldData, base64_encode(chunk)}, {kFieldFrom, next},
                      {kFieldNext, next + chunk.size()}}))
        return;
      next += chunk.size();
      continue;
    }
    if (!follow) break;
    if (ctx.stopping && ctx.stopping()) break;
    if (conn.peer_closed()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  conn.send({{kFieldEnd, true}, {kFieldNext, next}});
}

}  // namespace

void handle_request(DaemonContext& ctx, const json& req, Connection& conn) {
  if (auto ok = validate_request(req); !ok) return (void)conn.send(fail(ok.error().message));
  const std::string& cmd = str(req, kFieldCmd);
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
  if (cmd == kCmdVtpmCa) return do_vtpm_ca(ctx, conn);
  if (cmd == kCmdVtpmIdentity) return do_vtpm_identity(ctx, req, conn);
  if (cmd == kCmdVtpmActivate) return do_vtpm_activate(ctx, req, conn);
  if (cmd == kCmdKeysAdd) return do_keys_add(ctx, req, conn);
  if (cmd == kCmdKeysList) return do_keys_list(ctx, req, conn);
  if (cmd == kCmdKeysRemove) return do_keys_remove(ctx, req, conn);
  if (cmd == kCmdDigestsLoad) return do_digests_load(ctx, req, conn);
  if (cmd == kCmdDigestsRevoke) return do_digests_revoke(ctx, req, conn);
  if (cmd == kCmdAppraiseMode) return do_appraise_mode(ctx, req, conn);
  if (cmd == kCmdAppraise) return do_appraise(ctx, req, conn);
  if (cmd == kCmdAudit) return do_audit(ctx, req, conn);
  if (cmd == kCmdModelMode) return do_model_mode(ctx, req, conn);
  if (cmd == kCmdModelLoad) return do_model_load(ctx, req, conn);
  if (cmd == kCmdModelSave) return do_model_save(ctx, req, conn);
  if (cmd == kCmdModelState) return do_model_state(ctx, req, conn);
  if (cmd == kCmdModelForensics) return do_model_forensics(ctx, req, conn);
  // validate_request() knows every command: a schema entry without a handler.
  conn.send(fail("command \"" + cmd + "\" has no handler"));
}

}  // namespace nsima::control

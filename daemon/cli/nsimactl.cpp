// SPDX-License-Identifier: Apache-2.0
// nsimactl: the command line of nsima. Daemon commands go over nsimad's control socket (root
// only); `policy check|explain|show` work offline. No daemon logic lives here.
#include <limits.h>
#include <signal.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "appraise/digest_list.h"
#include "common/hex.h"
#include "control/base64.h"
#include "control/connection.h"
#include "model/model_file.h"
#include "policy/commands.h"
#include "policy/policy.h"
#include "nsima/control_protocol.h"
#include "tpm/tpm.h"

namespace {

using nlohmann::json;
namespace ctl = nsima::control;

std::atomic<bool> g_interrupted{false};

void on_signal(int) { g_interrupted = true; }

// Absolute path as nsimad (in the host mount namespace) must see it.
std::string absolute(const std::string& p) {
  char buf[PATH_MAX];
  if (realpath(p.c_str(), buf)) return buf;
  return p;
}

// Sends one request and returns the first response line, or prints the error and returns
// nullopt. `conn_out` keeps the connection for streaming commands.
std::optional<json> request(const std::string& socket, const json& req,
                            std::optional<ctl::Connection>* conn_out = nullptr) {
  auto conn = ctl::connect_to(socket);
  if (!conn) {
    std::fprintf(stderr, "nsimactl: %s\n", conn.error().to_string().c_str());
    return std::nullopt;
  }
  if (!conn->send(req)) {
    std::fprintf(stderr, "nsimactl: sending to nsimad failed: %s\n", conn->error().c_str());
    return std::nullopt;
  }
  auto line = conn->read_line(ctl::kMaxRequestBytes, std::chrono::seconds(120));
  if (!line) {
    std::fprintf(stderr, "nsimactl: no answer from nsimad: %s\n", conn->error().c_str());
    return std::nullopt;
  }
  auto resp = json::parse(*line, nullptr, false);
  if (resp.is_discarded() || !resp.is_object()) {
    std::fprintf(stderr, "nsimactl: malformed answer from nsimad: %s\n", line->c_str());
    return std::nullopt;
  }
  if (!resp.value(ctl::kFieldOk, false)) {
    std::fprintf(stderr, "nsimactl: %s\n", resp.value(ctl::kFieldError, "failed").c_str());
    return std::nullopt;
  }
  if (conn_out) conn_out->emplace(std::move(*conn));
  return resp;
}

std::optional<std::string> read_file(const std::string& path) {
  auto text = nsima::policy::read_policy_text(path);
  if (!text) {
    std::fprintf(stderr, "nsimactl: %s\n", text.error().to_string().c_str());
    return std::nullopt;
  }
  return std::move(*text);
}

// A model file's text (the daemon parses it and names FILE:LINE on errors).
std::optional<std::string> read_model(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "nsimactl: cannot open model file: %s: %s\n", path.c_str(),
                 std::strerror(errno));
    return std::nullopt;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) {
    std::fprintf(stderr, "nsimactl: cannot read model file: %s\n", path.c_str());
    return std::nullopt;
  }
  return buf.str();
}

// Prints what nsimad streams (control_protocol.h, "The log stream": a namespace's list by entry
// index, its audit log by byte offset): nothing is read from nsimad's files, so this works from
// any mount namespace.
int print_stream(const std::string& socket, const json& req, const char* what) {
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  std::optional<ctl::Connection> conn;
  auto r = request(socket, req, &conn);
  if (!r) return 1;
  uint64_t next = r->value(ctl::kFieldFrom, uint64_t{0});
  while (!g_interrupted) {
    auto line = conn->read_line(ctl::kMaxRequestBytes, std::chrono::milliseconds(200));
    if (!line) {
      if (conn->error() == "timed out") continue;
      std::fprintf(stderr, "nsimactl: the %s stream ended early at %llu: %s\n", what,
                   static_cast<unsigned long long>(next), conn->error().c_str());
      return 1;
    }
    auto msg = json::parse(*line, nullptr, false);
    if (msg.is_discarded() || !msg.is_object()) {
      std::fprintf(stderr, "nsimactl: malformed line in the %s stream: %s\n", what,
                   line->c_str());
      return 1;
    }
    if (msg.contains(ctl::kFieldOk) && !msg.value(ctl::kFieldOk, false)) {
      std::fprintf(stderr, "nsimactl: %s\n", msg.value(ctl::kFieldError, "failed").c_str());
      return 1;
    }
    if (msg.value(ctl::kFieldEnd, false)) return 0;
    auto data = msg.find(ctl::kFieldData);
    auto bytes = data != msg.end() && data->is_string()
                     ? ctl::base64_decode(data->get_ref<const std::string&>())
                     : std::nullopt;
    if (!bytes || msg.value(ctl::kFieldFrom, uint64_t{0}) != next) {
      std::fprintf(stderr, "nsimactl: bad chunk in the %s stream (expected %llu): %.200s\n", what,
                   static_cast<unsigned long long>(next), line->c_str());
      return 1;
    }
    std::fwrite(bytes->data(), 1, bytes->size(), stdout);
    std::fflush(stdout);
    next = msg.value(ctl::kFieldNext, next);
  }
  return 0;
}

int print_log(const std::string& socket, const std::string& ns, bool ascii, bool follow) {
  return print_stream(socket,
                      {{ctl::kFieldCmd, ctl::kCmdLog},
                       {ctl::kFieldNs, ns},
                       {ctl::kFieldFormat, ascii ? ctl::kFormatAscii : ctl::kFormatBinary},
                       {ctl::kFieldFollow, follow}},
                      "list");
}

// A file's bytes, or an error naming it.
std::optional<std::string> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "nsimactl: %s: cannot open: %s\n", path.c_str(), std::strerror(errno));
    return std::nullopt;
  }
  std::string out((std::istreambuf_iterator<char>(in)), {});
  if (in.bad()) {
    std::fprintf(stderr, "nsimactl: %s: read error\n", path.c_str());
    return std::nullopt;
  }
  return out;
}

// Certificates as the request carries them (base64), read here: nsimad need not see the files.
std::optional<json> certs_json(const std::vector<std::string>& files) {
  json out = json::array();
  for (auto& f : files) {
    auto b = read_bytes(f);
    if (!b) return std::nullopt;
    out.push_back(ctl::base64_encode(*b));
  }
  return out;
}

// Every regular file of DIR (sorted), for `ns create --keys DIR`.
std::optional<std::vector<std::string>> files_in(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> out;
  for (auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) out.push_back(e.path().string());
  if (ec) {
    std::fprintf(stderr, "nsimactl: %s: %s\n", dir.c_str(), ec.message().c_str());
    return std::nullopt;
  }
  if (out.empty()) {
    std::fprintf(stderr, "nsimactl: %s: no certificate in this directory\n", dir.c_str());
    return std::nullopt;
  }
  std::sort(out.begin(), out.end());
  return out;
}

void print_keys(const json& keys, bool as_json) {
  if (!as_json) std::cout << "KEYID\tALGORITHM\tNOT_AFTER\tSUBJECT\n";
  for (auto& k : keys) {
    if (as_json) {
      std::cout << k.dump() << "\n";
      continue;
    }
    std::cout << k.value("keyid", "") << "\t" << k.value("algorithm", "") << "\t"
              << k.value("not_after", "") << "\t" << k.value("subject", "") << "\n";
  }
}

// A generated manifest on stdout; its problems on stderr (exit 1 if any: nothing untrusted is
// listed, but the caller must know what was left out).
int print_manifest(const nsima::Result<nsima::appraise::GeneratedManifest>& m) {
  if (!m) {
    std::fprintf(stderr, "nsimactl: %s\n", m.error().to_string().c_str());
    return 1;
  }
  std::cout << nsima::appraise::format_manifest(m->manifest);
  for (auto& p : m->problems)
    std::fprintf(stderr, "nsimactl: %s: %s\n", p.where.c_str(), p.what.c_str());
  return m->ok() ? 0 : 1;
}

int stream(ctl::Connection& conn) {
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  while (!g_interrupted) {
    auto line = conn.read_line(ctl::kMaxRequestBytes, std::chrono::milliseconds(200));
    if (!line) {
      if (conn.error() == "timed out") continue;
      break;
    }
    std::fwrite(line->data(), 1, line->size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nsimactl: control nsimad (userspace IMA for containers)"};
  app.require_subcommand(1);
  std::string socket = ctl::kDefaultSocket;
  app.add_option("--socket", socket, "nsimad control socket")->capture_default_str();
  int rc = 0;

  // status
  auto* status = app.add_subcommand("status", "counters and namespaces");
  status->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdStatus}});
    if (!r) return void(rc = 1);
    r->erase(ctl::kFieldOk);
    std::cout << r->dump(2) << "\n";
  });

  // watch
  std::string watch_cgroup;
  auto* watch = app.add_subcommand(
      "watch", "register a cgroup and print its events as JSON lines (until interrupted)");
  watch->add_option("--cgroup", watch_cgroup, "cgroup v2 directory")->required();
  watch->callback([&] {
    std::optional<ctl::Connection> conn;
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdWatch},
                              {ctl::kFieldCgroup, absolute(watch_cgroup)}},
                     &conn);
    if (!r) return void(rc = 1);
    std::fprintf(stderr, "nsimactl: watching namespace %s\n", r->value("ns", json()).dump().c_str());
    rc = stream(*conn);
  });

  // deny / allow
  std::string v_cgroup, v_file, v_root;
  for (const char* verdict : {"deny", "allow"}) {
    auto* sub = app.add_subcommand(
        verdict, std::string(verdict) +
                     " FILE for the processes of a cgroup's namespace and every namespace below "
                     "it (deny holds for every version of the file, across policy loads and "
                     "restarts)");
    sub->add_option("--cgroup", v_cgroup, "cgroup v2 directory")->required();
    sub->add_option("FILE", v_file,
                    "the file as the namespace's processes see it (absolute, resolved inside "
                    "the root of a live process of the cgroup, or inside --root)")
        ->required();
    sub->add_option("--root", v_root,
                    "resolve FILE inside this directory (the container's root filesystem as "
                    "nsimad sees it), e.g. when the cgroup has no process yet");
    sub->callback([&, verdict] {
      json req{{ctl::kFieldCmd, ctl::kCmdVerdict},
               {ctl::kFieldCgroup, absolute(v_cgroup)},
               {ctl::kFieldPath, v_file},
               {ctl::kFieldVerdict, verdict}};
      if (!v_root.empty()) req[ctl::kFieldRoot] = absolute(v_root);
      auto r = request(socket, req);
      if (!r) rc = 1;
    });
  }

  // ns create | list | delete
  auto* ns = app.add_subcommand("ns", "namespaces");
  ns->require_subcommand(1);
  std::string ns_cgroup, ns_id, ns_policy, ns_builtin;
  bool ns_vtpm = false, ns_json = false;
  auto* ns_create = ns->add_subcommand("create", "create the namespace of a cgroup");
  ns_create->add_option("--cgroup", ns_cgroup, "cgroup v2 directory")->required();
  auto* ns_pol = ns_create->add_option("--policy", ns_policy, "policy file (kernel IMA grammar)");
  ns_create->add_option("--builtin", ns_builtin, "builtin policy name")->excludes(ns_pol);
  ns_create->add_flag("--vtpm", ns_vtpm, "give the namespace its own vTPM (swtpm, PCR 10)");
  std::string ns_appraise = "enforce", ns_keys, ns_rootfs, ns_container, ns_model, ns_model_mode;
  ns_create->add_option("--appraise", ns_appraise,
                        "what failed appraisals do (kernel ima_appraise=): enforce, log or off")
      ->check(CLI::IsMember({"enforce", "log", "off"}))
      ->capture_default_str();
  ns_create->add_option("--keys", ns_keys, "directory of x509 certificates (DER or PEM)");
  ns_create->add_option("--rootfs", ns_rootfs,
                        "the container's root directory: its files are appraised before the "
                        "namespace is bound, so their first use needs no event");
  ns_create->add_option("--model", ns_model, "model file (docs/model-encoding.md)");
  ns_create->add_option("--model-mode", ns_model_mode,
                        "model the workload: learn, seal or enforce (seal/enforce need --model)")
      ->check(CLI::IsMember({"learn", "seal", "enforce"}));
  std::string ns_agent, ns_agent_fail = "closed";
  ns_create->add_option("--model-agent", ns_agent,
                        "an external modeling agent's socket decides instead of nsimad's model");
  ns_create->add_option("--model-agent-fail", ns_agent_fail,
                        "when the agent gives no verdict: closed (untrusted) or open (allowed)")
      ->check(CLI::IsMember({"closed", "open"}))
      ->capture_default_str();
  ns_create->add_option("--container", ns_container,
                        "the OCI container id the namespace is for (shown by ns list, archived)");
  ns_create->callback([&] {
    json req{{ctl::kFieldCmd, ctl::kCmdNsCreate}, {ctl::kFieldCgroup, absolute(ns_cgroup)},
             {"vtpm", ns_vtpm}, {ctl::kFieldAppraise, ns_appraise}};
    if (!ns_container.empty()) req[ctl::kFieldContainer] = ns_container;
    if (!ns_agent.empty()) {
      req[ctl::kFieldModelAgent] = absolute(ns_agent);
      req[ctl::kFieldModelAgentFail] = ns_agent_fail;
    }
    if (!ns_model.empty() && ns_model_mode.empty()) ns_model_mode = "seal";
    if (!ns_model_mode.empty()) req[ctl::kFieldModelMode] = ns_model_mode;
    if (!ns_model.empty()) {
      auto text = read_model(ns_model);
      if (!text) return void(rc = 1);
      req[ctl::kFieldModelText] = *text;
      req[ctl::kFieldModelName] = absolute(ns_model);
    }
    if (!ns_keys.empty()) {
      auto files = files_in(ns_keys);
      auto certs = files ? certs_json(*files) : std::nullopt;
      if (!certs) return void(rc = 1);
      req[ctl::kFieldCerts] = *certs;
    }
    if (!ns_rootfs.empty()) req[ctl::kFieldRootfs] = absolute(ns_rootfs);
    if (!ns_builtin.empty()) req["builtin"] = ns_builtin;
    if (!ns_policy.empty()) {
      auto text = read_file(ns_policy);
      if (!text) return void(rc = 1);
      req["policy_text"] = *text;
      req["policy_name"] = absolute(ns_policy);
    }
    auto r = request(socket, req);
    if (!r) return void(rc = 1);
    std::cout << (*r)["namespace"].value("id", "") << "\n";
  });
  auto* ns_list = ns->add_subcommand("list", "list namespaces");
  ns_list->add_flag("--json", ns_json, "one JSON object per namespace");
  ns_list->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdNsList}});
    if (!r) return void(rc = 1);
    if (!ns_json)
      std::cout << "ID\tPARENT\tOWNER\tPCR\tENTRIES\tPOLICY\tCGROUP\tCONTAINER\n";
    for (auto& n : (*r)["namespaces"]) {
      if (ns_json) {
        std::cout << n.dump() << "\n";
        continue;
      }
      std::cout << n.value("id", "") << "\t" << n.value("parent", "") << "\t"
                << n.value("owner", "") << "\t" << n.value("pcr", -1) << "\t"
                << n.value("entries", 0) << "\t"
                << (n.value("policy", "").empty() ? "-" : n.value("policy", "")) << "\t"
                << n.value("cgroup", "") << "\t"
                << (n.value("container", "").empty() ? "-" : n.value("container", ""))
                << (n.contains("disabled") ? "\tDISABLED" : "") << "\n";
    }
  });
  auto* ns_delete = ns->add_subcommand("delete", "delete a namespace");
  ns_delete->add_option("ID", ns_id, "namespace id")->required();
  ns_delete->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdNsDelete}, {ctl::kFieldNs, ns_id}});
    if (!r) rc = 1;
  });

  // policy check | explain | show | load
  auto* pol = app.add_subcommand("policy", "IMA policies (check/explain/show work offline)");
  pol->require_subcommand(1);
  std::string p_file, p_event, p_builtin, p_ns;
  bool p_json = false;
  auto* p_check = pol->add_subcommand("check", "validate a policy file (no daemon needed)");
  p_check->add_option("FILE", p_file, "policy file, or builtin:NAME")->required();
  p_check->callback([&] { rc = nsima::policy::cmd_check(p_file, std::cout, std::cerr); });
  auto* p_explain =
      pol->add_subcommand("explain", "which rule decides a described access (no daemon needed)");
  p_explain->add_option("FILE", p_file, "policy file, or builtin:NAME")->required();
  p_explain->add_option("--event", p_event,
                        "the access as JSON (func or hook, mask, uid, fsmagic, path...; a line "
                        "of `nsimactl watch` works)")
      ->required();
  p_explain->add_flag("--json", p_json, "JSON output");
  p_explain->callback(
      [&] { rc = nsima::policy::cmd_explain(p_file, p_event, std::cout, std::cerr, p_json); });
  auto* p_show = pol->add_subcommand("show", "print a builtin policy, or a namespace's policy");
  auto* p_show_b = p_show->add_option("--builtin", p_builtin, "builtin policy name");
  p_show->add_option("--ns", p_ns, "namespace id")->excludes(p_show_b);
  p_show->callback([&] {
    if (!p_builtin.empty()) {
      rc = nsima::policy::cmd_show_builtin(p_builtin, std::cout, std::cerr);
      return;
    }
    if (p_ns.empty()) {
      std::fprintf(stderr, "nsimactl: policy show needs --builtin NAME or --ns ID\n");
      rc = 2;
      return;
    }
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdPolicyShow}, {ctl::kFieldNs, p_ns}});
    if (!r) return void(rc = 1);
    std::cout << r->value("policy", "");
  });
  auto* p_load = pol->add_subcommand("load", "replace a namespace's policy (whole or not at all)");
  p_load->add_option("--ns", p_ns, "namespace id (host for the host namespace)")->required();
  auto* p_load_f = p_load->add_option("FILE", p_file, "policy file");
  p_load->add_option("--builtin", p_builtin, "builtin policy name")->excludes(p_load_f);
  p_load->callback([&] {
    json req{{ctl::kFieldCmd, ctl::kCmdPolicyLoad}, {ctl::kFieldNs, p_ns}};
    if (!p_builtin.empty()) {
      req["builtin"] = p_builtin;
    } else {
      if (p_file.empty()) {
        std::fprintf(stderr, "nsimactl: policy load needs FILE or --builtin NAME\n");
        return void(rc = 2);
      }
      auto text = read_file(p_file);
      if (!text) return void(rc = 1);
      req["policy_text"] = *text;
      req["policy_name"] = absolute(p_file);
    }
    auto r = request(socket, req);
    if (!r) return void(rc = 1);
    std::fprintf(stderr, "nsimactl: %d rules loaded into namespace %s\n", r->value("rules", 0),
                 p_ns.c_str());
  });

  // log
  std::string l_ns, l_format = "ascii";
  bool l_follow = false;
  auto* log_cmd = app.add_subcommand("log", "print a namespace's measurement list");
  log_cmd->add_option("--ns", l_ns, "namespace id")->required();
  log_cmd->add_option("--format", l_format, "ascii or binary (kernel layouts)")
      ->check(CLI::IsMember({"ascii", "binary"}))
      ->capture_default_str();
  log_cmd->add_flag("--follow,-f", l_follow, "keep printing new entries");
  log_cmd->callback([&] { rc = print_log(socket, l_ns, l_format == "ascii", l_follow); });

  // pcr
  std::string c_ns;
  auto* pcr_cmd = app.add_subcommand("pcr", "the PCR a namespace's list is extended into");
  pcr_cmd->add_option("--ns", c_ns, "namespace id")->required();
  pcr_cmd->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdPcr}, {ctl::kFieldNs, c_ns}});
    if (!r) return void(rc = 1);
    int pcr = r->value("pcr", -1);
    std::cout << "# " << r->value("tpm", "") << "\n";
    for (auto& [bank, hex] : (*r)["values"].items()) {
      std::string expected = (*r)["expected"].value(bank, "");
      std::cout << bank << ":" << pcr << " " << hex.get<std::string>()
                << (expected == hex.get<std::string>() ? "  (matches the list)"
                                                      : "  (list replays to " + expected + ")")
                << "\n";
    }
  });

  // quote
  std::string q_ns, q_nonce, q_out;
  auto* quote_cmd =
      app.add_subcommand("quote", "TPM quote of a namespace's PCR, in tpm2_checkquote's files");
  quote_cmd->add_option("--ns", q_ns, "namespace id")->required();
  quote_cmd->add_option("--nonce", q_nonce, "qualifying data, hex (up to 64 bytes)")->required();
  quote_cmd->add_option("--out", q_out, "directory for quote.msg quote.sig quote.pcrs ak.pub.pem")
      ->required();
  quote_cmd->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdQuote},
                              {ctl::kFieldNs, q_ns},
                              {ctl::kFieldNonce, q_nonce}});
    if (!r) return void(rc = 1);
    // nsimad sends the quote; its files are written here, where the caller can see them.
    auto bytes = [&](const char* field) -> std::optional<std::vector<uint8_t>> {
      auto b = ctl::base64_decode(r->value(field, ""));
      if (!b) return std::nullopt;
      return std::vector<uint8_t>(b->begin(), b->end());
    };
    nsima::tpm::Quote q;
    auto msg = bytes(ctl::kFieldQuoteMsg), sig = bytes(ctl::kFieldQuoteSig),
         pcrs = bytes(ctl::kFieldQuotePcrs);
    auto nonce = nsima::from_hex(r->value(ctl::kFieldNonce, ""));
    if (!msg || !sig || !pcrs || !nonce) {
      std::fprintf(stderr, "nsimactl: malformed quote from nsimad\n");
      return void(rc = 1);
    }
    q.message = std::move(*msg);
    q.signature = std::move(*sig);
    q.pcrs = std::move(*pcrs);
    q.ak_public_pem = r->value(ctl::kFieldAkPubPem, "");
    q.nonce = std::move(*nonce);
    if (auto w = nsima::tpm::write_quote_files(q, q_out); !w) {
      std::fprintf(stderr, "nsimactl: %s\n", w.error().to_string().c_str());
      return void(rc = 1);
    }
    std::cout << "tpm2_checkquote -u " << q_out << "/ak.pub.pem -m " << q_out << "/quote.msg -s "
              << q_out << "/quote.sig -f " << q_out << "/quote.pcrs -g sha256 -q " << q_nonce
              << "\n";
  });

  // keys add | list | remove
  auto* keys = app.add_subcommand("keys", "a namespace's appraisal keys (x509 certificates)");
  keys->require_subcommand(1);
  std::string k_ns, k_id;
  std::vector<std::string> k_certs;
  bool k_json = false;
  auto* k_add = keys->add_subcommand("add", "add certificates (DER or PEM) to a namespace");
  k_add->add_option("--ns", k_ns, "namespace id")->required();
  k_add->add_option("CERT", k_certs, "certificate files")->required();
  k_add->callback([&] {
    auto certs = certs_json(k_certs);
    if (!certs) return void(rc = 1);
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdKeysAdd},
                              {ctl::kFieldNs, k_ns},
                              {ctl::kFieldCerts, *certs}});
    if (!r) return void(rc = 1);
    print_keys((*r)["keys"], false);
  });
  auto* k_list = keys->add_subcommand("list", "list a namespace's keys");
  k_list->add_option("--ns", k_ns, "namespace id")->required();
  k_list->add_flag("--json", k_json, "one JSON object per key");
  k_list->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdKeysList}, {ctl::kFieldNs, k_ns}});
    if (!r) return void(rc = 1);
    print_keys((*r)["keys"], k_json);
  });
  auto* k_rm = keys->add_subcommand("remove", "remove every key with this key id");
  k_rm->add_option("--ns", k_ns, "namespace id")->required();
  k_rm->add_option("KEYID", k_id, "8 hex digits, as keys list shows")->required();
  k_rm->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdKeysRemove},
                              {ctl::kFieldNs, k_ns},
                              {ctl::kFieldKeyid, k_id}});
    if (!r) return void(rc = 1);
    print_keys((*r)["removed"], false);
  });

  // digests load | revoke | from-rootfs | from-dpkg | from-rpm
  auto* dg = app.add_subcommand("digests", "digest lists: trust by content, without security.ima");
  dg->require_subcommand(1);
  std::string d_ns, d_file, d_sig, d_digest, d_root = "/", d_dbpath;
  bool d_unsigned = false;
  std::vector<std::string> d_pkgs;
  auto* d_load = dg->add_subcommand("load", "load a sha256sum manifest (FILE.sig is checked)");
  d_load->add_option("--ns", d_ns, "namespace id")->required();
  d_load->add_option("FILE", d_file, "manifest in sha256sum format")->required();
  d_load->add_option("--sig", d_sig, "detached signature (default FILE.sig when it exists)");
  d_load->add_flag("--unsigned", d_unsigned, "do not look for FILE.sig");
  d_load->callback([&] {
    auto text = read_bytes(d_file);
    if (!text) return void(rc = 1);
    json req{{ctl::kFieldCmd, ctl::kCmdDigestsLoad},
             {ctl::kFieldNs, d_ns},
             {ctl::kFieldManifest, *text},
             {ctl::kFieldName, absolute(d_file)}};
    std::string sig_path = d_sig;
    std::error_code ec;
    if (sig_path.empty() && !d_unsigned && std::filesystem::exists(d_file + ".sig", ec))
      sig_path = d_file + ".sig";
    if (!sig_path.empty()) {
      auto sig = read_bytes(sig_path);
      if (!sig) return void(rc = 1);
      req[ctl::kFieldSig] = ctl::base64_encode(*sig);
    }
    auto r = request(socket, req);
    if (!r) return void(rc = 1);
    std::cout << r->value("added", 0) << " digests added, " << r->value("already", 0)
              << " already listed"
              << (r->value("signed", false) ? ", signed by key " + r->value("signer", "") : ", unsigned")
              << "\n";
  });
  auto* d_rev = dg->add_subcommand("revoke", "deny a sha256 digest here and in every descendant");
  d_rev->add_option("--ns", d_ns, "namespace id")->required();
  d_rev->add_option("SHA256", d_digest, "64 hex digits")->required();
  d_rev->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdDigestsRevoke},
                              {ctl::kFieldNs, d_ns},
                              {ctl::kFieldDigest, d_digest}});
    if (!r) return void(rc = 1);
    std::cout << "revoked; " << r->value("denied_now", 0) << " file(s) already allowed are denied\n";
  });
  auto* d_rootfs = dg->add_subcommand("from-rootfs", "print the manifest of a container rootfs");
  d_rootfs->add_option("DIR", d_file, "root directory")->required();
  d_rootfs->callback([&] { rc = print_manifest(nsima::appraise::manifest_from_rootfs(d_file)); });
  auto* d_dpkg = dg->add_subcommand(
      "from-dpkg", "print the sha256 manifest of installed Debian packages (md5sums checked)");
  d_dpkg->add_option("--root", d_root, "root directory")->capture_default_str();
  d_dpkg->callback([&] { rc = print_manifest(nsima::appraise::manifest_from_dpkg(d_root)); });
  auto* d_rpm = dg->add_subcommand(
      "from-rpm", "print the manifest of rpm packages (header signatures checked)");
  d_rpm->add_option("PKG", d_pkgs, "package files")->required();
  d_rpm->add_option("--dbpath", d_dbpath, "rpm database holding the trusted keys")->required();
  d_rpm->callback([&] {
    std::vector<std::filesystem::path> pkgs(d_pkgs.begin(), d_pkgs.end());
    nsima::appraise::RpmOptions o;
    o.dbpath = d_dbpath;
    rc = print_manifest(nsima::appraise::manifest_from_rpm(pkgs, o));
  });

  // appraise: mode, pre-appraisal
  std::string a_ns, a_mode, a_root;
  auto* ap = app.add_subcommand("appraise", "a namespace's appraisal: its mode, pre-appraisal");
  ap->add_option("--ns", a_ns, "namespace id")->required();
  auto* a_mode_opt = ap->add_option("--mode", a_mode, "enforce, log or off (kernel ima_appraise=)")
                         ->check(CLI::IsMember({"enforce", "log", "off"}));
  ap->add_option("--rootfs", a_root, "appraise the files under DIR now and write their verdicts")
      ->excludes(a_mode_opt);
  ap->callback([&] {
    if (a_mode.empty() && a_root.empty()) {
      std::fprintf(stderr, "nsimactl appraise: give --mode or --rootfs\n");
      return void(rc = 2);
    }
    if (!a_mode.empty()) {
      auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdAppraiseMode},
                                {ctl::kFieldNs, a_ns},
                                {ctl::kFieldMode, a_mode}});
      if (!r) rc = 1;
      return;
    }
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdAppraise},
                              {ctl::kFieldNs, a_ns},
                              {ctl::kFieldRoot, absolute(a_root)}});
    if (!r) return void(rc = 1);
    std::cout << r->value("files", 0) << " files: " << r->value("passed", 0) << " passed, "
              << r->value("failed", 0) << " failed, " << r->value("not_covered", 0)
              << " not covered by an appraise rule\n";
    for (auto& p : (*r)["problems"]) std::cerr << "nsimactl: " << p.get<std::string>() << "\n";
  });

  // audit
  std::string au_ns;
  bool au_follow = false;
  auto* au = app.add_subcommand("audit", "a namespace's audit log (JSON lines)");
  au->add_option("--ns", au_ns, "namespace id")->required();
  au->add_flag("--follow,-f", au_follow, "keep printing new lines");
  au->callback([&] {
    rc = print_stream(socket,
                      {{ctl::kFieldCmd, ctl::kCmdAudit},
                       {ctl::kFieldNs, au_ns},
                       {ctl::kFieldFollow, au_follow}},
                      "audit");
  });

  // model: workload models (daemon/model/README.md)
  std::string m_ns, m_file, m_mode = "seal", m_offline, m_aggregate, m_sign;
  bool m_extend = false, m_json = false;
  auto* mdl = app.add_subcommand("model", "workload security models (TSEM-style)");
  mdl->require_subcommand(1);
  // "key value" lines of a MODEL answer, or its JSON
  auto print_model = [&](const json& m) {
    if (m_json) return void(std::cout << m.dump() << "\n");
    for (auto& [k, v] : m.items())
      std::cout << k << " " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
  };
  for (const char* mode : {"learn", "seal", "enforce"}) {
    auto* sub = mdl->add_subcommand(
        mode, std::string(mode) == "learn"
                  ? "model a namespace: every new coefficient joins its model"
                  : std::string(mode) == "seal"
                        ? "seal the model: unknown coefficients become forensics"
                        : "seal and enforce: a process with an unknown coefficient is untrusted "
                          "and refused in the kernel");
    sub->add_option("--ns", m_ns, "namespace id")->required();
    sub->add_flag("--json", m_json, "JSON output");
    sub->callback([&, mode] {
      auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdModelMode},
                                {ctl::kFieldNs, m_ns},
                                {ctl::kFieldMode, mode}});
      if (!r) return void(rc = 1);
      print_model((*r)["model"]);
    });
  }
  auto* m_save = mdl->add_subcommand("save", "write a namespace's model file");
  m_save->add_option("--ns", m_ns, "namespace id")->required();
  m_save->add_option("FILE", m_file, "model file to write")->required();
  m_save->add_option("--sign", m_sign, "sign with this private key (PEM; openssl dgst -sign)");
  m_save->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdModelSave}, {ctl::kFieldNs, m_ns}});
    if (!r) return void(rc = 1);
    std::string text = r->value(ctl::kFieldModelText, "");
    if (!m_sign.empty()) {
      auto s = nsima::model::sign_model(text, m_sign);
      if (!s) {
        std::fprintf(stderr, "nsimactl: %s\n", s.error().to_string().c_str());
        return void(rc = 1);
      }
      text = std::move(*s);
    }
    if (auto w = nsima::model::write_model_file(m_file, text); !w) {
      std::fprintf(stderr, "nsimactl: %s\n", w.error().to_string().c_str());
      return void(rc = 1);
    }
  });
  auto* m_load = mdl->add_subcommand("load", "seal a namespace with a model file");
  m_load->add_option("--ns", m_ns, "namespace id")->required();
  m_load->add_option("FILE", m_file, "model file")->required();
  m_load->add_option("--mode", m_mode, "seal or enforce")
      ->check(CLI::IsMember({"seal", "enforce"}))
      ->capture_default_str();
  m_load->add_flag("--json", m_json, "JSON output");
  m_load->callback([&] {
    auto text = read_model(m_file);
    if (!text) return void(rc = 1);
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdModelLoad},
                              {ctl::kFieldNs, m_ns},
                              {ctl::kFieldModelText, *text},
                              {ctl::kFieldModelName, absolute(m_file)},
                              {ctl::kFieldMode, m_mode}});
    if (!r) return void(rc = 1);
    print_model((*r)["model"]);
  });
  auto* m_state = mdl->add_subcommand(
      "state", "a namespace's model state and measurement, or a model file's (--offline)");
  auto* m_state_ns = m_state->add_option("--ns", m_ns, "namespace id");
  m_state->add_option("--offline", m_offline, "model file: computed here, no daemon")
      ->excludes(m_state_ns);
  m_state->add_option("--aggregate", m_aggregate, "with --offline: this aggregate (hex)");
  m_state->add_flag("--extend", m_extend, "extend the state into PCR 11 of the namespace's vTPM");
  m_state->add_flag("--json", m_json, "JSON output");
  m_state->callback([&] {
    if (!m_offline.empty()) {
      auto text = read_model(m_offline);
      if (!text) return void(rc = 1);
      auto f = nsima::model::parse_model(*text, m_offline);
      if (!f) {
        std::fprintf(stderr, "nsimactl: %s\n", f.error().to_string().c_str());
        return void(rc = 1);
      }
      std::optional<nsima::model::Digest> agg;
      if (!m_aggregate.empty()) {
        auto b = nsima::from_hex(m_aggregate);
        if (!b || b->size() != nsima::model::kDigestSize) {
          std::fprintf(stderr, "nsimactl: --aggregate must be 64 hex digits\n");
          return void(rc = 2);
        }
        agg.emplace();
        std::copy(b->begin(), b->end(), agg->begin());
      }
      auto v = nsima::model::offline_values(*f, agg);
      print_model({{"state", nsima::to_hex(v.state)},
                   {"measurement", nsima::to_hex(v.measurement)},
                   {"known", v.points}});
      return;
    }
    if (m_ns.empty()) {
      std::fprintf(stderr, "nsimactl: model state needs --ns ID or --offline FILE\n");
      return void(rc = 2);
    }
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdModelState},
                              {ctl::kFieldNs, m_ns},
                              {ctl::kFieldExtend, m_extend}});
    if (!r) return void(rc = 1);
    print_model((*r)["model"]);
  });
  auto* m_for = mdl->add_subcommand("forensics", "unknown coefficients seen while sealed");
  m_for->add_option("--ns", m_ns, "namespace id")->required();
  m_for->add_flag("--json", m_json, "JSON lines");
  m_for->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdModelForensics}, {ctl::kFieldNs, m_ns}});
    if (!r) return void(rc = 1);
    for (auto& f : (*r)["forensics"]) {
      if (m_json) {
        std::cout << f.dump() << "\n";
        continue;
      }
      std::cout << f.value("seq", 0) << "\t" << f.value("tgid", 0) << "\t"
                << f.value("event", "") << "\t" << f.value("coefficient", "") << "\t"
                << (f.value("untrusted", false) ? "untrusted" : "-") << "\t"
                << f.value("description", "") << "\n";
    }
    if (r->value("dropped", 0) > 0)
      std::fprintf(stderr, "nsimactl: %llu forensic records did not fit\n",
                   static_cast<unsigned long long>(r->value("dropped", 0)));
  });

  CLI11_PARSE(app, argc, argv);
  return rc;
}

// SPDX-License-Identifier: Apache-2.0
// nsimactl: the command line of nsima. Daemon commands go over nsimad's control socket (root
// only); `policy check|explain|show` work offline. No daemon logic lives here.
//
// Exit codes (also in --help and docs/control-protocol.md): 0 success; 1 the operation failed
// (nsimad's error, or nsimad unreachable, is printed on stderr); 2 usage error (unknown option,
// missing argument, bad value). Results and success messages go to stdout, errors to stderr;
// --json on a reading command prints JSON (one object per line) instead of text.
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
#include <functional>
#include <span>
#include <sstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "appraise/digest_list.h"
#include "cli/verify.h"
#include "common/hex.h"
#include "confine/parser.h"
#include "measure/list_format.h"
#include "control/base64.h"
#include "control/connection.h"
#include "control/metrics.h"
#include "model/model_file.h"
#include "policy/commands.h"
#include "policy/policy.h"
#include "nsima/control_protocol.h"
#include "tpm/tpm.h"

namespace {

using nlohmann::json;
namespace ctl = nsima::control;

std::atomic<bool> g_interrupted{false};

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr const char* kExitCodes =
    "Exit codes: 0 success, 1 the operation failed (nsimad's error on stderr), 2 usage error.";

// --json of every reading command (each subcommand's flag sets it).
bool g_json = false;
void add_json_flag(CLI::App* sub, const char* what = "JSON output, one object per line") {
  sub->add_flag("--json", g_json, what);
}
// An answer without its "ok", as one JSON line.
void print_answer_json(json r) {
  r.erase(ctl::kFieldOk);
  std::cout << r.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
}

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
  // The versioned hello (docs/control-protocol.md): a daemon of another protocol version, or one
  // that refuses this user, says so before the request is sent.
  // A failed send (refused at connect) leaves nsimad's reason waiting in the socket.
  (void)conn->send({{ctl::kFieldCmd, ctl::kCmdHello},
                    {ctl::kFieldVersion, ctl::kProtocolVersion},
                    {ctl::kFieldClient, std::string("nsimactl ") + NSIMA_VERSION}});
  {
    auto hello = conn->read_line(ctl::kMaxRequestBytes, std::chrono::seconds(30));
    auto h = hello ? json::parse(*hello, nullptr, false) : json();
    if (!hello || !h.is_object() || !h.value(ctl::kFieldOk, false)) {
      std::fprintf(stderr, "nsimactl: %s\n",
                   !hello ? ("no answer from nsimad: " + conn->error()).c_str()
                   : h.is_object() ? h.value(ctl::kFieldError, "hello refused").c_str()
                                   : ("malformed answer from nsimad: " + *hello).c_str());
      return std::nullopt;
    }
  }
  const bool sent = conn->send(req);
  const std::string send_error = sent ? "" : conn->error();
  // nsimad may have refused the request before reading it all (too long): its answer is still
  // in the socket, and says more than the broken pipe.
  auto line = conn->read_line(ctl::kMaxRequestBytes,
                              sent ? std::chrono::seconds(120) : std::chrono::seconds(5));
  if (!line && !sent) {
    std::fprintf(stderr, "nsimactl: sending to nsimad failed: %s\n", send_error.c_str());
    return std::nullopt;
  }
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
// `sink` takes each chunk's bytes (whole entries or lines); false stops with an error.
using Sink = std::function<bool(const std::string& bytes)>;
bool write_raw(const std::string& bytes) {
  std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  std::fflush(stdout);
  return true;
}

int print_stream(const std::string& socket, const json& req, const char* what,
                 const Sink& sink = write_raw) {
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
    if (!sink(*bytes)) return 1;
    next = msg.value(ctl::kFieldNext, next);
  }
  return 0;
}

// One list entry as a JSON object: the ascii list's columns ("digest" and "path" as it prints
// them, "sig" hex when the template has one), its index and whether it is a violation.
json record_json(const nsima::measure::Record& r, uint64_t index) {
  json j{{"index", index},
         {"pcr", r.pcr},
         {"template_hash", nsima::to_hex(r.digest.data(), r.digest.size())},
         {"template", r.template_name}};
  if (r.violation()) j["violation"] = true;
  const auto& d = r.data;
  if (r.template_name == "ima") {  // d[20] || u32 len || name
    if (d.size() >= 24) {
      j["digest"] = nsima::to_hex(d.data(), 20);
      uint32_t n = 0;
      std::memcpy(&n, d.data() + 20, 4);
      if (24 + size_t{n} <= d.size())
        j["path"] = std::string(reinterpret_cast<const char*>(d.data()) + 24, n);
    }
    return j;
  }
  // Every other template: fields of u32 length || bytes. d-ng is "algo:\0digest", n-ng a
  // NUL-terminated path.
  std::vector<std::string_view> fields;
  for (size_t off = 0; off + 4 <= d.size();) {
    uint32_t n = 0;
    std::memcpy(&n, d.data() + off, 4);
    off += 4;
    if (off + n > d.size()) break;
    fields.emplace_back(reinterpret_cast<const char*>(d.data()) + off, n);
    off += n;
  }
  auto hex = [](std::string_view v) {
    return nsima::to_hex(reinterpret_cast<const uint8_t*>(v.data()), v.size());
  };
  if (!fields.empty()) {
    auto f = fields[0];
    auto colon = f.find(':');
    if (colon != std::string_view::npos && colon + 1 < f.size() && f[colon + 1] == '\0')
      j["digest"] = std::string(f.substr(0, colon + 1)) + hex(f.substr(colon + 2));
    else
      j["digest"] = hex(f);
  }
  if (fields.size() > 1) {
    auto f = fields[1];
    if (!f.empty() && f.back() == '\0') f.remove_suffix(1);
    j["path"] = std::string(f);
  }
  if (fields.size() > 2) j["sig"] = hex(fields[2]);
  return j;
}

int print_log(const std::string& socket, const std::string& ns, bool ascii, bool follow,
              bool as_json) {
  json req{{ctl::kFieldCmd, ctl::kCmdLog},
           {ctl::kFieldNs, ns},
           {ctl::kFieldFormat, ascii && !as_json ? ctl::kFormatAscii : ctl::kFormatBinary},
           {ctl::kFieldFollow, follow}};
  if (!as_json) return print_stream(socket, req, "list");
  // --json: the binary stream decoded here, one entry per line (chunks hold whole entries).
  uint64_t index = 0;
  return print_stream(socket, req, "list", [&](const std::string& bytes) {
    std::span<const uint8_t> buf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    while (!buf.empty()) {
      nsima::measure::Record rec;
      auto n = nsima::measure::parse_record(buf, 0, rec);
      if (!n) {
        std::fprintf(stderr, "nsimactl: entry %llu of the list: %s\n",
                     static_cast<unsigned long long>(index), n.error().to_string().c_str());
        return false;
      }
      std::cout << record_json(rec, index++).dump(-1, ' ', false, json::error_handler_t::replace)
                << "\n";
      buf = buf.subspan(*n);
    }
    std::cout.flush();
    return true;
  });
}


// `pcr --evmctl DIR`: what `evmctl ima_measurement --pcrs` reads, pcrs-<bank>.txt (PCR-00 to
// PCR-23, "PCR-NN: hex", no gaps), read from the namespace's TPM, then the namespace's binary
// list beside them (after the PCRs, so it holds every entry they cover: evmctl stops at the
// first entry where its replay matches).
int write_evmctl_files(const std::string& socket, const std::string& ns, const std::string& dir) {
  auto r = request(socket,
                   {{ctl::kFieldCmd, ctl::kCmdPcr}, {ctl::kFieldNs, ns}, {ctl::kFieldAll, true}});
  if (!r) return kExitFailed;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "nsimactl: %s: %s\n", dir.c_str(), ec.message().c_str());
    return kExitFailed;
  }
  auto all = r->find(ctl::kFieldAll);
  if (all == r->end() || !all->is_object() || all->empty()) {
    std::fprintf(stderr, "nsimactl: nsimad's answer has no PCR values (\"all\")\n");
    return kExitFailed;
  }
  json files = json::object();
  for (auto& [bank, vals] : all->items()) {
    if (!vals.is_array() || vals.size() != 24) {
      std::fprintf(stderr, "nsimactl: nsimad sent %s PCRs other than 0-23\n", bank.c_str());
      return kExitFailed;
    }
    std::string path = dir + "/pcrs-" + bank + ".txt";
    std::ofstream out(path, std::ios::trunc);
    for (size_t i = 0; i < vals.size(); ++i) {
      char idx[24];
      std::snprintf(idx, sizeof idx, "%02zu", i);
      out << "PCR-" << idx << ": " << vals[i].get<std::string>() << "\n";
    }
    out.close();
    if (!out) {
      std::fprintf(stderr, "nsimactl: %s: cannot write: %s\n", path.c_str(), std::strerror(errno));
      return kExitFailed;
    }
    files[bank] = path;
  }
  const std::string list = dir + "/binary_runtime_measurements";
  std::ofstream lf(list, std::ios::binary | std::ios::trunc);
  int lrc = print_stream(socket,
                         {{ctl::kFieldCmd, ctl::kCmdLog},
                          {ctl::kFieldNs, ns},
                          {ctl::kFieldFormat, ctl::kFormatBinary}},
                         "list", [&](const std::string& bytes) {
                           lf.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
                           return static_cast<bool>(lf);
                         });
  lf.close();
  if (lrc != 0) return lrc;
  if (!lf) {
    std::fprintf(stderr, "nsimactl: %s: cannot write: %s\n", list.c_str(), std::strerror(errno));
    return kExitFailed;
  }
  std::string cmd = "evmctl ima_measurement --ignore-violations";
  for (const char* b : {"sha256", "sha1"})
    if (files.contains(b)) cmd += std::string(" --pcrs ") + b + "," + files[b].get<std::string>();
  cmd += " " + list;
  if (g_json) {
    std::cout << json{{"dir", dir}, {"pcr", r->value("pcr", -1)}, {"tpm", r->value("tpm", "")},
                      {"pcr_files", files}, {"list", list}, {"evmctl", cmd}}
                     .dump()
              << "\n";
    return 0;
  }
  for (auto& [bank, path] : files.items())
    std::cout << "wrote " << path.get<std::string>() << "\n";
  std::cout << "wrote " << list << "\n"
            << "check: " << cmd << "\n"
            << "(evmctl exits 0 even when nothing matches: look for \"Matched per TPM bank\")\n";
  return 0;
}

// The namespace table of `ns list` and `status`.
void print_namespaces(const json& list) {
  std::cout << "ID\tPARENT\tOWNER\tPCR\tENTRIES\tTEMPLATE\tHASH\tPOLICY\tCGROUP\tCONTAINER\n";
  for (auto& n : list)
    std::cout << n.value("id", "") << "\t" << n.value("parent", "") << "\t"
              << n.value("owner", "") << "\t" << n.value("pcr", -1) << "\t"
              << n.value("entries", 0) << "\t" << n.value("template", "-") << "\t"
              << n.value("hash", "-") << "\t"
              << (n.value("policy", "").empty() ? "-" : n.value("policy", "")) << "\t"
              << n.value("cgroup", "") << "\t"
              << (n.value("container", "").empty() ? "-" : n.value("container", ""))
              << (n.contains("disabled") ? "\tDISABLED" : "")
              << (n.contains("suspended") ? "\tSUSPENDED" : "") << "\n";
}

// `status` as text: the counters a person looks at first, then the namespaces (--json has all).
void print_status(const json& r) {
  auto n = [&](const char* obj, const char* key) -> uint64_t {
    auto it = r.find(obj);
    return it != r.end() && it->is_object() ? it->value(key, uint64_t{0}) : 0;
  };
  const json list = r.value("namespaces", json::array());
  std::cout << "nsimad: " << list.size() << " namespaces\n";
  for (auto& w : r.value("warnings", json::array()))
    if (w.is_string()) std::cout << "WARNING: " << w.get<std::string>() << "\n";
  if (r.contains("bpf"))
    std::cout << "capture: " << n("bpf", "emitted") << " events, " << n("bpf", "dropped")
              << " dropped, " << n("bpf", "denied") << " denied, " << n("consumer", "decoded")
              << " decoded, " << n("consumer", "errors") << " decode errors\n";
  else
    std::cout << "capture: no BPF programs (nothing is captured)\n";
  std::cout << "pipeline: " << n("pipeline", "processed") << " processed, "
            << n("pipeline", "measured") << " measured, " << n("pipeline", "violations")
            << " violations, " << n("pipeline", "unreadable") << " unreadable, "
            << n("pipeline", "extends") << " extends (" << n("pipeline", "extends_failed")
            << " failed)\n";
  std::cout << "access: " << n("access", "files_read") << " files read, "
            << n("access", "cache_hits") << " cache hits, " << n("access", "timeouts")
            << " timeouts, " << n("access", "rejected") << " rejected, "
            << n("access", "stuck_workers") << " stuck workers\n";
  std::cout << "appraise: " << n("appraise", "appraised") << " appraised, "
            << n("appraise", "failed") << " failed, " << n("appraise", "denied") << " denied\n\n";
  print_namespaces(list);
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
  if (g_json) {
    for (auto& e : m->manifest.entries)
      std::cout << json{{"digest", e.digest.to_string()}, {"path", e.path}}.dump(
                       -1, ' ', false, json::error_handler_t::replace)
                << "\n";
  } else {
    std::cout << nsima::appraise::format_manifest(m->manifest);
  }
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
  app.set_version_flag("--version", std::string("nsimactl ") + NSIMA_VERSION);
  app.footer(kExitCodes);
  std::string socket = ctl::kDefaultSocket;
  app.add_option("--socket", socket, "nsimad control socket")->capture_default_str();
  int rc = 0;

  // status
  auto* status = app.add_subcommand("status", "counters and namespaces");
  add_json_flag(status, "the whole answer as one JSON object");
  status->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdStatus}});
    if (!r) return void(rc = 1);
    if (g_json) return print_answer_json(*r);
    print_status(*r);
  });

  // metrics
  auto* metrics = app.add_subcommand("metrics", "counters in the Prometheus text format");
  metrics->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdStatus}});
    if (!r) return void(rc = 1);
    std::cout << ctl::metrics_text(*r);
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
    // stdout carries only the events (JSON lines).
    std::fprintf(stderr, "watching namespace %s: one JSON line per event on stdout\n",
                 r->value("ns", json()).dump().c_str());
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
      if (!r) return void(rc = 1);
      std::cout << (std::string(verdict) == "deny" ? "denied " : "allowed ") << v_file
                << " in the namespace of " << absolute(v_cgroup) << " and below\n";
    });
  }

  // ns create | list | delete
  auto* ns = app.add_subcommand("ns", "namespaces");
  ns->require_subcommand(1);
  std::string ns_cgroup, ns_id, ns_policy, ns_builtin;
  bool ns_vtpm = false, ns_json = false;
  auto* ns_create = ns->add_subcommand("create", "create the namespace of a cgroup");
  ns_create->add_option("--cgroup", ns_cgroup, "cgroup v2 directory")->required();
  bool ns_no_policy = false;
  auto* ns_pol = ns_create->add_option(
      "--policy", ns_policy,
      "policy file (kernel IMA grammar); without --policy, --builtin or --no-policy the namespace "
      "takes nsimad's default container policy ([container] policy or builtin in nsimad.conf, "
      "container-default unless set)");
  auto* ns_bui = ns_create->add_option("--builtin", ns_builtin, "builtin policy name")->excludes(ns_pol);
  ns_create
      ->add_flag("--no-policy", ns_no_policy,
                 "no policy: the namespace measures and appraises nothing (watch, deny/allow and "
                 "models only) until `policy load`")
      ->excludes(ns_pol)
      ->excludes(ns_bui);
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
  auto* agent_opt = ns_create->add_option("--model-agent", ns_agent,
                        "an external modeling agent's socket decides instead of nsimad's model");
  ns_create->add_option("--model-agent-fail", ns_agent_fail,
                        "when the agent gives no verdict: closed (untrusted) or open (allowed)")
      ->check(CLI::IsMember({"closed", "open"}))
      ->capture_default_str();
  uint32_t ns_agent_timeout = 0;
  ns_create->add_option("--model-agent-timeout", ns_agent_timeout,
                        "milliseconds nsimad waits for each agent verdict before the fail mode "
                        "decides (default 2000)")
      ->check(CLI::Range(1u, 60000u))
      ->needs(agent_opt);
  ns_create->add_option("--container", ns_container,
                        "the OCI container id the namespace is for (shown by ns list, archived)");
  add_json_flag(ns_create, "the new namespace as one JSON object (as ns list --json)");
  std::string ns_template, ns_hash;
  ns_create->add_option("--template", ns_template,
                        "template of its list (kernel ima_template=); default nsimad's --template")
      ->check(CLI::IsMember({"ima-ng", "ima-sig", "ima"}));
  ns_create->add_option("--hash", ns_hash,
                        "file hash of its list (kernel ima_hash=); default nsimad's --hash "
                        "(sha1 with --template ima)")
      ->check(CLI::IsMember({"sha1", "sha256", "sha384", "sha512"}));
  ns_create->callback([&] {
    json req{{ctl::kFieldCmd, ctl::kCmdNsCreate}, {ctl::kFieldCgroup, absolute(ns_cgroup)},
             {"vtpm", ns_vtpm}, {ctl::kFieldAppraise, ns_appraise}};
    if (!ns_container.empty()) req[ctl::kFieldContainer] = ns_container;
    if (!ns_agent.empty()) {
      req[ctl::kFieldModelAgent] = absolute(ns_agent);
      req[ctl::kFieldModelAgentFail] = ns_agent_fail;
      if (ns_agent_timeout) req[ctl::kFieldModelAgentTimeout] = ns_agent_timeout;
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
    if (!ns_template.empty()) req[ctl::kFieldTemplate] = ns_template;
    if (!ns_hash.empty()) req[ctl::kFieldHash] = ns_hash;
    if (!ns_builtin.empty()) req["builtin"] = ns_builtin;
    if (!ns_policy.empty()) {
      auto text = read_file(ns_policy);
      if (!text) return void(rc = 1);
      req["policy_text"] = *text;
      req["policy_name"] = absolute(ns_policy);
    }
    if (ns_no_policy) req["policy_text"] = "";
    auto r = request(socket, req);
    if (!r) return void(rc = 1);
    // stdout is the id alone (scripts take it); which default policy was taken goes to stderr.
    if (r->contains("default_policy"))
      std::fprintf(stderr, "namespace %s takes nsimad's default container policy %s\n",
                   (*r)["namespace"].value("id", "").c_str(),
                   r->value("default_policy", "").c_str());
    if (g_json) return void(std::cout << (*r)["namespace"].dump() << "\n");
    std::cout << (*r)["namespace"].value("id", "") << "\n";
  });
  auto* ns_list = ns->add_subcommand("list", "list namespaces");
  ns_list->add_flag("--json", ns_json, "one JSON object per namespace");
  ns_list->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdNsList}});
    if (!r) return void(rc = 1);
    if (!ns_json) return print_namespaces((*r)["namespaces"]);
    for (auto& n : (*r)["namespaces"]) std::cout << n.dump() << "\n";
  });
  auto* ns_delete = ns->add_subcommand("delete", "delete a namespace");
  ns_delete->add_option("ID", ns_id, "namespace id")->required();
  ns_delete->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdNsDelete}, {ctl::kFieldNs, ns_id}});
    if (!r) return void(rc = 1);
    std::cout << "namespace " << ns_id << " deleted (its list is archived)\n";
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
  add_json_flag(p_show, "a namespace's policy as one JSON object {\"policy\": text}");
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
    if (g_json) return print_answer_json(*r);
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
    std::cout << r->value("rules", 0) << " rules loaded into namespace " << p_ns << "\n";
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
  add_json_flag(log_cmd, "one JSON object per entry (index, pcr, template_hash, template, digest, "
                         "path, sig, violation)");
  log_cmd->callback([&] { rc = print_log(socket, l_ns, l_format == "ascii", l_follow, g_json); });

  // pcr
  std::string c_ns;
  auto* pcr_cmd = app.add_subcommand("pcr", "the PCR a namespace's list is extended into");
  pcr_cmd->add_option("--ns", c_ns, "namespace id")->required();
  add_json_flag(pcr_cmd, "the answer as one JSON object (tpm, pcr, values, expected)");
  std::string c_evmctl;
  pcr_cmd->add_option("--evmctl", c_evmctl,
                      "write DIR/pcrs-<bank>.txt (every PCR of the namespace's TPM, as `evmctl "
                      "ima_measurement --pcrs` reads them) and DIR/binary_runtime_measurements");
  pcr_cmd->callback([&] {
    if (!c_evmctl.empty()) return void(rc = write_evmctl_files(socket, c_ns, c_evmctl));
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdPcr}, {ctl::kFieldNs, c_ns}});
    if (!r) return void(rc = 1);
    if (g_json) return print_answer_json(*r);
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
  add_json_flag(quote_cmd, "the files written and the check command as one JSON object");
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
    std::string check = "tpm2_checkquote -u " + q_out + "/ak.pub.pem -m " + q_out +
                        "/quote.msg -s " + q_out + "/quote.sig -f " + q_out +
                        "/quote.pcrs -g sha256 -q " + q_nonce;
    if (g_json) {
      std::cout << json{{"dir", q_out},
                        {"files",
                         {{"msg", q_out + "/quote.msg"},
                          {"sig", q_out + "/quote.sig"},
                          {"pcrs", q_out + "/quote.pcrs"},
                          {"ak_pub_pem", q_out + "/ak.pub.pem"}}},
                        {"nonce", r->value(ctl::kFieldNonce, "")},
                        {"checkquote", check}}
                       .dump()
                << "\n";
      return;
    }
    std::cout << check << "\n";
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
    print_keys((*r)["keys"], k_json);
  });
  k_add->add_flag("--json", k_json, "one JSON object per key");
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
    print_keys((*r)["removed"], k_json);
  });
  k_rm->add_flag("--json", k_json, "one JSON object per removed key");

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
  add_json_flag(d_load, "the answer as one JSON object (added, already, signed, signer)");
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
    if (g_json) return print_answer_json(*r);
    std::cout << r->value("added", 0) << " digests added, " << r->value("already", 0)
              << " already listed"
              << (r->value("signed", false) ? ", signed by key " + r->value("signer", "") : ", unsigned")
              << "\n";
  });
  auto* d_rev = dg->add_subcommand("revoke", "deny a sha256 digest here and in every descendant");
  d_rev->add_option("--ns", d_ns, "namespace id")->required();
  d_rev->add_option("SHA256", d_digest, "64 hex digits")->required();
  add_json_flag(d_rev, "the answer as one JSON object (denied_now)");
  d_rev->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdDigestsRevoke},
                              {ctl::kFieldNs, d_ns},
                              {ctl::kFieldDigest, d_digest}});
    if (!r) return void(rc = 1);
    if (g_json) return print_answer_json(*r);
    std::cout << "revoked; " << r->value("denied_now", 0) << " file(s) already allowed are denied\n";
  });
  auto* d_rootfs = dg->add_subcommand("from-rootfs", "print the manifest of a container rootfs");
  d_rootfs->add_option("DIR", d_file, "root directory")->required();
  add_json_flag(d_rootfs, "one JSON object per file (digest, path)");
  d_rootfs->callback([&] { rc = print_manifest(nsima::appraise::manifest_from_rootfs(d_file)); });
  auto* d_dpkg = dg->add_subcommand(
      "from-dpkg", "print the sha256 manifest of installed Debian packages (md5sums checked)");
  d_dpkg->add_option("--root", d_root, "root directory")->capture_default_str();
  add_json_flag(d_dpkg, "one JSON object per file (digest, path)");
  d_dpkg->callback([&] { rc = print_manifest(nsima::appraise::manifest_from_dpkg(d_root)); });
  auto* d_rpm = dg->add_subcommand(
      "from-rpm", "print the manifest of rpm packages (header signatures checked)");
  d_rpm->add_option("PKG", d_pkgs, "package files")->required();
  d_rpm->add_option("--dbpath", d_dbpath, "rpm database holding the trusted keys")->required();
  add_json_flag(d_rpm, "one JSON object per file (digest, path)");
  d_rpm->callback([&] {
    std::vector<std::filesystem::path> pkgs(d_pkgs.begin(), d_pkgs.end());
    // The package bytes are parsed by the confined worker (confine/README.md), never in this
    // process (often root's); the keys are read from the trusted rpm database here. One worker,
    // a deadline long enough for a 56 MiB prefix and an RSA verify on a loaded machine.
    nsima::confine::Parser parser(nsima::confine::ParserOptions{
        nsima::confine::default_worker_path(), std::chrono::milliseconds(10000), 1});
    nsima::appraise::RpmOptions o;
    o.dbpath = d_dbpath;
    o.read = nsima::confine::rpm_reader(parser);
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
      if (!r) return void(rc = 1);
      std::cout << "namespace " << a_ns << ": appraisal mode " << a_mode << "\n";
      return;
    }
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdAppraise},
                              {ctl::kFieldNs, a_ns},
                              {ctl::kFieldRoot, absolute(a_root)}});
    if (!r) return void(rc = 1);
    std::cout << r->value("files", 0) << " files: " << r->value("passed", 0) << " passed, "
              << r->value("failed", 0) << " failed, " << r->value("not_covered", 0)
              << " not covered by an appraise rule\n";
    const double secs = r->value("seconds", 0.0);
    if (secs > 0) {
      const auto bytes = r->value("bytes", uint64_t{0});
      char line[160];
      std::snprintf(line, sizeof line, "%llu bytes in %.2f s (%.1f MB/s), %d workers hashing %.2f s\n",
                    static_cast<unsigned long long>(bytes), secs,
                    static_cast<double>(bytes) / secs / 1e6, r->value("workers", 0),
                    r->value("hash_seconds", 0.0));
      std::cout << line;
    }
    for (auto& p : (*r)["problems"]) std::cerr << "nsimactl: " << p.get<std::string>() << "\n";
  });

  // audit
  std::string au_ns;
  bool au_follow = false;
  auto* au = app.add_subcommand("audit", "a namespace's audit log (JSON lines)");
  au->add_option("--ns", au_ns, "namespace id")->required();
  au->add_flag("--follow,-f", au_follow, "keep printing new lines");
  add_json_flag(au, "JSON lines (the audit log is JSON lines already: the same output)");
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

  // verify, vtpm (cli/verify.cpp). Their callbacks hold `attest_link` by reference: it lives
  // until main returns, past app.parse().
  const nsima::cli::DaemonLink attest_link{
      [&](const json& req) { return request(socket, req); },
      [&](const json& req, const std::function<bool(const std::string&)>& sink) {
        return print_stream(socket, req, "list", sink);
      }};
  nsima::cli::add_attest_commands(app, attest_link, rc, g_json);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error exits 2 (CLI11's own codes are 105+).
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  return rc;
}

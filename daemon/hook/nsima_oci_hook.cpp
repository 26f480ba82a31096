// SPDX-License-Identifier: Apache-2.0
// nsima-oci-hook: the OCI runtime hook of nsima (oci-hooks(5), runtime-spec config.json hooks).
//   createRuntime  the container's namespace is created, with its policy, before its first exec
//   poststop       its list (with the final PCR values) is archived, the namespace deleted
// The runtime passes the container state as JSON on stdin. Any failure is one sentence on stderr
// and a non-zero exit, which makes the runtime abort the start (fail closed; [container]
// on_error = "allow" in nsimad.conf turns createRuntime failures into a warning). Nothing is left
// half made: a namespace created by a hook that then fails is deleted again.
// The hook remembers each container's namespace in <run_dir>/oci/<id>.json for poststop.
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>

#include "common/atomic_file.h"
#include "config/config.h"
#include "control/base64.h"
#include "control/connection.h"
#include "confine/parser.h"
#include "hook/oci_state.h"
#include "nsima/control_protocol.h"

namespace {

using nlohmann::json;
namespace ctl = nsima::control;
namespace fs = std::filesystem;
using nsima::Error;
using nsima::Result;

constexpr size_t kMaxState = 1u << 20;

Result<std::string> read_stdin() {
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return nsima::make_error(errno, std::string("cannot read the OCI state on stdin: ") +
                                          std::strerror(errno));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxState)
      return nsima::make_error(E2BIG, "the OCI state on stdin is larger than 1 MiB");
  }
  return text;
}

// One request, one answer line; nsimad's error sentence on {"ok": false}.
class Client {
 public:
  Client(std::string socket, std::chrono::milliseconds timeout)
      : socket_(std::move(socket)), timeout_(timeout) {}

  Result<json> call(const json& req) {
    if (!conn_) {
      auto c = ctl::connect_to(socket_);
      if (!c) return tl::unexpected(c.error());
      conn_.emplace(std::move(*c));
    }
    if (!conn_->send(req))
      return nsima::make_error(EPIPE, "sending to nsimad failed: " + conn_->error(), socket_);
    auto line = conn_->read_line(ctl::kMaxRequestBytes, timeout_);
    if (!line)
      return nsima::make_error(ETIMEDOUT, "no answer from nsimad: " + conn_->error(), socket_);
    json resp = json::parse(*line, nullptr, false);
    if (resp.is_discarded() || !resp.is_object())
      return nsima::make_error(EPROTO, "malformed answer from nsimad", socket_);
    if (!resp.value(ctl::kFieldOk, false))
      return nsima::make_error(EINVAL, "nsimad refused: " + resp.value(ctl::kFieldError, "failed"));
    return resp;
  }

  // A namespace's list, rendered by nsimad (the log stream of control_protocol.h).
  Result<std::string> list(const std::string& ns, bool ascii) {
    auto r = call({{ctl::kFieldCmd, ctl::kCmdLog},
                   {ctl::kFieldNs, ns},
                   {ctl::kFieldFormat, ascii ? ctl::kFormatAscii : ctl::kFormatBinary}});
    if (!r) return tl::unexpected(r.error());
    std::string out;
    uint64_t next = r->value(ctl::kFieldFrom, uint64_t{0});
    for (;;) {
      auto line = conn_->read_line(ctl::kMaxRequestBytes, timeout_);
      if (!line) return nsima::make_error(EIO, "the list stream of namespace " + ns + " ended early");
      json m = json::parse(*line, nullptr, false);
      if (m.is_discarded() || !m.is_object())
        return nsima::make_error(EPROTO, "malformed line in the list stream");
      if (m.contains(ctl::kFieldOk) && !m.value(ctl::kFieldOk, false))
        return nsima::make_error(EIO, m.value(ctl::kFieldError, "failed"));
      if (m.value(ctl::kFieldEnd, false)) return out;
      auto bytes = ctl::base64_decode(m.value(ctl::kFieldData, ""));
      if (!bytes || m.value(ctl::kFieldFrom, uint64_t{0}) != next)
        return nsima::make_error(EPROTO, "bad chunk in the list stream");
      out.append(bytes->begin(), bytes->end());
      next = m.value(ctl::kFieldNext, next);
    }
  }

 private:
  std::string socket_;
  std::chrono::milliseconds timeout_;
  std::optional<ctl::Connection> conn_;
};

std::string record_path(const nsima::config::Settings& cfg, const std::string& id) {
  return cfg.run_dir + "/oci/" + id + ".json";
}

// A policy file named by an annotation or the config; the error is strerror alone (the caller
// names the file and who named it).
Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return nsima::make_error(errno ? errno : ENOENT, std::strerror(errno ? errno : ENOENT));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return nsima::make_error(EIO, std::strerror(EIO));
  return ss.str();
}

// Runtimes do not always show a hook's stderr (podman runs poststop in its cleanup process):
// every outcome also goes to syslog (the journal: journalctl -t nsima-oci-hook).
int fail(const std::string& stage, const Error& e) {
  std::fprintf(stderr, "nsima-oci-hook %s: %s\n", stage.c_str(), e.to_string().c_str());
  syslog(LOG_ERR, "%s: %s", stage.c_str(), e.to_string().c_str());
  return 1;
}

Result<void> create_runtime(const nsima::hook::OciState& st, const nsima::config::Settings& cfg,
                            Client& client) {
  if (!st.pid || *st.pid <= 0)
    return nsima::make_error(EINVAL, std::string("the OCI state has ") +
                                         (st.pid ? "pid 0" : "no \"pid\"") +
                                         " (createRuntime needs the container's host pid)");
  auto cg = nsima::hook::container_cgroup(*st.pid, cfg.cgroup_root);
  if (!cg) return tl::unexpected(cg.error());
  auto plan = nsima::hook::plan_create(st, *cg, cfg, read_text);
  if (!plan) return tl::unexpected(plan.error());
  auto created = client.call(plan->request);
  if (!created)
    return nsima::make_error(created.error().code, "container " + st.id + " (" +
                                                       plan->policy_desc + ", cgroup " + *cg +
                                                       "): " + created.error().message);
  const std::string ns = (*created)["namespace"].value("id", "");
  // From here on a failure deletes the namespace again: never half made.
  auto undo = [&](const Error& e) -> Result<void> {
    (void)client.call({{ctl::kFieldCmd, ctl::kCmdNsDelete}, {ctl::kFieldNs, ns}});
    std::error_code ec;
    fs::remove(record_path(cfg, st.id), ec);
    return tl::unexpected(e);
  };
  if (ns.empty()) return undo(Error{EPROTO, "nsimad's ns_create answer has no namespace id", ""});
  if (!plan->digests.empty()) {
    // The manifest (and FILE.sig, checked by nsimad against the namespace's keys) travel in
    // the request, as nsimactl digests load sends them.
    auto slurp = [](const std::string& path) -> std::optional<std::string> {
      std::ifstream in(path, std::ios::binary);
      if (!in) return std::nullopt;
      return std::string((std::istreambuf_iterator<char>(in)), {});
    };
    auto text = slurp(plan->digests);
    if (!text)
      return undo(Error{errno ? errno : ENOENT, "cannot read the digest list " + plan->digests +
                                                    " for container " + st.id, ""});
    json req{{ctl::kFieldCmd, ctl::kCmdDigestsLoad}, {ctl::kFieldNs, ns},
             {ctl::kFieldManifest, *text}, {ctl::kFieldName, plan->digests}};
    std::error_code sec;
    if (fs::exists(plan->digests + ".sig", sec)) {
      auto sig = slurp(plan->digests + ".sig");
      if (!sig)
        return undo(Error{EIO, "cannot read " + plan->digests + ".sig for container " + st.id, ""});
      req[ctl::kFieldSig] = ctl::base64_encode(*sig);
    }
    auto d = client.call(req);
    if (!d)
      return undo(Error{d.error().code, "loading the digest list " + plan->digests + " for container " +
                                            st.id + ": " + d.error().message, ""});
  }
  syslog(LOG_INFO, "createRuntime: container %s: namespace %s (%s, cgroup %s)", st.id.c_str(),
         ns.c_str(), plan->policy_desc.c_str(), cg->c_str());
  std::error_code ec;
  fs::create_directories(cfg.run_dir + "/oci", ec);
  json rec{{"container", st.id}, {"ns", ns},         {"cgroup", *cg},
           {"bundle", st.bundle}, {"policy", plan->policy_desc},
           {"vtpm", plan->request.value(ctl::kFieldVtpm, false)}};
  if (auto w = nsima::write_file_atomic(record_path(cfg, st.id), rec.dump() + "\n"); !w)
    return undo(w.error());
  return {};
}

// Archives <state_dir>/archive/oci-<id>-ns<N>/: container.json, pcrs.json and both list
// renderings, read from nsimad before the namespace is deleted.
Result<void> poststop(const nsima::hook::OciState& st, const nsima::config::Settings& cfg,
                      Client& client) {
  const std::string rec_file = record_path(cfg, st.id);
  std::ifstream in(rec_file);
  if (!in) return {};  // created while nsima was off, or on_error=allow: nothing of ours
  json rec = json::parse(in, nullptr, false);
  if (rec.is_discarded() || !rec.is_object() || !rec.contains("ns"))
    return nsima::make_error(EINVAL, "the container record " + rec_file + " is not valid JSON");
  const std::string ns = rec.value("ns", "");
  auto info = client.call({{ctl::kFieldCmd, ctl::kCmdNsList}});
  if (!info) return tl::unexpected(info.error());
  bool alive = false;
  for (auto& n : (*info)["namespaces"])
    alive |= n.value("id", "") == ns && n.value("cgroup", "") == rec.value("cgroup", "");
  if (!alive) {
    // nsimad already ended it (its cgroup went away) and archived the list itself.
    syslog(LOG_WARNING, "poststop: container %s: namespace %s is already gone", st.id.c_str(),
           ns.c_str());
    std::error_code ec;
    fs::remove(rec_file, ec);
    return {};
  }
  // The final PCR values and their replay; a namespace with no TPM of its own under a host
  // without TPM has none, which the archive says instead.
  auto p = client.call({{ctl::kFieldCmd, ctl::kCmdPcr}, {ctl::kFieldNs, ns}});
  json pcrs = p ? *p : json{{"unavailable", p.error().message}};
  pcrs.erase(ctl::kFieldOk);
  rec["stopped_status"] = st.status;
  auto ascii = client.list(ns, true);
  if (!ascii) return tl::unexpected(ascii.error());
  auto binary = client.list(ns, false);
  if (!binary) return tl::unexpected(binary.error());
  // Written under a temporary name and renamed whole: a reader never sees half an archive
  // (nsimad writes the same one when the cgroup goes first: ns/pipeline_ns.cpp).
  const fs::path dir = fs::path(cfg.state_dir) / "archive" / ("oci-" + st.id + "-ns" + ns);
  if (auto w = nsima::write_dir_atomic(dir.string(),
                                       {{"container.json", rec.dump(2) + "\n"},
                                        {"pcrs.json", pcrs.dump(2) + "\n"},
                                        {"ascii_runtime_measurements", *ascii},
                                        {"binary_runtime_measurements", *binary}},
                                       "partial");
      !w)
    return w;
  std::error_code ec;
  auto d = client.call({{ctl::kFieldCmd, ctl::kCmdNsDelete}, {ctl::kFieldNs, ns}});
  if (!d) return tl::unexpected(d.error());
  fs::remove(rec_file, ec);
  syslog(LOG_INFO, "poststop: container %s: namespace %s archived in %s", st.id.c_str(),
         ns.c_str(), dir.c_str());
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "nsima-oci-hook: OCI runtime hook of nsima. Reads the container state (JSON) on stdin.\n"
      "  createRuntime: create the container's namespace (policy from the org.nsima.* "
      "annotations or [container] of the config) before its first exec\n"
      "  poststop: archive its list and final PCRs under <state_dir>/archive/, delete it"};
  std::string stage, config_path = nsima::config::kDefaultPath, socket;
  app.add_option("STAGE", stage, "createRuntime or poststop")
      ->required()
      ->check(CLI::IsMember({"createRuntime", "poststop"}));
  auto* config_opt =
      app.add_option("--config", config_path, "nsimad's settings file ([container] defaults)")
          ->capture_default_str();
  app.add_option("--socket", socket, "nsimad's control socket (default: the config's)");
  std::string parser_path = nsima::confine::default_worker_path().string();
  app.add_option("--parser", parser_path,
                 "the confined parser the state is parsed by (daemon/confine/README.md)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  openlog("nsima-oci-hook", LOG_PID, LOG_DAEMON);

  auto cfg = nsima::config::load(config_path, config_opt->count() > 0);
  if (!cfg) return fail(stage, cfg.error());
  if (!socket.empty()) cfg->socket = socket;
  auto text = read_stdin();
  if (!text) return fail(stage, text.error());
  // The runtime's JSON is parsed by nsima-parse, unprivileged under seccomp: this hook runs as
  // root. Its crash or timeout is this hook's error, never a parse that half happened.
  nsima::confine::Parser parser(
      nsima::confine::ParserOptions{parser_path, std::chrono::milliseconds(2000), 1});
  auto confined = parser.oci_state(*text);
  if (!confined)
    return fail(stage,
                Error{EIO, "the OCI state could not be parsed: " + confined.error().to_string(), {}});
  auto& st = *confined;
  if (!st) return fail(stage, st.error());
  Client client(cfg->socket, std::chrono::milliseconds(cfg->container_timeout_ms));
  if (stage == "createRuntime") {
    auto r = create_runtime(*st, *cfg, client);
    if (!r) {
      if (cfg->container_on_error == "allow") {
        std::fprintf(stderr,
                     "nsima-oci-hook createRuntime: WARNING: container %s runs unmeasured "
                     "([container] on_error = \"allow\"): %s\n",
                     st->id.c_str(), r.error().to_string().c_str());
        syslog(LOG_WARNING, "createRuntime: container %s runs unmeasured (on_error = allow): %s",
               st->id.c_str(), r.error().to_string().c_str());
        return 0;
      }
      return fail(stage, r.error());
    }
    return 0;
  }
  auto r = poststop(*st, *cfg, client);
  if (!r) return fail(stage, r.error());
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// nsimactl: the command line of nsima. Daemon commands go over nsimad's control socket (root
// only); `policy check|explain|show` work offline. No daemon logic lives here.
#include <limits.h>
#include <signal.h>
#include <stdlib.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "control/connection.h"
#include "nsima/control_protocol.h"

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
  std::string v_cgroup, v_file;
  for (const char* verdict : {"deny", "allow"}) {
    auto* sub = app.add_subcommand(
        verdict, std::string(verdict) + " FILE for the processes of a cgroup's namespace");
    sub->add_option("--cgroup", v_cgroup, "cgroup v2 directory")->required();
    sub->add_option("FILE", v_file, "the file")->required();
    sub->callback([&, verdict] {
      auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdVerdict},
                                {ctl::kFieldCgroup, absolute(v_cgroup)},
                                {ctl::kFieldPath, absolute(v_file)},
                                {ctl::kFieldVerdict, verdict}});
      if (!r) rc = 1;
    });
  }

  // ns create | list | delete
  auto* ns = app.add_subcommand("ns", "namespaces");
  ns->require_subcommand(1);
  std::string ns_cgroup, ns_id;
  auto* ns_create = ns->add_subcommand("create", "create the namespace of a cgroup");
  ns_create->add_option("--cgroup", ns_cgroup, "cgroup v2 directory")->required();
  ns_create->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdNsCreate},
                              {ctl::kFieldCgroup, absolute(ns_cgroup)}});
    if (!r) return void(rc = 1);
    std::cout << (*r)["namespace"].value("id", "") << "\n";
  });
  auto* ns_list = ns->add_subcommand("list", "list namespaces");
  ns_list->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdNsList}});
    if (!r) return void(rc = 1);
    for (auto& n : (*r)["namespaces"])
      std::cout << n.value("id", "") << "\t" << n.value("parent", "") << "\t"
                << n.value("cgroup", "") << "\n";
  });
  auto* ns_delete = ns->add_subcommand("delete", "delete a namespace");
  ns_delete->add_option("ID", ns_id, "namespace id")->required();
  ns_delete->callback([&] {
    auto r = request(socket, {{ctl::kFieldCmd, ctl::kCmdNsDelete}, {ctl::kFieldNs, ns_id}});
    if (!r) rc = 1;
  });

  CLI11_PARSE(app, argc, argv);
  return rc;
}

// SPDX-License-Identifier: Apache-2.0
// nsimad: loads nsima's BPF-LSM programs, consumes their events, judges them per namespace and
// serves the control socket. This file only wires components together (see ns/pipeline.h).
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "capture/bpf_loader.h"
#include "capture/event_source.h"
#include "common/log.h"
#include "control/handlers.h"
#include "control/server.h"
#include "nsima/control_protocol.h"
#include "ns/pipeline.h"

namespace {

int fatal(const nsima::Error& e) {
  std::fprintf(stderr, "nsimad: %s\n", e.to_string().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nsimad: userspace IMA for containers (BPF-LSM capture, per-namespace policy)"};
  std::string log_level = "info";
  std::string socket_path = nsima::control::kDefaultSocket;
  std::string cgroup_root = "/sys/fs/cgroup";
  uint32_t ringbuf_bytes = 8u << 20;
  int consumer_delay_ms = 0;
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  app.add_option("--socket", socket_path, "control socket path")->capture_default_str();
  app.add_option("--cgroup-root", cgroup_root, "cgroup v2 mount point")->capture_default_str();
  app.add_option("--ringbuf-size", ringbuf_bytes,
                 "ring buffer bytes (power of two, multiple of the page size)")
      ->capture_default_str();
  app.add_option("--consumer-delay-ms", consumer_delay_ms,
                 "testing only: sleep after each ring-buffer poll (forces drops)")
      ->group("");
  CLI11_PARSE(app, argc, argv);

  if (!nsima::set_log_level(log_level)) {
    std::fprintf(stderr, "nsimad: unknown --log-level '%s'\n", log_level.c_str());
    return 2;
  }
  auto log = nsima::logger("nsimad");

  // Signals are taken by sigwait() in this thread only; every thread started below inherits
  // the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (auto r = nsima::capture::probe_bpf_lsm(); !r) return fatal(r.error());

  nsima::capture::LoaderOptions lopts;
  lopts.ringbuf_bytes = ringbuf_bytes;
  lopts.self_tgid = static_cast<uint32_t>(getpid());
  auto prog = nsima::capture::BpfProgram::load_and_attach(lopts);
  if (!prog) return fatal(prog.error());

  nsima::capture::BpfMaps maps((*prog)->map_fds());
  nsima::ns::PipelineOptions popts;
  popts.cgroup_root = cgroup_root;
  nsima::ns::Pipeline pipeline(popts, &maps);
  if (auto r = pipeline.init(); !r) return fatal(r.error());
  pipeline.start();

  nsima::capture::EventSource events((*prog)->events_fd(),
                                     [&](nsima::Event&& ev) { pipeline.submit(std::move(ev)); });
  events.set_poll_delay(std::chrono::milliseconds(consumer_delay_ms));
  if (auto r = events.start(); !r) return fatal(r.error());

  nsima::control::DaemonContext ctx;
  ctx.pipeline = &pipeline;
  ctx.maps = &maps;
  ctx.events = &events;
  std::unique_ptr<nsima::control::Server> server;
  ctx.stopping = [&] { return server && server->stopping(); };
  server = std::make_unique<nsima::control::Server>(
      socket_path, [&](const nlohmann::json& req, nsima::control::Connection& conn) {
        nsima::control::handle_request(ctx, req, conn);
      });
  if (auto r = server->start(); !r) return fatal(r.error());

  sd_notify(0, "READY=1");
  log->info("ready (pid {})", getpid());

  int sig = 0;
  sigwait(&sigs, &sig);
  log->info("signal {}: shutting down", sig);
  sd_notify(0, "STOPPING=1");
  server->stop();
  (*prog)->detach();
  events.stop();
  pipeline.stop();
  auto s = maps.stats();
  if (s)
    log->info("events emitted {} dropped {} denied {} quiet {}; decoded {}", s->total_emitted(),
              s->total_dropped(), s->total_denied(), s->total_quiet(), events.decoded());
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// nsimad: loads nsima's BPF-LSM programs, consumes their events, judges them per namespace and
// serves the control socket. This file only wires components together (see ns/pipeline.h).
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <grp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "capture/bpf_loader.h"
#include "capture/event_source.h"
#include "common/log.h"
#include "config/config.h"
#include "confine/parser.h"
#include "measure/hash_algo.h"
#include "measure/template.h"
#include "control/handlers.h"
#include "control/metrics.h"
#include "control/metrics_listener.h"
#include "control/server.h"
#include "nsima/control_protocol.h"
#include "ns/pipeline.h"
#include "policy/policy.h"
#include "service/heartbeat.h"
#include "service/instance_lock.h"
#include "tpm/pcr_policy.h"

namespace {

int fatal(const nsima::Error& e) {
  std::fprintf(stderr, "nsimad: %s\n", e.to_string().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nsimad: userspace IMA for containers (BPF-LSM capture, per-namespace policy)"};
  app.set_version_flag("--version", std::string("nsimad ") + NSIMA_VERSION);
  app.footer("Exit codes: 0 stopped cleanly, 1 could not start or failed, 2 usage error.");
  std::string log_level = "info", log_format = "text";
  std::string socket_path = nsima::control::kDefaultSocket;
  std::string cgroup_root = "/sys/fs/cgroup";
  uint32_t ringbuf_bytes = 8u << 20;
  uint32_t model_ringbuf_bytes = 1u << 20;
  int consumer_delay_ms = 0;
  std::string state_dir = "/var/lib/nsima";
  std::string host_tcti = "auto";
  int host_pcr = nsima::tpm::kDefaultHostPcr;
  std::string host_policy_file, host_builtin;
  std::string hash_name = "sha256", template_name = "ima-ng";
  size_t hash_threads = 2;
  size_t digest_cache = 65536;
  unsigned hash_timeout_ms = 10000, barrier_timeout_ms = 20000;
  std::string parser_path = nsima::confine::default_worker_path().string();
  unsigned parse_timeout_ms = 2000, parse_workers = 2;
  std::string pin_dir = nsima::capture::kDefaultPinDir;
  bool unload = false;
  bool lockdown = false;
  uint32_t cgroup_cache_entries = NSIMA_CG_CACHE_ENTRIES;
  uint32_t trusted_entries = NSIMA_TRUSTED_ENTRIES;
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  app.add_option("--log-format", log_format, "text, or json (one object per line)")
      ->capture_default_str();
  app.add_option("--socket", socket_path, "control socket path")->capture_default_str();
  app.add_option("--cgroup-root", cgroup_root, "cgroup v2 mount point")->capture_default_str();
  int64_t cgroup_gone_grace_ms = 5000;
  app.add_option("--cgroup-gone-grace-ms", cgroup_gone_grace_ms,
                 "end and archive a namespace this long after its cgroup was removed without "
                 "poststop")
      ->check(CLI::Range(int64_t{0}, int64_t{3600000}))
      ->capture_default_str();
  app.add_option("--ringbuf-size", ringbuf_bytes,
                 "ring buffer bytes (power of two, multiple of the page size)")
      ->capture_default_str();
  app.add_option("--model-ringbuf-size", model_ringbuf_bytes,
                 "the model hooks' ring buffer bytes (power of two, multiple of the page size)")
      ->capture_default_str();
  app.add_option("--state-dir", state_dir, "lists, namespace configs, vTPM state")
      ->capture_default_str();
  std::string run_dir = "/run/nsima";
  app.add_option("--run-dir", run_dir,
                 "runtime state: vTPM sockets, the intake journal (events consumed but not yet "
                 "recorded)")
      ->capture_default_str();
  app.add_option("--host-tcti", host_tcti,
                 "TPM of the host namespace (e.g. device:/dev/tpmrm0, swtpm:path=...); 'auto' "
                 "uses /dev/tpmrm0 when present, 'none' runs without TPM")
      ->capture_default_str();
  app.add_option("--host-pcr", host_pcr,
                 "PCR of the host TPM that the host namespace extends (refused if kernel IMA or "
                 "another registered component owns it)")
      ->capture_default_str();
  auto* pol = app.add_option("--policy", host_policy_file, "policy file of the host namespace");
  app.add_option("--builtin", host_builtin,
                 "builtin policy of the host namespace (tcb, container-default, ...)")
      ->excludes(pol);
  app.add_option("--hash", hash_name, "file hash algorithm of the lists (ima_hash)")
      ->capture_default_str();
  app.add_option("--template", template_name, "default template (ima-ng, ima-sig, ima)")
      ->capture_default_str();
  app.add_option("--hash-threads", hash_threads, "hashing worker threads")->capture_default_str();
  app.add_option("--digest-cache", digest_cache,
                 "file versions whose digests are kept for other namespaces reading the same "
                 "version (a bound: at most 137 bytes each)")
      ->check(CLI::Range(size_t{1024}, size_t{16777216}))
      ->capture_default_str();
  app.add_option("--hash-timeout-ms", hash_timeout_ms,
                 "a file not read and hashed within this time is recorded as an "
                 "nsima:unreadable:timeout violation (a stalled filesystem never stops "
                 "measurement)")
      ->capture_default_str();
  app.add_option("--parser", parser_path,
                 "the confined parser nsima-parse (security.ima values and manifests are parsed "
                 "there, unprivileged under seccomp; daemon/confine/README.md)")
      ->capture_default_str();
  app.add_option("--parse-timeout-ms", parse_timeout_ms,
                 "a parse not answered within this time fails (parser-timeout) and its worker "
                 "is killed")
      ->check(CLI::Range(10u, 600000u))
      ->capture_default_str();
  app.add_option("--parse-workers", parse_workers, "confined parser processes")
      ->check(CLI::Range(1u, 64u))
      ->capture_default_str();
  app.add_option("--barrier-timeout-ms", barrier_timeout_ms,
                 "nsimactl log/pcr/quote wait at most this long for the accesses made before "
                 "them to be measured, then fail naming what is pending")
      ->capture_default_str();
  app.add_option("--pin-dir", pin_dir,
                 "bpffs directory where the hooks, maps and ring buffer are pinned: they keep "
                 "capturing (and denying) while nsimad is down, and a restarted nsimad resumes "
                 "them; '' runs without pins (the hooks end with nsimad)")
      ->capture_default_str();
  app.add_flag("--unload", unload,
               "uninstall: detach the pinned hooks, remove the pins in --pin-dir, and exit "
               "(refused while an nsimad runs)");
  app.add_flag("--lockdown", lockdown,
               "self-protection: nsima's BPF maps, programs and links refuse every process but "
               "the nsimad executable (host root's bpftool too; nsimactl keeps working)");
  app.add_option("--cgroup-cache-entries", cgroup_cache_entries,
                 "testing only: size of the hooks' cgroup -> namespace cache")
      ->group("");
  app.add_option("--trusted-digests", trusted_entries,
                 "size of the kernel's trusted map: (namespace, sha256) pairs whose first exec "
                 "in an enforcing namespace is allowed in the kernel; digests that do not fit "
                 "are not trusted by the kernel (their first exec is denied until appraised), "
                 "counted in `nsimactl status` (kernel_trust.not_in_map)")
      ->check(CLI::Range(1u, 1u << 24))
      ->capture_default_str();
  app.add_option("--consumer-delay-ms", consumer_delay_ms,
                 "testing only: sleep after each ring-buffer poll (forces drops)")
      ->group("");
  std::string read_group, metrics_listen;
  app.add_option("--metrics-listen", metrics_listen,
                 "loopback HOST:PORT (e.g. 127.0.0.1:9464) serving GET /metrics for Prometheus "
                 "(the text of `nsimactl metrics`); off unless given");
  app.add_option("--read-group", read_group,
                 "members of this group may use the control socket's reading commands (status, "
                 "ns list, log, pcr, quote, audit, keys list, watch); '' = root only");
  std::string config_path = nsima::config::kDefaultPath;
  auto* config_opt = app.add_option("--config", config_path,
                                    "settings file (TOML; flags given here override it; a missing "
                                    "default file means every default)")
                         ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help/--version: 0; usage errors: 2 (not CLI11's 105+)
  }
  // /etc/nsima/nsimad.conf: each setting applies unless its flag was given.
  auto cfg = nsima::config::load(config_path, config_opt->count() > 0);
  if (!cfg) return fatal(cfg.error());
  auto from_file = [&](const char* flag, auto& var, const auto& value) {
    if (app.count(flag) == 0) var = static_cast<std::decay_t<decltype(var)>>(value);
  };
  from_file("--log-level", log_level, cfg->log_level);
  from_file("--log-format", log_format, cfg->log_format);
  from_file("--socket", socket_path, cfg->socket);
  from_file("--cgroup-root", cgroup_root, cfg->cgroup_root);
  from_file("--cgroup-gone-grace-ms", cgroup_gone_grace_ms, cfg->cgroup_gone_grace_ms);
  from_file("--state-dir", state_dir, cfg->state_dir);
  from_file("--run-dir", run_dir, cfg->run_dir);
  from_file("--pin-dir", pin_dir, cfg->pin_dir);
  from_file("--lockdown", lockdown, cfg->lockdown);
  from_file("--host-tcti", host_tcti, cfg->host_tcti);
  from_file("--host-pcr", host_pcr, cfg->host_pcr);
  if (app.count("--policy") == 0 && app.count("--builtin") == 0) {
    host_policy_file = cfg->host_policy;
    host_builtin = cfg->host_builtin;
  }
  from_file("--hash", hash_name, cfg->hash);
  from_file("--template", template_name, cfg->template_name);
  from_file("--hash-threads", hash_threads, cfg->hash_threads);
  from_file("--digest-cache", digest_cache, cfg->digest_cache);
  from_file("--hash-timeout-ms", hash_timeout_ms, cfg->hash_timeout_ms);
  from_file("--barrier-timeout-ms", barrier_timeout_ms, cfg->barrier_timeout_ms);
  from_file("--read-group", read_group, cfg->read_group);
  from_file("--metrics-listen", metrics_listen, cfg->metrics_listen);
  nsima::control::ServerOptions sopts;
  sopts.server_name = std::string("nsimad ") + NSIMA_VERSION;
  sopts.max_connections = static_cast<size_t>(cfg->max_connections);
  sopts.line_timeout = std::chrono::milliseconds(cfg->line_timeout_ms);
  sopts.idle_timeout = std::chrono::milliseconds(cfg->idle_timeout_ms);
  if (!read_group.empty()) {
    const group* g = ::getgrnam(read_group.c_str());
    if (!g) return fatal({ENOENT, "no group named '" + read_group + "'", "read_group"});
    sopts.read_gids = {g->gr_gid};
    sopts.read_group = read_group;
  }

  if (!nsima::set_log_level(log_level)) {
    std::fprintf(stderr, "nsimad: unknown --log-level '%s'\n", log_level.c_str());
    return 2;
  }
  if (!nsima::set_log_format(log_format)) {
    std::fprintf(stderr, "nsimad: unknown --log-format '%s' (text or json)\n", log_format.c_str());
    return 2;
  }
  auto log = nsima::logger("nsimad");
  // One nsimad per run directory, checked before BPF is touched (--unload too: it must not pull
  // the hooks from under a running nsimad).
  // Not root: say so first (the instance lock in the run directory would fail less clearly).
  if (geteuid() != 0)
    if (auto r = nsima::capture::probe_bpf_lsm(); !r) return fatal(r.error());
  auto instance = nsima::service::InstanceLock::acquire(run_dir);
  if (!instance && unload && instance.error().code == EBUSY)
    return fatal({EBUSY, instance.error().message + ": stop it first", ""});
  if (!instance) return fatal(instance.error());
  if (unload) {
    auto r = nsima::capture::unload_pinned(pin_dir);
    if (!r) return fatal(r.error());
    if (*r)
      log->info("hooks detached, pins in {} removed", pin_dir);
    else
      log->info("nothing pinned in {}", pin_dir);
    return 0;
  }
  // Signals are taken by sigwait() in this thread only; every thread started below inherits
  // the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (auto r = nsima::capture::probe_bpf_lsm(); !r) return fatal(r.error());

  nsima::ns::PipelineOptions popts;
  popts.cgroup_root = cgroup_root;
  popts.cgroup_check = std::chrono::milliseconds(1000);
  popts.cgroup_gone_grace = std::chrono::milliseconds(cgroup_gone_grace_ms);
  popts.state_dir = state_dir;
  popts.run_dir = run_dir;
  popts.hash_threads = hash_threads;
  popts.digest_cache = digest_cache;
  popts.hash_timeout = std::chrono::milliseconds(hash_timeout_ms);
  popts.barrier_timeout = std::chrono::milliseconds(barrier_timeout_ms);
  popts.parser = std::make_shared<nsima::confine::Parser>(nsima::confine::ParserOptions{
      parser_path, std::chrono::milliseconds(parse_timeout_ms), parse_workers});
  // The workers' pids: the self-protection must protect them as nsimad itself (confine/README.md).
  popts.parser->on_pids_changed([](const std::vector<pid_t>& pids) {
    std::string list;
    for (pid_t p : pids) list += " " + std::to_string(p);
    nsima::logger("confine")->debug("parser workers:{}", list);
  });
  if (auto r = popts.parser->start(); !r) return fatal(r.error());
  const auto parser = popts.parser;  // also the control server's, for group members' requests
  auto algo = nsima::measure::hash_algo_from_name(hash_name);
  if (!algo) return fatal({EINVAL, "unknown hash algorithm '" + hash_name + "'", "--hash"});
  popts.hash_algo = *algo;
  auto tmpl = nsima::measure::template_kind(template_name);
  if (!tmpl) return fatal({EINVAL, "unknown template '" + template_name + "'", "--template"});
  popts.default_template = *tmpl;
  if (host_tcti == "auto")
    host_tcti = access("/dev/tpmrm0", R_OK | W_OK) == 0 ? "device:/dev/tpmrm0" : "none";
  // The PCR refusals hold with or without a TPM: a configuration that would be refused once a
  // TPM is present is refused now, not on the day one is added.
  auto ima = nsima::tpm::detect_kernel_ima();
  if (auto r = ima ? nsima::tpm::check_host_pcr(host_pcr, *ima)
                   : nsima::tpm::check_host_pcr(host_pcr, /*kernel_ima_pcr=*/-1);
      !r)
    return fatal({r.error().code, r.error().message, "--host-pcr"});
  const bool no_tpm = host_tcti == "none";
  if (!no_tpm) {
    popts.host_tcti = host_tcti;
    popts.host_pcr = host_pcr;
    if (ima) {
      popts.kernel_ima_pcr = ima->pcr;
      if (ima->present) log->info("kernel IMA: {} -> host namespace uses PCR {}", ima->evidence, host_pcr);
    }
  } else {
    log->warn("NO TPM: the host namespace's list, and the lists of namespaces without a vTPM, are "
              "not anchored to any PCR: nothing attests them (give --host-tcti, or provide "
              "/dev/tpmrm0)");
  }
  // The host policy is checked before any BPF program is loaded, so a typo fails fast.
  std::string host_policy_text, host_policy_origin;
  if (!host_builtin.empty()) {
    auto p = nsima::policy::builtin_policy(host_builtin);
    if (!p) return fatal(p.error());
    host_policy_text = nsima::policy::builtin_text(host_builtin);
    host_policy_origin = "builtin:" + host_builtin;
  } else if (!host_policy_file.empty()) {
    auto text = nsima::policy::read_policy_text(host_policy_file);
    if (!text) return fatal(text.error());
    if (auto p = nsima::policy::Policy::parse(*text, host_policy_file); !p) return fatal(p.error());
    host_policy_text = std::move(*text);
    host_policy_origin = host_policy_file;
  }

  // ns create's default container policy is checked now, not at the first ns create.
  if (!cfg->container_policy.empty()) {
    auto text = nsima::policy::read_policy_text(cfg->container_policy);
    if (!text) return fatal({text.error().code, text.error().message, "[container] policy " + cfg->container_policy});
    if (auto p = nsima::policy::Policy::parse(*text, cfg->container_policy); !p) return fatal(p.error());
  } else if (!cfg->container_builtin.empty() && !nsima::policy::builtin_policy(cfg->container_builtin)) {
    return fatal({EINVAL, "no builtin policy \"" + cfg->container_builtin + "\"", "[container] builtin"});
  }

  nsima::capture::LoaderOptions lopts;
  lopts.ringbuf_bytes = ringbuf_bytes;
  lopts.self_tgid = static_cast<uint32_t>(getpid());
  lopts.pin_dir = pin_dir;
  lopts.cgroup_cache_entries = cgroup_cache_entries;
  lopts.trusted_entries = trusted_entries;
  auto prog = nsima::capture::BpfProgram::load_and_attach(lopts);
  if (!prog) return fatal(prog.error());
  log->info("BPF hooks: {}", nsima::capture::to_string((*prog)->kind()));
  // Lists that continue from before record the gap when the previous hooks did not go on.
  popts.capture_gap = (*prog)->capture_gap();
  // The model hooks pin beside the file hooks (their maps are the file hooks').
  popts.model_ringbuf_bytes = model_ringbuf_bytes;
  if ((*prog)->pinned()) popts.model_pins = {pin_dir, (*prog)->resumed(), (*prog)->tag()};

  nsima::capture::BpfMaps maps((*prog)->map_fds());
  nsima::ns::Pipeline pipeline(popts, &maps);
  if (auto r = pipeline.init(); !r) return fatal(r.error());
  if (!host_policy_text.empty())
    if (auto r = pipeline.load_policy("host", host_policy_text, host_policy_origin); !r)
      return fatal(r.error());
  // Self-protection (bpf/protect.bpf.c): nsima's directories, BPF objects and processes.
  nsima::capture::ProtectOptions prot_opts;
  prot_opts.lockdown = lockdown;
  // (the socket and the settings file themselves: their directories may be anybody's)
  prot_opts.dirs = {state_dir, run_dir, socket_path, config_path};
  if (!pin_dir.empty()) prot_opts.dirs.push_back(pin_dir);
  prot_opts.vtpm_run_root = run_dir + "/vtpm";
  prot_opts.more_pids = [parser = popts.parser] { return parser->worker_pids(); };
  auto protector = nsima::capture::Protector::start(
      {(*prog)->map_fd("protect_cfg"), (*prog)->map_fd("protected_dirs"),
       (*prog)->map_fd("protected_objs"), (*prog)->map_fd("protected_pids")},
      prot_opts);
  if (!protector) return fatal(protector.error());
  // Consumed events stay journaled until recorded: a SIGKILLed nsimad loses none of them.
  auto journal = nsima::capture::Journal::open(popts.run_dir + "/journal");
  if (!journal) return fatal(journal.error());
  pipeline.set_done_hook([j = journal->get()](uint64_t seq) { j->ack(seq); });
  pipeline.start();

  nsima::capture::EventSource events((*prog)->events_fd(),
                                     [&](nsima::Event&& ev) { pipeline.submit(std::move(ev)); });
  events.set_journal(journal->get());
  events.set_poll_delay(std::chrono::milliseconds(consumer_delay_ms));
  // Modeled namespaces: a fork or exit is applied once the intake has passed the file events
  // committed before it. Unset before `events` goes away (the pipeline thread may still run).
  pipeline.set_intake_probe([&events]() -> std::optional<nsima::ns::Pipeline::IntakeProgress> {
    auto p = events.progress();
    if (!p) return std::nullopt;
    return nsima::ns::Pipeline::IntakeProgress{p->committed, p->consumed, p->handed_seq};
  });
  struct ProbeUnset {
    nsima::ns::Pipeline& p;
    ~ProbeUnset() { p.set_intake_probe({}); }
  } probe_unset{pipeline};
  if (auto r = events.start(); !r) return fatal(r.error());
  // log/pcr/quote barriers: everything committed to the ring buffer before them is handed over.
  pipeline.set_intake_sync([&events](std::chrono::milliseconds t) { return events.sync(t); });

  nsima::control::DaemonContext ctx;
  ctx.pipeline = &pipeline;
  ctx.maps = &maps;
  ctx.events = &events;
  ctx.default_policy_file = cfg->container_policy;
  ctx.default_builtin = cfg->container_builtin;
  ctx.protector = protector->get();
  ctx.parser = parser.get();
  sopts.parser = parser.get();
  std::unique_ptr<nsima::control::Server> server;
  ctx.stopping = [&] { return server && server->stopping(); };
  server = std::make_unique<nsima::control::Server>(
      socket_path, [&](const nlohmann::json& req, nsima::control::Connection& conn) {
        nsima::control::handle_request(ctx, req, conn);
      },
      sopts);
  if (auto r = server->start(); !r) return fatal(r.error());
  std::unique_ptr<nsima::control::MetricsListener> metrics;
  if (!metrics_listen.empty()) {
    auto m = nsima::control::MetricsListener::start(metrics_listen, [&ctx]() -> nsima::Result<std::string> {
      auto st = nsima::control::status_answer(ctx);
      if (!st) return tl::unexpected(st.error());
      return nsima::control::metrics_text(*st);
    });
    if (!m) return fatal(m.error());
    metrics = std::move(*m);
    log->info("metrics: GET http://{}/metrics", metrics_listen);
  }

  sd_notify(0, "READY=1");
  log->info("ready (pid {})", getpid());
  // STATUS= and the watchdog beat, each after a round trip through the pipeline thread.
  auto heartbeat = std::make_unique<nsima::service::Heartbeat>([&pipeline, no_tpm] {
    auto c = pipeline.counters();
    return std::string(no_tpm ? "NO TPM (lists not anchored to any PCR): " : "") + "measuring " + std::to_string(pipeline.list_namespaces().size()) + " namespaces: " +
           std::to_string(c.processed) + " events, " + std::to_string(c.measured) +
           " entries, " + std::to_string(c.violations) + " violations";
  });

  int sig = 0;
  sigwait(&sigs, &sig);
  log->info("signal {}: shutting down", sig);
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
  heartbeat.reset();
  metrics.reset();
  server->stop();
  // Pinned hooks keep capturing after we exit; their records wait in the ring buffer for the
  // next nsimad. Unpinned ones end now, and what they wrote is consumed first.
  bool pinned = (*prog)->pinned();
  if (!pinned) (*prog)->detach();
  events.stop(/*drain=*/!pinned);
  pipeline.stop();
  auto s = maps.stats();
  if (s)
    log->info("events emitted {} dropped {} denied {} quiet {}; decoded {}", s->total_emitted(),
              s->total_dropped(), s->total_denied(), s->total_quiet(), events.decoded());
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
#include "ns/pipeline.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "appraise/ima_xattr.h"
#include "common/hex.h"
#include "common/log.h"
#include "measure/list_format.h"
#include "measure/template.h"
#include "ns/cgroup.h"
#include "ns/pipeline_actor.h"
#include "tpm/esys_tpm.h"
#include "tpm/pcr_policy.h"

namespace nsima::ns {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// How deep a cgroup directory is (restored namespaces are re-created parents first).
size_t depth(const std::string& p) {
  return static_cast<size_t>(std::count(p.begin(), p.end(), '/'));
}

// Violation names (daemon/README.md, "Violations"): what happened, then what it concerns.
std::string unreadable_name(const access::AccessError& e, const std::string& path) {
  return "nsima:unreadable:" + std::string(access::access_error_kind_name(e.kind)) + ":" + path;
}

}  // namespace

void Watcher::offer(std::string line) {
  if (!lines_.try_push(std::move(line))) lost_.fetch_add(1);
}

Pipeline::Pipeline(PipelineOptions opts, capture::BpfMaps* maps)
    : opts_(std::move(opts)),
      maps_(maps),
      reg_(RegistryOptions{opts_.cgroup_root, opts_.state_dir, opts_.host_pcr}, maps),
      verdicts_(maps, opts_.state_dir) {}

Pipeline::~Pipeline() {
  stop();
  for (Namespace* n : reg_.all()) reg_.rt(n).agent.reset();  // their threads take mu_
  model_hooks_.reset();  // its notifier thread takes mu_: it ends before the members go
}

// ---------------------------------------------------------------------------------------------
// the pipeline thread

void Pipeline::post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (running_.load()) {
      tasks_.push_back(std::move(task));
      wake_.notify_one();
      return;
    }
  }
  task();  // not running: nothing else touches the state
}

void Pipeline::start() {
  std::lock_guard lock(mu_);
  if (running_) return;
  stopping_ = false;
  running_ = true;
  thread_ = std::thread([this] { run(); });
  thread_id_ = thread_.get_id();
  if (opts_.cgroup_check.count() > 0 && !cgroup_checker_.joinable()) {
    {
      std::lock_guard c(check_mu_);
      check_stop_ = false;
    }
    cgroup_checker_ = std::thread([this] { cgroup_check_loop(); });
  }
}

void Pipeline::run() {
  for (;;) {
    std::function<void()> task;
    std::optional<Event> ev;
    {
      std::unique_lock lock(mu_);
      wake_.wait_for(lock, std::chrono::milliseconds(200),
                     [&] { return stopping_ || !tasks_.empty() || !events_.empty(); });
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
      } else if (!events_.empty()) {
        ev = std::move(events_.front());
        events_.pop_front();
        space_.notify_one();
      } else if (stopping_) {
        std::lock_guard plock(pending_mu_);
        if (reads_in_flight_ == 0) {
          running_ = false;  // under mu_: no task can be posted from here on
          break;
        }
      }
    }
    if (task) {
      task();
    } else if (ev) {
      if (!process(*ev) && done_hook_) done_hook_(ev->seq);
      {
        std::lock_guard plock(pending_mu_);
        judged_seq_.store(ev->seq);
      }
      pending_cv_.notify_all();
      if (model_pump_due()) model_pump(false);  // kernel events that waited for this event
    }
    if (Clock::now() - last_tick_ >= std::chrono::milliseconds(200)) tick();
  }
}

void Pipeline::stop() {
  if (cgroup_checker_.joinable()) {  // first: it calls into the pipeline thread
    {
      std::lock_guard c(check_mu_);
      check_stop_ = true;
    }
    check_cv_.notify_all();
    cgroup_checker_.join();
  }
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  thread_id_ = {};
  model_pump(true);  // what the model hooks wrote before the end (no thread runs tasks now)
  model_tick();      // and learned points not saved yet
  if (accessor_) accessor_->drain();
  for (Namespace* n : reg_.all()) {
    NsRuntime& r = reg_.rt(n);
    if (r.extender) r.extender->drain();
    if (r.list) (void)r.list->sync();
  }
  for (auto& [id, w] : watchers_) w->close();
}

void Pipeline::tick() {
  last_tick_ = Clock::now();
  check_drops();
  const bool retry = last_tick_ - last_resume_try_ >= std::chrono::seconds(1);
  if (retry) last_resume_try_ = last_tick_;
  model_tick();
  for (Namespace* n : reg_.all()) {
    NsRuntime& r = reg_.rt(n);
    if (r.list) (void)r.list->sync_if_due();
    if (retry && r.suspended) rec_->try_resume(n);
  }
}

void Pipeline::submit(Event&& ev) {
  if (ev.seq == 0) ev.seq = local_seq_.fetch_add(1) + 1;
  // The root the event's path is relative to, taken now: the process may be gone by the time
  // its file is read.
  if (roots_) roots_->capture(ev);
  // The hook already hashed this version (NSIMA_EV_KERNEL_DIGEST): its sha256 answers for the
  // event's (identity, stamp) only, so a request for that version with sha256 (a namespace
  // whose list is sha256) is not hashed again, and any other version or algorithm is.
  if (ev.kernel_sha256 && digests_) {
    auto d = measure::Digest::from_bytes(measure::HashAlgo::kSha256, *ev.kernel_sha256);
    if (d)
      digests_->put(measure::DigestKey{measure::FileKey::from_event(ev), measure::HashAlgo::kSha256},
                    *d, measure::DigestCache::Origin::kKernel);
  }
  uint64_t seq = ev.seq;
  {
    std::unique_lock lock(mu_);
    space_.wait(lock, [&] { return !running_ || events_.size() < opts_.queue_capacity; });
    events_.push_back(std::move(ev));
  }
  submitted_seq_.store(std::max(submitted_seq_.load(), seq));
  wake_.notify_one();
}

void Pipeline::drain() {
  {
    std::unique_lock lock(pending_mu_);
    pending_cv_.wait(
        lock, [&] { return judged_seq_.load() >= submitted_seq_.load() && reads_in_flight_ == 0; });
  }
  // Tasks posted by the last reads (their entries) have run once a task posted now has.
  for (auto& e : extenders()) e->drain();
}

void Pipeline::pending_add(uint64_t seq, const std::vector<uint32_t>& ids) {
  std::lock_guard lock(pending_mu_);
  for (uint32_t id : ids) pending_[id].insert(seq);
  reads_in_flight_++;
}

void Pipeline::pending_done(uint64_t seq, const std::vector<uint32_t>& ids) {
  {
    std::lock_guard lock(pending_mu_);
    for (uint32_t id : ids) {
      auto it = pending_.find(id);
      if (it == pending_.end()) continue;
      auto s = it->second.find(seq);
      if (s != it->second.end()) it->second.erase(s);
      if (it->second.empty()) pending_.erase(it);
    }
    pending_what_.erase(seq);
    reads_in_flight_--;
  }
  pending_cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// start-up, recovery

Result<void> Pipeline::init() {
  auto log = logger("ns");
  auto id = cgroup_id_of(opts_.cgroup_root);
  if (!id) return tl::unexpected(id.error());
  if (opts_.host_tcti.size())
    if (auto r = tpm::check_host_pcr(opts_.host_pcr, opts_.kernel_ima_pcr); !r)
      return tl::unexpected(r.error());
  if (auto r = reg_.init(*id); !r) return r;
  if (auto r = verdicts_.load(); !r) return r;
  digests_ = std::make_unique<measure::DigestCache>(opts_.digest_cache);
  roots_ = std::make_unique<access::RootCache>(access::RootCache::Options{});
  access::FileAccessor::Options ao;
  ao.workers = opts_.hash_threads;
  ao.timeout = opts_.hash_timeout;
  ao.queue_capacity = opts_.access_queue;
  ao.xattr_algo = [](std::span<const uint8_t> v) -> std::optional<measure::HashAlgo> {
    return appraise::hash_algo_for_xattr(v, measure::HashAlgo::kSha256);
  };
  if (opts_.parser)
    ao.xattr_parse = [parser = opts_.parser](std::span<const uint8_t> v) -> std::any {
      return confine::ima_xattr_or_failure(*parser, v);
    };
  accessor_ = std::make_unique<access::FileAccessor>(ao, roots_.get(), digests_.get());
  tpm::VtpmOptions vopts;
  vopts.state_root = fs::path(opts_.state_dir) / "vtpm";
  vopts.run_root = fs::path(opts_.run_dir) / "vtpm";
  vopts.swtpm = opts_.swtpm;
  vopts.ek_cert = opts_.vtpm_ek_cert;
  vtpms_ = std::make_unique<tpm::VtpmManager>(vopts);
  RecorderOptions ro{opts_.state_dir, opts_.hash_algo, opts_.default_template};
  ro.on_suspend = [this](Namespace* n, const std::string& state, const std::string& why) {
    audit_line(n, {{"event", state}, {"reason", why}});
  };
  rec_ = std::make_unique<Recorder>(
      ro, reg_, [this](uint32_t owner, uint64_t gen, const ExtendJob& job, const Error& e) {
        // On the extender's thread: hand it to the pipeline thread, take nothing here.
        std::string what =
            "extend of entry " + std::to_string(job.index) + " failed: " + e.to_string();
        post([this, owner, gen, what] {
          Namespace* n = reg_.find(owner);
          if (!n || reg_.rt(n).tpm_gen != gen) return;  // gone, or its TPM replaced since
          if (reg_.rt(n).cfg.vtpm && recover_vtpm(n, what)) return;
          rec_->disable(n, "extend-failed", what);
        });
      });

  // Saved namespaces: host first, then parents before children (by cgroup depth; ids say
  // nothing about nesting, a namespace can be created above an older one).
  auto saved = load_ns_configs(opts_.state_dir);
  std::sort(saved.begin(), saved.end(), [](auto& a, auto& b) {
    return depth(a.cgroup) != depth(b.cgroup) ? depth(a.cgroup) < depth(b.cgroup) : a.id < b.id;
  });
  NsConfig host_cfg{kHostNsName, kHostNsId, opts_.cgroup_root, false, "", "", ""};
  for (auto& c : saved)
    if (c.name == kHostNsName) host_cfg = c;
  host_cfg.cgroup = opts_.cgroup_root;
  Namespace& host = reg_.host();
  {
    auto r = std::make_unique<NsRuntime>();
    r->cfg = host_cfg;
    r->appraise = parse_appraise_mode(host_cfg.appraise).value_or(AppraiseMode::kEnforce);
    r->policy = std::make_shared<policy::Policy>();
    if (!host_cfg.policy_text.empty()) {
      auto p = policy::Policy::parse(host_cfg.policy_text, host_cfg.policy_origin);
      if (!p) return tl::unexpected(p.error());
      r->policy = std::make_shared<policy::Policy>(std::move(*p));
    }
    reg_.set_rt(&host, std::move(r));
  }
  if (auto r = open_runtime(&host, reg_.rt(&host), true); !r) return r;
  for (auto& c : saved) {
    if (c.name == kHostNsName) continue;
    auto dir = canonical_dir(c.cgroup);
    auto cg = dir ? cgroup_id_of(*dir) : Result<uint64_t>(tl::unexpected(dir.error()));
    if (!cg) {
      log->warn("namespace {}: cgroup {} is gone; its list is archived", c.name, c.cgroup);
      (void)archive_ns_dir(opts_.state_dir, c.name, "cgroup-gone");
      continue;
    }
    std::shared_ptr<const policy::Policy> pol = std::make_shared<policy::Policy>();
    if (!c.policy_text.empty()) {
      auto p = policy::Policy::parse(c.policy_text, c.policy_origin);
      if (!p) {
        log->error("namespace {} not restored: {}", c.name, p.error().to_string());
        continue;
      }
      pol = std::make_shared<policy::Policy>(std::move(*p));
    }
    auto ins = reg_.insert(*dir, *cg, c, pol);
    if (!ins) {
      log->error("namespace {} not restored: {}", c.name, ins.error().to_string());
      continue;
    }
    if (auto r = open_runtime(ins->ns, reg_.rt(ins->ns), true); !r) {
      log->error("namespace {} not restored: {}", c.name, r.error().to_string());
      (void)reg_.remove(ins->ns);
      continue;
    }
    if (auto r = reg_.register_bpf(ins->ns); !r) return r;
  }
  for (Namespace* n : reg_.all())
    if (auto r = verdicts_.apply(reg_.chain_ids(n)); !r) return r;
  if (maps_) {
    // Resumed pins keep the previous run's registrations: drop those of namespaces that were
    // not restored (their cgroup is gone, their config unreadable), so no cgroup stays bound
    // to an id nothing judges.
    auto registered = maps_->registered_cgroups();
    if (!registered) return tl::unexpected(registered.error());
    for (auto& rc : *registered) {
      Namespace* n = reg_.find(rc.ns_id);
      if (n && n->cgroup_id == rc.cgroup_id && (!n->is_host() || !reg_.rt(n).policy->empty()))
        continue;
      log->warn("cgroup id {} was bound to namespace {}, which is not restored: unbound",
                rc.cgroup_id, rc.ns_id);
      if (auto u = maps_->unregister_cgroup(rc.cgroup_id); !u) return u;
    }
    if (auto r = maps_->init_ns_drops(kHostNsId); !r) return r;
    if (!reg_.rt(&host).policy->empty())
      if (auto r = reg_.register_bpf(&host); !r) return r;
    // The kernel's trusted digests, once every namespace (and so every chain) is restored.
    if (auto r = reg_.refresh_trust(&host); !r) return r;
  }
  return {};
}

bool Pipeline::recover_vtpm(Namespace* n, const std::string& what) {
  NsRuntime& r = reg_.rt(n);
  if (r.disabled) return false;
  auto log = logger("ns");
  // start() attaches to a live swtpm; then the failure is not its death and is not hidden.
  auto inst = vtpms_->start(r.cfg.name);
  if (!inst) {
    log->error("namespace {}: its vTPM cannot be restarted: {}", n->name, inst.error().to_string());
    return false;
  }
  if (inst->origin == tpm::VtpmOrigin::kAttached) return false;
  auto t = open_tpm(inst->tcti);
  if (!t) {
    log->error("namespace {}: its restarted vTPM cannot be opened: {}", n->name, t.error().to_string());
    return false;
  }
  // The old extender finishes its queue against the dead swtpm; those failures carry the old
  // generation and are ignored.
  std::shared_ptr<Extender> old = std::move(r.extender);
  r.own_tpm = std::move(*t);
  rec_->attach_tpm(n, r);
  std::string outcome;
  if (inst->origin == tpm::VtpmOrigin::kResumed) {
    // Its PCRs were saved: the list continues; extends it lacks are done now.
    if (auto c = rec_->reconcile(n, r); !c || r.disabled) return r.disabled;
    outcome = "resumed";
  } else {
    // PCRs at reset: no list of this owner can continue. Like an owner change: the lists it
    // owns are archived and restarted, their files measured again.
    std::vector<Namespace*> owned;
    for (Namespace* x : reg_.subtree(n))
      if (reg_.owner_of(x) == n) owned.push_back(x);
    if (auto s = after_topology(owned, "vtpm-restarted"); !s) {
      log->error("namespace {}: {}", n->name, s.error().to_string());
      return false;
    }
    outcome = "restarted";
  }
  log->warn("namespace {}: its vTPM died ({}); swtpm {} (pid {}), list {}", n->name, what,
            outcome, inst->pid, outcome == "resumed" ? "continues" : "archived and restarted");
  rec_->violation(&reg_.host(), "nsima:ns-" + n->name + "-vtpm-" + outcome);
  audit_line(n, {{"event", "vtpm-" + outcome}, {"reason", what}});
  return true;
}

Result<void> Pipeline::open_runtime(Namespace* n, NsRuntime& r, bool restored) {
  auto log = logger("ns");
  std::string boot = current_boot_id();
  NsConfig& cfg = r.cfg;
  // The TPM this namespace owns, if any.
  bool fresh_tpm = false;
  if (!r.own_tpm) {
    if (n->is_host() && !opts_.host_tcti.empty()) {
      auto t = open_tpm(opts_.host_tcti);
      if (!t) return tl::unexpected(t.error());
      r.own_tpm = std::move(*t);
      fresh_tpm = cfg.boot_id != boot;  // the host TPM's PCRs were reset by a reboot
    } else if (cfg.vtpm) {
      auto inst = vtpms_->start(cfg.name);
      if (!inst) return tl::unexpected(inst.error());
      auto t = open_tpm(inst->tcti);
      if (!t) return tl::unexpected(t.error());
      r.own_tpm = std::move(*t);
      fresh_tpm = inst->origin == tpm::VtpmOrigin::kStarted;
    } else if (n->is_host()) {
      fresh_tpm = cfg.boot_id != boot;  // no TPM: a new boot still starts a new list
    }
  } else {
    fresh_tpm = !restored;
  }
  std::string dir = ns_dir(opts_.state_dir, cfg.name);
  std::error_code ec;
  bool have_list = fs::exists(fs::path(dir) / measure::kDefaultListFile, ec);
  bool continued = restored && have_list;
  if (restored && have_list && fresh_tpm) {
    // The PCRs this list was extended into are gone (reboot, vTPM reset): it cannot continue.
    auto a = archive_ns_dir(opts_.state_dir, cfg.name, cfg.boot_id.empty() ? "old" : cfg.boot_id);
    if (a)
      log->info("namespace {}: TPM was reset since the list began; old list archived at {}",
                cfg.name, *a);
    continued = false;
    cfg.drops_seen = 0;
  }
  if (!opts_.capture_gap.empty()) {  // fresh BPF maps count from zero
    cfg.drops_seen = 0;
    cfg.unresolved_seen = cfg.unattributed_drops_seen = 0;
  }
  r.drops_seen = cfg.drops_seen;
  cfg.boot_id = fresh_tpm || cfg.boot_id.empty() ? boot : cfg.boot_id;
  if (auto s = reg_.save(r); !s) return s;
  if (auto s = load_appraisal(n, r); !s) return s;
  if (r.own_tpm) rec_->attach_tpm(n, r);
  if (auto s = rec_->open_list(n, r); !s) return s;
  if (auto s = rec_->reconcile(n, r); !s) return s;
  // Accesses while no nsimad captured (the hooks were attached afresh) were never seen: say so
  // in every list that continues from before.
  if (continued && !opts_.capture_gap.empty() && !r.disabled)
    rec_->violation(n, "nsima:capture-gap:" + opts_.capture_gap);
  if (restored && !cfg.model_mode.empty())
    if (auto m = model_restore(n, r); !m) return m;
  return {};
}

Result<std::unique_ptr<tpm::Tpm>> Pipeline::open_tpm(const std::string& tcti) {
  if (opts_.open_tpm) return opts_.open_tpm(tcti);
  auto t = tpm::EsysTpm::open(tcti);
  if (!t) return tl::unexpected(t.error());
  return std::unique_ptr<tpm::Tpm>(std::move(*t));
}

// ---------------------------------------------------------------------------------------------
// the event path

std::vector<ChainLink> Pipeline::links(const std::vector<Namespace*>& chain, const FileRef& f) {
  std::vector<ChainLink> out;
  out.reserve(chain.size());
  for (Namespace* n : chain) {
    NsRuntime& r = reg_.rt(n);
    ChainLink l;
    l.ns_id = n->id;
    l.policy = r.policy.get();
    l.measuring = !r.disabled && r.list;
    l.default_pcr = r.list ? r.list->config().default_pcr : reg_.default_pcr_of(n);
    l.default_template = r.list ? r.list->config().default_template : opts_.default_template;
    l.hash_algo = r.list ? r.list->config().hash_algo : opts_.hash_algo;
    l.file = r.files.find(f);
    l.appraise = r.appraise;
    out.push_back(l);
  }
  return out;
}

bool Pipeline::process(Event& ev) {
  counters_.processed++;
  // Not an access: a security.ima written at run time, appraised now for every class.
  if (ev.hook == Hook::kSetxattr) return setxattr_event(ev);
  // Not an access: an attempt on nsima refused in the kernel (self-protection).
  if (ev.hook == Hook::kProtect) return protect_event(ev);
  model_seen_ktime_ = std::max(model_seen_ktime_, ev.ktime_ns);  // orders the model's streams
  Namespace* ns = reg_.find(ev.ns_id);
  bool live = ns != nullptr;
  if (!ns) {
    // Tagged with a namespace deleted since: the chain it had above still judges the access.
    counters_.unknown_namespace++;
    for (uint32_t id = ev.ns_id; !ns;) {
      auto p = reg_.former_parent(id);
      if (!p) break;
      ns = reg_.find(*p);
      id = *p;
    }
    if (!ns) return false;
  }
  auto chain = reg_.chain(ns);
  FileRef f = FileRef::of(ev);
  Judgement j = judge(ev, links(chain, f), opts_.hash_algo);
  for (uint32_t id : j.must) reg_.rt(reg_.find(id)).files[f].must = true;
  for (auto& v : j.violations) rec_->violation(reg_.find(v.ns_id), v.name);
  if (j.known_fail && j.targets.empty()) {
    // This version already failed appraisal in an enforcing namespace of the chain (its deny
    // was dropped, e.g. by a policy load of another namespace): deny again, no read.
    if (live) {
      verdicts_.judged_deny(reg_.chain_ids(ns), f, ev.stamp, 1u << ev.access_class());
      reg_.rt(ns).files[f].denied = true;
    }
    notify_watchers(chain, ev, "denied: appraisal failed earlier");
    return false;
  }
  // A modeled namespace needs every file's digest, and every access as an event.
  const bool model_read = live && model_wants(ns, ev);
  if (model_read) model_adjust(ns, j);
  if (!j.read_needed() && !model_read) {
    if (live) write_verdict(ev, chain, j.quiet);
    notify_watchers(chain, ev);
    return false;
  }
  if (j.path_unknown) {
    // No usable path: the access is measured as a violation, never skipped; a file that must
    // be appraised gets no verdict (an enforcing namespace keeps denying its first access).
    for (auto& t : j.targets)
      rec_->violation(reg_.find(t.ns_id), "nsima:unknown-path:ino-" + std::to_string(ev.ino));
    for (auto& a : j.appraise)
      if (Namespace* an = reg_.find(a.ns_id))
        audit(an, ev, {{"kind", "appraise"}, {"result", "unknown"},
                       {"reason", "the access has no usable path: the file cannot be appraised"}});
    if (live && j.appraise.empty()) write_verdict(ev, chain, false);
    notify_watchers(chain, ev);
    return false;
  }
  std::vector<uint32_t> ids;
  for (auto& t : j.targets) {
    Namespace* tn = reg_.find(t.ns_id);
    ids.push_back(t.ns_id);
    ids.push_back(reg_.owner_of(tn)->id);
  }
  if (model_read) {
    ids.push_back(ns->id);  // the model's barrier waits for the read too
    model_expect(ev);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  pending_add(ev.seq, ids);
  {
    std::lock_guard lock(pending_mu_);
    pending_what_[ev.seq] = ev.path;
  }
  counters_.hash_jobs++;
  access::FileAccessor::Request req;
  req.seq = ev.seq;
  req.queue = ns->id;
  req.ev = ev;
  req.algos = j.algos;
  req.want_ima_xattr = j.want_ima_xattr;
  req.algo_from_xattr = j.algo_from_xattr;
  auto shared = std::make_shared<std::pair<Event, Judgement>>(ev, std::move(j));
  req.done = [this, shared, ids](const access::AccessResult& r) {
    post([this, shared, ids, r] {
      accessed(shared->first, shared->second, r);
      if (done_hook_) done_hook_(shared->first.seq);
      pending_done(shared->first.seq, ids);
    });
  };
  accessor_->submit(std::move(req));
  return true;
}

void Pipeline::accessed(const Event& ev, const Judgement& j, const access::AccessResult& r) {
  if (model_feed_.count(ev.seq)) model_file_done(ev, r);
  Namespace* ns = reg_.find(ev.ns_id);
  bool live = ns != nullptr;
  if (!ns && !j.targets.empty()) ns = reg_.find(j.targets.back().ns_id);
  std::vector<Namespace*> chain = ns ? reg_.chain(ns) : std::vector<Namespace*>{};
  if (!r) {
    // The file could not be read as the process saw it (vanished, replaced, stalled): a
    // violation entry in every list that wanted it, and no verdict, so a later access retries.
    counters_.unreadable++;
    static std::atomic<uint64_t> logged{0};
    if (logged.fetch_add(1) < 20)
      logger("measure")->warn("cannot measure {}: {}", ev.path, r.error().to_string());
    for (auto& t : j.targets)
      if (Namespace* n = reg_.find(t.ns_id))
        rec_->violation(n, unreadable_name(r.error(), ev.path));
    notify_watchers(chain, ev, "violation: " + r.error().to_string());
    return;
  }
  FileRef f = FileRef::of(ev);
  std::string measured_in;
  bool unrecorded = false;
  for (auto& t : j.targets) {
    Namespace* n = reg_.find(t.ns_id);
    if (!n) continue;
    NsRuntime& rr = reg_.rt(n);
    if (rr.disabled || !rr.list) continue;
    auto& m = rr.files[f];
    if (m.stamp != ev.stamp) m = FileState{ev.stamp, 0, m.must};
    if (m.pcrs >> t.pcr & 1) continue;
    measure::Entry e;
    e.tmpl = t.tmpl;
    e.pcr = t.pcr;
    const auto& lc = rr.list->config();
    measure::HashAlgo want =
        t.tmpl == measure::TemplateKind::kIma ? measure::HashAlgo::kSha1 : lc.hash_algo;
    for (size_t i = 0; i < r->algos.size() && i < r->digests.size(); ++i)
      if (r->algos[i] == want) e.digest = r->digests[i];
    e.name = ev.path;
    if (template_has_sig(t.tmpl) && r->ima_xattr) e.ima_xattr = *r->ima_xattr;
    if (!rec_->entry(n, e)) {  // suspended (no space) or stopped: not measured, not judged
      unrecorded = true;
      continue;
    }
    m.pcrs |= 1ull << t.pcr;
    if (!measured_in.empty()) measured_in += ",";
    measured_in += n->name;
  }
  bool deny = j.known_fail;
  if (!j.appraise.empty()) {
    if (r->changed) {
      // The digests are of a newer version than the event's: decide nothing (an enforcing
      // namespace keeps denying the first access of the new version, which is judged anew).
      notify_watchers(chain, ev, "changed while read: not appraised");
      return;
    }
    deny |= appraise_access(ev, j, *r, chain);
  }
  if (live && deny) {
    counters_.appraise_denied++;
    // Refused for this access class only: another class the policy does not appraise (a read
    // of a binary whose exec failed) is decided on its own, as kernel IMA's per-func status.
    verdicts_.judged_deny(reg_.chain_ids(reg_.find(ev.ns_id)), f, ev.stamp,
                          1u << ev.access_class());
    reg_.rt(reg_.find(ev.ns_id)).files[f].denied = true;
    notify_watchers(chain, ev, "denied: appraisal failed");
    return;
  }
  if (unrecorded) {
    // No verdict: the next access is an event again (denied first in a suspended namespace).
    notify_watchers(chain, ev, "not recorded: namespace suspended or stopped");
    return;
  }
  // A file that changed while it was read gets no quiet bit: the next access measures again.
  if (live) write_verdict(ev, chain, j.quiet && !r->changed, j.model_quiet && !r->changed);
  notify_watchers(chain, ev, measured_in.empty() ? "" : "measured in " + measured_in);
}

void Pipeline::write_verdict(const Event& ev, const std::vector<Namespace*>& chain, bool quiet,
                             bool model_quiet) {
  if (!maps_ || chain.empty()) return;
  std::vector<uint32_t> ids;
  for (Namespace* n : chain) ids.push_back(n->id);
  const uint32_t bit = 1u << ev.access_class();
  verdicts_.judged_allow(ids, FileRef::of(ev), ev.stamp, quiet ? bit : 0, bit,
                         model_quiet ? bit : 0);
}

void Pipeline::check_drops() {
  if (!maps_) return;
  // Hook counters that are nobody's namespace: the host list says what was not measured.
  if (auto st = maps_->stats()) {
    Namespace& host = reg_.host();
    NsRuntime& hr = reg_.rt(&host);
    bool changed = false;
    if (st->unresolved > hr.cfg.unresolved_seen) {
      rec_->violation(&host, "nsima:unresolved-namespace:" +
                                 std::to_string(st->unresolved - hr.cfg.unresolved_seen));
      hr.cfg.unresolved_seen = st->unresolved;
      changed = true;
    }
    if (st->drop_no_ns > hr.cfg.unattributed_drops_seen) {
      rec_->violation(&host, "nsima:lost-events:" +
                                 std::to_string(st->drop_no_ns - hr.cfg.unattributed_drops_seen));
      hr.cfg.unattributed_drops_seen = st->drop_no_ns;
      changed = true;
    }
    if (changed) (void)reg_.save(hr);
    check_protect(*st);
  }
  model_check_drops();
  auto drops = maps_->ns_drops();
  if (!drops) return;
  for (auto& [ns_id, count] : *drops) {
    Namespace* n = reg_.find(ns_id);
    if (!n) continue;
    NsRuntime& r = reg_.rt(n);
    if (count <= r.drops_seen) continue;
    uint64_t lost = count - r.drops_seen;
    r.drops_seen = count;
    // The lost events would have been judged by the whole chain: every list that measures
    // anything records that it may miss entries (kernel IMA's violation form).
    for (Namespace* c : reg_.chain(n))
      if (reg_.rt(c).policy->has_action(policy::Action::kMeasure))
        rec_->violation(c, "nsima:lost-events:" + std::to_string(lost));
    r.cfg.drops_seen = count;
    // A modeled namespace's model missed these file events' coefficients (model state says so).
    if (r.modeler) model_lost(n, r, lost, 0);
    (void)reg_.save(r);  // recorded: a restart on the same maps must not record them again
    logger("capture")->warn("namespace {}: {} events lost (ring buffer full)", n->name, lost);
  }
}

void Pipeline::notify_watchers(const std::vector<Namespace*>& chain, const Event& ev,
                               const std::string& note) {
  if (watchers_.empty()) return;
  std::string line;
  for (Namespace* n : chain) {
    auto [b, e] = watchers_.equal_range(n->id);
    for (auto it = b; it != e; ++it) {
      if (line.empty()) {
        line = event_to_json(ev);
        if (!note.empty()) {
          line.pop_back();  // '}'
          line += ",\"nsima\":" + nlohmann::json(note).dump() + "}";
        }
      }
      it->second->offer(line);
    }
  }
}

std::shared_ptr<Watcher> Pipeline::watch(uint32_t ns_id) {
  auto w = std::make_shared<Watcher>();
  call([&] { watchers_.emplace(ns_id, w); });
  return w;
}

void Pipeline::unwatch(const std::shared_ptr<Watcher>& w) {
  call([&] {
    for (auto it = watchers_.begin(); it != watchers_.end();) {
      if (it->second == w)
        it = watchers_.erase(it);
      else
        ++it;
    }
  });
}

PipelineCounters Pipeline::counters() {
  return call([&] {
    PipelineCounters c = counters_;
    c.measured = rec_ ? rec_->counters().measured : 0;
    c.violations = rec_ ? rec_->counters().violations : 0;
    c.map_errors += verdicts_.errors();
    const auto t = reg_.trust_counters();
    c.trust_entries = t.entries;
    c.trust_not_in_map = t.not_in_map;
    c.trust_full_events = t.full_events;
    return c;
  });
}

std::vector<std::shared_ptr<Extender>> Pipeline::extenders() {
  return call([&] {
    std::vector<std::shared_ptr<Extender>> out;
    for (Namespace* x : reg_.all())
      if (auto& e = reg_.rt(x).extender) out.push_back(e);
    return out;
  });
}

uint64_t Pipeline::extends_done() {
  uint64_t n = 0;
  for (auto& e : extenders()) n += e->done();
  return n;
}

uint64_t Pipeline::extends_failed() {
  uint64_t n = 0;
  for (auto& e : extenders()) n += e->failed();
  return n;
}

access::FileAccessor::Stats Pipeline::access_stats() const {
  return accessor_ ? accessor_->stats() : access::FileAccessor::Stats{};
}

measure::DigestCache::Stats Pipeline::digest_cache_stats() const {
  return digests_ ? digests_->stats() : measure::DigestCache::Stats{};
}

}  // namespace nsima::ns

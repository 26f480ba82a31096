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

#include "common/hex.h"
#include "common/log.h"
#include "measure/list_format.h"
#include "measure/template.h"
#include "ns/cgroup.h"
#include "tpm/esys_tpm.h"
#include "tpm/pcr_policy.h"

namespace nsima::ns {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds left(Clock::time_point deadline) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return d.count() > 0 ? d : std::chrono::milliseconds(0);
}

// How deep a cgroup directory is (restored namespaces are re-created parents first).
size_t depth(const std::string& p) { return static_cast<size_t>(std::count(p.begin(), p.end(), '/')); }

// A TPM a namespace is about to own, opened off the pipeline thread.
struct OwnTpm {
  std::shared_ptr<tpm::Tpm> tpm;
  bool fresh = false;  // its PCRs are at their reset values (new vTPM, new boot)
};

// Violation names (daemon/README.md, "Violations"): what happened, then what it concerns.
std::string unreadable_name(const access::AccessError& e, const std::string& path) {
  return "nsima:unreadable:" + std::string(access::access_error_kind_name(e.kind)) + ":" + path;
}

// The first live process in `dir` or a cgroup below it (at most a few hundred directories).
pid_t live_process_in(const std::string& dir) {
  std::vector<std::string> todo{dir};
  for (size_t i = 0; i < todo.size() && i < 512; ++i) {
    FILE* f = fopen((todo[i] + "/cgroup.procs").c_str(), "re");
    if (f) {
      long pid = 0;
      while (fscanf(f, "%ld", &pid) == 1)
        if (pid > 0 && kill(static_cast<pid_t>(pid), 0) == 0) {
          fclose(f);
          return static_cast<pid_t>(pid);
        }
      fclose(f);
    }
    std::error_code ec;
    for (auto& d : fs::directory_iterator(todo[i], ec))
      if (d.is_directory(ec)) todo.push_back(d.path().string());
  }
  return -1;
}

// Opens `path` for reading inside `root_fd` as a process with that root would: symlinks cannot
// leave it, magic links are refused, and only a regular file is opened (never a FIFO or device).
Result<UniqueFd> open_regular_in(int root_fd, const std::string& path) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long p = -1;
  for (int i = 0; i < 8; ++i) {
    p = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
    if (p >= 0 || errno != EAGAIN) break;
  }
  if (p < 0) return make_error(errno, std::string("cannot open: ") + strerror(errno), path);
  UniqueFd pathfd(static_cast<int>(p));
  struct stat st;
  if (fstat(pathfd.get(), &st) != 0) return make_error(errno, strerror(errno), path);
  if (!S_ISREG(st.st_mode)) return make_error(EINVAL, "is not a regular file", path);
  std::string self = "/proc/self/fd/" + std::to_string(pathfd.get());
  UniqueFd fd(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) return make_error(errno, std::string("cannot open: ") + strerror(errno), path);
  return fd;
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

Pipeline::~Pipeline() { stop(); }

// ---------------------------------------------------------------------------------------------
// the pipeline thread

template <class F>
auto Pipeline::call(F&& f) -> decltype(f()) {
  using R = decltype(f());
  if (!running_.load() || std::this_thread::get_id() == thread_id_) return f();
  auto p = std::make_shared<std::promise<R>>();
  auto fut = p->get_future();
  bool posted = false;
  {
    std::lock_guard lock(mu_);
    if (running_.load()) {
      tasks_.push_back([p, &f]() {
        if constexpr (std::is_void_v<R>) {
          f();
          p->set_value();
        } else {
          p->set_value(f());
        }
      });
      posted = true;
    }
  }
  if (!posted) return f();  // the thread has ended meanwhile
  wake_.notify_one();
  return fut.get();
}

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
    }
    if (Clock::now() - last_tick_ >= std::chrono::milliseconds(200)) tick();
  }
}

void Pipeline::stop() {
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  thread_id_ = {};
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
  for (Namespace* n : reg_.all()) {
    NsRuntime& r = reg_.rt(n);
    if (r.list) (void)r.list->sync_if_due();
  }
}

void Pipeline::submit(Event&& ev) {
  if (ev.seq == 0) ev.seq = local_seq_.fetch_add(1) + 1;
  // The root the event's path is relative to, taken now: the process may be gone by the time
  // its file is read.
  if (roots_) roots_->capture(ev);
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
    pending_cv_.wait(lock, [&] {
      return judged_seq_.load() >= submitted_seq_.load() && reads_in_flight_ == 0;
    });
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
  digests_ = std::make_unique<measure::DigestCache>();
  roots_ = std::make_unique<access::RootCache>(access::RootCache::Options{});
  access::FileAccessor::Options ao;
  ao.workers = opts_.hash_threads;
  ao.timeout = opts_.hash_timeout;
  ao.queue_capacity = opts_.access_queue;
  accessor_ = std::make_unique<access::FileAccessor>(ao, roots_.get(), digests_.get());
  tpm::VtpmOptions vopts;
  vopts.state_root = fs::path(opts_.state_dir) / "vtpm";
  vopts.run_root = fs::path(opts_.run_dir) / "vtpm";
  vopts.swtpm = opts_.swtpm;
  vtpms_ = std::make_unique<tpm::VtpmManager>(vopts);
  RecorderOptions ro{opts_.state_dir, opts_.hash_algo, opts_.default_template};
  rec_ = std::make_unique<Recorder>(ro, reg_, [this](uint32_t owner, const ExtendJob& job,
                                                     const Error& e) {
    // On the extender's thread: hand it to the pipeline thread, take nothing here.
    std::string what = "extend of entry " + std::to_string(job.index) + " failed: " + e.to_string();
    post([this, owner, what] {
      if (Namespace* n = reg_.find(owner)) rec_->disable(n, "extend-failed", what);
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
  }
  return {};
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
  if (r.own_tpm) rec_->attach_tpm(n, r);
  if (auto s = rec_->open_list(n, r); !s) return s;
  if (auto s = rec_->reconcile(n, r); !s) return s;
  // Accesses while no nsimad captured (the hooks were attached afresh) were never seen: say so
  // in every list that continues from before.
  if (continued && !opts_.capture_gap.empty() && !r.disabled)
    rec_->violation(n, "nsima:capture-gap:" + opts_.capture_gap);
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
    auto it = r.files.find(f);
    l.file = it == r.files.end() ? nullptr : &it->second;
    out.push_back(l);
  }
  return out;
}

bool Pipeline::process(Event& ev) {
  counters_.processed++;
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
  const uint32_t bit = 1u << ev.access_class();
  if (j.targets.empty()) {
    if (live) write_verdict(ev, chain, j.quiet ? bit : 0);
    notify_watchers(chain, ev);
    return false;
  }
  if (j.path_unknown) {
    // No usable path: the access is measured as a violation, never skipped.
    for (auto& t : j.targets)
      rec_->violation(reg_.find(t.ns_id), "nsima:unknown-path:ino-" + std::to_string(ev.ino));
    if (live) write_verdict(ev, chain, 0);
    notify_watchers(chain, ev);
    return false;
  }
  std::vector<uint32_t> ids;
  for (auto& t : j.targets) {
    Namespace* tn = reg_.find(t.ns_id);
    ids.push_back(t.ns_id);
    ids.push_back(reg_.owner_of(tn)->id);
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
      if (Namespace* n = reg_.find(t.ns_id)) rec_->violation(n, unreadable_name(r.error(), ev.path));
    notify_watchers(chain, ev, "violation: " + r.error().to_string());
    return;
  }
  FileRef f = FileRef::of(ev);
  std::string measured_in;
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
    for (size_t i = 0; i < j.algos.size() && i < r->digests.size(); ++i)
      if (j.algos[i] == want) e.digest = r->digests[i];
    e.name = ev.path;
    if (template_has_sig(t.tmpl) && r->ima_xattr) e.ima_xattr = *r->ima_xattr;
    rec_->entry(n, e);
    m.pcrs |= 1ull << t.pcr;
    if (!measured_in.empty()) measured_in += ",";
    measured_in += n->name;
  }
  // A file that changed while it was read gets no quiet bit: the next access measures again.
  if (live) write_verdict(ev, chain, j.quiet && !r->changed ? 1u << ev.access_class() : 0);
  notify_watchers(chain, ev, measured_in.empty() ? "" : "measured in " + measured_in);
}

void Pipeline::write_verdict(const Event& ev, const std::vector<Namespace*>& chain,
                             uint32_t quiet_bits) {
  if (!maps_ || chain.empty()) return;
  std::vector<uint32_t> ids;
  for (Namespace* n : chain) ids.push_back(n->id);
  verdicts_.judged_allow(ids, FileRef::of(ev), ev.stamp, quiet_bits);
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
  }
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

// ---------------------------------------------------------------------------------------------
// control plane

Result<Namespace*> Pipeline::find_ns(const std::string& name_or_id) {
  Namespace* n = reg_.find(name_or_id);
  if (!n) return make_error(ENOENT, "no such namespace", name_or_id);
  return n;
}

Result<void> Pipeline::after_topology(const std::vector<Namespace*>& owner_changed,
                                      const char* why) {
  for (Namespace* x : owner_changed) {
    NsRuntime& r = reg_.rt(x);
    // Its entries went to the old owner's list and TPM: a list is always under one owner.
    if (auto s = rec_->restart_list(x, r, why); !s) return s;
    if (auto v = verdicts_.invalidate(x->id); !v) counters_.map_errors++;
  }
  return {};
}

Result<uint32_t> Pipeline::create_namespace(const std::string& cgroup_path,
                                            const CreateOptions& o) {
  auto dir = canonical_dir(cgroup_path);
  if (!dir) return tl::unexpected(dir.error());
  auto cgid = cgroup_id_of(*dir);
  if (!cgid) return tl::unexpected(cgid.error());
  std::shared_ptr<const policy::Policy> pol = std::make_shared<policy::Policy>();
  if (!o.policy_text.empty()) {
    auto p = policy::Policy::parse(o.policy_text, o.policy_origin);
    if (!p) return tl::unexpected(p.error());
    pol = std::make_shared<policy::Policy>(std::move(*p));
  }
  // 1. an id, checked and reserved on the pipeline thread
  auto id = call([&]() -> Result<uint32_t> {
    if (*dir == reg_.cgroup_root()) return make_error(EEXIST, "is the host namespace", *dir);
    if (Namespace* e = reg_.find_by_cgroup(*dir))
      return make_error(EEXIST, "already bound to namespace " + e->name, *dir);
    if (reg_.size() > kMaxNamespaces)
      return make_error(ENOSPC, "nsima holds at most " + std::to_string(kMaxNamespaces) +
                                    " namespaces besides host", *dir);
    return reg_.allocate_id();
  });
  if (!id) return id;
  std::string name = std::to_string(*id);
  // 2. its vTPM, started here (slow) rather than on the pipeline thread
  std::shared_ptr<tpm::Tpm> own;
  if (o.vtpm) {
    auto inst = vtpms_->start(name);
    if (!inst) return tl::unexpected(inst.error());
    auto t = open_tpm(inst->tcti);
    if (!t) {
      (void)vtpms_->destroy(name);
      return tl::unexpected(t.error());
    }
    own = std::move(*t);
  }
  // 3. into the tree, list, BPF, verdicts
  auto r = call([&]() -> Result<uint32_t> {
    NsConfig cfg{name, *id, *dir, o.vtpm, o.policy_origin, o.policy_text, ""};
    auto ins = reg_.insert(*dir, *cgid, cfg, pol);
    if (!ins) return tl::unexpected(ins.error());
    Namespace* n = ins->ns;
    NsRuntime& rt = reg_.rt(n);
    rt.own_tpm = own;
    auto undo = [&](const Error& e) -> Result<uint32_t> {
      (void)reg_.remove(n);
      std::error_code ec;
      fs::remove_all(ns_dir(opts_.state_dir, name), ec);
      return tl::unexpected(e);
    };
    if (auto s = open_runtime(n, rt, false); !s) return undo(s.error());
    if (auto s = reg_.register_bpf(n); !s) return undo(s.error());
    for (Namespace* x : reg_.subtree(n))
      if (auto a = verdicts_.apply(reg_.chain_ids(x)); !a) return undo(a.error());
    if (auto t = after_topology(ins->owner_changed, "owner-changed"); !t)
      logger("ns")->error("namespace {}: {}", n->name, t.error().to_string());
    logger("ns")->info("namespace {} created for {} (cgroup id {}), parent {}{}{}", n->name, *dir,
                       *cgid, n->parent->name, o.vtpm ? ", own vTPM" : "",
                       o.policy_origin.empty() ? "" : ", policy " + o.policy_origin);
    return n->id;
  });
  if (!r && o.vtpm) (void)vtpms_->destroy(name);  // a fresh vTPM nobody will use
  return r;
}

Result<uint32_t> Pipeline::ensure_namespace(const std::string& cgroup_path) {
  auto dir = canonical_dir(cgroup_path);
  if (!dir) return tl::unexpected(dir.error());
  auto known = call([&]() -> Result<uint32_t> {
    if (*dir == reg_.cgroup_root()) {
      Namespace& host = reg_.host();
      if (auto r = reg_.register_bpf(&host); !r) return tl::unexpected(r.error());
      return host.id;
    }
    if (Namespace* ns = reg_.find_by_cgroup(*dir)) return ns->id;
    return 0u;
  });
  if (!known || *known) return known;
  return create_namespace(*dir, {});
}

Result<void> Pipeline::delete_namespace(const std::string& name_or_id) {
  auto removed = call([&]() -> Result<Registry::Removed> {
    auto n = find_ns(name_or_id);
    if (!n) return tl::unexpected(n.error());
    if ((*n)->is_host())
      return make_error(EPERM, "the host namespace cannot be deleted", name_or_id);
    uint32_t id = (*n)->id;
    Namespace copy = **n;  // cgroup id, for unregistering after removal
    auto rm = reg_.remove(*n);
    if (!rm) return tl::unexpected(rm.error());
    if (maps_) {
      if (auto u = maps_->unregister_cgroup(copy.cgroup_id); !u) counters_.map_errors++;  // bumps the epoch
    }
    if (auto f = verdicts_.forget(id); !f) counters_.map_errors++;
    for (Namespace* x : rm->moved)
      if (auto a = verdicts_.apply(reg_.chain_ids(x)); !a) counters_.map_errors++;
    accessor_->drop_queue(id);
    if (auto t = after_topology(rm->owner_changed, "owner-changed"); !t)
      logger("ns")->error("after deleting {}: {}", name_or_id, t.error().to_string());
    auto [b, e] = watchers_.equal_range(id);
    for (auto it = b; it != e; ++it) it->second->close();
    watchers_.erase(id);
    (void)remove_ns_config(opts_.state_dir, rm->runtime->cfg.name);
    return rm;
  });
  if (!removed) return tl::unexpected(removed.error());
  // Off the pipeline thread: finish its extends, close its list, archive list and vTPM state.
  auto& rt = removed->runtime;
  std::string name = rt->cfg.name;
  if (rt->extender) rt->extender->drain();
  rt->extender.reset();
  if (rt->list) (void)rt->list->close();
  rt->own_tpm.reset();
  auto archived = archive_ns_dir(opts_.state_dir, name, "deleted-" + current_boot_id());
  if (rt->cfg.vtpm) {
    (void)vtpms_->stop(name);
    // The vTPM's state goes with its list (evidence for an auditor), never to a later tenant.
    fs::path state = fs::path(opts_.state_dir) / "vtpm" / name;
    std::error_code ec;
    if (archived && fs::exists(state, ec)) fs::rename(state, fs::path(*archived) / "vtpm", ec);
    if (!archived || ec) (void)vtpms_->destroy(name);
  }
  logger("ns")->info("namespace {} deleted{}", name,
                     archived ? ", list archived at " + *archived : "");
  return {};
}

Pipeline::NsInfo Pipeline::info(Namespace* n) {
  NsRuntime& r = reg_.rt(n);
  NsInfo i;
  i.id = n->id;
  i.name = n->name;
  i.cgroup_path = n->cgroup_path;
  i.parent = n->parent ? n->parent->name : "";
  i.cgroup_id = n->cgroup_id;
  i.vtpm = r.cfg.vtpm;
  Namespace* owner = reg_.owner_of(n);
  i.owner = owner->name;
  if (r.list) {
    i.pcr = static_cast<int>(r.list->config().default_pcr);
    i.entries = r.list->count();
    i.violations = r.list->violations();
    i.list_path = r.list->path().string();
  }
  if (auto* t = reg_.rt(owner).own_tpm.get()) i.tpm = t->describe();
  i.policy_origin = r.cfg.policy_origin;
  i.policy_rules = r.policy->size();
  i.disabled = r.disabled;
  i.disabled_reason = r.disabled_reason;
  return i;
}

std::vector<Pipeline::NsInfo> Pipeline::list_namespaces() {
  return call([&] {
    std::vector<NsInfo> out;
    for (Namespace* ns : reg_.all()) out.push_back(info(ns));
    return out;
  });
}

std::optional<Pipeline::NsInfo> Pipeline::namespace_info(const std::string& name_or_id) {
  return call([&]() -> std::optional<NsInfo> {
    Namespace* ns = reg_.find(name_or_id);
    if (!ns) return std::nullopt;
    return info(ns);
  });
}

Result<size_t> Pipeline::load_policy(const std::string& name_or_id, const std::string& text,
                                     const std::string& origin) {
  auto p = policy::Policy::parse(text, origin);
  if (!p) return tl::unexpected(p.error());
  auto pol = std::make_shared<policy::Policy>(std::move(*p));
  return call([&]() -> Result<size_t> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    if (auto v = reg_.validate_policy(*pol, reg_.owner_of(*ns)); !v)
      return tl::unexpected(v.error());
    NsRuntime& r = reg_.rt(*ns);
    NsConfig old = r.cfg;
    r.cfg.policy_text = text;
    r.cfg.policy_origin = origin;
    if (auto s = reg_.save(r); !s) {
      r.cfg = old;
      return tl::unexpected(s.error());
    }
    r.policy = pol;
    // Every file is judged again under the new policy; operator denies stay.
    for (Namespace* s : reg_.subtree(*ns))
      if (auto v = verdicts_.invalidate(s->id); !v) counters_.map_errors++;
    if ((*ns)->is_host() && !pol->empty())
      if (auto reg = reg_.register_bpf(*ns); !reg) return tl::unexpected(reg.error());
    logger("policy")->info("namespace {}: policy {} loaded ({} rules)", (*ns)->name, origin,
                           pol->size());
    return pol->size();
  });
}

Result<std::string> Pipeline::policy_text(const std::string& name_or_id) {
  return call([&]() -> Result<std::string> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    return reg_.rt(*ns).policy->to_string();
  });
}

Result<void> Pipeline::barrier(const std::string& name_or_id) {
  const auto deadline = Clock::now() + opts_.barrier_timeout;
  // 1. every record committed to the ring buffer before now is handed to submit()
  uint64_t upto = submitted_seq_.load();
  if (intake_sync_) {
    auto s = intake_sync_(left(deadline));
    if (!s) return tl::unexpected(s.error());
    upto = std::max(upto, *s);
  }
  // 2. ... and judged
  {
    std::unique_lock lock(pending_mu_);
    if (!pending_cv_.wait_until(lock, deadline, [&] { return judged_seq_.load() >= upto; }))
      return make_error(ETIMEDOUT,
                        "events up to #" + std::to_string(upto) + " are not judged after " +
                            std::to_string(opts_.barrier_timeout.count()) + " ms (judged #" +
                            std::to_string(judged_seq_.load()) + ")",
                        name_or_id);
  }
  // 3. the reads of those events that concern this namespace's list are recorded
  auto ids = call([&]() -> Result<std::vector<uint32_t>> {
    auto n = find_ns(name_or_id);
    if (!n) return tl::unexpected(n.error());
    std::vector<uint32_t> out{(*n)->id};
    if (reg_.owns_pcr(*n))
      for (Namespace* x : reg_.all())
        if (x != *n && reg_.owner_of(x) == *n) out.push_back(x->id);
    return out;
  });
  if (!ids) return tl::unexpected(ids.error());
  {
    std::unique_lock lock(pending_mu_);
    auto oldest = [&]() -> std::optional<uint64_t> {
      std::optional<uint64_t> o;
      for (uint32_t id : *ids) {
        auto it = pending_.find(id);
        if (it != pending_.end() && !it->second.empty() && *it->second.begin() <= upto)
          o = o ? std::min(*o, *it->second.begin()) : *it->second.begin();
      }
      return o;
    };
    if (!pending_cv_.wait_until(lock, deadline, [&] { return !oldest(); })) {
      auto o = oldest();
      std::string what = o && pending_what_.count(*o) ? pending_what_[*o] : "?";
      return make_error(ETIMEDOUT,
                        "an access made before this request is still being measured after " +
                            std::to_string(opts_.barrier_timeout.count()) + " ms (event #" +
                            std::to_string(o.value_or(0)) + ", " + what +
                            "); the list would be incomplete",
                        name_or_id);
    }
  }
  // 4. and their entries extended into the owner's PCR. The reads' entries were appended by
  // tasks that ran before this one, so the extender's mark covers them.
  auto ext = call([&]() -> std::pair<std::shared_ptr<Extender>, uint64_t> {
    Namespace* n = reg_.find(name_or_id);
    if (!n) return {nullptr, 0};
    auto& e = reg_.rt(reg_.owner_of(n)).extender;
    return {e, e ? e->pushed() : 0};
  });
  if (ext.first && !ext.first->wait(ext.second, left(deadline)))
    return make_error(ETIMEDOUT,
                      "PCR extends into " + ext.first->tpm().describe() + " are not done after " +
                          std::to_string(opts_.barrier_timeout.count()) + " ms",
                      name_or_id);
  return {};
}

Result<Pipeline::ListView> Pipeline::list_view(const std::string& name_or_id) {
  return call([&]() -> Result<ListView> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    auto& l = reg_.rt(*ns).list;
    if (!l) return make_error(ENODATA, "has no list", name_or_id);
    return ListView{l->path().string(), l->size_bytes(), l->count()};
  });
}

Result<std::shared_ptr<measure::MeasurementList>> Pipeline::list_of(
    const std::string& name_or_id) {
  return call([&]() -> Result<std::shared_ptr<measure::MeasurementList>> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    auto l = reg_.rt(*ns).list;
    if (!l) return make_error(ENODATA, "has no list", name_or_id);
    return l;
  });
}

Result<std::string> Pipeline::render_list(const std::string& name_or_id, bool ascii) {
  if (auto b = barrier(name_or_id); !b) return tl::unexpected(b.error());
  return render_list(name_or_id, ascii, 0, UINT64_MAX);
}

Result<Pipeline::AttestSnap> Pipeline::attest_snapshot(const std::string& name_or_id) {
  if (auto b = barrier(name_or_id); !b) return tl::unexpected(b.error());
  return call([&]() -> Result<AttestSnap> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    Namespace* owner = reg_.owner_of(*ns);
    NsRuntime& o = reg_.rt(owner);
    if (!o.own_tpm)
      return make_error(ENODEV, "namespace " + owner->name + " has no TPM", name_or_id);
    if (!reg_.rt(*ns).list || !o.list) return make_error(ENODATA, "has no list", name_or_id);
    return AttestSnap{o.own_tpm, o.list,
                      static_cast<int>(reg_.rt(*ns).list->config().default_pcr)};
  });
}

Result<std::string> Pipeline::render_list(const std::string& name_or_id, bool ascii,
                                          uint64_t from_index, uint64_t to_index) {
  // Rendered on the caller's thread: the list is shared and internally synchronised.
  auto l = list_of(name_or_id);
  if (!l) return tl::unexpected(l.error());
  const measure::MeasurementList& list = **l;
  to_index = std::min(to_index, list.count());
  std::string out;
  if (from_index >= to_index) return out;
  // for_each() streams to the end of the list; a sentinel error stops it at to_index.
  static const Error kStop{ECANCELED, "render_list: stop", ""};
  auto r = list.for_each(from_index, [&](uint64_t index, const measure::Record& rec) -> Result<void> {
    if (index >= to_index) return tl::unexpected(kStop);
    if (!ascii) {
      measure::append_binary(rec, out);
      return {};
    }
    return measure::append_ascii(rec, measure::HashAlgo::kSha1, out);
  });
  if (!r && !(r.error().code == kStop.code && r.error().message == kStop.message))
    return tl::unexpected(r.error());
  return out;
}

Result<Pipeline::PcrReport> Pipeline::pcr_report(const std::string& name_or_id) {
  auto snap = attest_snapshot(name_or_id);
  if (!snap) return tl::unexpected(snap.error());
  PcrReport rep;
  rep.pcr = snap->pcr;
  rep.tpm = snap->tpm->describe();
  for (auto b : snap->owner_list->config().banks) {
    auto v = snap->tpm->read_pcr(rep.pcr, *bank_of(b));
    if (!v) return tl::unexpected(v.error());
    std::string name(measure::hash_algo_name(b));
    rep.values[name] = to_hex(*v);
    // Entries appended after the barrier may be extended by now: the expected value is the
    // replay of the longest prefix the PCR matches, or of the whole list if none does.
    auto value = measure::Digest::from_bytes(b, *v);
    uint64_t n = snap->owner_list->count();
    if (value)
      if (auto p = snap->owner_list->extended_prefix(static_cast<uint32_t>(rep.pcr), b, *value);
          p && *p)
        n = **p;
    auto e = snap->owner_list->replay(static_cast<uint32_t>(rep.pcr), b, n);
    if (e) rep.expected[name] = e->hex();
  }
  return rep;
}

Result<tpm::Quote> Pipeline::quote(const std::string& name_or_id,
                                   const std::vector<uint8_t>& nonce) {
  auto snap = attest_snapshot(name_or_id);
  if (!snap) return tl::unexpected(snap.error());
  std::vector<tpm::PcrSelection> sel;
  for (auto b : snap->owner_list->config().banks) sel.push_back({*bank_of(b), {snap->pcr}});
  return snap->tpm->quote(sel, nonce);
}

Result<void> Pipeline::set_file_verdict(const std::string& cgroup_path, const std::string& file,
                                        bool allow, const std::string& root) {
  if (!maps_) return make_error(ENOTSUP, "no BPF programs loaded", file);
  auto ns_id = ensure_namespace(cgroup_path);
  if (!ns_id) return tl::unexpected(ns_id.error());
  auto where = call([&]() -> std::pair<std::string, bool> {
    Namespace* n = reg_.find(*ns_id);
    return {n ? n->cgroup_path : "", n && n->is_host()};
  });
  // The file as the namespace's processes see it.
  UniqueFd root_fd;
  std::string root_desc;
  if (!root.empty()) {
    root_fd.reset(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    root_desc = root;
  } else if (where.second) {
    root_fd.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    root_desc = "/";
  } else {
    pid_t pid = live_process_in(where.first);
    if (pid < 0)
      return make_error(ESRCH,
                        "namespace " + std::to_string(*ns_id) +
                            " has no process to resolve the path in; pass the container's root "
                            "directory as nsimad sees it (--root DIR)",
                        file);
    root_desc = "/proc/" + std::to_string(pid) + "/root";
    root_fd.reset(::open(root_desc.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  }
  if (!root_fd)
    return make_error(errno, std::string("cannot open the root: ") + strerror(errno), root_desc);
  // Open the file ourselves: the hook records the kernel's key and stamp of nsimad's own opens
  // (i_version is invisible to userspace), keyed by our thread id.
  auto fd = open_regular_in(root_fd.get(), file);
  if (!fd) {
    Error e = fd.error();
    e.where = root_desc + ": " + file;
    return tl::unexpected(e);
  }
  struct stat st;
  if (fstat(fd->get(), &st) != 0) return make_error(errno, strerror(errno), file);
  auto self = maps_->self_open(static_cast<uint32_t>(syscall(SYS_gettid)));
  if (!self || self->ino != st.st_ino)
    return make_error(EIO, "the kernel did not report the stamp of nsimad's open", file);
  FileRef f{self->dev, self->ino, self->generation};
  Stamp stamp = capture::from_abi(self->stamp);
  auto r = call([&]() -> Result<void> {
    Namespace* n = reg_.find(*ns_id);
    if (!n) return make_error(ENOENT, "namespace deleted meanwhile", std::to_string(*ns_id));
    if (!allow) return verdicts_.deny(n->id, f, stamp, file, reg_.subtree_ids(n));
    auto chain = reg_.chain_ids(n);
    std::vector<uint32_t> ancestors(chain.begin() + 1, chain.end());
    return verdicts_.allow(n->id, f, ancestors, reg_.subtree_ids(n));
  });
  if (!r) return r;
  logger("ns")->info("{} {} ({}) in namespace {}", allow ? "allow" : "deny", file, root_desc,
                     *ns_id);
  return {};
}

std::vector<Override> Pipeline::overrides() { return verdicts_.overrides(); }

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

}  // namespace nsima::ns

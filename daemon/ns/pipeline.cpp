// SPDX-License-Identifier: Apache-2.0
#include "ns/pipeline.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
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

namespace {

constexpr const char* kImaXattr = "security.ima";
constexpr size_t kMaxXattr = 8192;

std::optional<tpm::Bank> bank_of(measure::HashAlgo a) {
  auto id = measure::tpm_alg_id(a);
  if (!id) return std::nullopt;
  return static_cast<tpm::Bank>(*id);
}

std::vector<tpm::BankDigest> to_bank_digests(const std::vector<measure::Digest>& ds) {
  std::vector<tpm::BankDigest> out;
  for (auto& d : ds) {
    auto b = bank_of(d.algo());
    if (!b) continue;
    out.push_back({*b, std::vector<uint8_t>(d.bytes().begin(), d.bytes().end())});
  }
  return out;
}

bool template_has_sig(measure::TemplateKind k) {
  return k == measure::TemplateKind::kImaSig || k == measure::TemplateKind::kImaSigV2;
}

// The measure decision of one namespace for all the funcs an event stands for (the kernel
// calls process_measurement once per func; a file is measured once per PCR).
struct NsDecision {
  bool measure = false;
  int pcr = -1;
  std::string tmpl;
  bool cred_dependent = false;
};

NsDecision decide(const policy::Policy& p, const std::vector<policy::Access>& accesses) {
  NsDecision out;
  policy::Decision d;
  for (auto& a : accesses) {
    p.evaluate_into(a, d);
    out.cred_dependent |= d.cred_dependent;
    if (d.measure && !out.measure) {
      out.measure = true;
      out.pcr = d.pcr;
      out.tmpl = d.template_name;
    }
  }
  return out;
}

}  // namespace

void Watcher::offer(std::string line) {
  if (!lines_.try_push(std::move(line))) lost_.fetch_add(1);
}

Pipeline::Pipeline(PipelineOptions opts, capture::BpfMaps* maps)
    : opts_(std::move(opts)), maps_(maps), tree_(opts_.cgroup_root, 0),
      queue_(opts_.queue_capacity) {}

Pipeline::~Pipeline() { stop(); }

// ---------------------------------------------------------------------------------------------
// start-up, recovery

bool Pipeline::owns_pcr(const Namespace* n) const {
  return n->is_host() || rt_.at(n->id)->cfg.vtpm;
}

Namespace* Pipeline::owner_of(Namespace* n) {
  while (n && !owns_pcr(n)) n = n->parent;
  return n ? n : &tree_.host();
}

Result<void> Pipeline::init() {
  auto log = logger("ns");
  auto id = cgroup_id_of(opts_.cgroup_root);
  if (!id) return tl::unexpected(id.error());
  struct stat st;
  if (stat("/proc/self/ns/mnt", &st) == 0) self_mnt_ns_ = static_cast<uint32_t>(st.st_ino);

  if (opts_.host_tcti.size()) {
    if (auto r = tpm::check_host_pcr(opts_.host_pcr, opts_.kernel_ima_pcr); !r)
      return tl::unexpected(r.error());
  }
  digests_ = std::make_unique<measure::DigestCache>();
  measure::HashPool::Options popts;
  popts.threads = opts_.hash_threads;
  pool_ = std::make_unique<measure::HashPool>(popts, digests_.get());
  extender_ = std::make_unique<Extender>([this](const ExtendJob& job, const Error& e) {
    std::lock_guard lock(mu_);
    if (Namespace* n = tree_.find(job.list))
      disable_locked(n, "extend of entry " + std::to_string(job.index) + " failed: " +
                            e.to_string());
  });
  tpm::VtpmOptions vopts;
  vopts.state_root = std::filesystem::path(opts_.state_dir) / "vtpm";
  vopts.run_root = std::filesystem::path(opts_.run_dir) / "vtpm";
  vopts.swtpm = opts_.swtpm;
  vtpms_ = std::make_unique<tpm::VtpmManager>(vopts);

  std::lock_guard lock(mu_);
  Namespace& host = tree_.host();
  host.cgroup_id = *id;
  // Saved namespaces, host first, then by id (parents were created before their children).
  auto saved = load_ns_configs(opts_.state_dir);
  std::sort(saved.begin(), saved.end(), [](auto& a, auto& b) { return a.id < b.id; });
  NsConfig host_cfg{kHostNsName, kHostNsId, opts_.cgroup_root, false, "", "", ""};
  for (auto& c : saved)
    if (c.name == kHostNsName) host_cfg = c;
  host_cfg.cgroup = opts_.cgroup_root;
  if (auto r = open_runtime_locked(&host, host_cfg, true); !r) return r;
  for (auto& c : saved) {
    if (c.name == kHostNsName) continue;
    auto dir = canonical_dir(c.cgroup);
    auto cg = dir ? cgroup_id_of(*dir) : Result<uint64_t>(tl::unexpected(dir.error()));
    if (!cg) {
      log->warn("namespace {}: cgroup {} is gone; its list is archived", c.name, c.cgroup);
      (void)archive_ns_dir(opts_.state_dir, c.name, "cgroup-gone");
      continue;
    }
    auto n = tree_.create(*dir, *cg, c.id);
    if (!n) {
      log->error("namespace {} not restored: {}", c.name, n.error().to_string());
      continue;
    }
    if (auto r = open_runtime_locked(*n, c, true); !r) {
      log->error("namespace {} not restored: {}", c.name, r.error().to_string());
      (void)tree_.remove(c.name);
      rt_.erase(c.id);
      continue;
    }
    if (auto r = register_in_bpf(*n); !r) return r;
  }
  if (maps_) {
    if (auto r = maps_->init_ns_drops(kHostNsId); !r) return r;
    if (!rt(&host).policy->empty())
      if (auto r = register_in_bpf(&host); !r) return r;
  }
  return {};
}

Result<void> Pipeline::open_runtime_locked(Namespace* n, NsConfig cfg, bool restored) {
  auto log = logger("ns");
  auto r = std::make_unique<NsRuntime>();
  std::string boot = current_boot_id();
  // A policy saved with the namespace (it was valid when loaded).
  r->policy = std::make_shared<policy::Policy>();
  if (!cfg.policy_text.empty()) {
    auto p = policy::Policy::parse(cfg.policy_text, cfg.policy_origin);
    if (!p) return tl::unexpected(p.error());
    r->policy = std::make_shared<policy::Policy>(std::move(*p));
  }
  // The TPM this namespace owns, if any.
  bool fresh_tpm = false;
  if (n->is_host() && !opts_.host_tcti.empty()) {
    auto t = tpm::EsysTpm::open(opts_.host_tcti);
    if (!t) return tl::unexpected(t.error());
    r->own_tpm = std::move(*t);
    fresh_tpm = cfg.boot_id != boot;  // the host TPM's PCRs were reset by a reboot
  } else if (cfg.vtpm) {
    auto inst = vtpms_->start(cfg.name);
    if (!inst) return tl::unexpected(inst.error());
    auto t = tpm::EsysTpm::open(inst->tcti);
    if (!t) return tl::unexpected(t.error());
    r->own_tpm = std::move(*t);
    fresh_tpm = inst->origin == tpm::VtpmOrigin::kStarted;
  } else if (n->is_host()) {
    fresh_tpm = cfg.boot_id != boot;  // no TPM: a new boot still starts a new list
  }
  std::string dir = ns_dir(opts_.state_dir, cfg.name);
  std::error_code ec;
  bool have_list = std::filesystem::exists(std::filesystem::path(dir) / measure::kDefaultListFile, ec);
  if (restored && have_list && fresh_tpm) {
    // The PCRs this list was extended into are gone (reboot, vTPM reset): it cannot continue.
    auto a = archive_ns_dir(opts_.state_dir, cfg.name, cfg.boot_id.empty() ? "old" : cfg.boot_id);
    if (a) log->info("namespace {}: TPM was reset since the list began; old list archived at {}",
                     cfg.name, *a);
  }
  cfg.boot_id = fresh_tpm || cfg.boot_id.empty() ? boot : cfg.boot_id;
  r->cfg = cfg;
  rt_[n->id] = std::move(r);
  NsRuntime& rr = *rt_[n->id];
  if (auto s = save_ns_config(opts_.state_dir, rr.cfg); !s) return s;
  if (auto s = start_list_locked(n, rr); !s) return s;
  return reconcile_locked(n, rr);
}

Result<void> Pipeline::start_list_locked(Namespace* n, NsRuntime& r) {
  measure::ListConfig lc;
  lc.hash_algo = opts_.hash_algo;
  lc.default_template = opts_.default_template;
  Namespace* owner = owner_of(n);
  NsRuntime& o = owner == n ? r : rt(owner);
  lc.default_pcr = n->is_host()  ? static_cast<uint32_t>(opts_.host_pcr)
                   : r.cfg.vtpm ? static_cast<uint32_t>(tpm::kDefaultVtpmPcr)
                                : o.list->config().default_pcr;
  tpm::Tpm* t = o.own_tpm.get();
  if (t) {
    auto banks = t->banks();
    if (!banks) return tl::unexpected(banks.error());
    lc.banks.clear();
    for (auto b : *banks) {
      auto a = measure::hash_algo_from_tpm(static_cast<uint16_t>(b));
      if (!a)
        return make_error(ENOTSUP,
                          "the TPM has a " + tpm::bank_name(b) +
                              " PCR bank that nsima cannot compute; deallocate it",
                          t->describe());
      lc.banks.push_back(*a);
    }
  } else if (owner != n) {
    lc.banks = o.list->config().banks;
  }
  auto list = measure::MeasurementList::open(ns_dir(opts_.state_dir, r.cfg.name), lc);
  if (!list) return tl::unexpected(list.error());
  r.list = std::make_unique<measure::MeasurementList>(std::move(*list));
  if (r.list->count() == 0) {
    // First entry: boot_aggregate over PCR 0-9 of the TPM this namespace owns; zeros for a
    // namespace without a TPM of its own (as kernel IMA without TPM), never copied to the owner.
    std::vector<measure::PcrBank> pcr_banks;
    if (r.own_tpm) {
      std::vector<int> idx{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
      for (auto a : lc.banks) {
        auto vals = r.own_tpm->read_pcrs(*bank_of(a), idx);
        if (!vals) return tl::unexpected(vals.error());
        measure::PcrBank pb{a, {}};
        for (int i : idx) {
          auto d = measure::Digest::from_bytes(a, (*vals)[i]);
          if (!d) return tl::unexpected(d.error());
          pb.pcrs.push_back(*d);
        }
        pcr_banks.push_back(std::move(pb));
      }
    }
    auto out = r.list->append_boot_aggregate(pcr_banks);
    if (!out) return tl::unexpected(out.error());
    if (r.own_tpm) queue_extend_locked(r, r.cfg.name, *out);
  }
  return {};
}

Result<void> Pipeline::reconcile_locked(Namespace* n, NsRuntime& r) {
  if (!r.own_tpm || r.list->count() == 0) return {};
  auto log = logger("ns");
  // The PCRs this list extends.
  std::set<uint32_t> pcrs;
  auto scan = r.list->for_each(0, [&](uint64_t, const measure::Record& rec) -> Result<void> {
    pcrs.insert(rec.pcr);
    return {};
  });
  if (!scan) return tl::unexpected(scan.error());
  extender_->drain();  // the boot_aggregate of a new list
  measure::HashAlgo bank = r.list->config().banks.back();
  for (uint32_t pcr : pcrs) {
    auto v = r.own_tpm->read_pcr(static_cast<int>(pcr), *bank_of(bank));
    if (!v) return tl::unexpected(v.error());
    auto value = measure::Digest::from_bytes(bank, *v);
    if (!value) return tl::unexpected(value.error());
    auto prefix = r.list->extended_prefix(pcr, bank, *value);
    if (!prefix) return tl::unexpected(prefix.error());
    if (!*prefix) {
      disable_locked(n, "its list does not replay to PCR " + std::to_string(pcr) + " of " +
                            r.own_tpm->describe() + " (" +
                            std::string(measure::hash_algo_name(bank)) + " " + value->hex() +
                            ")");
      return {};
    }
    uint64_t redo = 0;
    auto again = r.list->for_each(**prefix, [&](uint64_t idx, const measure::Record& rec)
                                                -> Result<void> {
      if (rec.pcr != pcr) return {};
      measure::AppendOutcome out;
      out.added = true;
      out.index = idx;
      out.pcr = rec.pcr;
      out.violation = rec.violation();
      for (auto b : r.list->config().banks) {
        auto ev = measure::extend_value(rec.template_name, rec.data, rec.violation(), b);
        if (!ev) return tl::unexpected(ev.error());
        out.extend.push_back(*ev);
      }
      auto x = r.own_tpm->extend(static_cast<int>(pcr), to_bank_digests(out.extend));
      if (!x) return x;
      redo++;
      return {};
    });
    if (!again) return tl::unexpected(again.error());
    if (redo)
      log->warn("namespace {}: finished {} logged but unextended extends into PCR {}",
                r.cfg.name, redo, pcr);
  }
  return {};
}

void Pipeline::disable_locked(Namespace* n, const std::string& why) {
  NsRuntime& r = rt(n);
  if (r.disabled) return;
  r.disabled = true;
  r.disabled_reason = why;
  logger("ns")->error("namespace {} stops measuring: {}", n->name, why);
  // The host list records it, so that a verifier of the host sees the failure.
  if (!n->is_host()) record_violation_locked(&tree_.host(), "nsima:ns-" + n->name + ":" + "list-pcr-mismatch");
}

void Pipeline::start() {
  thread_ = std::thread([this] { run(); });
}

void Pipeline::stop() {
  if (!thread_.joinable()) return;
  queue_.close();
  thread_.join();
  if (pool_) pool_->drain();
  if (extender_) extender_->drain();
  std::lock_guard lock(mu_);
  for (auto& [id, w] : watchers_) w->close();
  for (auto& [id, r] : rt_)
    if (r->list) (void)r->list->sync();
}

void Pipeline::submit(Event&& ev) {
  queued_.fetch_add(1);
  queue_.push(std::move(ev));
}

void Pipeline::drain() {
  uint64_t target = queued_.load();
  while (finished_.load() < target) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (pool_) pool_->drain();
  if (extender_) extender_->drain();
}

void Pipeline::run() {
  for (;;) {
    auto ev = queue_.pop(std::chrono::milliseconds(200));
    if (!ev) {
      if (queue_.closed()) break;
      std::lock_guard lock(mu_);
      check_drops_locked();
      for (auto& [id, r] : rt_)
        if (r->list) (void)r->list->sync_if_due();
      continue;
    }
    process(*ev);
    finished_.fetch_add(1);
  }
}

// ---------------------------------------------------------------------------------------------
// the event path

void Pipeline::check_drops_locked() {
  if (!maps_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_drop_check_ < std::chrono::milliseconds(200)) return;
  last_drop_check_ = now;
  auto drops = maps_->ns_drops();
  if (!drops) return;
  for (auto& [ns_id, count] : *drops) {
    Namespace* n = tree_.find(ns_id);
    if (!n) continue;
    NsRuntime& r = rt(n);
    if (count <= r.drops_seen) continue;
    uint64_t lost = count - r.drops_seen;
    r.drops_seen = count;
    // The lost events would have been judged by the whole chain: every list that measures
    // anything records that it may miss entries (kernel IMA's violation form).
    for (Namespace* c : tree_.chain(n))
      if (rt(c).policy->has_action(policy::Action::kMeasure))
        record_violation_locked(c, "nsima:lost-events:" + std::to_string(lost));
    logger("capture")->warn("namespace {}: {} events lost (ring buffer full)", n->name, lost);
  }
}

int Pipeline::root_fd_locked(const Event& ev) {
  auto it = roots_.find(ev.mnt_ns);
  if (it != roots_.end()) return it->second.get();
  UniqueFd fd;
  if (ev.mnt_ns == self_mnt_ns_) {
    fd.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  } else {
    // The first live process of a mount namespace lends its root; short-lived processes may be
    // gone already, and then the measurement becomes a violation entry (never a silent skip).
    std::string p = "/proc/" + std::to_string(ev.tgid) + "/root";
    fd.reset(::open(p.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  }
  if (!fd) return -1;
  int raw = fd.get();
  roots_.emplace(ev.mnt_ns, std::move(fd));
  return raw;
}

void Pipeline::process(Event& ev) {
  std::unique_lock lock(mu_);
  counters_.processed++;
  check_drops_locked();
  Namespace* ns = tree_.find(ev.ns_id);
  if (!ns) {
    counters_.unknown_namespace++;
    return;
  }
  auto chain = tree_.chain(ns);
  auto accesses = policy::accesses_of(ev);
  FileId fid{ev.kdev, ev.ino, ev.generation};

  std::vector<Target> targets;
  bool quiet = true;
  const bool file_check = ev.hook == Hook::kFileOpen;
  const bool write_open = file_check && (ev.mask & NSIMA_MAY_WRITE);
  for (Namespace* n : chain) {
    NsRuntime& r = rt(n);
    if (r.policy->empty()) continue;
    NsDecision d = decide(*r.policy, accesses);
    if (!d.measure) {
      // The same access with other credentials might be measured: keep reporting it.
      if (d.cred_dependent) quiet = false;
      continue;
    }
    if (r.disabled) continue;
    auto& m = r.measured[fid];
    m.must = true;
    // open_writers (ima_rdwr_violation_check): a read open that must be measured while the
    // file is open for write; recorded before the file's own entry, as the kernel does.
    if (file_check && !write_open && ev.i_writecount > 0 && ev.path_known())
      record_violation_locked(n, ev.path);
    uint32_t pcr = d.pcr >= 0 ? static_cast<uint32_t>(d.pcr) : r.list->config().default_pcr;
    if (m.stamp == ev.stamp && (m.pcrs >> pcr & 1))
      continue;  // measured once per file version and PCR, as kernel IMA's measured_pcrs
    auto kind = d.tmpl.empty() ? r.list->config().default_template
                               : measure::template_kind(d.tmpl).value_or(
                                     r.list->config().default_template);
    targets.push_back({n->id, pcr, kind});
  }
  // ToMToU: a write open while the file is open for read, of a file some measure rule matched
  // in that namespace (the reader may have been measured before this write changes it).
  if (write_open && ev.i_readcount > 0 && ev.path_known()) {
    for (Namespace* n : chain) {
      NsRuntime& r = rt(n);
      auto m = r.measured.find(fid);
      if (m != r.measured.end() && m->second.must && !r.disabled &&
          r.policy->has_action(policy::Action::kMeasure))
        record_violation_locked(n, ev.path);
    }
  }

  if (targets.empty() || !ev.path_known()) {
    if (!targets.empty()) {
      // No usable path: the access is measured as a violation, never skipped.
      for (auto& t : targets)
        record_violation_locked(tree_.find(t.ns_id), "nsima:unknown-path:ino-" +
                                                        std::to_string(ev.ino));
      quiet = false;
    }
    if (maps_) {
      nsima_verdict_key key{ev.ns_id, ev.generation, ev.kdev, ev.ino};
      if (!maps_->allow(key, ev.stamp, quiet ? 1u << ev.access_class() : 0))
        counters_.map_errors++;
    }
    notify_watchers(chain, ev);
    return;
  }

  int root = root_fd_locked(ev);
  UniqueFd root_dup(root >= 0 ? ::fcntl(root, F_DUPFD_CLOEXEC, 0) : -1);
  std::vector<measure::HashAlgo> algos{opts_.hash_algo};
  bool want_sig = false;
  for (auto& t : targets) {
    const auto& lc = rt_.at(t.ns_id)->list->config();
    if (std::find(algos.begin(), algos.end(), lc.hash_algo) == algos.end())
      algos.push_back(lc.hash_algo);
    if (t.tmpl == measure::TemplateKind::kIma &&
        std::find(algos.begin(), algos.end(), measure::HashAlgo::kSha1) == algos.end())
      algos.push_back(measure::HashAlgo::kSha1);
    want_sig |= template_has_sig(t.tmpl);
  }
  // ima-sig records security.ima as it is when the file is measured. Read here, not in the
  // hash pool: a digest-cache hit answers without opening the file.
  auto xattr = std::make_shared<std::vector<uint8_t>>();
  measure::FileIdentity ident = measure::FileIdentity::from_event(ev);
  if (want_sig && root_dup) {
    auto f = measure::open_in_root(root_dup.get(), ev.path, ident);
    if (f) {
      std::vector<uint8_t> buf(kMaxXattr);
      ssize_t n = fgetxattr(f->fd.get(), kImaXattr, buf.data(), buf.size());
      if (n > 0) {
        buf.resize(static_cast<size_t>(n));
        *xattr = std::move(buf);
      }
    }
  }
  auto shared_root = std::make_shared<UniqueFd>(std::move(root_dup));
  measure::HashRequest req;
  req.key = measure::FileKey::from_event(ev);
  req.algos = algos;
  std::string path = ev.path;
  req.open = [shared_root, path, ident]() -> measure::FileResult<measure::OpenedFile> {
    if (!*shared_root)
      return tl::unexpected(measure::FileError{
          measure::FileErrorKind::kVanished,
          Error{ESRCH, "the process and its mount namespace root are gone", path}});
    return measure::open_in_root(shared_root->get(), path, ident);
  };
  counters_.hash_jobs++;
  req.done = [this, ev, targets, quiet, xattr](const measure::HashResult& r) {
    on_hashed(ev, targets, quiet, xattr, r);
  };
  lock.unlock();
  // submit() may block on a full hashing queue: back-pressure, never a drop.
  if (auto s = pool_->submit(std::move(req)); !s) {
    std::lock_guard relock(mu_);
    logger("measure")->error("hash request refused: {}", s.error().to_string());
    for (auto& t : targets)
      if (Namespace* n = tree_.find(t.ns_id)) record_violation_locked(n, ev.path);
  }
}

void Pipeline::on_hashed(Event ev, std::vector<Target> targets, bool quiet,
                         std::shared_ptr<std::vector<uint8_t>> xattr,
                         const measure::HashResult& r) {
  std::lock_guard lock(mu_);
  Namespace* ns = tree_.find(ev.ns_id);
  if (!ns) return;
  auto chain = tree_.chain(ns);
  if (!r) {
    // The file could not be read as the process saw it (vanished, replaced, unreadable): a
    // violation entry in every list that wanted it, and no verdict, so a later access retries.
    static std::atomic<uint64_t> logged{0};
    if (logged.fetch_add(1) < 20)
      logger("measure")->warn("cannot measure {}: {}", ev.path, r.error().to_string());
    for (auto& t : targets)
      if (Namespace* n = tree_.find(t.ns_id)) record_violation_locked(n, ev.path);
    notify_watchers(chain, ev, std::string("violation: ") + r.error().to_string());
    return;
  }
  FileId fid{ev.kdev, ev.ino, ev.generation};
  std::string measured_in;
  for (auto& t : targets) {
    Namespace* n = tree_.find(t.ns_id);
    if (!n) continue;
    NsRuntime& rr = rt(n);
    if (rr.disabled) continue;
    auto& m = rr.measured[fid];
    if (m.stamp != ev.stamp) m = Measured{ev.stamp, 0, m.must};
    if (m.pcrs >> t.pcr & 1) continue;
    measure::Entry e;
    e.tmpl = t.tmpl;
    e.pcr = t.pcr;
    const auto& lc = rr.list->config();
    measure::HashAlgo want = t.tmpl == measure::TemplateKind::kIma ? measure::HashAlgo::kSha1
                                                                   : lc.hash_algo;
    for (auto& d : r->digests)
      if (d.algo() == want) e.digest = d;
    e.name = ev.path;
    if (template_has_sig(t.tmpl)) e.ima_xattr = *xattr;
    record_locked(n, e);
    m.pcrs |= 1ull << t.pcr;
    if (!measured_in.empty()) measured_in += ",";
    measured_in += n->name;
  }
  if (maps_) {
    nsima_verdict_key key{ev.ns_id, ev.generation, ev.kdev, ev.ino};
    // A file that changed while it was hashed gets no quiet bit: the next access re-measures.
    bool q = quiet && !r->changed;
    if (!maps_->allow(key, ev.stamp, q ? 1u << ev.access_class() : 0)) counters_.map_errors++;
  }
  notify_watchers(chain, ev, measured_in.empty() ? "" : "measured in " + measured_in);
}

void Pipeline::append_locked(Namespace* n, const AppendFn& append) {
  NsRuntime& r = rt(n);
  auto out = append(*r.list);
  if (!out) {
    disable_locked(n, std::string("cannot append to its list: ") + out.error().to_string());
    return;
  }
  if (!out->added) return;  // identical entry already in the list: not added, not extended
  if (out->violation)
    counters_.violations++;
  else
    counters_.measured++;
  Namespace* owner = owner_of(n);
  if (owner == n) {
    queue_extend_locked(r, n->name, *out);
    return;
  }
  // A namespace without a PCR of its own: the owning list records (and extends) the entry.
  NsRuntime& o = rt(owner);
  if (o.disabled) return;
  auto copy = append(*o.list);
  if (!copy) {
    disable_locked(owner, std::string("cannot append to its list: ") + copy.error().to_string());
    return;
  }
  queue_extend_locked(o, owner->name, *copy);
}

void Pipeline::record_locked(Namespace* n, const measure::Entry& e) {
  append_locked(n, [&](measure::MeasurementList& l) { return l.append(e); });
}

void Pipeline::record_violation_locked(Namespace* n, const std::string& name) {
  if (!rt(n).list) return;
  append_locked(n, [&](measure::MeasurementList& l) { return l.append_violation(name); });
}

void Pipeline::queue_extend_locked(NsRuntime& owner_rt, const std::string& list,
                                   const measure::AppendOutcome& out) {
  if (!owner_rt.own_tpm || !out.added) return;
  ExtendJob job;
  job.tpm = owner_rt.own_tpm.get();
  job.pcr = static_cast<int>(out.pcr);
  job.digests = to_bank_digests(out.extend);
  job.list = list;
  job.index = out.index;
  extender_->push(std::move(job));
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

Result<void> Pipeline::register_in_bpf(Namespace* n) {
  if (!maps_) return {};
  if (auto r = maps_->init_ns_drops(n->id); !r) return r;
  if (auto r = maps_->register_cgroup(n->cgroup_id, n->id, 0); !r) return r;
  return maps_->flush_derived();
}

void Pipeline::invalidate_verdicts_locked(Namespace* n) {
  if (!maps_) return;
  for (Namespace* s : tree_.subtree(n))
    if (!maps_->remove_namespace_verdicts(s->id)) counters_.map_errors++;
}

Result<void> Pipeline::validate_policy_locked(Namespace* n, const policy::Policy& p) {
  // pcr= must not reach a PCR that another component of the host owns.
  Namespace* owner = owner_of(n);
  bool vtpm_owned = !owner->is_host();
  for (size_t i = 0; i < p.size(); ++i) {
    const auto& rule = p.rule(i);
    if (!rule.pcr) continue;
    int pcr = static_cast<int>(*rule.pcr);
    if (pcr >= tpm::kPcrCount)
      return make_error(EINVAL, "pcr=" + std::to_string(pcr) + ": a TPM has 24 PCRs",
                        p.filename() + ":" + std::to_string(rule.line));
    if (!vtpm_owned && pcr != opts_.host_pcr)
      return make_error(EINVAL,
                        "pcr=" + std::to_string(pcr) + " would extend PCR " +
                            std::to_string(pcr) + " of the host TPM (" + tpm::pcr_owners(pcr) +
                            "); this namespace's measurements go to PCR " +
                            std::to_string(opts_.host_pcr) +
                            " only (give the namespace a vTPM to use other PCRs)",
                        p.filename() + ":" + std::to_string(rule.line));
  }
  return {};
}

Result<uint32_t> Pipeline::create_namespace(const std::string& cgroup_path,
                                            const CreateOptions& o) {
  auto dir = canonical_dir(cgroup_path);
  if (!dir) return tl::unexpected(dir.error());
  auto id = cgroup_id_of(*dir);
  if (!id) return tl::unexpected(id.error());
  std::optional<policy::Policy> pol;
  if (!o.policy_text.empty()) {
    auto p = policy::Policy::parse(o.policy_text, o.policy_origin);
    if (!p) return tl::unexpected(p.error());
    pol = std::move(*p);
  }
  std::lock_guard lock(mu_);
  if (*dir == tree_.cgroup_root()) return make_error(EEXIST, "is the host namespace", *dir);
  auto ns = tree_.create(*dir, *id);
  if (!ns) return tl::unexpected(ns.error());
  Namespace* n = *ns;
  NsConfig cfg{n->name, n->id, *dir, o.vtpm, o.policy_origin, o.policy_text, ""};
  rt_[n->id] = std::make_unique<NsRuntime>();  // placeholder so owner_of() works for checks
  rt_[n->id]->cfg = cfg;
  auto undo = [&](const Error& e) -> Result<uint32_t> {
    rt_.erase(n->id);
    std::string name = n->name;
    (void)tree_.remove(name);
    std::error_code ec;
    std::filesystem::remove_all(ns_dir(opts_.state_dir, name), ec);
    return tl::unexpected(e);
  };
  if (pol)
    if (auto v = validate_policy_locked(n, *pol); !v) return undo(v.error());
  // A namespace created under an existing one changes who owns its children's extends only if
  // it has a vTPM; existing children keep their lists (their later entries go to the new owner).
  if (auto r = open_runtime_locked(n, cfg, false); !r) return undo(r.error());
  if (auto r = register_in_bpf(n); !r) return undo(r.error());
  logger("ns")->info("namespace {} created for {} (cgroup id {}), parent {}{}{}", n->name, *dir,
                     *id, n->parent->name, o.vtpm ? ", own vTPM" : "",
                     o.policy_origin.empty() ? "" : ", policy " + o.policy_origin);
  return n->id;
}

Result<uint32_t> Pipeline::ensure_namespace(const std::string& cgroup_path) {
  auto dir = canonical_dir(cgroup_path);
  if (!dir) return tl::unexpected(dir.error());
  {
    std::lock_guard lock(mu_);
    if (*dir == tree_.cgroup_root()) {
      Namespace& host = tree_.host();
      if (auto r = register_in_bpf(&host); !r) return tl::unexpected(r.error());
      return host.id;
    }
    if (Namespace* ns = tree_.find_by_cgroup(*dir)) return ns->id;
  }
  return create_namespace(*dir, {});
}

Result<void> Pipeline::delete_namespace(const std::string& name_or_id) {
  std::lock_guard lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return make_error(ENOENT, "no such namespace", name_or_id);
  if (ns->is_host()) return make_error(EPERM, "the host namespace cannot be deleted", name_or_id);
  uint32_t id = ns->id;
  uint64_t cg = ns->cgroup_id;
  std::string name = ns->name;
  bool vtpm = rt(ns).cfg.vtpm;
  if (auto r = tree_.remove(name); !r) return r;
  if (maps_) {
    if (auto r = maps_->unregister_cgroup(cg); !r) return r;
    if (auto r = maps_->flush_derived(); !r) return r;
    if (auto r = maps_->remove_namespace_verdicts(id); !r) return tl::unexpected(r.error());
  }
  extender_->drain();
  rt_.erase(id);
  (void)remove_ns_config(opts_.state_dir, name);
  auto archived = archive_ns_dir(opts_.state_dir, name, "deleted-" + current_boot_id());
  if (vtpm) (void)vtpms_->stop(name);
  auto [b, e] = watchers_.equal_range(id);
  for (auto it = b; it != e; ++it) it->second->close();
  watchers_.erase(id);
  logger("ns")->info("namespace {} deleted{}", name,
                     archived ? ", list archived at " + *archived : "");
  return {};
}

Pipeline::NsInfo Pipeline::info_locked(Namespace* n) {
  NsRuntime& r = rt(n);
  NsInfo i;
  i.id = n->id;
  i.name = n->name;
  i.cgroup_path = n->cgroup_path;
  i.parent = n->parent ? n->parent->name : "";
  i.cgroup_id = n->cgroup_id;
  i.vtpm = r.cfg.vtpm;
  Namespace* owner = owner_of(n);
  i.owner = owner->name;
  if (r.list) {
    i.pcr = static_cast<int>(r.list->config().default_pcr);
    i.entries = r.list->count();
    i.violations = r.list->violations();
    i.list_path = r.list->path().string();
  }
  if (auto* t = rt(owner).own_tpm.get()) i.tpm = t->describe();
  i.policy_origin = r.cfg.policy_origin;
  i.policy_rules = r.policy->size();
  i.disabled = r.disabled;
  i.disabled_reason = r.disabled_reason;
  return i;
}

std::vector<Pipeline::NsInfo> Pipeline::list_namespaces() {
  std::lock_guard lock(mu_);
  std::vector<NsInfo> out;
  for (Namespace* ns : tree_.all()) out.push_back(info_locked(ns));
  return out;
}

std::optional<Pipeline::NsInfo> Pipeline::namespace_info(const std::string& name_or_id) {
  std::lock_guard lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return std::nullopt;
  return info_locked(ns);
}

Result<size_t> Pipeline::load_policy(const std::string& name_or_id, const std::string& text,
                                     const std::string& origin) {
  auto p = policy::Policy::parse(text, origin);
  if (!p) return tl::unexpected(p.error());
  std::lock_guard lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return make_error(ENOENT, "no such namespace", name_or_id);
  if (auto v = validate_policy_locked(ns, *p); !v) return tl::unexpected(v.error());
  NsRuntime& r = rt(ns);
  NsConfig cfg = r.cfg;
  cfg.policy_text = text;
  cfg.policy_origin = origin;
  if (auto s = save_ns_config(opts_.state_dir, cfg); !s) return tl::unexpected(s.error());
  r.cfg = cfg;
  size_t n = p->size();
  r.policy = std::make_shared<policy::Policy>(std::move(*p));
  invalidate_verdicts_locked(ns);
  if (ns->is_host())
    if (auto reg = register_in_bpf(ns); !reg) return tl::unexpected(reg.error());
  logger("policy")->info("namespace {}: policy {} loaded ({} rules)", ns->name, origin, n);
  return n;
}

Result<std::string> Pipeline::policy_text(const std::string& name_or_id) {
  std::lock_guard lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return make_error(ENOENT, "no such namespace", name_or_id);
  return rt(ns).policy->to_string();
}

Result<Pipeline::ListView> Pipeline::list_view(const std::string& name_or_id) {
  std::lock_guard lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return make_error(ENOENT, "no such namespace", name_or_id);
  NsRuntime& r = rt(ns);
  return ListView{r.list->path().string(), r.list->size_bytes(), r.list->count()};
}

Result<std::string> Pipeline::render_list(const std::string& name_or_id, bool ascii) {
  std::lock_guard lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return make_error(ENOENT, "no such namespace", name_or_id);
  std::ostringstream os;
  auto r = ascii ? rt(ns).list->render_ascii(os) : rt(ns).list->render_binary(os);
  if (!r) return tl::unexpected(r.error());
  return os.str();
}

Result<std::string> Pipeline::render_list(const std::string& name_or_id, bool ascii,
                                          uint64_t from_index, uint64_t to_index) {
  std::lock_guard lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return make_error(ENOENT, "no such namespace", name_or_id);
  const measure::MeasurementList& list = *rt(ns).list;
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
  std::unique_lock lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return make_error(ENOENT, "no such namespace", name_or_id);
  Namespace* owner = owner_of(ns);
  NsRuntime& o = rt(owner);
  PcrReport rep;
  rep.pcr = static_cast<int>(rt(ns).list->config().default_pcr);
  if (!o.own_tpm) return make_error(ENODEV, "namespace " + owner->name + " has no TPM", name_or_id);
  rep.tpm = o.own_tpm->describe();
  lock.unlock();
  extender_->drain();
  lock.lock();
  for (auto b : o.list->config().banks) {
    auto v = o.own_tpm->read_pcr(rep.pcr, *bank_of(b));
    if (!v) return tl::unexpected(v.error());
    std::string name(measure::hash_algo_name(b));
    rep.values[name] = to_hex(*v);
    auto e = o.list->replay(static_cast<uint32_t>(rep.pcr), b, o.list->count());
    if (e) rep.expected[name] = e->hex();
  }
  return rep;
}

Result<tpm::Quote> Pipeline::quote(const std::string& name_or_id,
                                   const std::vector<uint8_t>& nonce) {
  std::unique_lock lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return make_error(ENOENT, "no such namespace", name_or_id);
  Namespace* owner = owner_of(ns);
  NsRuntime& o = rt(owner);
  if (!o.own_tpm) return make_error(ENODEV, "namespace " + owner->name + " has no TPM", name_or_id);
  int pcr = static_cast<int>(rt(ns).list->config().default_pcr);
  tpm::Tpm* t = o.own_tpm.get();
  std::vector<tpm::PcrSelection> sel;
  for (auto b : o.list->config().banks) sel.push_back({*bank_of(b), {pcr}});
  lock.unlock();
  extender_->drain();
  return t->quote(sel, nonce);
}

Result<void> Pipeline::set_file_verdict(const std::string& cgroup_path, const std::string& file,
                                        bool allow) {
  if (!maps_) return make_error(ENOTSUP, "no BPF programs loaded", file);
  auto ns_id = ensure_namespace(cgroup_path);
  if (!ns_id) return tl::unexpected(ns_id.error());

  // Open the file ourselves: the hook records the kernel's stamp of nsimad's own opens
  // (i_version is invisible to userspace), keyed by our thread id.
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) return make_error(errno, std::string("cannot open: ") + strerror(errno), file);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return make_error(errno, strerror(errno), file);
  auto self = maps_->self_open(static_cast<uint32_t>(syscall(SYS_gettid)));
  if (!self || self->ino != st.st_ino || self->dev != dev_to_kdev(st.st_dev))
    return make_error(EIO, "the kernel did not report the stamp of nsimad's open", file);
  nsima_verdict_key key{*ns_id, self->generation, self->dev, self->ino};
  Stamp stamp = capture::from_abi(self->stamp);
  auto r = allow ? maps_->allow(key, stamp, 0, /*keep_deny=*/false) : maps_->deny(key, stamp);
  if (!r) return r;
  logger("ns")->info("{} {} in namespace {}", allow ? "allow" : "deny", file, *ns_id);
  return {};
}

std::shared_ptr<Watcher> Pipeline::watch(uint32_t ns_id) {
  auto w = std::make_shared<Watcher>();
  std::lock_guard lock(mu_);
  watchers_.emplace(ns_id, w);
  return w;
}

void Pipeline::unwatch(const std::shared_ptr<Watcher>& w) {
  std::lock_guard lock(mu_);
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    if (it->second == w)
      it = watchers_.erase(it);
    else
      ++it;
  }
}

PipelineCounters Pipeline::counters() {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace nsima::ns

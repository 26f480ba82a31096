// SPDX-License-Identifier: Apache-2.0
// Workload models in the pipeline (issue 13, daemon/model/README.md): a modeled namespace's
// file events (file_open, mmap_file, bprm_check: read for their sha256 like a measured file)
// and the model hooks' events (fork, exit, ptrace, task_kill, socket_*, file_mprotect) go
// into the namespace's Modeler on the pipeline thread; in enforce mode a process that produced
// an unknown coefficient is written into the hooks' untrusted map, and the kernel refuses its
// later accesses (and those of the children it forks afterwards).
//
// Order. TASK_IDs depend on lineage (fork before the child's exec), so the two streams are
// merged: a file event waits in model_feed_ (seq order) for its digest; before it is applied,
// every kernel event stamped earlier is applied (the hooks commit a fork's record before the
// child can run, so consuming mevents when a file event is ready brings every earlier fork in).
// A kernel event is applied only once the file intake has processed every file record
// committed before the event was consumed (the file ring's producer position, taken after
// each consume, against the intake's progress: IntakeProbe): a task's exec, committed before
// its fork, is then in the feed, however far the intake lags. Without a probe (no intake: host
// tests), a kernel event waits kSettle or a later-stamped file event instead. Exits
// (lineage cleanup only) wait kExitDelay too.
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/atomic_file.h"
#include "common/hex.h"
#include "common/log.h"
#include "measure/hasher.h"
#include "model/model_file.h"
#include "ns/pipeline.h"
#include "ns/pipeline_actor.h"

namespace nsima::ns {

namespace fs = std::filesystem;

namespace {

// Without an intake probe, a kernel event no file event has passed yet waits this long for the
// file events stamped before it (ring buffer and pipeline queue lag; > 20 ms under TCG).
constexpr uint64_t kSettleNs = 500'000'000;  // 500 ms
constexpr uint64_t kExitDelayNs = 5'000'000'000;  // 5 s
constexpr const char* kModelFile = "model";

uint64_t boot_ns() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

model::Coe coe_of(const Creds& c) {
  return model::Coe{c.uid, c.euid, c.suid, c.gid, c.egid, c.sgid, c.fsuid, c.fsgid, c.cap_effective};
}

uint32_t model_flags(model::Mode m) {
  return NSIMA_MODEL_ON | (m == model::Mode::kEnforce ? NSIMA_MODEL_ENFORCE : 0u);
}

std::optional<measure::HashAlgo> algo_of_bank(tpm::Bank b) {
  switch (b) {
    case tpm::Bank::kSha1:
      return measure::HashAlgo::kSha1;
    case tpm::Bank::kSha256:
      return measure::HashAlgo::kSha256;
    case tpm::Bank::kSha384:
      return measure::HashAlgo::kSha384;
    case tpm::Bank::kSha512:
      return measure::HashAlgo::kSha512;
    default:
      return std::nullopt;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// set-up

Result<void> Pipeline::ensure_model_hooks() {
  if (!maps_) return {};  // no BPF (host tests): file events only, nothing enforced in a kernel
  std::lock_guard lock(model_load_mu_);
  bool have = call([&] { return model_hooks_ != nullptr; });
  if (have) return {};
  auto h = capture::ModelHooks::load(maps_->fds(), opts_.model_pins, opts_.model_ringbuf_bytes);
  if (!h) return tl::unexpected(h.error());
  capture::ModelHooks* raw = h->get();
  call([&] { model_hooks_ = std::move(*h); });
  raw->start_notifier([this] {
    std::lock_guard l(mu_);
    if (!running_.load()) return;  // stopping: stop() consumes what is left
    tasks_.push_back([this] { model_pump(false); });
    wake_.notify_one();
  });
  return {};
}

Result<void> Pipeline::model_publish(Namespace* n, NsRuntime& r) {
  // An enforcing model refuses unknown executables at exec, in the file hooks (bpf/access.bpf.h):
  // unless an agent decides (its model is not nsimad's to publish).
  const bool gate = r.modeler && r.modeler->model().mode() == model::Mode::kEnforce &&
                    r.cfg.model_agent.empty();
  std::vector<capture::Sha256> execs;
  if (gate)
    for (const auto& d : r.modeler->model().executables()) execs.push_back(d);
  if (auto g = reg_.set_model_exec(n, gate, std::move(execs)); !g) return g;
  if (!model_hooks_) return {};
  return model_hooks_->set_namespace(n->id, r.modeler ? model_flags(r.modeler->model().mode()) : 0);
}

Result<void> Pipeline::model_persist(Namespace* n, NsRuntime& r) {
  fs::path dir = ns_dir(opts_.state_dir, n->name);
  if (r.modeler) {
    if (auto w = write_file_atomic((dir / kModelFile).string(),
                                   model::serialize_model(r.modeler->model()));
        !w)
      return w;
    r.model_dirty = false;
  }
  return reg_.save(r);
}

Result<void> Pipeline::model_setup(Namespace* n, NsRuntime& r, const std::string& mode_name,
                                   const std::string& text, const std::string& origin,
                                   bool check_keys, bool fresh) {
  auto mode = model::mode_from_name(mode_name);
  if (!mode)
    return make_error(EINVAL, "model mode must be learn, seal or enforce, got \"" + mode_name + "\"",
                      n->name);
  model::Model m;
  if (!text.empty()) {
    auto file = check_keys && r.keys ? model::load_model(text, origin, *r.keys)
                                     : model::parse_model(text, origin);
    if (!file) return tl::unexpected(file.error());
    auto fm = model::model_from_file(*file, *mode);
    if (!fm) return tl::unexpected(fm.error());
    m = std::move(*fm);
  } else if (*mode != model::Mode::kLearn) {
    return make_error(EINVAL,
                      "a " + mode_name + " namespace needs a model: give a model file, or learn "
                      "first and seal",
                      n->name);
  }
  if (fresh) {  // a new model: what earlier ones missed is not its loss
    r.cfg.model_lost_events = r.cfg.model_lost_file_events = 0;
    r.cfg.model_drops_seen = model_hooks_ ? model_hooks_->model_drops_of(n->id) : 0;
  } else if (model_hooks_ && !model_hooks_->resumed()) {
    r.cfg.model_drops_seen = 0;  // restored on model hooks loaded afresh: their counts start at 0
  }
  if (r.modeler) {
    r.modeler->model() = std::move(m);  // processes keep their TASK_IDs and trust
  } else {
    r.modeler = std::make_unique<model::Modeler>(std::move(m));
    // Verdicts judged before may silence accesses: every access of a modeled namespace is an
    // event from here on.
    if (auto v = verdicts_.invalidate(n->id); !v) counters_.map_errors++;
  }
  r.cfg.model_mode = mode_name;
  // What the hooks keep quiet was known to the model replaced here (or, on a restart, perhaps
  // learned after the model file was last saved): every access is judged anew.
  model_quiet_clear(n);
  model_agent_link(n, r);
  if (auto p = model_publish(n, r); !p) return p;
  return model_persist(n, r);
}

void Pipeline::model_agent_link(Namespace* n, NsRuntime& r) {
  if (r.cfg.model_agent.empty() || !r.modeler) return;
  if (r.agent) return r.agent->set_mode(r.modeler->model().mode());
  AgentLinkOptions ao;
  ao.socket = r.cfg.model_agent;
  ao.fail = r.cfg.model_agent_fail == "open" ? model::agent::FailMode::kOpen
                                             : model::agent::FailMode::kClosed;
  ao.ns_id = n->id;
  ao.mode = r.modeler->model().mode();
  ao.timeout = std::chrono::milliseconds(r.cfg.agent_timeout_ms());
  const uint32_t id = n->id;
  // On the link's thread: the verdict becomes a task (dropped once the pipeline stopped).
  r.agent = std::make_unique<AgentLink>(
      ao, [this, id](const model::ProcKey& p, const model::agent::Verdict& v) {
        std::lock_guard l(mu_);
        if (!running_.load()) return;
        tasks_.push_back([this, id, p, v] { model_agent_verdict(id, p, v); });
        wake_.notify_one();
      });
}

void Pipeline::model_agent_verdict(uint32_t ns_id, const model::ProcKey& p,
                                   const model::agent::Verdict& v) {
  Namespace* n = reg_.find(ns_id);
  if (!n) return;
  NsRuntime& r = reg_.rt(n);
  if (!r.modeler || !v.untrusted || r.modeler->model().mode() != model::Mode::kEnforce) return;
  nsima_proc_key k{p.tgid, 0, p.start};
  if (model_hooks_ && model_hooks_->is_untrusted(k)) return;
  r.model_untrusted++;
  static std::atomic<uint64_t> logged{0};
  if (logged.fetch_add(1) < 50)
    logger("ns")->warn("namespace {}: process {} is untrusted (agent: {})", n->name, p.tgid,
                       v.reason.empty() ? "unknown coefficient" : v.reason);
  if (model_hooks_)
    if (auto u = model_hooks_->untrust(k, n->id); !u) r.model_mark_errors++;
}

Result<void> Pipeline::model_restore(Namespace* n, NsRuntime& r) {
  if (auto h = ensure_model_hooks(); !h) return h;
  fs::path file = fs::path(ns_dir(opts_.state_dir, n->name)) / kModelFile;
  std::string text;
  std::error_code ec;
  if (fs::exists(file, ec)) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in.good() && !in.eof()) return make_error(EIO, "cannot read", file.string());
    text = ss.str();
  } else if (r.cfg.model_mode != "learn") {
    return make_error(ENOENT, "the namespace is " + r.cfg.model_mode + " but its model is missing",
                      file.string());
  }
  // nsimad's own copy: the signature (if any) was checked when it was loaded.
  return model_setup(n, r, r.cfg.model_mode, text, file.string(), false, false);
}

void Pipeline::model_quiet_clear(Namespace* n) {
  if (!maps_) return;
  if (auto c = maps_->clear_model_quiet(n->id); !c) {
    counters_.map_errors++;
    logger("ns")->error("namespace {}: {}", n->name, c.error().to_string());
  }
}

void Pipeline::model_drop(Namespace* n) {
  model_quiet_clear(n);
  if (model_hooks_)
    if (auto r = model_hooks_->set_namespace(n->id, 0); !r)
      logger("ns")->warn("namespace {}: {}", n->name, r.error().to_string());
}

void Pipeline::model_lost(Namespace* n, NsRuntime& r, uint64_t files, uint64_t kernel) {
  r.cfg.model_lost_file_events += files;
  r.cfg.model_lost_events += kernel;
  const std::string mode(model::mode_name(r.modeler->model().mode()));
  // enforce: the model hooks marked each lost model event's process untrusted (model.bpf.h);
  // a lost file event names no process nsimad could mark
  audit_line(n, {{"event", "model-lost-events"},
                 {"model_events", kernel},
                 {"file_events", files},
                 {"mode", mode},
                 {"reason", "ring buffer full: the model did not see them"}});
  logger("ns")->warn("namespace {}: its model ({}) missed {} model and {} file events (ring "
                     "buffer full){}",
                     n->name, mode, kernel, files,
                     kernel && mode == "enforce" ? "; their processes were marked untrusted" : "");
}

void Pipeline::model_check_drops() {
  if (!model_hooks_) return;
  auto drops = model_hooks_->model_drops();
  if (!drops) {
    counters_.map_errors++;
    return;
  }
  for (auto& [ns_id, count] : *drops) {
    Namespace* n = reg_.find(ns_id);
    if (!n) continue;
    NsRuntime& r = reg_.rt(n);
    if (!r.modeler) continue;
    if (count < r.cfg.model_drops_seen) r.cfg.model_drops_seen = 0;  // a new map counts anew
    if (count == r.cfg.model_drops_seen) continue;
    const uint64_t lost = count - r.cfg.model_drops_seen;
    r.cfg.model_drops_seen = count;
    model_lost(n, r, 0, lost);
    (void)reg_.save(r);
  }
}

// ---------------------------------------------------------------------------------------------
// the event path

bool Pipeline::model_wants(Namespace* n, const Event& ev) {
  return reg_.rt(n).modeler && ev.path_known() && ev.ns_id == n->id;
}

void Pipeline::model_adjust(Namespace* n, Judgement& j) {
  // ... until the model knows it (model_quiet, access.bpf.h); an agent sees every access
  j.model_quiet = j.quiet && !reg_.rt(n).agent;
  j.quiet = false;  // a quiet verdict would hide the next access from the model
  if (std::find(j.algos.begin(), j.algos.end(), measure::HashAlgo::kSha256) == j.algos.end())
    j.algos.push_back(measure::HashAlgo::kSha256);
}

uint32_t Pipeline::model_quiet_split(Namespace* n, uint32_t& quiet) {
  NsRuntime& r = reg_.rt(n);
  if (!r.modeler) return 0;
  const uint32_t model_quiet = r.agent ? 0 : quiet;  // an agent sees every access
  quiet = 0;
  return model_quiet;
}

void Pipeline::model_file_done(const Event& ev, const access::AccessResult& r) {
  auto it = model_feed_.find(ev.seq);
  if (it == model_feed_.end()) return;
  it->second.ready = true;
  if (r)  // an unreadable file is modeled with a zero digest (never a known coefficient)
    for (size_t i = 0; i < r->algos.size() && i < r->digests.size(); ++i)
      if (r->algos[i] == measure::HashAlgo::kSha256 && r->digests[i].size() == model::kDigestSize)
        std::copy_n(r->digests[i].data(), model::kDigestSize, it->second.digest.begin());
  model_pump(false);
}

void Pipeline::set_intake_probe(IntakeProbe f) {
  call([&] { intake_probe_ = std::move(f); });
}

void Pipeline::model_intake_marks() {
  std::optional<IntakeProgress> at;
  bool asked = false;
  while (!model_batches_.empty()) {
    ModelBatch& b = model_batches_.front();
    if (!b.need_seq) {
      if (!asked) {
        at = intake_probe_();
        asked = true;
      }
      if (!at) return;  // the intake is not mapped yet: nothing passes
      // Consumed while the intake was not mapped: its position now is a later (safe) one.
      if (!b.committed) b.committed = at->committed;
      if (at->consumed < *b.committed) return;
      b.need_seq = at->handed_seq;
    }
    if (judged_seq_.load() < *b.need_seq) return;
    model_passed_batch_ = b.batch;
    model_batches_.pop_front();
  }
}

void Pipeline::model_pump(bool all) {
  if (model_hooks_) {
    model_hooks_->consumed_notice();
    const uint64_t batch = model_batch_ + 1;
    auto n = model_hooks_->consume([&](std::span<const uint8_t> rec) {
      auto ev = model::decode_model_event(rec);
      if (!ev) {
        if (model_bad_records_++ < 5)
          logger("capture")->warn("model event: {}", ev.error().to_string());
        return;
      }
      if (ev->hook == NSIMA_MHOOK_EXIT)
        model_exits_.push_back({std::move(*ev), batch});
      else
        model_kq_.push_back({std::move(*ev), batch});
    });
    if (!n) logger("capture")->warn("{}", n.error().to_string());
    if (n && *n) {
      // Every file record a task committed before its kernel events lies below the file
      // ring's producer position taken now, after they were consumed.
      model_batch_ = batch;
      ModelBatch b{batch, std::nullopt, std::nullopt};
      if (intake_probe_)
        if (auto at = intake_probe_()) b.committed = at->committed;
      model_batches_.push_back(b);
    }
  }
  const uint64_t now = boot_ns();
  // Which kernel events the file intake has passed. Without a probe (no ring buffer: host
  // tests), a kernel event waits kSettleNs or until a later-stamped file event was processed.
  if (all) {
    model_batches_.clear();
    model_passed_batch_ = model_batch_;
  } else if (intake_probe_) {
    model_intake_marks();
  }
  const bool gated = !all && intake_probe_;
  const uint64_t settled =
      all || gated ? UINT64_MAX
                   : std::max(model_seen_ktime_, now > kSettleNs ? now - kSettleNs : 0);
  auto passed = [&](const ModelKernel& k) { return !gated || k.batch <= model_passed_batch_; };
  for (;;) {
    // A kernel event is applied once the intake has passed it, and before the file events
    // stamped after it: the file events its task committed before it are in the feed then.
    uint64_t limit = settled;
    if (!model_feed_.empty()) limit = std::min(limit, model_feed_.begin()->second.ev.ktime_ns);
    while (!model_kq_.empty() && passed(model_kq_.front()) && model_kq_.front().ev.ktime_ns <= limit) {
      ModelKernel k = std::move(model_kq_.front());
      model_kq_.pop_front();
      model_apply_kernel(k.ev);
    }
    if (model_feed_.empty() || !model_feed_.begin()->second.ready) break;
    // ... and a file event never overtakes a kernel event stamped before it that the intake
    // has not passed yet (a child's exec would be applied before its fork).
    if (!model_kq_.empty() && !passed(model_kq_.front()) &&
        model_kq_.front().ev.ktime_ns <= model_feed_.begin()->second.ev.ktime_ns)
      break;
    auto node = model_feed_.extract(model_feed_.begin());
    model_apply_file(node.mapped().ev, node.mapped().digest);
  }
  const uint64_t exit_limit =
      model_feed_.empty() ? UINT64_MAX : model_feed_.begin()->second.ev.ktime_ns;
  while (!model_exits_.empty() &&
         (all || (passed(model_exits_.front()) &&
                  model_exits_.front().ev.ktime_ns + kExitDelayNs <= now &&
                  model_exits_.front().ev.ktime_ns <= exit_limit))) {
    ModelKernel k = std::move(model_exits_.front());
    model_exits_.pop_front();
    model_apply_kernel(k.ev);
  }
}

bool Pipeline::model_pump_due() {
  if (model_batches_.empty() || !intake_probe_) return false;
  const uint64_t before = model_passed_batch_;
  model_intake_marks();
  return model_passed_batch_ != before;
}

void Pipeline::model_apply_kernel(const model::ModelEvent& ev) {
  Namespace* n = reg_.find(ev.ns_id);
  if (!n) return;
  NsRuntime& r = reg_.rt(n);
  if (!r.modeler) return;
  model::Modeler& m = *r.modeler;
  if (r.agent) {  // lineage and events, in the order they are applied here
    if (ev.hook == NSIMA_MHOOK_FORK) {
      r.agent->submit(model::agent::Fork{0, ev.proc, ev.target});
    } else if (ev.hook == NSIMA_MHOOK_EXIT) {
      r.agent->submit(model::agent::Exit{0, ev.proc});
    } else if (auto t = model::model_event_type(ev.hook)) {
      if (auto c = model::model_cell(ev, m.task_id_of(ev.target))) {
        model::agent::Event ae;
        ae.type = *t;
        ae.proc = ev.proc;
        ae.coe = ev.coe;
        ae.cell = *c;
        if (model::agent::has_task_target(*t)) ae.target = ev.target;
        ae.description = ev.comm;
        r.agent->submit(std::move(ae));
      }
    }
  }
  if (ev.hook == NSIMA_MHOOK_FORK) {
    m.fork(ev.proc, ev.target);
    // Marked here after the fork: the kernel copied nothing; the child must not escape.
    if (m.untrusted(ev.target) && m.model().mode() == model::Mode::kEnforce && model_hooks_) {
      nsima_proc_key k{ev.target.tgid, 0, ev.target.start};
      if (!model_hooks_->is_untrusted(k))
        if (auto u = model_hooks_->untrust(k, n->id); !u) r.model_mark_errors++;
    }
    return;
  }
  if (ev.hook == NSIMA_MHOOK_EXIT) {
    m.exit(ev.proc);
    return;
  }
  auto type = model::model_event_type(ev.hook);
  if (!type) return;
  auto cell = model::model_cell(ev, m.task_id_of(ev.target));
  if (!cell) return;
  auto d = m.event(ev.proc, *type, ev.coe, *cell, ev.comm);
  if (d) model_decided(n, ev.proc, *d);
}

void Pipeline::model_apply_file(const Event& ev, const model::Digest& digest) {
  Namespace* n = reg_.find(ev.ns_id);
  if (!n) return;
  NsRuntime& r = reg_.rt(n);
  if (!r.modeler) return;
  model::Modeler& m = *r.modeler;
  model::ProcKey pk{ev.tgid, ev.start_boottime_ns};
  model::FileCell fc;
  fc.flags = ev.f_flags;
  fc.inode.uid = ev.i_uid;
  fc.inode.gid = ev.i_gid;
  fc.inode.mode = ev.i_mode;
  fc.inode.magic = ev.fs_magic;
  fc.inode.uuid = ev.fs_uuid;
  fc.path = ev.path;
  fc.digest = digest;
  Result<model::Decision> d = model::Decision{};
  model::agent::Event ae;
  ae.proc = pk;
  ae.description = ev.path;
  switch (ev.hook) {
    case Hook::kBprmCheck:
      ae.type = model::EventType::kBprmCommittedCreds;
      ae.coe = coe_of(ev.new_cred);
      ae.cell = fc;
      // refused in the kernel before it ran (not a known executable): the process goes on
      // with its old TASK_ID
      d = (ev.flags & NSIMA_EV_MODEL_UNKNOWN) ? m.refused_exec(pk, ae.coe, fc, ev.path)
                                              : m.exec(pk, ae.coe, fc, ev.path);
      break;
    case Hook::kFileOpen:
      ae.type = model::EventType::kFileOpen;
      ae.coe = coe_of(ev.cred);
      ae.cell = fc;
      d = m.event(pk, ae.type, ae.coe, ae.cell, ev.path);
      break;
    case Hook::kMmapFile:
      ae.type = model::EventType::kMmapFile;
      ae.coe = coe_of(ev.cred);
      ae.cell = model::MmapCell{fc, ev.prot, ev.mmap_flags};
      d = m.event(pk, ae.type, ae.coe, ae.cell, ev.path);
      break;
    case Hook::kSetxattr:
    case Hook::kProtect:
      return;  // not an access: Pipeline::process never hands it to the models
  }
  if (r.agent) {
    if (d) ae.coefficient = d->coefficient;
    r.agent->submit(std::move(ae));
  }
  if (!d) return;
  model_decided(n, pk, *d);
  // Known, so the same access of this process (same TASK_ID, credentials, file version, path,
  // flags) has the same known coefficient: the hooks may keep it quiet (the hook that reported
  // it put the key in as pending). Unknown: the key goes, so its next repeat is an event again.
  // Never with an agent (its model, not nsimad's, decides: no model_quiet verdict bits either)
  // nor for an untrusted process (its accesses are refused).
  if (!maps_) return;
  auto k = capture::model_quiet_key_of(ev);
  if (!k) return;
  if (d->known && !d->untrusted && !r.agent) {
    if (auto w = maps_->add_model_quiet(*k); w) r.model_quiet_written++;
    else counters_.map_errors++;
  } else if (auto w = maps_->remove_model_quiet(*k); !w) {
    counters_.map_errors++;
  }
}

void Pipeline::model_decided(Namespace* n, const model::ProcKey& p, const model::Decision& d) {
  NsRuntime& r = reg_.rt(n);
  if (d.first && r.modeler->model().mode() == model::Mode::kLearn) r.model_dirty = true;
  if (!d.newly_untrusted || r.agent) return;  // with an agent, its verdicts decide
  r.model_untrusted++;
  static std::atomic<uint64_t> logged{0};
  if (logged.fetch_add(1) < 50)
    logger("ns")->warn("namespace {}: process {} is untrusted (unknown coefficient {})", n->name,
                       p.tgid, to_hex(d.coefficient).substr(0, 16));
  if (!model_hooks_) return;
  if (auto u = model_hooks_->untrust(nsima_proc_key{p.tgid, 0, p.start}, n->id); !u) {
    r.model_mark_errors++;
    logger("ns")->error("namespace {}: {}", n->name, u.error().to_string());
  }
}

void Pipeline::model_tick() {
  model_pump(false);
  for (Namespace* n : reg_.all()) {
    NsRuntime& r = reg_.rt(n);
    if (r.modeler && r.model_dirty)
      if (auto s = model_persist(n, r); !s)
        logger("ns")->warn("namespace {}: model not saved: {}", n->name, s.error().to_string());
  }
}

// ---------------------------------------------------------------------------------------------
// control plane

Pipeline::ModelInfo Pipeline::model_info(Namespace* n, NsRuntime& r) {
  ModelInfo i;
  const model::Model& m = r.modeler->model();
  i.mode = std::string(model::mode_name(m.mode()));
  i.state = to_hex(m.state());
  i.measurement = to_hex(m.measurement());
  i.base = to_hex(m.base());
  i.aggregate = to_hex(m.aggregate());
  i.known = m.known_count();
  i.forensic = m.forensic_count();
  i.tracked = r.modeler->tracked();
  i.untrusted = r.model_untrusted;
  i.mark_errors = r.model_mark_errors;
  i.quiet_written = r.model_quiet_written;
  if (maps_)
    if (auto q = maps_->model_quiet_count(n->id)) i.quiet_entries = *q;
  i.forensics_dropped = r.modeler->forensics_dropped();
  i.extends = r.model_extends;
  i.lost_events = r.cfg.model_lost_events;
  i.lost_file_events = r.cfg.model_lost_file_events;
  i.kernel = model_hooks_ != nullptr;
  if (r.agent) {
    auto st = r.agent->stats();
    i.agent = r.cfg.model_agent;
    i.agent_fail = r.cfg.model_agent_fail;
    i.agent_timeout_ms = r.cfg.agent_timeout_ms();
    i.agent_error = st.last_error;
    i.agent_connected = st.connected;
    i.agent_verdicts = st.verdicts;
    i.agent_failures = st.failures;
  }
  return i;
}

Result<Pipeline::ModelInfo> Pipeline::model_set_mode(const std::string& name_or_id,
                                                     const std::string& mode) {
  if (!model::mode_from_name(mode))
    return make_error(EINVAL, "model mode must be learn, seal or enforce, got \"" + mode + "\"",
                      name_or_id);
  if (auto h = ensure_model_hooks(); !h) return tl::unexpected(h.error());
  if (auto b = barrier(name_or_id); !b) return tl::unexpected(b.error());
  return call([&]() -> Result<ModelInfo> {
    auto n = find_ns(name_or_id);
    if (!n) return tl::unexpected(n.error());
    NsRuntime& r = reg_.rt(*n);
    if (!r.modeler) {
      if (mode != "learn")
        return make_error(EINVAL,
                          "has no model to " + mode + ": learn first (model learn) or load one "
                          "(model load)",
                          name_or_id);
      if (auto s = model_setup(*n, r, mode, "", "", false, true); !s)
        return tl::unexpected(s.error());
      logger("ns")->info("namespace {}: learning its workload model", (*n)->name);
      return model_info(*n, r);
    }
    model_pump(true);
    if (auto s = r.modeler->model().set_mode(*model::mode_from_name(mode)); !s)
      return make_error(s.error().code, s.error().message, name_or_id);
    r.cfg.model_mode = mode;
    if (auto p = model_publish(*n, r); !p) return tl::unexpected(p.error());
    if (auto p = model_persist(*n, r); !p) return tl::unexpected(p.error());
    logger("ns")->info("namespace {}: model {} ({} points)", (*n)->name, mode,
                       r.modeler->model().known_count());
    return model_info(*n, r);
  });
}

Result<Pipeline::ModelInfo> Pipeline::model_load(const std::string& name_or_id,
                                                 const std::string& text,
                                                 const std::string& origin,
                                                 const std::string& mode) {
  if (mode != "seal" && mode != "enforce")
    return make_error(EINVAL, "a loaded model is sealed: mode must be seal or enforce, got \"" +
                                  mode + "\"",
                      name_or_id);
  if (auto h = ensure_model_hooks(); !h) return tl::unexpected(h.error());
  if (auto b = barrier(name_or_id); !b) return tl::unexpected(b.error());
  return call([&]() -> Result<ModelInfo> {
    auto n = find_ns(name_or_id);
    if (!n) return tl::unexpected(n.error());
    NsRuntime& r = reg_.rt(*n);
    model_pump(true);
    if (auto s = model_setup(*n, r, mode, text, origin, true, true); !s)
      return tl::unexpected(s.error());
    logger("ns")->info("namespace {}: model {} loaded from {} ({} points)", (*n)->name, mode,
                       origin, r.modeler->model().known_count());
    return model_info(*n, r);
  });
}

Result<std::string> Pipeline::model_save(const std::string& name_or_id) {
  if (auto b = barrier(name_or_id); !b) return tl::unexpected(b.error());
  return call([&]() -> Result<std::string> {
    auto n = find_ns(name_or_id);
    if (!n) return tl::unexpected(n.error());
    NsRuntime& r = reg_.rt(*n);
    if (!r.modeler) return make_error(ENODATA, "is not modeled", name_or_id);
    model_pump(true);
    return model::serialize_model(r.modeler->model());
  });
}

Result<Pipeline::ModelInfo> Pipeline::model_state(const std::string& name_or_id, bool extend) {
  if (auto b = barrier(name_or_id); !b) return tl::unexpected(b.error());
  struct Snap {
    ModelInfo info;
    std::shared_ptr<tpm::Tpm> tpm;
  };
  auto snap = call([&]() -> Result<Snap> {
    auto n = find_ns(name_or_id);
    if (!n) return tl::unexpected(n.error());
    NsRuntime& r = reg_.rt(*n);
    if (!r.modeler) return make_error(ENODATA, "is not modeled", name_or_id);
    model_pump(true);
    Snap s{model_info(*n, r), nullptr};
    if (extend) {
      if (!r.cfg.vtpm || !r.own_tpm)
        return make_error(ENODEV,
                          "the model state is extended into the namespace's own vTPM, and it "
                          "has none (ns create --vtpm)",
                          name_or_id);
      s.tpm = r.own_tpm;
      r.model_extends++;
    }
    return s;
  });
  if (!snap) return tl::unexpected(snap.error());
  if (!extend) return snap->info;
  // On this thread: the TPM is shared, the pipeline never waits for it.
  auto state = from_hex(snap->info.state);
  auto banks = snap->tpm->banks();
  if (!banks) return tl::unexpected(banks.error());
  std::vector<tpm::BankDigest> digests;
  for (auto b : *banks) {
    if (!tpm::bank_supported(b)) continue;
    auto algo = algo_of_bank(b);
    if (!algo) return make_error(ENOTSUP, "cannot extend the model state into bank " +
                                              tpm::bank_name(b), name_or_id);
    // sha256: the state itself; another bank: that bank's hash of the state's 32 bytes
    std::vector<uint8_t> v;
    if (b == tpm::Bank::kSha256) {
      v = *state;
    } else {
      auto h = measure::hash_bytes(*algo, *state);
      if (!h) return tl::unexpected(h.error());
      v.assign(h->bytes().begin(), h->bytes().end());
    }
    digests.push_back({b, std::move(v)});
  }
  if (auto e = snap->tpm->extend(kModelPcr, digests); !e) return tl::unexpected(e.error());
  auto v = snap->tpm->read_pcr(kModelPcr, tpm::Bank::kSha256);
  if (!v) return tl::unexpected(v.error());
  snap->info.pcr = kModelPcr;
  snap->info.pcr_sha256 = to_hex(*v);
  snap->info.extends++;
  logger("ns")->info("namespace {}: model state {} extended into PCR {} of {}", name_or_id,
                     snap->info.state.substr(0, 16), kModelPcr, snap->tpm->describe());
  return snap->info;
}

Result<nlohmann::json> Pipeline::model_forensics(const std::string& name_or_id) {
  if (auto b = barrier(name_or_id); !b) return tl::unexpected(b.error());
  return call([&]() -> Result<nlohmann::json> {
    auto n = find_ns(name_or_id);
    if (!n) return tl::unexpected(n.error());
    NsRuntime& r = reg_.rt(*n);
    if (!r.modeler) return make_error(ENODATA, "is not modeled", name_or_id);
    model_pump(true);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : r.modeler->forensics())
      out.push_back({{"seq", f.seq},
                     {"tgid", f.proc.tgid},
                     {"event", std::string(model::event_name(f.event))},
                     {"coefficient", to_hex(f.coefficient)},
                     {"description", f.description},
                     {"untrusted", r.modeler->untrusted(f.proc)}});
    return nlohmann::json{{"forensics", out},
                          {"dropped", r.modeler->forensics_dropped()},
                          {"lost_events", r.cfg.model_lost_events},
                          {"lost_file_events", r.cfg.model_lost_file_events}};
  });
}

nlohmann::json Pipeline::model_kernel_stats() {
  return call([&]() -> nlohmann::json {
    if (!model_hooks_) return nlohmann::json::object();
    const capture::ModelHooks& h = *model_hooks_;
    auto per_hook = [&](uint32_t base) {
      uint64_t sum = 0;
      for (uint32_t i = 1; i < NSIMA_MHOOK_MAX; ++i) sum += h.stat(base + i);
      return sum;
    };
    nlohmann::json lost = nlohmann::json::object();
    if (auto d = h.model_drops())
      for (auto& [ns, n] : *d) lost[std::to_string(ns)] = n;
    return {{"resumed", h.resumed()},
            {"emitted", per_hook(NSIMA_MSTAT_EMITTED)},
            {"dropped", per_hook(NSIMA_MSTAT_DROPPED)},
            {"denied", per_hook(NSIMA_MSTAT_DENIED)},
            {"denied_access", h.stat(NSIMA_MSTAT_DENIED_ACCESS)},
            {"inherit_failed", h.stat(NSIMA_MSTAT_INHERIT_FAILED)},
            {"lost_untrusted", h.stat(NSIMA_MSTAT_LOST_UNTRUSTED)},
            {"lost_mark_failed", h.stat(NSIMA_MSTAT_LOST_MARK_FAILED)},
            {"drop_no_ns", h.stat(NSIMA_MSTAT_DROP_NO_NS)},
            {"model_drops", lost}};
  });
}

}  // namespace nsima::ns

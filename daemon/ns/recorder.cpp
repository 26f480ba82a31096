// SPDX-License-Identifier: Apache-2.0
#include "ns/recorder.h"

#include <cerrno>
#include <filesystem>
#include <optional>
#include <set>

#include "common/log.h"
#include "measure/list_format.h"

namespace nsima::ns {

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

Recorder::Recorder(RecorderOptions o, Registry& reg, ExtendErrorFn on_extend_error)
    : opts_(std::move(o)), reg_(reg), on_extend_error_(std::move(on_extend_error)) {}

void Recorder::attach_tpm(Namespace* n, NsRuntime& r) {
  uint32_t id = n->id;
  uint64_t gen = ++r.tpm_gen;
  r.extender = std::make_shared<Extender>(
      r.own_tpm, [this, id, gen](const ExtendJob& job, const Error& e) {
        if (on_extend_error_) on_extend_error_(id, gen, job, e);
      });
}

Result<void> Recorder::open_list(Namespace* n, NsRuntime& r) {
  measure::ListConfig lc;
  lc.hash_algo = opts_.hash_algo;
  lc.default_template = opts_.default_template;
  // The namespace's own ima_hash= / ima_template= (ns create --hash/--template), checked there.
  if (!r.cfg.hash.empty()) {
    auto a = measure::hash_algo_from_name(r.cfg.hash);
    if (!a) return make_error(EINVAL, "unknown hash algorithm \"" + r.cfg.hash + "\"", r.cfg.name);
    lc.hash_algo = *a;
  }
  if (!r.cfg.template_name.empty()) {
    auto t = measure::template_kind(r.cfg.template_name);
    if (!t)
      return make_error(EINVAL, "unknown template \"" + r.cfg.template_name + "\"", r.cfg.name);
    lc.default_template = *t;
  }
  lc.default_pcr = reg_.default_pcr_of(n);
  Namespace* owner = reg_.owner_of(n);
  NsRuntime& o = owner == n ? r : reg_.rt(owner);
  if (tpm::Tpm* t = o.own_tpm.get()) {
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
  } else if (owner != n && o.list) {
    lc.banks = o.list->config().banks;
  }
  std::string dir = ns_dir(opts_.state_dir, r.cfg.name);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto list = measure::MeasurementList::open(dir, lc);
  if (!list) return tl::unexpected(list.error());
  r.list = std::make_shared<measure::MeasurementList>(std::move(*list));
  if (r.list->count() != 0) return {};
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
  if (r.own_tpm) queue_extend(n, r, *out);
  return {};
}

Result<void> Recorder::reconcile(Namespace* n, NsRuntime& r) {
  if (!r.own_tpm || !r.list || r.list->count() == 0) return {};
  auto log = logger("ns");
  std::set<uint32_t> pcrs;
  auto scan = r.list->for_each(0, [&](uint64_t, const measure::Record& rec) -> Result<void> {
    pcrs.insert(rec.pcr);
    return {};
  });
  if (!scan) return tl::unexpected(scan.error());
  if (r.extender) r.extender->drain();  // the boot_aggregate of a new list
  measure::HashAlgo bank = r.list->config().banks.back();
  for (uint32_t pcr : pcrs) {
    auto v = r.own_tpm->read_pcr(static_cast<int>(pcr), *bank_of(bank));
    if (!v) return tl::unexpected(v.error());
    auto value = measure::Digest::from_bytes(bank, *v);
    if (!value) return tl::unexpected(value.error());
    auto prefix = r.list->extended_prefix(pcr, bank, *value);
    if (!prefix) return tl::unexpected(prefix.error());
    if (!*prefix) {
      disable(n, "list-pcr-mismatch",
              "its list does not replay to PCR " + std::to_string(pcr) + " of " +
                  r.own_tpm->describe() + " (" + std::string(measure::hash_algo_name(bank)) +
                  " " + value->hex() + ")");
      return {};
    }
    uint64_t redo = 0;
    auto again = r.list->for_each(**prefix, [&](uint64_t, const measure::Record& rec)
                                                -> Result<void> {
      if (rec.pcr != pcr) return {};
      std::vector<measure::Digest> ext;
      for (auto b : r.list->config().banks) {
        auto ev = measure::extend_value(rec.template_name, rec.data, rec.violation(), b);
        if (!ev) return tl::unexpected(ev.error());
        ext.push_back(*ev);
      }
      auto x = r.own_tpm->extend(static_cast<int>(pcr), to_bank_digests(ext));
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

Result<void> Recorder::restart_list(Namespace* n, NsRuntime& r, const std::string& why) {
  if (r.list) (void)r.list->close();
  r.list.reset();
  auto a = archive_ns_dir(opts_.state_dir, r.cfg.name, why + "-" + current_boot_id());
  if (!a) return tl::unexpected(a.error());
  r.files.clear();
  r.sha256s.clear();
  if (auto s = reg_.save(r); !s) return s;
  if (auto s = open_list(n, r); !s) return s;
  logger("ns")->info("namespace {}: list restarted ({}); the old one is archived at {}", n->name,
                     why, *a);
  return {};
}

bool Recorder::append(Namespace* n, const AppendFn& fn) {
  NsRuntime& r = reg_.rt(n);
  if (r.disabled) return false;
  if (r.suspended) {  // try_resume clears it for its own append
    r.lost++;
    return false;
  }
  if (!r.list) return false;
  Namespace* owner = reg_.owner_of(n);
  NsRuntime* o = owner == n ? nullptr : &reg_.rt(owner);
  std::optional<measure::AppendOutcome> copy;
  if (o && o->list && !o->disabled) {
    // A namespace without a PCR of its own: the owning list records (and extends) it first.
    auto c = o->suspended ? Result<measure::AppendOutcome>(make_error(
                                ENOSPC, "its owner " + owner->name + " is suspended", n->name))
                          : fn(*o->list);
    if (!c) {
      if (!o->suspended) failed(owner, c.error());
      if (o->suspended) {  // n's entry could not be extended: n waits with its owner
        suspend(n, "its owner " + owner->name + " is suspended (" + o->suspended_reason + ")");
        r.lost++;
      }
      return false;
    }
    copy = *c;
  }
  auto out = fn(*r.list);
  if (!out) {
    failed(n, out.error());
    if (r.suspended) r.lost++;
    return false;
  }
  if (!out->added) return true;  // identical entry already in the list: not added, not extended
  if (out->violation)
    counters_.violations++;
  else
    counters_.measured++;
  if (!o) {
    queue_extend(n, r, *out);
  } else if (copy) {
    queue_extend(owner, *o, *copy);
  }
  return true;
}

void Recorder::failed(Namespace* n, const Error& e) {
  if (e.code == ENOSPC || e.code == EDQUOT)
    suspend(n, "no space for its list: " + e.to_string());
  else
    disable(n, "append-failed", "cannot append to its list: " + e.to_string());
}

void Recorder::suspend(Namespace* n, const std::string& why) {
  NsRuntime& r = reg_.rt(n);
  if (r.suspended || r.disabled) return;
  r.suspended = true;
  r.suspended_reason = why;
  logger("ns")->error("namespace {} suspended: {}; {}", n->name, why,
                      n->is_host() ? "it measures again when there is space"
                                   : "accesses not judged before are denied until there is space");
  if (auto b = reg_.refresh_bpf(n); !b)
    logger("ns")->error("namespace {}: {}", n->name, b.error().to_string());
  if (opts_.on_suspend) opts_.on_suspend(n, "suspended", why);
}

void Recorder::try_resume(Namespace* n) {
  NsRuntime& r = reg_.rt(n);
  if (!r.suspended || r.disabled) return;
  Namespace* owner = reg_.owner_of(n);
  if (owner != n && reg_.rt(owner).suspended) return;  // the owner resumes first
  const std::string what = r.suspended_reason.rfind("its owner", 0) == 0 ? "owner" : "no-space";
  const std::string name = "nsima:suspended:" + what + ":" + std::to_string(r.lost);
  r.suspended = false;  // for the append below; set again if it fails
  const std::string why = r.suspended_reason;
  auto saved_lost = r.lost;
  if (!append(n, [&](measure::MeasurementList& l) { return l.append_violation(name); })) {
    if (!r.suspended && !r.disabled) {  // append() failed but did not suspend again
      r.suspended = true;
      r.suspended_reason = why;
    }
    if (r.suspended) r.lost = saved_lost;  // the violation itself is not a lost entry
    return;
  }
  logger("ns")->warn("namespace {} resumed: {} entries were not recorded ({})", n->name,
                     saved_lost, why);
  r.lost = 0;
  r.suspended_reason.clear();
  if (auto b = reg_.refresh_bpf(n); !b)
    logger("ns")->error("namespace {}: {}", n->name, b.error().to_string());
  if (opts_.on_suspend) opts_.on_suspend(n, "resumed", name);
}

void Recorder::queue_extend(Namespace* owner, NsRuntime& owner_rt,
                            const measure::AppendOutcome& out) {
  if (!owner_rt.extender || !out.added) return;
  ExtendJob job;
  job.pcr = static_cast<int>(out.pcr);
  job.digests = to_bank_digests(out.extend);
  job.list = owner->name;
  job.index = out.index;
  owner_rt.extender->push(std::move(job));
}

bool Recorder::entry(Namespace* n, const measure::Entry& e) {
  return append(n, [&](measure::MeasurementList& l) { return l.append(e); });
}

bool Recorder::violation(Namespace* n, const std::string& name) {
  return append(n, [&](measure::MeasurementList& l) { return l.append_violation(name); });
}

void Recorder::disable(Namespace* n, const std::string& what, const std::string& why) {
  NsRuntime& r = reg_.rt(n);
  if (r.disabled) return;
  r.disabled = true;
  r.disabled_reason = why;
  logger("ns")->error("namespace {} stops measuring: {}", n->name, why);
  // The host list records it, so that a verifier of the host sees the failure.
  if (!n->is_host()) violation(&reg_.host(), "nsima:ns-" + n->name + "-stopped:" + what);
}

}  // namespace nsima::ns

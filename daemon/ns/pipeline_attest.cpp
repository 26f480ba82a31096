// SPDX-License-Identifier: Apache-2.0
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
#include "ns/pipeline.h"
#include "ns/pipeline_actor.h"
#include "tpm/credential.h"
#include "tpm/esys_tpm.h"
#include "tpm/pcr_policy.h"

namespace nsima::ns {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// attestation: what a list, PCR report or quote covers

Result<void> Pipeline::barrier(const std::string& name_or_id) {
  const auto deadline = std::chrono::steady_clock::now() + opts_.barrier_timeout;
  // 1. every record committed to the ring buffer before now is handed to submit()
  uint64_t upto = submitted_seq_.load();
  if (intake_sync_) {
    auto s = intake_sync_(time_left(deadline));
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
  if (ext.first && !ext.first->wait(ext.second, time_left(deadline)))
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

Result<std::shared_ptr<measure::MeasurementList>> Pipeline::list_of(const std::string& name_or_id) {
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
    return AttestSnap{o.own_tpm, o.list, static_cast<int>(reg_.rt(*ns).list->config().default_pcr)};
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
  auto r =
      list.for_each(from_index, [&](uint64_t index, const measure::Record& rec) -> Result<void> {
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

nlohmann::json Pipeline::PcrReport::json() const {
  return {{"tpm", tpm}, {"pcr", pcr}, {"values", values}, {"expected", expected}};
}

Result<Pipeline::PcrReport> Pipeline::pcr_report(const std::string& name_or_id, bool all) {
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
  if (!all) return rep;
  std::vector<int> idx;
  for (int i = 0; i < 24; ++i) idx.push_back(i);
  for (auto b : snap->owner_list->config().banks) {
    auto vals = snap->tpm->read_pcrs(*bank_of(b), idx);
    if (!vals) return tl::unexpected(vals.error());
    auto& out = rep.all[std::string(measure::hash_algo_name(b))];
    for (int i : idx) out.push_back(to_hex((*vals)[i]));
  }
  return rep;
}

Result<tpm::Quote> Pipeline::quote(const std::string& name_or_id,
                                   const std::vector<uint8_t>& nonce) {
  auto snap = attest_snapshot(name_or_id);
  if (!snap) return tl::unexpected(snap.error());
  // A modeled namespace with its own vTPM: the quote covers the model PCR (its state extends).
  bool model_pcr = call([&] {
    Namespace* n = reg_.find(name_or_id);
    return n && reg_.rt(n).modeler && reg_.rt(n).cfg.vtpm;
  });
  std::vector<tpm::PcrSelection> sel;
  for (auto b : snap->owner_list->config().banks) {
    sel.push_back({*bank_of(b), {snap->pcr}});
    if (model_pcr && *bank_of(b) == tpm::Bank::kSha256) sel.back().pcrs.push_back(kModelPcr);
  }
  return snap->tpm->quote(sel, nonce);
}

// ---------------------------------------------------------------------------------------------
// vTPM identity: EK certificate, AK, credential activation, the host list's vTPM records

namespace {
// The namespace's own TPM, for identity and activation: a vTPM's, or the host TPM.
Result<std::shared_ptr<tpm::Tpm>> own_vtpm(Registry& reg, Namespace* n, const std::string& id) {
  NsRuntime& r = reg.rt(n);
  if (!r.cfg.vtpm && !(n->is_host() && r.own_tpm)) {
    Namespace* o = reg.owner_of(n);
    return make_error(ENODEV,
                      "has no vTPM: its entries are attested through the list of namespace " +
                          (o ? o->name : std::string("?")) +
                          " (nsimactl verify checks that they are copied there)",
                      id);
  }
  if (!r.own_tpm) return make_error(ENODEV, "its vTPM is not open", id);
  return r.own_tpm;
}
}  // namespace

Result<Pipeline::VtpmIdentity> Pipeline::vtpm_identity(const std::string& name_or_id) {
  auto t = call([&]() -> Result<std::pair<std::shared_ptr<tpm::Tpm>, std::string>> {
    auto n = find_ns(name_or_id);
    if (!n) return tl::unexpected(n.error());
    auto own = own_vtpm(reg_, *n, name_or_id);
    if (!own) return tl::unexpected(own.error());
    return std::make_pair(*own, (*n)->name);
  });
  if (!t) return tl::unexpected(t.error());
  // The TPM conversation off the pipeline thread (the namespace's TPM is shared and locked).
  auto id = t->first->identity();
  if (!id) return tl::unexpected(id.error());
  VtpmIdentity out;
  out.id = std::move(*id);
  out.owner = t->second;
  if (auto c = vtpms_->ca_chain()) out.chain_pem = std::move(*c);
  return out;
}

Result<std::vector<uint8_t>> Pipeline::activate_credential(const std::string& name_or_id,
                                                           const std::vector<uint8_t>& id_object,
                                                           const std::vector<uint8_t>& enc_secret) {
  auto t = call([&]() -> Result<std::shared_ptr<tpm::Tpm>> {
    auto n = find_ns(name_or_id);
    if (!n) return tl::unexpected(n.error());
    return own_vtpm(reg_, *n, name_or_id);
  });
  if (!t) return tl::unexpected(t.error());
  return (*t)->activate_credential(id_object, enc_secret);
}

Result<std::string> Pipeline::vtpm_ca_certificate() { return vtpms_->ca_certificate(); }

std::vector<uint8_t> Pipeline::ek_public_of(tpm::Tpm& t, const std::string& name) {
  auto id = t.identity();
  if (!id) {
    logger("ns")->warn("namespace {}: no EK to record: {}", name, id.error().to_string());
    return {};
  }
  return id->ek_public;
}

void Pipeline::record_vtpm(const std::string& name, const std::string& what,
                           const std::vector<uint8_t>& ek_public) {
  Namespace* host = &reg_.host();
  auto& hl = reg_.rt(host).list;
  if (!hl) return;
  const measure::HashAlgo algo = hl->config().hash_algo;
  measure::Entry e;
  e.name = "nsima:ns-" + name + "-vtpm-" + what + ":ek-none";
  e.digest = measure::Digest(algo);
  if (!ek_public.empty()) {
    auto hex = tpm::spki_digest(ek_public, "sha256");
    auto d = tpm::spki_digest(ek_public, std::string(measure::hash_algo_name(algo)).c_str());
    if (hex && d)
      if (auto dg = measure::Digest::from_bytes(algo, *d)) {
        e.name = "nsima:ns-" + name + "-vtpm-" + what + ":ek-sha256:" + to_hex(*hex);
        e.digest = *dg;
      }
  }
  // A measured entry, not a violation: a violation's template data is not extended (its PCR
  // value is 0xFF..), so its name would not be covered by the host's quote.
  if (!rec_->entry(host, e))
    logger("ns")->error("namespace {}: the host list could not record {}", name, e.name);
}

}  // namespace nsima::ns

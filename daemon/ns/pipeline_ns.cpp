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
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/atomic_file.h"
#include "common/container_id.h"
#include "common/hex.h"
#include "common/log.h"
#include "measure/list_format.h"
#include "measure/template.h"
#include "ns/cgroup.h"
#include "ns/pipeline.h"
#include "ns/pipeline_actor.h"
#include "tpm/esys_tpm.h"
#include "tpm/pcr_policy.h"

namespace nsima::ns {

namespace fs = std::filesystem;

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
  if (!o.container.empty() && !is_container_id(o.container))
    return make_error(EINVAL,
                      "a container id is 1 to 1024 characters of A-Za-z0-9_+.- (nor . or ..)",
                      "container");
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
  // Its list's template and hash, kept in ns.json as given or defaulted now: a restart with other
  // --template/--hash flags continues this list as it was started.
  const std::string tmpl_name = o.template_name.empty()
                                    ? std::string(measure::template_name(opts_.default_template))
                                    : o.template_name;
  // The kernel's 'ima' template holds a sha1 digest only.
  const std::string hash_name =
      !o.hash.empty()           ? o.hash
      : tmpl_name == "ima"      ? std::string("sha1")
                                : std::string(measure::hash_algo_name(opts_.hash_algo));
  if (!measure::template_kind(tmpl_name))
    return make_error(EINVAL, "template must be ima-ng, ima-sig or ima", tmpl_name);
  if (!measure::hash_algo_from_name(hash_name))
    return make_error(EINVAL, "unknown hash algorithm", hash_name);
  if (tmpl_name == "ima" && hash_name != "sha1")
    return make_error(EINVAL,
                      "the 'ima' template records sha1 digests only (as the kernel): use hash "
                      "sha1 or another template",
                      "hash " + hash_name);
  // 1. an id, checked and reserved on the pipeline thread
  auto id = call([&]() -> Result<uint32_t> {
    if (*dir == reg_.cgroup_root()) return make_error(EEXIST, "is the host namespace", *dir);
    if (Namespace* e = reg_.find_by_cgroup(*dir))
      return make_error(EEXIST, "already bound to namespace " + e->name, *dir);
    if (reg_.size() > kMaxNamespaces)
      return make_error(
          ENOSPC,
          "nsima holds at most " + std::to_string(kMaxNamespaces) + " namespaces besides host",
          *dir);
    return reg_.allocate_id();
  });
  if (!id) return id;
  std::string name = std::to_string(*id);
  // 2. its vTPM, started here (slow) rather than on the pipeline thread
  std::shared_ptr<tpm::Tpm> own;
  std::vector<uint8_t> ek_public;  // for the host list's record of this vTPM
  if (o.vtpm) {
    auto inst = vtpms_->start(name);
    if (!inst) return tl::unexpected(inst.error());
    auto t = open_tpm(inst->tcti);
    if (!t) {
      (void)vtpms_->destroy(name);
      return tl::unexpected(t.error());
    }
    own = std::move(*t);
    ek_public = ek_public_of(*own, name);
  }
  // The model hooks, loaded here (slow) before the namespace's first event can be modeled.
  if (!o.model_mode.empty())
    if (auto h = ensure_model_hooks(); !h) {
      if (o.vtpm) (void)vtpms_->destroy(name);
      return tl::unexpected(h.error());
    }
  // 3. into the tree, list, BPF, verdicts
  auto r = call([&]() -> Result<uint32_t> {
    NsConfig cfg{name, *id, *dir, o.vtpm, o.policy_origin, o.policy_text, ""};
    cfg.appraise = o.appraise.empty() ? "enforce" : o.appraise;
    cfg.container = o.container;
    if (!parse_appraise_mode(cfg.appraise))
      return make_error(EINVAL, "appraise mode must be enforce, log or off", cfg.appraise);
    cfg.template_name = tmpl_name;
    cfg.hash = hash_name;
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
    if (!o.certs.empty()) {
      auto ks = appraise::KeyStore::open(fs::path(ns_dir(opts_.state_dir, name)) / "keys");
      if (!ks) return undo(ks.error());
      for (size_t i = 0; i < o.certs.size(); ++i)
        if (auto k = ks->add(o.certs[i], "certificate " + std::to_string(i + 1)); !k)
          return undo(k.error());
      auto ring = ks->load();
      if (!ring) return undo(ring.error());
      rt.keys = std::make_shared<appraise::Keyring>(std::move(*ring));
    }
    rt.cfg.model_agent = o.model_agent;
    rt.cfg.model_agent_fail = o.model_agent.empty() ? "" : o.model_agent_fail.empty() ? "closed"
                                                                                    : o.model_agent_fail;
    if (o.model_agent_timeout_ms > kMaxAgentTimeoutMs)
      return undo(Error{EINVAL,
                        "a model agent timeout of " + std::to_string(o.model_agent_timeout_ms) +
                            " ms is above " + std::to_string(kMaxAgentTimeoutMs),
                        name});
    if (o.model_agent.empty() && o.model_agent_timeout_ms != 0)
      return undo(Error{EINVAL, "a model agent timeout needs a model agent", name});
    rt.cfg.model_agent_timeout_ms = o.model_agent_timeout_ms;
    if (!o.model_agent.empty() && o.model_mode.empty())
      return undo(Error{EINVAL, "a model agent needs a model mode (learn, seal or enforce)", name});
    if (!o.model_mode.empty())
      if (auto m = model_setup(n, rt, o.model_mode, o.model_text, o.model_origin, true, true);
          !m)
        return undo(m.error());
    // With a rootfs, bound once it is pre-appraised (below).
    if (o.rootfs.empty())
      if (auto s = reg_.refresh_bpf(n); !s) return undo(s.error());
    for (Namespace* x : reg_.subtree(n))
      if (auto a = verdicts_.apply(reg_.chain_ids(x)); !a) return undo(a.error());
    if (auto t = after_topology(ins->owner_changed, "owner-changed"); !t)
      logger("ns")->error("namespace {}: {}", n->name, t.error().to_string());
    if (o.vtpm) record_vtpm(n->name, "created", ek_public);
    logger("ns")->info("namespace {} created for {} (cgroup id {}), parent {}{}{}", n->name, *dir,
                       *cgid, n->parent->name, o.vtpm ? ", own vTPM" : "",
                       o.policy_origin.empty() ? "" : ", policy " + o.policy_origin);
    return n->id;
  });
  if (!r && o.vtpm) (void)vtpms_->destroy(name);  // a fresh vTPM nobody will use
  if (!r || o.rootfs.empty()) return r;
  // 4. its rootfs decided before any process of the cgroup is tagged with the namespace, then
  //    bound: the image's files need no event on their first use.
  auto pre = pre_appraise(name, o.rootfs);
  auto bound = pre ? call([&]() -> Result<void> {
    Namespace* n = reg_.find(*r);
    if (!n) return make_error(ENOENT, "namespace deleted meanwhile", name);
    if (auto s = reg_.refresh_bpf(n); !s) return s;
    for (Namespace* x : reg_.subtree(n))
      if (auto a = verdicts_.apply(reg_.chain_ids(x)); !a) return a;
    return {};
  })
                   : Result<void>(tl::unexpected(pre.error()));
  if (!bound) {
    (void)delete_namespace(name);  // never half made: no namespace without its verdicts
    return tl::unexpected(bound.error());
  }
  return r;
}

Result<uint32_t> Pipeline::ensure_namespace(const std::string& cgroup_path, bool create) {
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
  if (!create)
    return make_error(ENOENT,
                      "no namespace is bound to this cgroup (nsimactl ns create --cgroup " + *dir +
                          " makes one)",
                      *dir);
  return create_namespace(*dir, {});
}

Result<void> Pipeline::delete_namespace(const std::string& name_or_id) {
  auto r = remove_namespace(name_or_id, "deleted", 0);
  if (!r) return tl::unexpected(r.error());
  return {};
}

Result<std::string> Pipeline::remove_namespace(const std::string& name_or_id,
                                               const std::string& why, uint64_t cgroup_id) {
  auto removed = call([&]() -> Result<Registry::Removed> {
    auto n = find_ns(name_or_id);
    if (!n) return tl::unexpected(n.error());
    if ((*n)->is_host())
      return make_error(EPERM, "the host namespace cannot be deleted", name_or_id);
    if (cgroup_id != 0 && (*n)->cgroup_id != cgroup_id)
      return make_error(ESTALE, "no longer bound to cgroup id " + std::to_string(cgroup_id),
                        name_or_id);
    uint32_t id = (*n)->id;
    Namespace copy = **n;  // cgroup id, for unregistering after removal
    model_drop(*n);
    auto rm = reg_.remove(*n);
    if (!rm) return tl::unexpected(rm.error());
    if (maps_) {
      if (auto u = maps_->unregister_cgroup(copy.cgroup_id); !u)
        counters_.map_errors++;  // bumps the epoch
    }
    if (auto f = verdicts_.forget(id); !f) counters_.map_errors++;
    if (auto t = reg_.drop_trust(id); !t) counters_.map_errors++;
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
  if (rt->cfg.vtpm) {
    // The host list records that this vTPM is gone (with the EK it had).
    std::vector<uint8_t> ek = rt->own_tpm ? ek_public_of(*rt->own_tpm, name) : std::vector<uint8_t>{};
    call([&] { record_vtpm(name, "deleted", ek); });
  }
  rt->own_tpm.reset();
  auto archived = archive_ns_dir(opts_.state_dir, name, why + "-" + current_boot_id());
  if (rt->cfg.vtpm) {
    (void)vtpms_->stop(name);
    // The vTPM's state goes with its list (evidence for an auditor), never to a later tenant.
    fs::path state = fs::path(opts_.state_dir) / "vtpm" / name;
    std::error_code ec;
    if (archived && fs::exists(state, ec)) fs::rename(state, fs::path(*archived) / "vtpm", ec);
    if (!archived || ec) (void)vtpms_->destroy(name);
  }
  logger("ns")->info("namespace {} {}{}", name, why,
                     archived ? ", list archived at " + *archived : "");
  if (!archived) {
    logger("ns")->error("namespace {}: its list stays in {}: {}", name,
                        ns_dir(opts_.state_dir, name), archived.error().to_string());
    return std::string();
  }
  return *archived;
}

std::vector<std::string> Pipeline::end_gone_namespaces() {
  std::vector<std::string> ended;
  const auto now = std::chrono::steady_clock::now();
  auto all = list_namespaces();
  {
    std::lock_guard c(check_mu_);
    for (auto it = gone_since_.begin(); it != gone_since_.end();) {
      bool listed = std::any_of(all.begin(), all.end(), [&](auto& n) { return n.name == it->first; });
      it = listed ? std::next(it) : gone_since_.erase(it);
    }
  }
  for (const NsInfo& n : all) {
    if (n.name == kHostNsName) continue;
    // Gone: removed, or its path now names another cgroup. Other errors (EACCES, ...) are not
    // taken as gone: ending a live namespace would stop measuring it.
    auto id = cgroup_id_of(n.cgroup_path);
    bool gone = id ? *id != n.cgroup_id : id.error().code == ENOENT;
    {
      std::lock_guard c(check_mu_);
      if (!gone) {
        gone_since_.erase(n.name);
        continue;
      }
      auto it = gone_since_.try_emplace(n.name, now).first;
      if (now - it->second < opts_.cgroup_gone_grace) continue;
      gone_since_.erase(it);
    }
    // The owner's PCR values as the namespace ends, as an OCI poststop archives them.
    auto report = pcr_report(n.name);
    nlohmann::json pcrs = report ? report->json()
                                 : nlohmann::json{{"unavailable", report.error().to_string()}};
    if (!n.container.empty()) {
      // A container's namespace: the archive its OCI poststop would have written
      // (daemon/hook/nsima_oci_hook.cpp), so a verifier finds it where it looks.
      auto ascii = render_list(n.name, true), binary = render_list(n.name, false);
      nlohmann::json rec{{"container", n.container}, {"ns", n.name},
                         {"cgroup", n.cgroup_path},  {"policy", n.policy_origin},
                         {"vtpm", n.vtpm},           {"ended", "cgroup-gone"}};
      auto w = ascii && binary
                   ? write_dir_atomic(
                         (fs::path(opts_.state_dir) / "archive" /
                          ("oci-" + n.container + "-ns" + n.name)).string(),
                         {{"container.json", rec.dump(2) + "\n"},
                          {"pcrs.json", pcrs.dump(2) + "\n"},
                          {"ascii_runtime_measurements", *ascii},
                          {"binary_runtime_measurements", *binary}},
                         "nsimad.partial")
                   : Result<void>(tl::unexpected(ascii ? binary.error() : ascii.error()));
      if (!w)
        logger("ns")->error("namespace {} (container {}): no container archive: {}", n.name,
                            n.container, w.error().to_string());
    }
    auto archived = remove_namespace(n.name, "cgroup-gone", n.cgroup_id);
    if (!archived) {  // deleted meanwhile (poststop, an operator): nothing left to end
      if (archived.error().code != ENOENT && archived.error().code != ESTALE)
        logger("ns")->error("namespace {}: cgroup {} is gone but the namespace could not be "
                            "ended: {}", n.name, n.cgroup_path, archived.error().to_string());
      continue;
    }
    nlohmann::json rec{{"reason", "cgroup-gone"}, {"namespace", n.name},   {"ns_id", n.id},
                       {"container", n.container}, {"cgroup", n.cgroup_path},
                       {"cgroup_id", n.cgroup_id}, {"ended_at", std::time(nullptr)}};
    rec["pcrs"] = pcrs;
    if (!archived->empty())
      if (auto w = write_file_atomic((fs::path(*archived) / "ended.json").string(), rec.dump(2) + "\n");
          !w)
        logger("ns")->error("namespace {}: {}", n.name, w.error().to_string());
    logger("ns")->warn("namespace {}{} ended: its cgroup {} is gone{}", n.name,
                       n.container.empty() ? "" : " (container " + n.container + ")",
                       n.cgroup_path, archived->empty() ? "" : "; archived at " + *archived);
    ended.push_back(n.name);
  }
  return ended;
}

void Pipeline::cgroup_check_loop() {
  std::unique_lock lock(check_mu_);
  while (!check_cv_.wait_for(lock, opts_.cgroup_check, [&] { return check_stop_; })) {
    lock.unlock();
    (void)end_gone_namespaces();
    lock.lock();
  }
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
  i.appraise = std::string(appraise_mode_name(r.appraise));
  if (r.list) {
    i.template_name = std::string(measure::template_name(r.list->config().default_template));
    i.hash = std::string(measure::hash_algo_name(r.list->config().hash_algo));
  }
  i.keys = r.keys ? r.keys->size() : 0;
  i.digests_listed = r.digests ? r.digests->listed_count() : 0;
  i.digests_revoked = r.digests ? r.digests->revoked_count() : 0;
  i.audit_path = r.audit ? r.audit->path() : "";
  i.container = r.cfg.container;
  i.suspended = r.suspended ? r.suspended_reason : "";
  i.lost = r.lost;
  i.model = r.modeler ? std::string(model::mode_name(r.modeler->model().mode())) : "";
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
    // Every file is judged (and appraised) again under the new policy; operator denies stay.
    appraisal_changed(*ns, /*relaxed=*/false);
    // The first-access rule follows the appraise rules of every enforcing namespace above.
    if (auto reg = reg_.refresh_bpf(*ns); !reg) return tl::unexpected(reg.error());
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

}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
#include "ns/registry.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"
#include "common/log.h"
#include "nsima/bpf_abi.h"
#include "tpm/pcr_policy.h"

namespace nsima::ns {

namespace fs = std::filesystem;

namespace {

constexpr size_t kTombstones = 4096;

std::string next_id_path(const std::string& state_dir) {
  return (fs::path(state_dir) / "next-id").string();
}

// Levels below the cgroup root: "/sys/fs/cgroup/a/b" under "/sys/fs/cgroup" is 2.
size_t cgroup_level(const std::string& dir, const std::string& root) {
  std::string rest = dir.size() > root.size() ? dir.substr(root.size()) : "";
  return static_cast<size_t>(std::count(rest.begin(), rest.end(), '/'));
}

}  // namespace

Registry::Registry(RegistryOptions o, capture::BpfMaps* maps)
    : opts_(std::move(o)), maps_(maps), trust_(maps), tree_(opts_.cgroup_root, 0) {}

Result<void> Registry::init(uint64_t host_cgroup_id) {
  tree_.host().cgroup_id = host_cgroup_id;
  // A resumed trusted map holds what the previous nsimad wrote: nothing of it is trusted until
  // this nsimad has computed each restored namespace's set (refresh_trust after restoring).
  if (auto c = trust_.clear_all(); !c) return tl::unexpected(c.error());
  std::ifstream in(next_id_path(opts_.state_dir));
  if (in) {
    uint64_t v = 0;
    if (!(in >> v) || v <= kHostNsId || v > UINT32_MAX)
      return make_error(EINVAL,
                        "not a namespace id mark (a decimal number > 1); nsimad will not guess "
                        "which ids were issued",
                        next_id_path(opts_.state_dir));
    next_id_ = static_cast<uint32_t>(v);
  }
  return {};
}

std::vector<uint32_t> Registry::chain_ids(Namespace* n) const {
  std::vector<uint32_t> out;
  for (Namespace* c : tree_.chain(n)) out.push_back(c->id);
  return out;
}

std::vector<uint32_t> Registry::subtree_ids(Namespace* n) const {
  std::vector<uint32_t> out;
  for (Namespace* c : tree_.subtree(n)) out.push_back(c->id);
  return out;
}

bool Registry::owns_pcr(const Namespace* n) const {
  if (n->is_host()) return true;
  auto it = rt_.find(n->id);
  return it != rt_.end() && it->second->cfg.vtpm;
}

Namespace* Registry::owner_of(Namespace* n) {
  while (n && !owns_pcr(n)) n = n->parent;
  return n ? n : &tree_.host();
}

uint32_t Registry::default_pcr_of(Namespace* n) {
  return owner_of(n)->is_host() ? static_cast<uint32_t>(opts_.host_pcr)
                                : static_cast<uint32_t>(tpm::kDefaultVtpmPcr);
}

Result<void> Registry::validate_policy(const policy::Policy& p, Namespace* owner) const {
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

Result<uint32_t> Registry::allocate_id() {
  uint32_t id = next_id_;
  for (auto* n : tree_.all()) id = std::max(id, n->id + 1);
  if (id == UINT32_MAX) return make_error(ENOSPC, "namespace ids exhausted", opts_.state_dir);
  // The mark is durable before the id is handed out: a crash can skip ids, never reissue one.
  std::error_code ec;
  fs::create_directories(opts_.state_dir, ec);
  if (auto w = write_file_atomic(next_id_path(opts_.state_dir), std::to_string(id + 1) + "\n"); !w)
    return tl::unexpected(w.error());
  next_id_ = id + 1;
  return id;
}

std::map<uint32_t, uint32_t> Registry::owners() {
  std::map<uint32_t, uint32_t> out;
  for (Namespace* n : tree_.all()) out[n->id] = owner_of(n)->id;
  return out;
}

Result<void> Registry::check_moves(const std::map<uint32_t, uint32_t>& before,
                                   std::vector<Namespace*>& changed, Namespace* skip) {
  for (Namespace* n : tree_.all()) {
    if (n == skip) continue;
    auto it = before.find(n->id);
    if (it == before.end()) continue;
    Namespace* owner = owner_of(n);
    if (owner->id == it->second) continue;
    auto r = rt_.find(n->id);
    if (r != rt_.end())
      if (auto v = validate_policy(*r->second->policy, owner); !v)
        return make_error(v.error().code,
                          "namespace " + n->name + " would move under " + owner->name +
                              "'s TPM, where its policy is invalid: " + v.error().message,
                          v.error().where);
    changed.push_back(n);
  }
  return {};
}

Result<Registry::Inserted> Registry::insert(const std::string& dir, uint64_t cgroup_id,
                                            NsConfig cfg,
                                            std::shared_ptr<const policy::Policy> policy) {
  if (rt_.size() >= kMaxNamespaces + 1)
    return make_error(ENOSPC, "nsima holds at most " + std::to_string(kMaxNamespaces) +
                                  " namespaces besides host", dir);
  size_t level = cgroup_level(dir, tree_.cgroup_root());
  if (level >= NSIMA_MAX_CGROUP_DEPTH)
    return make_error(EINVAL,
                      "is " + std::to_string(level) + " levels below the cgroup root; the hooks "
                      "resolve namespaces bound at most " +
                          std::to_string(NSIMA_MAX_CGROUP_DEPTH - 1) + " levels deep",
                      dir);
  auto before = owners();
  auto ns = tree_.create(dir, cgroup_id, cfg.id);
  if (!ns) return tl::unexpected(ns.error());
  Namespace* n = *ns;
  auto r = std::make_unique<NsRuntime>();
  r->cfg = std::move(cfg);
  r->appraise = parse_appraise_mode(r->cfg.appraise).value_or(AppraiseMode::kEnforce);
  r->policy = policy ? std::move(policy) : std::make_shared<policy::Policy>();
  rt_[n->id] = std::move(r);
  Inserted out{n, {}};
  auto undo = [&](const Error& e) -> Result<Inserted> {
    rt_.erase(n->id);
    (void)tree_.remove(n->name);
    return tl::unexpected(e);
  };
  if (auto v = validate_policy(*rt_[n->id]->policy, owner_of(n)); !v) return undo(v.error());
  if (auto m = check_moves(before, out.owner_changed, n); !m) return undo(m.error());
  return out;
}

Result<Registry::Removed> Registry::remove(Namespace* n) {
  if (n->is_host()) return make_error(EPERM, "the host namespace cannot be deleted", n->name);
  auto before = owners();
  Removed out;
  out.parent_id = n->parent->id;
  std::string dir = n->cgroup_path, name = n->name;
  uint64_t cg = n->cgroup_id;
  uint32_t id = n->id;
  for (Namespace* c : tree_.subtree(n))
    if (c != n) out.moved.push_back(c);
  auto rt = std::move(rt_.at(id));
  rt_.erase(id);
  if (auto r = tree_.remove(name); !r) {
    rt_[id] = std::move(rt);
    return tl::unexpected(r.error());
  }
  if (auto m = check_moves(before, out.owner_changed, nullptr); !m) {
    // Put it back exactly: the same id re-parents the same children under it again.
    auto again = tree_.create(dir, cg, id);
    rt_[id] = std::move(rt);
    if (!again) logger("ns")->critical("namespace {} could not be restored: {}", name,
                                       again.error().to_string());
    return tl::unexpected(m.error());
  }
  out.runtime = std::move(rt);
  tombstones_[id] = out.parent_id;
  tombstone_order_.push_back(id);
  if (tombstone_order_.size() > kTombstones) {
    tombstones_.erase(tombstone_order_.front());
    tombstone_order_.pop_front();
  }
  return out;
}

std::optional<uint32_t> Registry::former_parent(uint32_t deleted_id) const {
  auto it = tombstones_.find(deleted_id);
  if (it == tombstones_.end()) return std::nullopt;
  return it->second;
}

uint32_t Registry::first_access_flags(Namespace* n) {
  uint32_t classes = 0;
  for (Namespace* x : chain(n)) {
    if (!has_rt(x)) continue;
    NsRuntime& r = rt(x);
    if (r.appraise == AppraiseMode::kEnforce && r.policy) classes |= appraise_classes(*r.policy);
    // A suspended namespace records nothing: what was not judged before waits (fail closed),
    // except under the host namespace alone, whose processes include the operator's shell.
    if (r.suspended && !n->is_host()) classes |= NSIMA_CLASS_ALL;
  }
  classes &= NSIMA_CLASS_ALL;
  return classes ? NSIMA_CG_FIRST_DENY | classes << NSIMA_CG_FIRST_DENY_SHIFT : 0;
}

Result<void> Registry::refresh_bpf(Namespace* n) {
  for (Namespace* x : subtree(n)) {
    if (!has_rt(x) || (x->is_host() && rt(x).policy->empty())) continue;  // host: bound once it has a policy
    if (auto r = register_bpf(x); !r) return r;
  }
  return refresh_trust(n);
}

std::vector<capture::Sha256> Registry::kernel_trusted(Namespace* n) {
  std::vector<capture::Sha256> out;
  if (!(first_access_flags(n) & NSIMA_CG_FIRST_DENY_MASK)) return out;
  struct Need {
    const appraise::DigestStore* store;
    bool signed_only;
  };
  std::vector<Need> needs;
  std::vector<const appraise::DigestStore*> stores;  // every store of the chain (revocations)
  for (Namespace* x : chain(n)) {
    if (!has_rt(x)) continue;
    NsRuntime& r = rt(x);
    if (r.digests) stores.push_back(r.digests.get());
    if (r.appraise != AppraiseMode::kEnforce || !r.policy) continue;
    const ListTrust t = list_trust(*r.policy);
    if (t == ListTrust::kNoRule) continue;
    if (t == ListTrust::kNever || !r.digests) return {};
    needs.push_back({r.digests.get(), t == ListTrust::kSigned});
  }
  if (needs.empty()) return out;
  auto passes = [](const Need& need, const appraise::DigestLookup& l) {
    return l.listed && !l.revoked && (!need.signed_only || l.signed_listed);
  };
  needs.front().store->for_each_listed([&](const measure::Digest& d, uint8_t flags) {
    if (d.algo() != measure::HashAlgo::kSha256) return;
    if (!(flags & appraise::DigestStore::kListed)) return;
    if (needs.front().signed_only && !(flags & appraise::DigestStore::kSigned)) return;
    for (size_t i = 1; i < needs.size(); ++i)
      if (!passes(needs[i], needs[i].store->lookup(d))) return;
    for (const appraise::DigestStore* s : stores)
      if (s->lookup(d).revoked) return;
    capture::Sha256 sha;
    std::copy_n(d.data(), sha.size(), sha.begin());
    out.push_back(sha);
  });
  return out;
}

Result<void> Registry::refresh_trust(Namespace* n) {
  if (!maps_) return {};
  for (Namespace* x : subtree(n)) {
    if (!has_rt(x)) continue;
    if (auto r = trust_.set(x->id, kernel_trusted(x)); !r) return r;
  }
  return {};
}

Result<void> Registry::set_model_exec(Namespace* n, bool on,
                                      std::vector<capture::Sha256> exec_digests) {
  NsRuntime& r = rt(n);
  if (!on) exec_digests.clear();
  if (!maps_) {
    r.model_exec_gate = on;
    return {};
  }
  // A namespace not bound yet (being created: bound later, after a rootfs pre-appraisal)
  // gets the flag when it is.
  auto bound = maps_->cgroup(n->cgroup_id);
  const bool registered = bound && bound->ns_id == n->id;
  if (on) {  // the pairs before the flag: a known executable is never refused meanwhile
    if (auto t = trust_.set(n->id, std::move(exec_digests), NSIMA_TRUST_MODEL); !t) return t;
    if (r.model_exec_gate && registered && (bound->flags & NSIMA_CG_MODEL_EXEC)) return {};
    r.model_exec_gate = true;
    return registered ? register_bpf(n) : Result<void>{};
  }
  if (r.model_exec_gate || (registered && (bound->flags & NSIMA_CG_MODEL_EXEC))) {
    r.model_exec_gate = false;  // the flag before the pairs
    if (registered)
      if (auto g = register_bpf(n); !g) return g;
  }
  return trust_.set(n->id, {}, NSIMA_TRUST_MODEL);
}

Result<void> Registry::register_bpf(Namespace* n) {
  if (!maps_) return {};
  uint32_t flags = first_access_flags(n);
  if (has_rt(n) && rt(n).model_exec_gate) flags |= NSIMA_CG_MODEL_EXEC;
  if (auto r = maps_->init_ns_drops(n->id); !r) return r;
  auto level = capture::cgroup_level(n->cgroup_path);  // the hooks' walk must reach it
  if (!level) return tl::unexpected(level.error());
  return maps_->register_cgroup(n->cgroup_id, n->id, flags, *level);  // bumps the epoch
}

Result<void> Registry::unregister_bpf(Namespace* n) {
  if (!maps_) return {};
  return maps_->unregister_cgroup(n->cgroup_id);
}

Result<void> Registry::save(const NsRuntime& r) const { return save_ns_config(opts_.state_dir, r.cfg); }

}  // namespace nsima::ns

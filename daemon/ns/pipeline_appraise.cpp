// SPDX-License-Identifier: Apache-2.0
// Appraisal: the second pure stage (appraise::appraise) applied on the pipeline thread, the
// namespace's keys, digest lists and mode, its audit log, and pre-appraisal of a rootfs.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include "appraise/appraiser.h"
#include "appraise/ima_xattr.h"
#include "common/hex.h"
#include "common/log.h"
#include "measure/hasher.h"
#include "ns/pipeline.h"
#include "ns/pipeline_actor.h"

namespace nsima::ns {

namespace fs = std::filesystem;

namespace {

std::string utc_now() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm {};
  gmtime_r(&ts.tv_sec, &tm);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
  return buf;
}

std::optional<measure::Digest> sha256_of(const access::FileFacts& facts) {
  for (size_t i = 0; i < facts.algos.size() && i < facts.digests.size(); ++i)
    if (facts.algos[i] == measure::HashAlgo::kSha256) return facts.digests[i];
  return std::nullopt;
}

// Resets what a namespace knows of a file when the version changed.
FileState& state_of(NsRuntime& r, const FileRef& f, const Stamp& stamp) {
  auto& st = r.files[f];
  if (st.stamp != stamp) st = FileState{stamp, 0, st.must};
  return st;
}

std::string rule_text(const policy::Policy& p, int index) {
  return index >= 0 && static_cast<size_t>(index) < p.size() ? p.rule(index).text : "";
}

// The access classes pre-appraisal decides, as synthetic events of the file.
Event class_event(const Event& base, uint32_t c) {
  Event e = base;
  if (c < 16) {
    e.hook = Hook::kFileOpen;
    e.mask = c;
  } else if (c == NSIMA_CLASS_MMAP_PROT) {
    e.hook = Hook::kMmapFile;
    e.prot = e.reqprot = NSIMA_PROT_EXEC | NSIMA_PROT_READ;
  } else if (c == NSIMA_CLASS_MMAP_REQPROT) {
    e.hook = Hook::kMmapFile;
    e.prot = NSIMA_PROT_READ;
    e.reqprot = NSIMA_PROT_EXEC | NSIMA_PROT_READ;
  } else {
    e.hook = Hook::kBprmCheck;
    e.mask = NSIMA_MAY_EXEC;
    e.new_cred = e.cred;
  }
  return e;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// the stage

Result<void> Pipeline::load_appraisal(Namespace* n, NsRuntime& r) {
  fs::path dir = ns_dir(opts_.state_dir, r.cfg.name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(ec.value(), "cannot create " + dir.string() + ": " + ec.message(), n->name);
  auto ks = appraise::KeyStore::open(dir / "keys");
  if (!ks) return tl::unexpected(ks.error());
  auto ring = ks->load();
  if (!ring) return tl::unexpected(ring.error());
  r.keys = std::make_shared<appraise::Keyring>(std::move(*ring));
  auto ds = appraise::DigestStore::open(dir / "digests");
  if (!ds) return tl::unexpected(ds.error());
  r.digests = std::make_shared<appraise::DigestStore>(std::move(*ds));
  auto a = AuditLog::open((dir / kAuditLogFile).string());
  if (!a) return tl::unexpected(a.error());
  r.audit = std::move(*a);
  return {};
}

void Pipeline::audit(Namespace* n, const Event& ev, nlohmann::json record) {
  nlohmann::json line = {{"cgroup", ev.cgroup_id}, {"pid", ev.tgid}, {"comm", ev.comm},
                         {"path", ev.path}};
  if (ev.path.empty()) {  // no path (a security.ima write opened by handle): the inode
    line["dev"] = ev.kdev;
    line["ino"] = ev.ino;
  }
  line.update(record);
  audit_line(n, std::move(line));
}

void Pipeline::audit_line(Namespace* n, nlohmann::json record) {
  NsRuntime& r = reg_.rt(n);
  if (!r.audit) return;
  nlohmann::json line = {{"time", utc_now()}, {"namespace", n->name}};
  line.update(record);
  if (r.audit->append(line)) {
    counters_.audit_lines++;
  } else {
    counters_.audit_errors++;
    static std::atomic<uint64_t> logged{0};
    if (logged.fetch_add(1) < 20)
      logger("audit")->error("namespace {}: audit log {} append failed", n->name, r.audit->path());
  }
}

bool Pipeline::appraise_access(const Event& ev, const Judgement& j, const access::FileFacts& facts,
                               const std::vector<Namespace*>& chain,
                               appraise::SignatureMemo* memo) {
  const FileRef f = FileRef::of(ev);
  const auto sha = sha256_of(facts);
  const std::string digest = sha ? sha->to_string() : "";
  // A revocation holds in its namespace and every descendant: any store of the chain.
  std::string revoked_in;
  if (sha)
    for (Namespace* x : chain) {
      NsRuntime& rx = reg_.rt(x);
      if (rx.digests && rx.digests->lookup(*sha).revoked) {
        revoked_in = x->name;
        break;
      }
    }
  Namespace* own = reg_.find(ev.ns_id);
  bool deny = false;
  for (const AppraiseNeed& need : j.appraise) {
    Namespace* n = reg_.find(need.ns_id);
    if (!n) continue;
    NsRuntime& r = reg_.rt(n);
    FileState& st = state_of(r, f, ev.stamp);
    if (need.appraise) {
      appraise::AppraiseInput in;
      in.decision = &need.decision;
      in.file_digests = facts.digests;
      if (facts.ima_xattr) in.ima_xattr = std::span<const uint8_t>(*facts.ima_xattr);
      in.ima_xattr_parsed = std::any_cast<appraise::XattrResult>(&facts.ima_xattr_parsed);
      in.keys = r.keys.get();
      in.digests = r.digests.get();
      in.memo = memo;
      appraise::Appraisal a = appraise::appraise(in);
      if (a.pass && !revoked_in.empty()) {
        a.pass = false;
        a.status = appraise::Status::kRevoked;
        a.reason = digest + " is revoked in namespace " + revoked_in;
      }
      counters_.appraised++;
      st.set_appraised(appraise_group(ev.hook), a.pass);
      if (!a.pass) {
        counters_.appraise_failed++;
        const bool enforce = need.mode == AppraiseMode::kEnforce;
        deny |= enforce;
        nlohmann::json rec = {{"kind", "appraise"},
                              {"result", enforce ? "deny" : "log"},
                              {"status", a.status_str()},
                              {"cause", a.cause()},
                              {"reason", a.reason},
                              {"digest", digest},
                              {"rule", rule_text(*r.policy, need.decision.appraise_rule)},
                              {"mode", appraise_mode_name(need.mode)}};
        if (a.malformed) rec["malformed"] = appraise::xattr_error_kind_name(*a.malformed);
        if (a.keyid) {
          char b[16];
          snprintf(b, sizeof b, "%08x", *a.keyid);
          rec["keyid"] = b;
        }
        audit(n, ev, rec);
        if (enforce && own && own != n) {
          // The container's own log says why its access was refused by an ancestor.
          rec["denied_by"] = n->name;
          audit(own, ev, rec);
        }
      }
    }
    if (need.audit && !st.audited) {
      st.audited = true;
      audit(n, ev, {{"kind", "audit"},
                    {"result", "accessed"},
                    {"digest", digest},
                    {"rule", rule_text(*r.policy, need.decision.audit_rule)}});
    }
  }
  if (own && sha) {
    NsRuntime& er = reg_.rt(own);
    state_of(er, f, ev.stamp);
    auto& es = er.sha256s[f];
    es.stamp = ev.stamp;
    std::copy_n(sha->data(), 32, es.sha256.begin());
  }
  return deny;
}

void Pipeline::appraisal_changed(Namespace* n, bool relaxed) {
  for (Namespace* x : reg_.subtree(n)) {
    NsRuntime& rx = reg_.rt(x);
    auto ids = reg_.chain_ids(x);
    rx.files.for_each([&](const FileRef& f, FileState& st) {
      if (relaxed) {
        st.appraised_fail = 0;
        if (st.denied) verdicts_.forget_judged(ids, f);
      } else {
        st.appraised_pass = st.appraised_fail = 0;
      }
      st.denied = false;
    });
    if (!relaxed)
      if (auto v = verdicts_.invalidate(x->id); !v) counters_.map_errors++;
  }
}

// ---------------------------------------------------------------------------------------------
// keys, digest lists, mode

Result<std::vector<appraise::KeyInfo>> Pipeline::keys_add(
    const std::string& name_or_id, const std::vector<std::vector<uint8_t>>& certs) {
  // Every certificate is checked before any is stored: all or nothing.
  for (size_t i = 0; i < certs.size(); ++i)
    if (auto k = appraise::Key::from_bytes(certs[i], "certificate " + std::to_string(i + 1)); !k)
      return tl::unexpected(k.error());
  return call([&]() -> Result<std::vector<appraise::KeyInfo>> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    NsRuntime& r = reg_.rt(*ns);
    auto ks = appraise::KeyStore::open(fs::path(ns_dir(opts_.state_dir, r.cfg.name)) / "keys");
    if (!ks) return tl::unexpected(ks.error());
    std::vector<appraise::KeyInfo> out;
    for (size_t i = 0; i < certs.size(); ++i) {
      auto info = ks->add(certs[i], "certificate " + std::to_string(i + 1));
      if (!info) {
        for (auto& k : out) (void)ks->remove(k.keyid);
        return tl::unexpected(info.error());
      }
      out.push_back(*info);
    }
    auto ring = ks->load();
    if (!ring) return tl::unexpected(ring.error());
    r.keys = std::make_shared<appraise::Keyring>(std::move(*ring));
    appraisal_changed(*ns, /*relaxed=*/true);
    logger("appraise")->info("namespace {}: {} key(s) added", (*ns)->name, out.size());
    return out;
  });
}

Result<std::vector<appraise::KeyInfo>> Pipeline::keys_list(const std::string& name_or_id) {
  return call([&]() -> Result<std::vector<appraise::KeyInfo>> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    NsRuntime& r = reg_.rt(*ns);
    return r.keys ? r.keys->list() : std::vector<appraise::KeyInfo>{};
  });
}

Result<std::vector<appraise::KeyInfo>> Pipeline::keys_remove(const std::string& name_or_id,
                                                             uint32_t keyid) {
  return call([&]() -> Result<std::vector<appraise::KeyInfo>> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    NsRuntime& r = reg_.rt(*ns);
    auto ks = appraise::KeyStore::open(fs::path(ns_dir(opts_.state_dir, r.cfg.name)) / "keys");
    if (!ks) return tl::unexpected(ks.error());
    auto removed = ks->remove(keyid);
    if (!removed) return tl::unexpected(removed.error());
    auto ring = ks->load();
    if (!ring) return tl::unexpected(ring.error());
    r.keys = std::make_shared<appraise::Keyring>(std::move(*ring));
    // Files that passed with that key are appraised again on their next access.
    appraisal_changed(*ns, /*relaxed=*/false);
    return removed;
  });
}

Result<Pipeline::DigestsLoaded> Pipeline::digests_load(const std::string& name_or_id,
                                                       const std::string& manifest,
                                                       const std::string& origin,
                                                       const std::vector<uint8_t>& sig) {
  // Untrusted text: parsed by the confined worker (off the pipeline thread); its crash or
  // timeout refuses the request, naming it.
  Result<appraise::Manifest> m = make_error(EINVAL, "not parsed", origin);
  if (opts_.parser) {
    auto confined = opts_.parser->manifest(manifest, origin);
    if (!confined)
      return make_error(EIO, "the manifest could not be parsed: " + confined.error().to_string(),
                        origin);
    m = std::move(*confined);
  } else {
    m = appraise::parse_manifest(manifest, origin);
  }
  if (!m) return tl::unexpected(m.error());
  auto keys = call([&]() -> Result<std::shared_ptr<appraise::Keyring>> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    return reg_.rt(*ns).keys;
  });
  if (!keys) return tl::unexpected(keys.error());
  DigestsLoaded out;
  if (!sig.empty()) {
    if (!*keys || (*keys)->empty())
      return make_error(ENOKEY, "a signed manifest needs the namespace's keys: it has none", origin);
    auto signer = appraise::verify_manifest_signature(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(manifest.data()),
                                 manifest.size()),
        sig, **keys);
    if (!signer) return tl::unexpected(signer.error());
    out.is_signed = true;
    out.signer = signer->keyid_hex;
  }
  return call([&]() -> Result<DigestsLoaded> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    NsRuntime& r = reg_.rt(*ns);
    auto added = r.digests->add(*m, out.is_signed);
    if (!added) return tl::unexpected(added.error());
    out.added = added->added + added->upgraded;
    out.already = added->already;
    appraisal_changed(*ns, /*relaxed=*/true);
    // The kernel decides first execs of these contents from now on (bpf/trust.bpf.h).
    if (auto t = reg_.refresh_trust(*ns); !t) return tl::unexpected(t.error());
    logger("appraise")->info("namespace {}: {} digests from {} ({}), {} new", (*ns)->name,
                             m->entries.size(), origin, out.is_signed ? "signed" : "unsigned",
                             out.added);
    return out;
  });
}

Result<size_t> Pipeline::digests_revoke(const std::string& name_or_id,
                                        const std::string& digest_hex) {
  auto d = measure::Digest::from_hex(measure::HashAlgo::kSha256, digest_hex);
  if (!d) return make_error(EINVAL, "not a sha256 digest (64 hex digits)", digest_hex);
  return call([&]() -> Result<size_t> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    NsRuntime& r = reg_.rt(*ns);
    if (auto v = r.digests->revoke(*d); !v) return tl::unexpected(v.error());
    // Out of the kernel's trusted map first: no first exec of this content is allowed there
    // once this returns, in this namespace or below.
    if (auto t = reg_.refresh_trust(*ns); !t) return tl::unexpected(t.error());
    // Effective at once: every version already judged with this content, below and here, in a
    // namespace whose chain enforces appraisal, is denied now.
    size_t denied = 0;
    for (Namespace* x : reg_.subtree(*ns)) {
      NsRuntime& rx = reg_.rt(x);
      const bool enforcing = reg_.first_access_flags(x) != 0;
      auto ids = reg_.chain_ids(x);
      rx.files.for_each([&](const FileRef& f, FileState& st) {
        const auto* sha = rx.sha256_of(f, st);
        if (!sha || std::memcmp(sha->data(), d->data(), 32) != 0) return;
        st.set_appraised(kAppraisedAll, false);  // revoked: failed for every func
        if (!enforcing || st.denied) return;
        // Every class an enforcing appraise rule of the chain can match.
        verdicts_.judged_deny(ids, f, st.stamp,
                              (reg_.first_access_flags(x) & NSIMA_CG_FIRST_DENY_MASK) >>
                                  NSIMA_CG_FIRST_DENY_SHIFT);
        st.denied = true;
        denied++;
      });
      for (Namespace* a : reg_.chain(x)) {
        NsRuntime& ra = reg_.rt(a);
        ra.files.for_each([&](const FileRef& f, FileState& st) {
          if (const auto* sha = ra.sha256_of(f, st);
              sha && std::memcmp(sha->data(), d->data(), 32) == 0)
            st.set_appraised(kAppraisedAll, false);
        });
      }
    }
    logger("appraise")->info("namespace {}: {} revoked ({} file(s) denied at once)", (*ns)->name,
                             d->to_string(), denied);
    return denied;
  });
}

Result<void> Pipeline::set_appraise_mode(const std::string& name_or_id, const std::string& mode) {
  auto m = parse_appraise_mode(mode);
  if (!m) return make_error(EINVAL, "appraise mode must be enforce, log or off", mode);
  return call([&]() -> Result<void> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    NsRuntime& r = reg_.rt(*ns);
    const AppraiseMode old = r.appraise;
    if (old == *m) return {};
    NsConfig saved = r.cfg;
    r.cfg.appraise = std::string(appraise_mode_name(*m));
    if (auto s = reg_.save(r); !s) {
      r.cfg = saved;
      return s;
    }
    r.appraise = *m;
    appraisal_changed(*ns, /*relaxed=*/*m < old);
    return reg_.refresh_bpf(*ns);
  });
}

Result<std::string> Pipeline::audit_path(const std::string& name_or_id) {
  return call([&]() -> Result<std::string> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    NsRuntime& r = reg_.rt(*ns);
    if (!r.audit) return make_error(ENOENT, "namespace has no audit log", (*ns)->name);
    return r.audit->path();
  });
}

// ---------------------------------------------------------------------------------------------
// one file, every access class (pre-appraisal, security.ima written at run time)

uint32_t Pipeline::classes_to_appraise(Namespace* n, const Event& ev) {
  auto chain = reg_.chain(n);
  const FileRef f = FileRef::of(ev);
  auto l = links(chain, f);
  uint32_t need = 0, quiet = 0;
  for (uint32_t c = 0; c < NSIMA_CLASS_COUNT; ++c) {
    Judgement j = judge(class_event(ev, c), l, opts_.hash_algo);
    if (!j.appraise.empty() || j.known_fail) need |= 1u << c;
    if (j.quiet && j.targets.empty()) quiet |= 1u << c;
  }
  if (!need) {
    const uint32_t model_quiet = model_quiet_split(n, quiet);
    verdicts_.judged_allow(reg_.chain_ids(n), f, ev.stamp, quiet, NSIMA_CLASS_ALL, model_quiet);
  }
  return need;
}

bool Pipeline::appraise_every_class(Namespace* n, const Event& ev,
                                    const access::FileFacts& facts) {
  auto chain = reg_.chain(n);
  const FileRef f = FileRef::of(ev);
  uint32_t quiet = 0, denied = 0;
  appraise::SignatureMemo memo;  // one verification per signature, not one per class
  for (uint32_t c = 0; c < NSIMA_CLASS_COUNT; ++c) {
    Event ce = class_event(ev, c);
    // links() again each class: an appraisal of the one before may have created this file's
    // state in a namespace where the links had none (FileTable references never move).
    Judgement j = judge(ce, links(chain, f), opts_.hash_algo);
    bool deny = j.known_fail;
    if (!j.appraise.empty()) deny |= appraise_access(ce, j, facts, chain, &memo);
    if (deny) denied |= 1u << c;
    // Silenced only where nothing else wants the access: no list measures it, no credential
    // could change the decision.
    bool q = j.quiet && j.targets.empty() && !j.path_unknown;
    if (j.path_unknown && j.targets.empty()) {
      // A file read by handle (no path: a security.ima write outside the writer's root
      // filesystem): appraised all the same; with no list to name it in, the path is not
      // needed, so the class is silenced as it would be with one.
      Event named = ce;
      named.flags &= ~static_cast<uint32_t>(NSIMA_EV_PATH_TRUNCATED | NSIMA_EV_PATH_ERROR);
      named.path = "/";
      q = judge(named, links(chain, f), opts_.hash_algo).quiet;
    }
    if (q) quiet |= 1u << c;
  }
  const uint32_t model_quiet = model_quiet_split(n, quiet);
  if (denied) {
    // Refused for the classes that failed only; the others are allowed (kernel IMA: per func).
    verdicts_.judged_deny(reg_.chain_ids(n), f, ev.stamp, denied, quiet, NSIMA_CLASS_ALL);
    reg_.rt(n).files[f].denied = true;
    return false;
  }
  verdicts_.judged_allow(reg_.chain_ids(n), f, ev.stamp, quiet, NSIMA_CLASS_ALL, model_quiet);
  return true;
}

bool Pipeline::setxattr_event(const Event& ev) {
  counters_.setxattr_events++;
  Namespace* n = reg_.find(ev.ns_id);
  if (!n || !maps_) {
    counters_.setxattr_undecided++;
    return false;
  }
  if (!classes_to_appraise(n, ev)) {  // no appraise rule of the chain covers it: allowed now
    counters_.setxattr_passed++;
    return false;
  }
  std::vector<measure::HashAlgo> algos{measure::HashAlgo::kSha256};
  for (Namespace* x : reg_.chain(n)) {
    auto a = reg_.rt(x).list ? reg_.rt(x).list->config().hash_algo : opts_.hash_algo;
    if (std::find(algos.begin(), algos.end(), a) == algos.end()) algos.push_back(a);
  }
  pending_add(ev.seq, {});
  access::FileAccessor::Request req;
  req.seq = ev.seq;
  req.queue = n->id;
  req.ev = ev;
  req.algos = std::move(algos);
  req.want_ima_xattr = true;
  req.algo_from_xattr = true;
  req.done = [this, ev](const access::AccessResult& r) {
    post([this, ev, r] {
      setxattr_read(ev, r);
      if (done_hook_) done_hook_(ev.seq);
      pending_done(ev.seq, {});
    });
  };
  accessor_->submit(std::move(req));
  return true;
}

void Pipeline::setxattr_read(const Event& ev, const access::AccessResult& r) {
  Namespace* n = reg_.find(ev.ns_id);
  if (!n || !r || r->changed) {
    // Nothing decided: the file's first access takes the first-access rule, as it would
    // without the event. Not a violation: nothing was accessed.
    counters_.setxattr_undecided++;
    static std::atomic<uint64_t> logged{0};
    if (logged.fetch_add(1) < 20)
      logger("appraise")->warn("security.ima written to {} (ino {}): not appraised before its "
                               "first access: {}",
                               ev.path.empty() ? "?" : ev.path, ev.ino,
                               !n ? "namespace gone"
                               : !r ? r.error().to_string()
                                    : "the file changed while it was read");
    return;
  }
  (appraise_every_class(n, ev, *r) ? counters_.setxattr_passed : counters_.setxattr_failed)++;
  struct timespec now {};
  clock_gettime(CLOCK_BOOTTIME, &now);  // the hook's clock (bpf_ktime_get_boot_ns)
  const uint64_t ns = static_cast<uint64_t>(now.tv_sec) * 1000000000ull + now.tv_nsec;
  if (ns > ev.ktime_ns) {
    counters_.setxattr_window_last_us = (ns - ev.ktime_ns) / 1000;
    counters_.setxattr_window_max_us =
        std::max(counters_.setxattr_window_max_us, counters_.setxattr_window_last_us);
  }
}

// ---------------------------------------------------------------------------------------------
// pre-appraisal

Result<Pipeline::PreAppraisal> Pipeline::pre_appraise(const std::string& name_or_id,
                                                      const std::string& dir) {
  if (!maps_)
    return make_error(ENOTSUP, "pre-appraisal needs nsima's BPF programs (the kernel's stamp)",
                      dir);
  if (running_.load() && std::this_thread::get_id() == thread_id_)
    return make_error(EDEADLK, "pre-appraisal runs off the pipeline thread (its workers call it)",
                      dir);
  struct Snap {
    uint32_t id = 0;
    std::vector<measure::HashAlgo> algos;
  };
  auto snap = call([&]() -> Result<Snap> {
    auto ns = find_ns(name_or_id);
    if (!ns) return tl::unexpected(ns.error());
    Snap s{(*ns)->id, {measure::HashAlgo::kSha256}};
    for (Namespace* x : reg_.chain(*ns)) {
      auto a = reg_.rt(x).list ? reg_.rt(x).list->config().hash_algo : opts_.hash_algo;
      if (std::find(s.algos.begin(), s.algos.end(), a) == s.algos.end()) s.algos.push_back(a);
    }
    return s;
  });
  if (!snap) return tl::unexpected(snap.error());
  UniqueFd top(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!top) return make_error(errno, std::string("cannot open rootfs: ") + strerror(errno), dir);
  struct stat top_st {};
  if (fstat(top.get(), &top_st) != 0) return make_error(errno, strerror(errno), dir);

  // The walk (this thread) hands batches of files to workers; each worker opens a batch (the
  // kernel's stamp of each open, and a readahead hint so the disk works while it hashes), asks
  // the pipeline thread once which of them need appraisal, hashes those, and has the pipeline
  // thread decide them in one more call: two round trips per batch, not two per file.
  struct Item {
    std::shared_ptr<UniqueFd> dir;  // open until its last file is done
    std::string name, path;
  };
  using Batch = std::vector<Item>;
  constexpr size_t kBatch = 16, kQueued = 32;  // files per batch; batches waiting at most
  constexpr off_t kReadahead = 1 << 20;        // the first MiB of each file is asked for early
  const auto t_start = std::chrono::steady_clock::now();

  struct statfs top_sfs {};
  if (fstatfs(top.get(), &top_sfs) != 0) return make_error(errno, strerror(errno), dir);
  const uint64_t fs_magic = static_cast<uint64_t>(top_sfs.f_type);

  PreAppraisal out;
  std::mutex mu;  // out, the queue
  std::mutex calls_mu;
  std::condition_variable cv;
  std::deque<Batch> queue;
  bool walked = false;
  std::atomic<uint64_t> hash_ns{0};
  auto problem = [&out](std::string p) {  // under mu
    if (out.problems.size() < 20) out.problems.push_back(std::move(p));
  };

  struct Open {
    UniqueFd fd;
    Event ev;
    struct stat st {};
    const Item* item = nullptr;
  };
  auto run_batch = [&](const Batch& batch, pid_t tid, std::vector<uint8_t>& xbuf) {
    std::vector<Open> opened;
    std::vector<std::string> problems;
    opened.reserve(batch.size());
    for (const Item& it : batch) {
      UniqueFd fd(::openat(it.dir->get(), it.name.c_str(),
                           O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
      if (!fd) {
        problems.push_back(it.path + ": " + strerror(errno));
        continue;
      }
      Open o;
      if (fstat(fd.get(), &o.st) != 0 || !S_ISREG(o.st.st_mode) || o.st.st_dev != top_st.st_dev)
        continue;  // not a regular file of the rootfs's filesystem (a file mounted over one)
      auto self = maps_->self_open(static_cast<uint32_t>(tid));
      if (!self || self->ino != o.st.st_ino) {
        problems.push_back(it.path + ": the kernel did not report the stamp of nsimad's open");
        continue;
      }
      (void)posix_fadvise(fd.get(), 0, std::min<off_t>(o.st.st_size, kReadahead),
                          POSIX_FADV_WILLNEED);
      Event& ev = o.ev;
      ev.ns_id = snap->id;
      ev.kdev = self->dev;
      ev.ino = self->ino;
      ev.generation = self->generation;
      ev.stamp = capture::from_abi(self->stamp);
      ev.i_mode = o.st.st_mode;
      ev.i_uid = o.st.st_uid;
      ev.i_gid = o.st.st_gid;
      ev.fs_magic = fs_magic;  // one filesystem: the rootfs's
      ev.comm = "nsima-preappraise";
      ev.path = it.path;
      ev.cred.cap_effective = ~0ull;
      o.fd = std::move(fd);
      o.item = &it;
      opened.push_back(std::move(o));
    }
    // Pass 1: which of them does a class of the chain appraise? A file none covers gets no
    // verdict here (no spurious first deny where the class mask over-estimates).
    std::unique_lock serial(calls_mu);  // call() runs inline when the pipeline is not running
    auto need = call([&]() -> std::vector<bool> {
      std::vector<bool> v(opened.size(), false);
      Namespace* n = reg_.find(snap->id);
      for (size_t k = 0; n && k < opened.size(); ++k)
        v[k] = classes_to_appraise(n, opened[k].ev) != 0;
      return v;
    });
    serial.unlock();
    std::vector<std::pair<Event*, access::FileFacts>> judged;
    uint64_t bytes = 0;
    for (size_t k = 0; k < opened.size(); ++k) {
      if (!need[k]) continue;
      Open& o = opened[k];
      const std::string& path = o.item->path;
      access::FileFacts facts;
      ssize_t xn = fgetxattr(o.fd.get(), "security.ima", xbuf.data(), xbuf.size());
      if (xn >= 0) {
        facts.ima_xattr.emplace(xbuf.begin(), xbuf.begin() + xn);
        if (opts_.parser)
          facts.ima_xattr_parsed = confine::ima_xattr_or_failure(*opts_.parser, *facts.ima_xattr);
      }
      facts.algos = snap->algos;
      if (facts.ima_xattr) {
        auto a = appraise::hash_algo_for_xattr(*facts.ima_xattr, measure::HashAlgo::kSha256);
        if (std::find(facts.algos.begin(), facts.algos.end(), a) == facts.algos.end())
          facts.algos.push_back(a);
      }
      const auto t0 = std::chrono::steady_clock::now();
      measure::HashFileOptions ho;
      ho.known_size = static_cast<uint64_t>(o.st.st_size);  // the fstat below checks it
      ho.advise_sequential = false;                          // WILLNEED given at the open
      auto d = measure::hash_fd(o.fd.get(), facts.algos, path, ho);
      hash_ns += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                           std::chrono::steady_clock::now() - t0)
                                           .count());
      if (!d) {
        problems.push_back(d.error().to_string());
        continue;
      }
      struct stat after {};
      if (fstat(o.fd.get(), &after) != 0 || after.st_size != o.st.st_size ||
          after.st_ctim.tv_sec != o.st.st_ctim.tv_sec ||
          after.st_ctim.tv_nsec != o.st.st_ctim.tv_nsec) {
        problems.push_back(path + ": changed while it was read");
        continue;
      }
      o.fd.reset();
      facts.digests = std::move(d->digests);
      bytes += d->bytes;
      judged.emplace_back(&o.ev, std::move(facts));
    }
    // Pass 2: every class appraised as its first access would be, then one verdict per file.
    serial.lock();
    size_t passed = call([&]() -> size_t {
      Namespace* n = reg_.find(snap->id);
      size_t ok = 0;
      for (auto& [ev, facts] : judged) {
        if (!n) break;
        counters_.pre_appraised++;
        ok += appraise_every_class(n, *ev, facts) ? 1 : 0;
      }
      return ok;
    });
    serial.unlock();
    std::lock_guard lock(mu);
    out.files += opened.size();
    out.skipped += static_cast<size_t>(std::count(need.begin(), need.end(), false));
    out.passed += passed;
    out.failed += judged.size() - passed;
    out.bytes += bytes;
    for (auto& p : problems) problem(std::move(p));
  };

  // Workers: the hash pool's size, at least two, so one reads while the other hashes.
  const size_t nworkers = std::clamp<size_t>(opts_.hash_threads, 1, 16);
  std::vector<std::thread> workers;
  for (size_t w = 0; w < nworkers; ++w)
    workers.emplace_back([&] {
      const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
      std::vector<uint8_t> xbuf(65536);  // security.ima at most (XATTR_SIZE_MAX)
      for (;;) {
        Batch b;
        {
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return !queue.empty() || walked; });
          if (queue.empty()) return;
          b = std::move(queue.front());
          queue.pop_front();
        }
        cv.notify_all();  // room for the walker
        run_batch(b, tid, xbuf);
      }
    });
  Batch cur;
  auto hand_over = [&] {
    if (cur.empty()) return;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return queue.size() < kQueued; });
    queue.push_back(std::move(cur));
    cur.clear();
    cv.notify_all();
  };

  // Walk: directories by fd relative to their parent, never following a symlink, one filesystem.
  struct Dir {
    std::shared_ptr<UniqueFd> fd;
    std::string path;
  };
  std::vector<Dir> todo;
  todo.push_back({std::make_shared<UniqueFd>(std::move(top)), ""});
  while (!todo.empty()) {
    Dir cur_dir = std::move(todo.back());
    todo.pop_back();
    int dupfd = ::dup(cur_dir.fd->get());
    DIR* dp = dupfd >= 0 ? fdopendir(dupfd) : nullptr;
    if (!dp) {
      if (dupfd >= 0) ::close(dupfd);
      std::lock_guard lock(mu);
      problem((cur_dir.path.empty() ? "/" : cur_dir.path) + ": " + strerror(errno));
      continue;
    }
    while (struct dirent* de = readdir(dp)) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
      std::string path = cur_dir.path + "/" + de->d_name;
      // The entry's type without a stat where the filesystem gives it; the open (O_NOFOLLOW,
      // then fstat) is what decides for a file.
      if (de->d_type == DT_REG) {
        cur.push_back({cur_dir.fd, de->d_name, std::move(path)});
        if (cur.size() == kBatch) hand_over();
        continue;
      }
      if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN) continue;
      struct stat st {};
      if (fstatat(cur_dir.fd->get(), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (S_ISREG(st.st_mode)) {
        cur.push_back({cur_dir.fd, de->d_name, std::move(path)});
        if (cur.size() == kBatch) hand_over();
      } else if (S_ISDIR(st.st_mode) && st.st_dev == top_st.st_dev) {
        // another filesystem (a live /proc, a mount) is not walked
        UniqueFd sub(::openat(cur_dir.fd->get(), de->d_name,
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (sub) {
          todo.push_back({std::make_shared<UniqueFd>(std::move(sub)), path});
        } else {
          std::lock_guard lock(mu);
          problem(path + ": " + strerror(errno));
        }
      }
    }
    closedir(dp);
  }
  hand_over();
  {
    std::lock_guard lock(mu);
    walked = true;
  }
  cv.notify_all();
  for (auto& t : workers) t.join();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  out.hash_seconds = static_cast<double>(hash_ns.load()) / 1e9;
  out.workers = nworkers;
  logger("appraise")->info("namespace {}: pre-appraised {}: {} files, {} passed, {} failed, {} "
                           "not covered",
                           name_or_id, dir, out.files, out.passed, out.failed, out.skipped);
  return out;
}

}  // namespace nsima::ns

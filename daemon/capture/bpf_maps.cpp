// SPDX-License-Identifier: Apache-2.0
#include "capture/bpf_maps.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace nsima::capture {

namespace {

tl::unexpected<Error> map_error(const char* op, const char* map, int err) {
  return make_error(err, std::string(op) + " failed: " + strerror(err), std::string("map ") + map);
}

// The keys of map `fd` (named `map` in errors) whose ns_id is `ns_id` (none: no map).
template <class Key>
Result<std::vector<Key>> keys_of_namespace(int fd, const char* map, uint32_t ns_id) {
  std::vector<Key> out;
  if (fd < 0) return out;
  Key key{}, next{};
  Key* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    if (next.ns_id == ns_id) out.push_back(next);
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return map_error("get_next_key", map, errno);
  return out;
}

// Removes them; returns how many there were.
template <class Key>
Result<size_t> remove_keys_of_namespace(int fd, const char* map, uint32_t ns_id) {
  auto keys = keys_of_namespace<Key>(fd, map, ns_id);
  if (!keys) return tl::unexpected(keys.error());
  for (auto& k : *keys)
    if (bpf_map_delete_elem(fd, &k) && errno != ENOENT) return map_error("delete", map, errno);
  return keys->size();
}

int cpus() {
  static const int n = libbpf_num_possible_cpus();
  return n > 0 ? n : 1;
}

}  // namespace

namespace {
uint64_t sum(const uint64_t (&per_hook)[NSIMA_HOOK_MAX]) {
  uint64_t t = 0;
  for (auto v : per_hook) t += v;
  return t;
}
}  // namespace

uint64_t Stats::total_emitted() const { return sum(emitted); }
uint64_t Stats::total_dropped() const { return sum(dropped); }
uint64_t Stats::total_denied() const { return sum(denied); }
uint64_t Stats::total_quiet() const { return sum(quiet); }

nsima_stamp to_abi(const Stamp& s) {
  nsima_stamp out{};
  out.ctime_sec = s.ctime_sec;
  out.ctime_nsec = s.ctime_nsec;
  out.i_version = s.i_version;
  out.size = s.size;
  return out;
}

Stamp from_abi(const nsima_stamp& s) { return Stamp{s.ctime_sec, s.ctime_nsec, s.i_version, s.size}; }

Result<uint32_t> cgroup_level(const std::string& dir) {
  char buf[PATH_MAX];
  if (!realpath(dir.c_str(), buf))
    return make_error(errno, std::string("cannot resolve the cgroup directory: ") + strerror(errno),
                      dir);
  std::string cur = buf;
  struct statfs sf {};
  if (statfs(cur.c_str(), &sf) != 0) return make_error(errno, strerror(errno), "statfs " + cur);
  if (sf.f_type != CGROUP2_SUPER_MAGIC)
    return make_error(ENOTDIR, "not a cgroup v2 directory", cur);
  struct stat st {};
  if (stat(cur.c_str(), &st) != 0) return make_error(errno, strerror(errno), "stat " + cur);
  // Up to the root of the mount: the first directory whose parent is on another device.
  uint32_t level = 0;
  while (cur != "/") {
    size_t slash = cur.rfind('/');
    std::string parent = slash == 0 ? "/" : cur.substr(0, slash);
    struct stat pst {};
    if (stat(parent.c_str(), &pst) != 0)
      return make_error(errno, strerror(errno), "stat " + parent);
    if (pst.st_dev != st.st_dev) break;
    cur = parent;
    ++level;
  }
  // cgroup.type exists in every cgroup but the hierarchy's root (cgroup-v2.rst).
  if (access((cur + "/cgroup.type").c_str(), F_OK) == 0)
    return make_error(EXDEV,
                      "the cgroup2 mount at " + cur +
                          " is not the root of the hierarchy (cgroup namespace or bind mount of a "
                          "sub-tree): the kernel's cgroup levels cannot be known from here",
                      dir);
  return level;
}

Result<uint64_t> process_start_ticks(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return make_error(errno ? errno : EIO, "cannot read", path);
  size_t close = line.rfind(')');  // comm may contain spaces and parentheses
  if (close == std::string::npos) return make_error(EINVAL, "malformed", path);
  std::istringstream fields(line.substr(close + 1));
  std::string f;
  for (int i = 3; i <= 22 && fields >> f; ++i)
    if (i == 22) return std::strtoull(f.c_str(), nullptr, 10);
  return make_error(EINVAL, "no field 22 (starttime)", path);
}

BpfMaps::BpfMaps(MapFds fds) : fds_(fds) {
  long page = sysconf(_SC_PAGESIZE);
  ctl_len_ = static_cast<size_t>(page > 0 ? page : 4096);
  void* p = fds_.ctl >= 0 ? mmap(nullptr, ctl_len_, PROT_READ | PROT_WRITE, MAP_SHARED, fds_.ctl, 0)
                          : MAP_FAILED;
  if (p == MAP_FAILED)
    ctl_errno_ = fds_.ctl >= 0 ? errno : EBADF;
  else
    ctl_ = static_cast<nsima_ctl*>(p);
}

BpfMaps::~BpfMaps() {
  if (ctl_) munmap(ctl_, ctl_len_);
}

Result<nsima_ctl*> BpfMaps::ctl_page() const {
  if (!ctl_)
    return make_error(ctl_errno_, std::string("cannot map the ctl map: ") + strerror(ctl_errno_),
                      "map ctl");
  return ctl_;
}

Result<uint64_t> BpfMaps::epoch() const {
  auto c = ctl_page();
  if (!c) return tl::unexpected(c.error());
  return __atomic_load_n(&(*c)->epoch, __ATOMIC_ACQUIRE);
}

Result<void> BpfMaps::bump_epoch() {
  auto c = ctl_page();
  if (!c) return tl::unexpected(c.error());
  // One locked add: the hooks read the 8 bytes with one load, never a torn value.
  __atomic_fetch_add(&(*c)->epoch, 1, __ATOMIC_SEQ_CST);
  return {};
}

Result<void> BpfMaps::set_self(uint32_t tgid, uint64_t start_ticks) {
  auto c = ctl_page();
  if (!c) return tl::unexpected(c.error());
  long hz = sysconf(_SC_CLK_TCK);
  uint32_t tick_ns = static_cast<uint32_t>(1000000000L / (hz > 0 ? hz : 100));
  // tgid last: a hook matching the new tgid already sees its start time.
  __atomic_store_n(&(*c)->tick_ns, tick_ns, __ATOMIC_SEQ_CST);
  __atomic_store_n(&(*c)->self_start, start_ticks, __ATOMIC_SEQ_CST);
  __atomic_store_n(&(*c)->self_tgid, tgid, __ATOMIC_SEQ_CST);
  return {};
}

Result<nsima_ctl> BpfMaps::ctl() const {
  auto c = ctl_page();
  if (!c) return tl::unexpected(c.error());
  nsima_ctl out{};
  out.epoch = __atomic_load_n(&(*c)->epoch, __ATOMIC_ACQUIRE);
  out.self_tgid = __atomic_load_n(&(*c)->self_tgid, __ATOMIC_ACQUIRE);
  out.tick_ns = __atomic_load_n(&(*c)->tick_ns, __ATOMIC_ACQUIRE);
  out.self_start = __atomic_load_n(&(*c)->self_start, __ATOMIC_ACQUIRE);
  return out;
}

Result<void> BpfMaps::register_cgroup(uint64_t cgroup_id, uint32_t ns_id, uint32_t flags,
                                      uint32_t level) {
  if (level >= NSIMA_MAX_CGROUP_DEPTH)
    return make_error(ELOOP,
                      "cgroup at level " + std::to_string(level) +
                          " is too deep to be a namespace (the hooks look at ancestor levels 0.." +
                          std::to_string(NSIMA_MAX_CGROUP_DEPTH - 1) + ")",
                      "cgroup " + std::to_string(cgroup_id));
  if (!ctl_) return tl::unexpected(ctl_page().error());
  nsima_cgroup v{ns_id, flags | NSIMA_CG_REGISTERED};
  if (bpf_map_update_elem(fds_.cgroups, &cgroup_id, &v, BPF_ANY)) {
    int e = errno;
    if (e == E2BIG)
      return make_error(e,
                        "too many namespaces (" + std::to_string(NSIMA_MAX_NAMESPACES) +
                            " registered cgroups)",
                        "map cgroups");
    return map_error("update", "cgroups", e);
  }
  return bump_epoch();
}

Result<void> BpfMaps::unregister_cgroup(uint64_t cgroup_id) {
  if (!ctl_) return tl::unexpected(ctl_page().error());
  if (bpf_map_delete_elem(fds_.cgroups, &cgroup_id) && errno != ENOENT)
    return map_error("delete", "cgroups", errno);
  return bump_epoch();
}

std::optional<nsima_cgroup> BpfMaps::cgroup(uint64_t cgroup_id) const {
  nsima_cgroup v{};
  if (bpf_map_lookup_elem(fds_.cgroups, &cgroup_id, &v)) return std::nullopt;
  return v;
}

Result<std::vector<RegisteredCgroup>> BpfMaps::registered_cgroups() const {
  std::vector<RegisteredCgroup> out;
  uint64_t key = 0, next = 0;
  uint64_t* prev = nullptr;
  int err;
  while ((err = bpf_map_get_next_key(fds_.cgroups, prev, &next)) == 0) {
    nsima_cgroup v{};
    if (bpf_map_lookup_elem(fds_.cgroups, &next, &v) == 0)
      out.push_back(RegisteredCgroup{next, v.ns_id, v.flags});
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return map_error("get_next_key", "cgroups", errno);
  return out;
}

std::optional<nsima_cg_cache> BpfMaps::cached_cgroup(uint64_t cgroup_id) const {
  nsima_cg_cache v{};
  if (bpf_map_lookup_elem(fds_.cg_cache, &cgroup_id, &v)) return std::nullopt;
  return v;
}

Result<void> BpfMaps::set_verdict(const nsima_verdict_key& key, const nsima_verdict& v) {
  if (bpf_map_update_elem(fds_.verdicts, &key, &v, BPF_ANY))
    return map_error("update", "verdicts", errno);
  return {};
}

Result<void> BpfMaps::allow(const nsima_verdict_key& key, const Stamp& stamp,
                            uint32_t quiet_bits, bool keep_deny, uint32_t judged_bits,
                            uint32_t model_quiet_bits) {
  nsima_verdict v{};
  v.stamp = to_abi(stamp);
  v.verdict = NSIMA_VERDICT_ALLOW;
  v.quiet = quiet_bits;
  v.model_quiet = model_quiet_bits;
  v.judged = quiet_bits | judged_bits | model_quiet_bits;
  auto old = verdict(key);
  if (old && old->verdict == NSIMA_VERDICT_DENY_ALWAYS && keep_deny) return {};
  if (old && from_abi(old->stamp) == stamp) {
    if (old->verdict == NSIMA_VERDICT_DENY && keep_deny) {
      // The classes it refuses stay refused; the others record what was judged of them.
      v.verdict = NSIMA_VERDICT_DENY;
      v.denied = old->denied;
      v.quiet = (v.quiet | old->quiet) & ~old->denied;
      v.model_quiet = (v.model_quiet | old->model_quiet) & ~old->denied;
      v.judged |= old->judged;
      if (v.quiet == old->quiet && v.judged == old->judged && v.model_quiet == old->model_quiet)
        return {};
    } else if (old->verdict == NSIMA_VERDICT_ALLOW) {
      v.quiet |= old->quiet;
      v.model_quiet |= old->model_quiet;
      v.judged |= old->judged;
    }
  }
  return set_verdict(key, v);
}

Result<void> BpfMaps::deny(const nsima_verdict_key& key, const Stamp& stamp, bool every_version,
                           uint32_t classes, uint32_t quiet_bits, uint32_t judged_bits) {
  nsima_verdict v{};
  v.stamp = to_abi(stamp);  // for every_version: the version the operator saw (diagnostics)
  v.verdict = every_version ? NSIMA_VERDICT_DENY_ALWAYS : NSIMA_VERDICT_DENY;
  if (!every_version) {
    v.denied = classes;
    v.judged = judged_bits | quiet_bits | classes;
    v.quiet = quiet_bits & ~classes;
    // Same version already judged: what was decided of the other classes stays.
    auto old = verdict(key);
    if (old && from_abi(old->stamp) == stamp &&
        (old->verdict == NSIMA_VERDICT_ALLOW || old->verdict == NSIMA_VERDICT_DENY)) {
      if (old->verdict == NSIMA_VERDICT_DENY) v.denied |= old->denied;
      v.judged |= old->judged;
      v.quiet = (v.quiet | old->quiet) & ~v.denied;
    }
  }
  return set_verdict(key, v);
}

Result<void> BpfMaps::remove_verdict(const nsima_verdict_key& key) {
  if (bpf_map_delete_elem(fds_.verdicts, &key) && errno != ENOENT)
    return map_error("delete", "verdicts", errno);
  return {};
}

std::optional<nsima_verdict> BpfMaps::verdict(const nsima_verdict_key& key) const {
  nsima_verdict v{};
  if (bpf_map_lookup_elem(fds_.verdicts, &key, &v)) return std::nullopt;
  return v;
}

Result<void> BpfMaps::add_model_quiet(const nsima_model_quiet_key& key) {
  if (fds_.model_quiet < 0) return {};  // an object without the map (selftest): nothing kept
  const uint32_t known = NSIMA_MODEL_QUIET_KNOWN;
  if (bpf_map_update_elem(fds_.model_quiet, &key, &known, BPF_ANY))
    return map_error("update", "model_quiet", errno);
  return {};
}

Result<void> BpfMaps::remove_model_quiet(const nsima_model_quiet_key& key) {
  if (fds_.model_quiet < 0) return {};
  if (bpf_map_delete_elem(fds_.model_quiet, &key) && errno != ENOENT)
    return map_error("delete", "model_quiet", errno);
  return {};
}

Result<size_t> BpfMaps::clear_model_quiet(uint32_t ns_id) {
  return remove_keys_of_namespace<nsima_model_quiet_key>(fds_.model_quiet, "model_quiet", ns_id);
}

Result<size_t> BpfMaps::model_quiet_count(uint32_t ns_id) const {
  auto keys = keys_of_namespace<nsima_model_quiet_key>(fds_.model_quiet, "model_quiet", ns_id);
  if (!keys) return tl::unexpected(keys.error());
  return keys->size();
}

std::optional<nsima_model_quiet_key> model_quiet_key_of(const Event& ev) {
  if (ev.hook != Hook::kFileOpen && ev.hook != Hook::kMmapFile) return std::nullopt;
  if (!ev.path_known() || ev.deleted() || ev.path.empty() ||
      ev.path.size() >= NSIMA_QUIET_PATH)
    return std::nullopt;
  // IMA's violation checks must see these opens (access.bpf.h never looks them up)
  if (ev.flags & (NSIMA_EV_WRITERS | NSIMA_EV_READERS)) return std::nullopt;
  nsima_model_quiet_key k{};
  k.ns_id = ev.ns_id;
  k.hook = static_cast<uint32_t>(ev.hook);
  k.tgid = ev.tgid;
  k.path_len = static_cast<uint32_t>(ev.path.size() + 1);
  k.start_boottime = ev.start_boottime_ns;
  k.self_exec_id = ev.self_exec_id;
  const Creds& c = ev.cred;
  k.cred = nsima_cred{c.uid, c.euid, c.suid, c.gid, c.egid, c.sgid, c.fsuid, c.fsgid,
                      c.cap_effective};
  k.dev = ev.kdev;
  k.ino = ev.ino;
  k.generation = ev.generation;
  k.i_mode = ev.i_mode;
  k.i_uid = ev.i_uid;
  k.i_gid = ev.i_gid;
  k.stamp = to_abi(ev.stamp);
  k.f_flags = ev.f_flags;
  if (ev.hook == Hook::kMmapFile) {
    k.prot = ev.prot;
    k.mmap_flags = ev.mmap_flags;
  }
  std::memcpy(k.path, ev.path.data(), ev.path.size());
  return k;
}

Result<size_t> BpfMaps::remove_namespace_verdicts(uint32_t ns_id) {
  return remove_keys_of_namespace<nsima_verdict_key>(fds_.verdicts, "verdicts", ns_id);
}

Result<Stats> BpfMaps::stats() const {
  Stats s;
  std::vector<uint64_t> per_cpu(cpus());
  for (uint32_t i = 0; i < NSIMA_STAT_MAX; ++i) {
    if (bpf_map_lookup_elem(fds_.stats, &i, per_cpu.data()))
      return map_error("lookup", "stats", errno);
    uint64_t sum = 0;
    for (auto v : per_cpu) sum += v;
    if (i < 16) {
      uint32_t hook = i % 4, kind = i / 4;
      uint64_t* row =
          kind == 0 ? s.emitted : kind == 1 ? s.dropped : kind == 2 ? s.denied : s.quiet;
      if (hook < NSIMA_HOOK_MAX) row[hook] = sum;
    } else if (i == NSIMA_STAT_CG_UNCACHED) {
      s.cg_uncached = sum;
    } else if (i == NSIMA_STAT_UNRESOLVED) {
      s.unresolved = sum;
    } else if (i == NSIMA_STAT_DROP_NO_NS) {
      s.drop_no_ns = sum;
    } else if (i == NSIMA_STAT_TRUSTED) {
      s.trusted = sum;
    } else if (i == NSIMA_STAT_TRUST_NOHASH) {
      s.trust_nohash = sum;
    } else if (i == NSIMA_STAT_MODEL_EXEC_DENIED) {
      s.model_exec_denied = sum;
    } else if (i == NSIMA_STAT_LOST_UNTRUSTED) {
      s.lost_untrusted = sum;
    } else if (i == NSIMA_STAT_LOST_MARK_FAILED) {
      s.lost_mark_failed = sum;
    } else if (i == NSIMA_STAT_MODEL_QUIET) {
      s.model_quiet = sum;
    } else if (i == NSIMA_STAT_MODEL_PENDING) {
      s.model_pending = sum;
    } else if (i == NSIMA_STAT_SETXATTR) {
      s.setxattr = sum;
    } else if (i == NSIMA_STAT_SETXATTR_DROPPED) {
      s.setxattr_dropped = sum;
    } else if (i == NSIMA_STAT_TRUST_UNSTABLE) {
      s.trust_unstable = sum;
    } else if (i == NSIMA_STAT_TRUSTED_OPEN) {
      s.trusted_open = sum;
    } else if (i == NSIMA_STAT_TRUSTED_MMAP) {
      s.trusted_mmap = sum;
    } else if (i == NSIMA_STAT_KERNEL_DIGEST) {
      s.kernel_digest = sum;
    } else if (i >= NSIMA_STAT_PROTECT_SIGNAL && i <= NSIMA_STAT_PROTECT_CGROUP) {
      s.protect_refused[1 + i - NSIMA_STAT_PROTECT_SIGNAL] = sum;
    } else if (i == NSIMA_STAT_PROTECT_REPORTED) {
      s.protect_reported = sum;
    } else if (i == NSIMA_STAT_PROTECT_SUPPRESSED) {
      s.protect_suppressed = sum;
    } else if (i == NSIMA_STAT_PROTECT_DROPPED) {
      s.protect_dropped = sum;
    }
  }
  return s;
}

Result<std::map<uint32_t, uint64_t>> read_counter_map(int fd, const char* name) {
  std::map<uint32_t, uint64_t> out;
  uint32_t key = 0, next = 0;
  uint32_t* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    uint64_t v = 0;
    if (bpf_map_lookup_elem(fd, &next, &v) == 0) out[next] = v;
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return map_error("iterate", name, errno);
  return out;
}

Result<std::map<uint32_t, uint64_t>> BpfMaps::ns_drops() const {
  return read_counter_map(fds_.ns_drops, "ns_drops");
}

Result<void> BpfMaps::init_ns_drops(uint32_t ns_id) {
  uint64_t zero = 0;
  if (bpf_map_update_elem(fds_.ns_drops, &ns_id, &zero, BPF_NOEXIST) && errno != EEXIST)
    return map_error("update", "ns_drops", errno);
  return {};
}

Result<void> BpfMaps::remove_ns_drops(uint32_t ns_id) {
  if (bpf_map_delete_elem(fds_.ns_drops, &ns_id) && errno != ENOENT)
    return map_error("delete", "ns_drops", errno);
  return {};
}

namespace {
nsima_trust_key trust_key(uint32_t ns_id, const Sha256& sha256) {
  nsima_trust_key k{};
  k.ns_id = ns_id;
  std::memcpy(k.sha256, sha256.data(), sizeof k.sha256);
  return k;
}
}  // namespace

Result<bool> BpfMaps::trust(uint32_t ns_id, const Sha256& sha256, uint32_t bit) {
  if (fds_.trusted < 0) return make_error(EBADF, "no trusted map", "map trusted");
  const nsima_trust_key k = trust_key(ns_id, sha256);
  // Two sets share a key (digest lists, a model's executables): add this one's bit. One
  // writer (the pipeline thread), so read-modify-write is safe.
  uint32_t v = 0;
  if (bpf_map_lookup_elem(fds_.trusted, &k, &v) != 0) v = 0;
  if (v & bit) return true;
  v |= bit;
  if (bpf_map_update_elem(fds_.trusted, &k, &v, BPF_ANY)) {
    if (errno == E2BIG) return false;  // full
    return map_error("update", "trusted", errno);
  }
  return true;
}

Result<void> BpfMaps::untrust(uint32_t ns_id, const Sha256& sha256, uint32_t bit) {
  if (fds_.trusted < 0) return make_error(EBADF, "no trusted map", "map trusted");
  const nsima_trust_key k = trust_key(ns_id, sha256);
  uint32_t v = 0;
  if (bpf_map_lookup_elem(fds_.trusted, &k, &v) != 0) return {};
  v &= ~bit;
  if (v == 0) {
    if (bpf_map_delete_elem(fds_.trusted, &k) && errno != ENOENT)
      return map_error("delete", "trusted", errno);
  } else if (bpf_map_update_elem(fds_.trusted, &k, &v, BPF_EXIST)) {
    return map_error("update", "trusted", errno);
  }
  return {};
}

bool BpfMaps::trusted(uint32_t ns_id, const Sha256& sha256) const {
  if (fds_.trusted < 0) return false;
  const nsima_trust_key k = trust_key(ns_id, sha256);
  uint32_t v = 0;
  return bpf_map_lookup_elem(fds_.trusted, &k, &v) == 0 && (v & NSIMA_TRUST_LISTED);
}

Result<std::vector<nsima_trust_key>> BpfMaps::trusted_keys() const {
  if (fds_.trusted < 0) return make_error(EBADF, "no trusted map", "map trusted");
  std::vector<nsima_trust_key> out;
  nsima_trust_key key{}, next{};
  nsima_trust_key* prev = nullptr;
  while (bpf_map_get_next_key(fds_.trusted, prev, &next) == 0) {
    out.push_back(next);
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return map_error("get_next_key", "trusted", errno);
  return out;
}

std::optional<nsima_self_open> BpfMaps::self_open(uint32_t tid) const {
  nsima_self_open v{};
  if (bpf_map_lookup_elem(fds_.self_opens, &tid, &v)) return std::nullopt;
  return v;
}

}  // namespace nsima::capture

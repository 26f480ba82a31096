// SPDX-License-Identifier: Apache-2.0
#include "capture/bpf_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "common/log.h"
#include "nsima.skel.h"

namespace nsima::capture {

namespace {

constexpr const char* kLsmFile = "/sys/kernel/security/lsm";
constexpr const char* kBtfFile = "/sys/kernel/btf/vmlinux";
constexpr long kBpfFsMagic = 0xcafe4a11;  // BPF_FS_MAGIC
constexpr const char* kTagPin = "tag";
constexpr const char* kLinkPrefix = "link_";

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) noexcept {
  // Verifier logs arrive as one multi-kilobyte message: format without truncation.
  char* buf = nullptr;
  int n = vasprintf(&buf, fmt, args);
  if (n <= 0 || !buf) return 0;
  std::string line(buf, static_cast<size_t>(n));
  free(buf);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  auto log = logger("libbpf");
  // libbpf blames RLIMIT_MEMLOCK for every EPERM; since 5.11 BPF memory is charged to the
  // memory cgroup, and that advice sends users the wrong way.
  if (line.find("try raising 'ulimit -l'") != std::string::npos) {
    log->debug("{} [nsima: not the cause; see the error below]", line);
    return n;
  }
  switch (level) {
    case LIBBPF_WARN: log->warn("{}", line); break;
    case LIBBPF_INFO: log->info("{}", line); break;
    default: log->debug("{}", line); break;
  }
  return n;
}

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

void route_libbpf_log() { libbpf_set_print(libbpf_print); }

Result<void> probe_bpf_lsm() {
  if (geteuid() != 0)
    return make_error(EPERM,
                      "nsimad must run as root (it loads BPF-LSM programs: CAP_BPF, CAP_PERFMON "
                      "and CAP_SYS_ADMIN are needed)");
  struct stat st;
  if (stat(kBtfFile, &st) != 0)
    return make_error(ENOENT,
                      std::string("the kernel exposes no BTF (") + kBtfFile +
                          " is missing): nsima's CO-RE programs need a kernel built with "
                          "CONFIG_DEBUG_INFO_BTF=y");
  if (stat(kLsmFile, &st) != 0)
    return make_error(ENOENT, std::string("cannot tell whether BPF-LSM is active: ") + kLsmFile +
                                  " is missing (mount securityfs: mount -t securityfs securityfs "
                                  "/sys/kernel/security)");
  std::string lsms = read_first_line(kLsmFile);
  std::stringstream ss(lsms);
  std::string item;
  bool found = false;
  while (std::getline(ss, item, ','))
    if (item == "bpf") found = true;
  if (!found)
    return make_error(EOPNOTSUPP,
                      "BPF-LSM is not active in this kernel: 'bpf' is not in " +
                          std::string(kLsmFile) + " (\"" + lsms +
                          "\"). Boot with lsm=" + (lsms.empty() ? "" : lsms + ",") +
                          "bpf on the kernel command line (the kernel needs CONFIG_BPF_LSM=y)");
  return {};
}


const char* to_string(LoadKind k) {
  switch (k) {
    case LoadKind::kResumed: return "resumed";
    case LoadKind::kFresh: return "fresh";
    case LoadKind::kReplaced: return "replaced";
    case LoadKind::kUnpinned: return "unpinned";
  }
  return "?";
}

namespace {

struct SkelDeleter {
  void operator()(nsima_bpf* s) const {
    if (s) nsima_bpf::destroy(s);
  }
};
using SkelPtr = std::unique_ptr<nsima_bpf, SkelDeleter>;

// NSIMA_BPF_NONSLEEPABLE_HOOKS=1: mmap_file as the non-sleepable program it was before first
// exec mmaps were decided in the kernel (bpf/mmap_file.bpf.c nsima_mmap_file_nosleep): the
// baseline of tests/bench/vm-hotpath --nonsleepable, in the same build. Not an operating mode:
// a first exec mmap is then denied until appraised.
bool nonsleepable_hooks() {
  const char* v = std::getenv("NSIMA_BPF_NONSLEEPABLE_HOOKS");
  return v && std::string(v) == "1";
}

nsima_tag tag_of(const LoaderOptions& o) {
  size_t size = 0;
  const void* elf = nsima_bpf::elf_bytes(&size);
  char sizes[160];
  int n = std::snprintf(sizes, sizeof sizes,
                        "\nringbuf=%u verdicts=%u cg_cache=%u trusted=%u%s\n", o.ringbuf_bytes,
                        o.verdict_entries, o.cgroup_cache_entries, o.trusted_entries,
                        nonsleepable_hooks() ? " nonsleepable" : "");
  nsima_tag t{};
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) ||
      !EVP_DigestUpdate(ctx, elf, size) || !EVP_DigestUpdate(ctx, sizes, static_cast<size_t>(n)) ||
      !EVP_DigestFinal_ex(ctx, t.sha256, &len))
    std::abort();  // sha256 of a memory buffer cannot fail short of memory exhaustion
  EVP_MD_CTX_free(ctx);
  return t;
}

std::string hex(const nsima_tag& t) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (uint8_t b : t.sha256) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

Result<void> mkdir_p(const std::string& dir) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    cur = dir.substr(0, pos);
    if (cur.empty()) continue;
    if (mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) {
      int e = errno;
      std::string msg = std::string("cannot create the pin directory: ") + strerror(e);
      if (e == EPERM || e == EACCES || e == ENOENT)
        msg += " (is bpffs mounted? mount -t bpf bpf /sys/fs/bpf)";
      return make_error(e, msg, cur);
    }
  }
  return {};
}

// Opens and locks the pin directory (created if `create`); -1 without error if it does not
// exist and !create.
Result<int> lock_pin_dir(const std::string& dir, bool create) {
  if (create)
    if (auto r = mkdir_p(dir); !r) return tl::unexpected(r.error());
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT && !create) return -1;
    return make_error(errno, std::string("cannot open the pin directory: ") + strerror(errno), dir);
  }
  struct statfs sf {};
  if (fstatfs(fd, &sf) != 0 || sf.f_type != kBpfFsMagic) {
    close(fd);
    return make_error(ENOTSUP,
                      "the pin directory is not on a BPF filesystem (mount -t bpf bpf /sys/fs/bpf, "
                      "or choose another --pin-dir; --pin-dir '' runs without pins)",
                      dir);
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK)
      return make_error(EBUSY, "another nsimad is using the pinned hooks (the directory is locked)",
                        dir);
    return make_error(e, std::string("flock failed: ") + strerror(e), dir);
  }
  return fd;
}

std::vector<std::string> pin_entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}

// Unpins everything in `dir`: the tag first (a half-removed directory is never resumed), then
// the links (their hooks detach when no fd holds them), then the maps.
Result<size_t> remove_pins(const std::string& dir) {
  auto names = pin_entries(dir);
  auto rank = [](const std::string& n) {
    return n == kTagPin ? 0 : n.rfind(kLinkPrefix, 0) == 0 ? 1 : 2;
  };
  size_t removed = 0;
  for (int r = 0; r < 3; ++r)
    for (auto& n : names) {
      if (rank(n) != r) continue;
      std::string p = dir + "/" + n;
      if (unlink(p.c_str()) != 0 && errno != ENOENT)
        return make_error(errno, std::string("cannot unpin: ") + strerror(errno), p);
      ++removed;
    }
  return removed;
}

bool user_map(const bpf_map* m) { return !bpf_map__is_internal(m); }

// Why the pins in `dir` cannot be resumed for `skel` (opened and configured, not loaded), or
// empty if they can; fills `fds` and `links`.
std::string check_pins(nsima_bpf* skel, const std::string& dir, const nsima_tag& want,
                       std::map<std::string, int>& fds, std::vector<int>& links) {
  std::string tag_path = dir + "/" + kTagPin;
  int tfd = bpf_obj_get(tag_path.c_str());
  if (tfd < 0) return "no tag pinned";
  fds[kTagPin] = tfd;
  bpf_map_info info{};
  uint32_t len = sizeof info;
  nsima_tag have{};
  uint32_t zero = 0;
  if (bpf_obj_get_info_by_fd(tfd, &info, &len) != 0 || info.type != BPF_MAP_TYPE_ARRAY ||
      info.value_size != sizeof(nsima_tag) || bpf_map_lookup_elem(tfd, &zero, &have) != 0)
    return "the pinned tag is not an nsima tag";
  if (memcmp(have.sha256, want.sha256, sizeof want.sha256) != 0)
    return "the pinned hooks are another build or use other sizes (tag " + hex(have) + ")";
  bpf_map* m;
  bpf_object__for_each_map(m, skel->obj) {
    if (!user_map(m) || std::string(bpf_map__name(m)) == kTagPin) continue;
    std::string name = bpf_map__name(m);
    int fd = bpf_obj_get((dir + "/" + name).c_str());
    if (fd < 0) return "map " + name + " is not pinned";
    fds[name] = fd;
    bpf_map_info mi{};
    uint32_t ml = sizeof mi;
    if (bpf_obj_get_info_by_fd(fd, &mi, &ml) != 0) return "map " + name + ": no info";
    if (mi.type != bpf_map__type(m) || mi.key_size != bpf_map__key_size(m) ||
        mi.value_size != bpf_map__value_size(m) || mi.max_entries != bpf_map__max_entries(m) ||
        mi.map_flags != bpf_map__map_flags(m))
      return "pinned map " + name + " differs from this build's";
  }
  bpf_program* p;
  bpf_object__for_each_program(p, skel->obj) {
    if (!bpf_program__autoload(p)) continue;  // the variant not in use (nonsleepable_hooks())
    std::string name = std::string(kLinkPrefix) + bpf_program__name(p);
    int fd = bpf_obj_get((dir + "/" + name).c_str());
    if (fd < 0) return "link " + name + " is not pinned";
    links.push_back(fd);
    bpf_link_info li{};
    uint32_t ll = sizeof li;
    if (bpf_obj_get_info_by_fd(fd, &li, &ll) != 0 || li.type != BPF_LINK_TYPE_TRACING)
      return "pinned " + name + " is not an LSM link";
  }
  return {};
}

void close_all(std::map<std::string, int>& fds, std::vector<int>& links) {
  for (auto& [n, fd] : fds) close(fd);
  for (int fd : links) close(fd);
  fds.clear();
  links.clear();
}

Result<void> write_self(const MapFds& fds, uint32_t tgid) {
  uint64_t start = 0;
  if (tgid) {
    auto s = process_start_ticks(static_cast<pid_t>(tgid));
    if (!s) return tl::unexpected(s.error());
    start = *s;
  }
  BpfMaps maps(fds);
  return maps.set_self(tgid, start);
}

}  // namespace

std::string object_tag(const LoaderOptions& opts) { return hex(tag_of(opts)); }

Result<std::unique_ptr<BpfProgram>> BpfProgram::load_and_attach(const LoaderOptions& opts) {
  auto log = logger("capture");
  route_libbpf_log();

  SkelPtr skel(nsima_bpf::open());
  if (!skel)
    return make_error(errno, std::string("opening the BPF object failed: ") + strerror(errno),
                      "nsima_bpf__open");
  std::unique_ptr<BpfProgram> prog(new BpfProgram());
  prog->pin_dir_ = opts.pin_dir;
  nsima_tag tag = tag_of(opts);
  prog->tag_ = hex(tag);

  // Configure between open and load (also what resumed pins are compared with).
  if (int err = bpf_map__set_max_entries(skel->maps.events, opts.ringbuf_bytes))
    return make_error(-err, "ring-buffer size " + std::to_string(opts.ringbuf_bytes) +
                                " refused (must be a power of two and a multiple of the page size)",
                      "bpf_map__set_max_entries(events)");
  if (int err = bpf_map__set_max_entries(skel->maps.verdicts, opts.verdict_entries))
    return make_error(-err, "verdict map size refused", "bpf_map__set_max_entries(verdicts)");
  if (opts.cgroup_cache_entries == 0)
    return make_error(EINVAL, "the cgroup cache needs at least one entry", "cg_cache");
  if (int err = bpf_map__set_max_entries(skel->maps.cg_cache, opts.cgroup_cache_entries))
    return make_error(-err, "cgroup cache size refused", "bpf_map__set_max_entries(cg_cache)");
  if (int err = bpf_map__set_max_entries(skel->maps.trusted, opts.trusted_entries))
    return make_error(-err, "trusted map size refused", "bpf_map__set_max_entries(trusted)");
  // One program per hook is loaded: the sleepable one, or the bench baseline (see above).
  const bool nonsleepable = nonsleepable_hooks();
  bpf_program__set_autoload(skel->progs.nsima_mmap_file, !nonsleepable);
  bpf_program__set_autoload(skel->progs.nsima_mmap_file_nosleep, nonsleepable);
  if (nonsleepable)
    log->warn("NSIMA_BPF_NONSLEEPABLE_HOOKS=1: non-sleepable mmap_file (benchmark baseline): "
              "first exec mmaps are not decided in the kernel");

  bool had_pins = false;
  // An existing pin directory is locked and checked before anything is loaded; a missing one
  // is created only after the load (a kernel that refuses the programs is the error to show).
  if (!opts.pin_dir.empty()) {
    auto lock = lock_pin_dir(opts.pin_dir, false);
    if (!lock) return tl::unexpected(lock.error());
    prog->lock_fd_ = *lock;
  }
  if (prog->lock_fd_ >= 0) {
    had_pins = !pin_entries(opts.pin_dir).empty();
    std::string why = check_pins(skel.get(), opts.pin_dir, tag, prog->fds_, prog->link_fds_);
    if (why.empty()) {
      // Resume: the hooks never stopped; only tell them who nsimad is now.
      if (auto r = write_self(prog->map_fds(), opts.self_tgid); !r) return tl::unexpected(r.error());
      prog->kind_ = LoadKind::kResumed;
      log->info("resumed the BPF-LSM hooks pinned in {} (tag {}): they kept capturing while no "
                "nsimad ran",
                opts.pin_dir, prog->tag_.substr(0, 16));
      return prog;
    }
    close_all(prog->fds_, prog->link_fds_);
    if (had_pins)
      log->warn("not resuming the hooks pinned in {}: {}; loading afresh (capture had a gap)",
                opts.pin_dir, why);
  }

  if (int err = nsima_bpf::load(skel.get())) {
    int e = -err;
    std::string msg = std::string("loading the BPF-LSM programs failed: ") + strerror(e);
    if (e == EACCES)
      msg +=
          ". The BPF verifier rejected a program (its log is above, from the libbpf logger); "
          "this is a bug in nsima or a kernel nsima does not support";
    else if (e == EPERM || e == EINVAL)
      msg +=
          ". 'bpf' is listed in /sys/kernel/security/lsm, yet the kernel refused to load LSM "
          "programs: a sandbox or seccomp policy, kernel lockdown, or missing CAP_BPF and "
          "CAP_SYS_ADMIN forbids it (run nsimad as root on the host, outside such sandboxes). "
          "libbpf's hint to raise 'ulimit -l' does not apply: BPF memory is charged to the "
          "memory cgroup since Linux 5.11";
    return make_error(e, msg, "nsima_bpf__load");
  }
  log->debug("BPF object loaded: ring buffer {} bytes, verdict map {} entries, cgroup cache {}",
             opts.ringbuf_bytes, opts.verdict_entries, opts.cgroup_cache_entries);
  prog->skel_ = skel.release();
  // Who nsimad is, before any hook runs.
  if (auto r = write_self(prog->map_fds(), opts.self_tgid); !r) return tl::unexpected(r.error());
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(prog->skel_->maps.tag), &zero, &tag, BPF_ANY))
    return make_error(errno, std::string("cannot write the tag: ") + strerror(errno), "map tag");

  if (int err = nsima_bpf::attach(prog->skel_))
    return make_error(-err,
                      std::string("attaching the LSM programs failed: ") + strerror(-err) +
                          " (is 'bpf' in /sys/kernel/security/lsm?)",
                      "nsima_bpf__attach");
  log->info("attached lsm/file_open, {}, lsm.s/bprm_check_security, lsm.s/inode_post_setxattr "
            "and the self-protection programs (bpf/protect.bpf.c)",
            nonsleepable ? "lsm/mmap_file" : "lsm.s/mmap_file");
  if (opts.pin_dir.empty()) {
    prog->kind_ = LoadKind::kUnpinned;
    return prog;
  }

  // The new hooks run; now the old ones go (no instant without hooks), then the new pins,
  // the tag last.
  const std::string& dir = opts.pin_dir;
  if (prog->lock_fd_ < 0) {
    auto lock = lock_pin_dir(dir, true);
    if (!lock) return tl::unexpected(lock.error());
    prog->lock_fd_ = *lock;
  }
  if (auto r = remove_pins(dir); !r) return tl::unexpected(r.error());
  auto pin_error = [&](int err, const std::string& what) {
    (void)remove_pins(dir);
    return make_error(-err, std::string("cannot pin: ") + strerror(-err) +
                                " (--pin-dir '' runs without pins)",
                      dir + "/" + what);
  };
  bpf_map* m;
  bpf_object__for_each_map(m, prog->skel_->obj) {
    if (!user_map(m) || std::string(bpf_map__name(m)) == kTagPin) continue;
    std::string name = bpf_map__name(m);
    if (int err = bpf_map__pin(m, (dir + "/" + name).c_str())) return pin_error(err, name);
  }
  // Every loaded program's link, as check_pins expects them (the access hooks and
  // self-protection's; the mmap_file variant not in use is not loaded and has none).
  const bpf_object_skeleton* sk = prog->skel_->skeleton;
  for (int i = 0; i < sk->prog_cnt; ++i) {
    if (!bpf_program__autoload(*sk->progs[i].prog)) continue;
    std::string name = std::string(kLinkPrefix) + sk->progs[i].name;
    bpf_link* l = *sk->progs[i].link;
    if (!l) return make_error(ENOENT, "program not attached", name);
    if (int err = bpf_link__pin(l, (dir + "/" + name).c_str())) return pin_error(err, name);
  }
  if (int err = bpf_map__pin(prog->skel_->maps.tag, (dir + "/" + kTagPin).c_str()))
    return pin_error(err, kTagPin);
  prog->kind_ = had_pins ? LoadKind::kReplaced : LoadKind::kFresh;
  log->info("pinned the hooks in {} (tag {}): they keep capturing across nsimad restarts "
            "('nsimad --unload' removes them)",
            dir, prog->tag_.substr(0, 16));
  return prog;
}

BpfProgram::~BpfProgram() {
  if (skel_) nsima_bpf::destroy(skel_);  // pinned links and maps live on in bpffs
  close_all(fds_, link_fds_);
  if (lock_fd_ >= 0) close(lock_fd_);
}

void BpfProgram::detach() {
  if (!pin_dir_.empty()) {
    if (auto r = remove_pins(pin_dir_); !r)
      logger("capture")->error("detach: {}", r.error().to_string());
  }
  if (skel_) nsima_bpf::detach(skel_);
  for (int fd : link_fds_) close(fd);
  link_fds_.clear();
}

std::string BpfProgram::capture_gap() const {
  switch (kind_) {
    case LoadKind::kResumed: return {};
    case LoadKind::kFresh: return "hooks-loaded";
    case LoadKind::kReplaced: return "hooks-replaced";
    case LoadKind::kUnpinned: return "hooks-unpinned";
  }
  return "hooks-loaded";
}

int BpfProgram::map_fd(const std::string& name) const {
  if (skel_) {
    bpf_map* m = bpf_object__find_map_by_name(skel_->obj, name.c_str());
    return m ? bpf_map__fd(m) : -1;
  }
  auto it = fds_.find(name);
  return it == fds_.end() ? -1 : it->second;
}

int BpfProgram::events_fd() const { return map_fd("events"); }

MapFds BpfProgram::map_fds() const {
  MapFds f;
  f.cgroups = map_fd("cgroups");
  f.cg_cache = map_fd("cg_cache");
  f.verdicts = map_fd("verdicts");
  f.stats = map_fd("stats");
  f.ns_drops = map_fd("ns_drops");
  f.self_opens = map_fd("self_opens");
  f.ctl = map_fd("ctl");
  f.trusted = map_fd("trusted");
  f.model_untrusted = map_fd("model_untrusted");
  f.model_quiet = map_fd("model_quiet");
  return f;
}

Result<bool> unload_pinned(const std::string& pin_dir) {
  if (pin_dir.empty()) return make_error(EINVAL, "no pin directory given", "--pin-dir");
  auto lock = lock_pin_dir(pin_dir, false);
  if (!lock) {
    if (lock.error().code == EBUSY)
      return make_error(EBUSY, "nsimad is running and holds the pinned hooks: stop it first",
                        pin_dir);
    return tl::unexpected(lock.error());
  }
  if (*lock < 0) return false;
  // The links' ids, to see them go: the kernel frees an unpinned link after an RCU grace
  // period, so "unlinked" is not yet "detached".
  std::vector<uint32_t> link_ids;
  for (auto& n : pin_entries(pin_dir)) {
    if (n.rfind(kLinkPrefix, 0) != 0) continue;
    int fd = bpf_obj_get((pin_dir + "/" + n).c_str());
    if (fd < 0) continue;
    bpf_link_info li{};
    uint32_t ll = sizeof li;
    if (bpf_obj_get_info_by_fd(fd, &li, &ll) == 0) link_ids.push_back(li.id);
    close(fd);
  }
  auto removed = remove_pins(pin_dir);
  int e = 0;
  if (removed && rmdir(pin_dir.c_str()) != 0) e = errno;
  close(*lock);
  if (!removed) return tl::unexpected(removed.error());
  if (e) return make_error(e, std::string("cannot remove the directory: ") + strerror(e), pin_dir);
  for (int tries = 0;; ++tries) {
    size_t alive = 0;
    for (uint32_t id : link_ids) {
      int fd = bpf_link_get_fd_by_id(id);
      if (fd >= 0) {
        ++alive;
        close(fd);
      }
    }
    if (!alive) break;
    if (tries == 500)
      return make_error(EBUSY,
                        std::to_string(alive) +
                            " hook links are still attached 5 s after their pins were removed "
                            "(another process holds them: bpftool link show)",
                        pin_dir);
    usleep(10000);
  }
  return *removed > 0;
}

}  // namespace nsima::capture

// SPDX-License-Identifier: Apache-2.0
#include "capture/model_hooks.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <openssl/evp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "capture/bpf_loader.h"
#include "common/log.h"
#include "nsima_model.skel.h"

namespace nsima::capture {

namespace {

struct Shared {
  const char* name;
  int fd;
};

constexpr const char* kModelTagPin = "model_tag";
constexpr const char* kLinkPrefix = "link_";
// The model object's own maps (model_maps.bpf.h), pinned under these names; the object's other
// maps are the file hooks' (reused) or unused copies its programs hold.
constexpr const char* kOwnMaps[] = {"model_ns", "untrusted", "mevents", "mstats", "model_drops"};

struct SkelDeleter {
  void operator()(nsima_model_bpf* s) const {
    if (s) nsima_model_bpf::destroy(s);
  }
};

nsima_tag model_tag_of(uint32_t ringbuf_bytes, const std::string& hooks_tag) {
  size_t size = 0;
  const void* elf = nsima_model_bpf::elf_bytes(&size);
  const std::string extra =
      "\nmevents=" + std::to_string(ringbuf_bytes) + " hooks=" + hooks_tag + "\n";
  nsima_tag t{};
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) ||
      !EVP_DigestUpdate(ctx, elf, size) || !EVP_DigestUpdate(ctx, extra.data(), extra.size()) ||
      !EVP_DigestFinal_ex(ctx, t.sha256, &len))
    std::abort();  // sha256 of a memory buffer cannot fail short of memory exhaustion
  EVP_MD_CTX_free(ctx);
  return t;
}

std::string link_name(const bpf_object_skeleton* s, int i) {
  return std::string(kLinkPrefix) + s->progs[i].name;
}

// Why the model pins in `dir` cannot be resumed for `skel` (opened, configured, not loaded),
// or empty if they can; fills `fds` (name -> fd) and `links`.
std::string check_model_pins(nsima_model_bpf* skel, const std::string& dir, const nsima_tag& want,
                             std::map<std::string, int>& fds, std::vector<int>& links) {
  int tfd = bpf_obj_get((dir + "/" + kModelTagPin).c_str());
  if (tfd < 0) return "no model tag pinned";
  fds[kModelTagPin] = tfd;
  nsima_tag have{};
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(tfd, &zero, &have) != 0 ||
      memcmp(have.sha256, want.sha256, sizeof want.sha256) != 0)
    return "the pinned model hooks are another build, use other sizes or other file hooks";
  for (const char* name : kOwnMaps) {
    bpf_map* m = bpf_object__find_map_by_name(skel->obj, name);
    if (!m) return std::string("this build has no map ") + name;
    int fd = bpf_obj_get((dir + "/" + name).c_str());
    if (fd < 0) return std::string("map ") + name + " is not pinned";
    fds[name] = fd;
    bpf_map_info mi{};
    uint32_t ml = sizeof mi;
    if (bpf_obj_get_info_by_fd(fd, &mi, &ml) != 0 || mi.type != bpf_map__type(m) ||
        mi.key_size != bpf_map__key_size(m) || mi.value_size != bpf_map__value_size(m) ||
        mi.max_entries != bpf_map__max_entries(m))
      return std::string("pinned map ") + name + " differs from this build's";
  }
  const bpf_object_skeleton* s = skel->skeleton;
  for (int i = 0; i < s->prog_cnt; ++i) {
    std::string name = link_name(s, i);
    int fd = bpf_obj_get((dir + "/" + name).c_str());
    if (fd < 0) return "link " + name + " is not pinned";
    links.push_back(fd);
  }
  return {};
}

// Removes the model pins in `dir`: the tag first (never resumed half-removed), then the links
// (their programs detach), then the maps.
void remove_model_pins(const std::string& dir, const nsima_model_bpf* skel) {
  std::vector<std::string> names{kModelTagPin};
  const bpf_object_skeleton* s = skel->skeleton;
  for (int i = 0; i < s->prog_cnt; ++i) names.push_back(link_name(s, i));
  for (const char* m : kOwnMaps) names.push_back(m);
  for (const auto& n : names) {
    std::string p = dir + "/" + n;
    if (unlink(p.c_str()) != 0 && errno != ENOENT)
      logger("capture")->warn("model hooks: cannot unpin {}: {}", p, strerror(errno));
  }
}

// The file hooks mark the process of a file event they lost in an enforcing model's namespace
// in this untrusted map (bpf/emit.bpf.h, nsima_lost_access: slot 0 of their model_untrusted);
// until it is there, such a loss refuses the access.
Result<void> hand_untrusted(const MapFds& shared, int untrusted_fd) {
  if (shared.model_untrusted < 0) return {};
  uint32_t zero = 0;
  uint32_t ufd = static_cast<uint32_t>(untrusted_fd);
  if (bpf_map_update_elem(shared.model_untrusted, &zero, &ufd, BPF_ANY))
    return make_error(errno,
                      std::string("cannot hand the untrusted map to the file hooks: ") +
                          strerror(errno),
                      "map model_untrusted");
  return {};
}

// Copies the marks of a previous pinned untrusted map into `to` (same layout only).
size_t carry_marks(const std::string& dir, int to) {
  int from = bpf_obj_get((dir + "/untrusted").c_str());
  if (from < 0) return 0;
  bpf_map_info mi{};
  uint32_t ml = sizeof mi;
  size_t n = 0;
  if (bpf_obj_get_info_by_fd(from, &mi, &ml) == 0 && mi.key_size == sizeof(nsima_proc_key) &&
      mi.value_size == sizeof(uint32_t)) {
    nsima_proc_key k{}, next{};
    nsima_proc_key* prev = nullptr;
    while (bpf_map_get_next_key(from, prev, &next) == 0) {
      uint32_t v = 0;
      if (bpf_map_lookup_elem(from, &next, &v) == 0 &&
          bpf_map_update_elem(to, &next, &v, BPF_ANY) == 0)
        ++n;
      k = next;
      prev = &k;
    }
  }
  close(from);
  return n;
}

}  // namespace

Result<std::unique_ptr<ModelHooks>> ModelHooks::load(const MapFds& shared, const ModelPins& pins,
                                                     uint32_t ringbuf_bytes) {
  auto log = logger("capture");
  route_libbpf_log();
  std::unique_ptr<ModelHooks> h(new ModelHooks());
  std::unique_ptr<nsima_model_bpf, SkelDeleter> skel(nsima_model_bpf::open());
  if (!skel)
    return make_error(errno, std::string("opening the model BPF object failed: ") + strerror(errno),
                      "nsima_model_bpf__open");
  if (int err = bpf_map__set_max_entries(skel->maps.mevents, ringbuf_bytes))
    return make_error(-err, "model ring-buffer size refused", "bpf_map__set_max_entries(mevents)");
  const nsima_tag tag = model_tag_of(ringbuf_bytes, pins.hooks_tag);

  if (!pins.dir.empty() && pins.resume) {
    std::map<std::string, int> fds;
    std::vector<int> links;
    std::string why = check_model_pins(skel.get(), pins.dir, tag, fds, links);
    for (auto& [n, fd] : fds) h->owned_fds_.push_back(fd);
    for (int fd : links) h->owned_fds_.push_back(fd);
    if (why.empty()) {
      h->model_ns_fd_ = fds["model_ns"];
      h->untrusted_fd_ = fds["untrusted"];
      h->mevents_fd_ = fds["mevents"];
      h->mstats_fd_ = fds["mstats"];
      h->model_drops_fd_ = fds["model_drops"];
      h->resumed_ = true;
    } else {
      for (int fd : h->owned_fds_) close(fd);
      h->owned_fds_.clear();
      if (fds.count(kModelTagPin))
        log->warn("not resuming the model hooks pinned in {}: {}; loading afresh", pins.dir, why);
    }
  }

  if (!h->resumed_) {
    // The namespace maps are the file hooks' (one registration for both objects).
    const Shared maps[] = {{"cgroups", shared.cgroups},     {"cg_cache", shared.cg_cache},
                           {"ctl", shared.ctl},             {"verdicts", shared.verdicts},
                           {"stats", shared.stats},         {"ns_drops", shared.ns_drops},
                           {"self_opens", shared.self_opens}};
    for (const auto& m : maps) {
      bpf_map* map = bpf_object__find_map_by_name(skel->obj, m.name);
      if (!map) continue;  // not in this build of the object
      if (m.fd < 0)
        return make_error(EINVAL, std::string("the file hooks' map is not open"),
                          std::string("model hooks: map ") + m.name);
      if (int err = bpf_map__reuse_fd(map, m.fd))
        return make_error(-err, std::string("cannot share the file hooks' map: ") + strerror(-err),
                          std::string("bpf_map__reuse_fd(") + m.name + ")");
    }
    // The file hooks' ring buffer and trusted map are not used by the model programs: keep
    // their copies small.
    if (bpf_map* ev = bpf_object__find_map_by_name(skel->obj, "events"))
      (void)bpf_map__set_max_entries(ev, static_cast<uint32_t>(sysconf(_SC_PAGESIZE)));
    if (bpf_map* tr = bpf_object__find_map_by_name(skel->obj, "trusted"))
      (void)bpf_map__set_max_entries(tr, 1);
    if (int err = nsima_model_bpf::load(skel.get()))
      return make_error(-err,
                        std::string("loading the model BPF programs failed: ") + strerror(-err) +
                            " (the verifier's log is above, from the libbpf logger)",
                        "nsima_model_bpf__load");
    uint32_t zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(skel->maps.model_tag), &zero, &tag, BPF_ANY))
      return make_error(errno, std::string("cannot write the model tag: ") + strerror(errno),
                        "map model_tag");
    if (int err = nsima_model_bpf::attach(skel.get()))
      return make_error(-err, std::string("attaching the model programs failed: ") + strerror(-err),
                        "nsima_model_bpf__attach");
    h->skel_ = skel.release();
    h->model_ns_fd_ = bpf_map__fd(h->skel_->maps.model_ns);
    h->untrusted_fd_ = bpf_map__fd(h->skel_->maps.untrusted);
    h->mevents_fd_ = bpf_map__fd(h->skel_->maps.mevents);
    h->mstats_fd_ = bpf_map__fd(h->skel_->maps.mstats);
    h->model_drops_fd_ = bpf_map__fd(h->skel_->maps.model_drops);
    // before pin(): a mark the file hooks make from now on is in the new map, and pin() then
    // carries the old map's marks over
    if (auto u = hand_untrusted(shared, h->untrusted_fd_); !u) return tl::unexpected(u.error());
    if (!pins.dir.empty())
      if (auto p = h->pin(pins); !p) return tl::unexpected(p.error());
  }
  if (h->resumed_)
    if (auto u = hand_untrusted(shared, h->untrusted_fd_); !u) return tl::unexpected(u.error());
  h->rb_ = ring_buffer__new(h->mevents_fd_, &ModelHooks::on_record, h.get(), nullptr);
  if (!h->rb_)
    return make_error(errno, std::string("model ring buffer: ") + strerror(errno),
                      "ring_buffer__new(mevents)");
  if (h->resumed_)
    log->info("resumed the model hooks pinned in {}: untrusted processes stayed refused while "
              "no nsimad ran",
              pins.dir);
  else
    log->info("model hooks attached (ptrace, task_kill, socket_*, file_mprotect, fork/exit, "
              "untrusted gate on file_open/mmap_file/bprm_check){}",
              pins.dir.empty() ? ", not pinned" : ", pinned in " + pins.dir);
  return h;
}

Result<void> ModelHooks::pin(const ModelPins& pins) {
  const std::string& dir = pins.dir;
  // The new programs run; the marks of replaced pins come over, then the old pins go.
  carried_ = carry_marks(dir, untrusted_fd_);
  if (carried_)
    logger("capture")->info("model hooks: {} untrusted marks carried over from the pins replaced",
                            carried_);
  remove_model_pins(dir, skel_);
  auto fail = [&](int err, const std::string& what) {
    remove_model_pins(dir, skel_);
    return make_error(-err, std::string("cannot pin: ") + strerror(-err) +
                                " (--pin-dir '' runs without pins)",
                      dir + "/" + what);
  };
  for (const char* name : kOwnMaps) {
    bpf_map* m = bpf_object__find_map_by_name(skel_->obj, name);
    if (!m) return make_error(ENOENT, "no such map in the model object", name);
    if (int err = bpf_map__pin(m, (dir + "/" + name).c_str())) return fail(err, name);
  }
  const bpf_object_skeleton* s = skel_->skeleton;
  for (int i = 0; i < s->prog_cnt; ++i) {
    std::string name = link_name(s, i);
    bpf_link* l = *s->progs[i].link;
    if (!l) return make_error(ENOENT, "program not attached", name);
    if (int err = bpf_link__pin(l, (dir + "/" + name).c_str())) return fail(err, name);
  }
  if (int err = bpf_map__pin(skel_->maps.model_tag, (dir + "/" + kModelTagPin).c_str()))
    return fail(err, kModelTagPin);
  return {};
}

ModelHooks::~ModelHooks() {
  stop_.store(true);
  if (notifier_.joinable()) notifier_.join();
  if (rb_) ring_buffer__free(rb_);
  if (skel_) nsima_model_bpf::destroy(skel_);  // pinned links and maps live on in bpffs
  for (int fd : owned_fds_) close(fd);
}

Result<void> ModelHooks::set_namespace(uint32_t ns_id, uint32_t flags) {
  int fd = model_ns_fd_;
  if (flags == 0) {
    if (bpf_map_delete_elem(fd, &ns_id) && errno != ENOENT)
      return make_error(errno, std::string("cannot remove: ") + strerror(errno),
                        "model_ns[" + std::to_string(ns_id) + "]");
    return {};
  }
  nsima_model_ns v{flags, 0};
  if (bpf_map_update_elem(fd, &ns_id, &v, BPF_ANY))
    return make_error(errno, std::string("cannot write: ") + strerror(errno),
                      "model_ns[" + std::to_string(ns_id) + "]");
  return {};
}

Result<void> ModelHooks::untrust(const nsima_proc_key& proc, uint32_t ns_id) {
  if (bpf_map_update_elem(untrusted_fd_, &proc, &ns_id, BPF_ANY))
    return make_error(errno, std::string("cannot mark untrusted: ") + strerror(errno),
                      "untrusted[tgid " + std::to_string(proc.tgid) + "]");
  return {};
}

bool ModelHooks::is_untrusted(const nsima_proc_key& proc) const {
  uint32_t v = 0;
  return bpf_map_lookup_elem(untrusted_fd_, &proc, &v) == 0;
}

int ModelHooks::on_record(void* ctx, void* data, size_t size) noexcept {
  auto* h = static_cast<ModelHooks*>(ctx);
  h->consumed_++;
  if (h->sink_) (*h->sink_)(std::span<const uint8_t>(static_cast<const uint8_t*>(data), size));
  return 0;
}

Result<size_t> ModelHooks::consume(const Sink& sink) {
  sink_ = &sink;
  consumed_ = 0;
  int n = ring_buffer__consume(rb_);
  sink_ = nullptr;
  if (n < 0)
    return make_error(-n, std::string("consuming model events: ") + strerror(-n),
                      "ring_buffer__consume(mevents)");
  return consumed_;
}

uint64_t ModelHooks::stat(uint32_t index) const {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return 0;
  std::vector<uint64_t> v(static_cast<size_t>(ncpu));
  if (bpf_map_lookup_elem(mstats_fd_, &index, v.data())) return 0;
  uint64_t sum = 0;
  for (auto x : v) sum += x;
  return sum;
}

Result<std::map<uint32_t, uint64_t>> ModelHooks::model_drops() const {
  return read_counter_map(model_drops_fd_, "model_drops");
}

uint64_t ModelHooks::model_drops_of(uint32_t ns_id) const {
  uint64_t v = 0;
  if (bpf_map_lookup_elem(model_drops_fd_, &ns_id, &v) != 0) return 0;
  return v;
}

void ModelHooks::start_notifier(std::function<void()> ready) {
  if (notifier_.joinable()) return;
  notifier_ = std::thread([this, ready = std::move(ready)] {
    int efd = ring_buffer__epoll_fd(rb_);
    while (!stop_.load()) {
      epoll_event ev;
      int n = epoll_wait(efd, &ev, 1, 100);
      if (n <= 0) continue;
      // Level-triggered: while the consumer has not run, do not spin on the same records.
      if (notice_pending_.exchange(true)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      ready();
    }
  });
}

}  // namespace nsima::capture

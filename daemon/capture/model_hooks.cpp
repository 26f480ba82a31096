// SPDX-License-Identifier: Apache-2.0
#include "capture/model_hooks.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
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

}  // namespace

Result<std::unique_ptr<ModelHooks>> ModelHooks::load(const MapFds& shared, uint32_t ringbuf_bytes) {
  auto log = logger("capture");
  route_libbpf_log();
  std::unique_ptr<ModelHooks> h(new ModelHooks());
  h->skel_ = nsima_model_bpf::open();
  if (!h->skel_)
    return make_error(errno, std::string("opening the model BPF object failed: ") + strerror(errno),
                      "nsima_model_bpf__open");
  // The namespace maps are the file hooks' (one registration for both objects).
  const Shared maps[] = {{"cgroups", shared.cgroups},     {"cg_cache", shared.cg_cache},
                         {"ctl", shared.ctl},             {"verdicts", shared.verdicts},
                         {"stats", shared.stats},         {"ns_drops", shared.ns_drops},
                         {"self_opens", shared.self_opens}};
  for (const auto& m : maps) {
    bpf_map* map = bpf_object__find_map_by_name(h->skel_->obj, m.name);
    if (!map) continue;  // not in this build of the object
    if (m.fd < 0)
      return make_error(EINVAL, std::string("the file hooks' map is not open"),
                        std::string("model hooks: map ") + m.name);
    if (int err = bpf_map__reuse_fd(map, m.fd))
      return make_error(-err, std::string("cannot share the file hooks' map: ") + strerror(-err),
                        std::string("bpf_map__reuse_fd(") + m.name + ")");
  }
  // The file hooks' ring buffer is not written by the model programs: keep its copy small.
  if (bpf_map* ev = bpf_object__find_map_by_name(h->skel_->obj, "events"))
    (void)bpf_map__set_max_entries(ev, static_cast<uint32_t>(sysconf(_SC_PAGESIZE)));
  if (int err = bpf_map__set_max_entries(h->skel_->maps.mevents, ringbuf_bytes))
    return make_error(-err, "model ring-buffer size refused", "bpf_map__set_max_entries(mevents)");
  if (int err = nsima_model_bpf::load(h->skel_))
    return make_error(-err,
                      std::string("loading the model BPF programs failed: ") + strerror(-err) +
                          " (the verifier's log is above, from the libbpf logger)",
                      "nsima_model_bpf__load");
  if (int err = nsima_model_bpf::attach(h->skel_))
    return make_error(-err, std::string("attaching the model programs failed: ") + strerror(-err),
                      "nsima_model_bpf__attach");
  h->rb_ = ring_buffer__new(bpf_map__fd(h->skel_->maps.mevents), &ModelHooks::on_record, h.get(),
                            nullptr);
  if (!h->rb_)
    return make_error(errno, std::string("model ring buffer: ") + strerror(errno),
                      "ring_buffer__new(mevents)");
  log->info("model hooks attached (ptrace, task_kill, socket_*, file_mprotect, fork/exit, "
            "untrusted gate on file_open/mmap_file/bprm_check)");
  return h;
}

ModelHooks::~ModelHooks() {
  stop_.store(true);
  if (notifier_.joinable()) notifier_.join();
  if (rb_) ring_buffer__free(rb_);
  if (skel_) nsima_model_bpf::destroy(skel_);
}

Result<void> ModelHooks::set_namespace(uint32_t ns_id, uint32_t flags) {
  int fd = bpf_map__fd(skel_->maps.model_ns);
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
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.untrusted), &proc, &ns_id, BPF_ANY))
    return make_error(errno, std::string("cannot mark untrusted: ") + strerror(errno),
                      "untrusted[tgid " + std::to_string(proc.tgid) + "]");
  return {};
}

bool ModelHooks::is_untrusted(const nsima_proc_key& proc) const {
  uint32_t v = 0;
  return bpf_map_lookup_elem(bpf_map__fd(skel_->maps.untrusted), &proc, &v) == 0;
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
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.mstats), &index, v.data())) return 0;
  uint64_t sum = 0;
  for (auto x : v) sum += x;
  return sum;
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

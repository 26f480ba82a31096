// SPDX-License-Identifier: Apache-2.0
// The model hooks (bpf/model.bpf.c, object nsima_model.bpf.o) as nsimad runs them: loaded and
// attached only once a namespace is modeled (the gate they add to file_open, mmap_file and
// bprm_check costs every access a lookup), sharing the file hooks' namespace maps (cgroups,
// cg_cache, ctl, ...: bpf_map__reuse_fd before load), so a registration the file hooks see is
// the one the model hooks see.
//
// Pinned beside the file hooks (ModelPins::dir, their pin directory): the model's own maps
// under their names (model_ns, untrusted, mevents, mstats), each program's link as
// link_<program>, and model_tag (sha256 of the object, the mevents size and the file hooks'
// tag) last. So while no nsimad runs, an untrusted process stays refused and its children
// inherit the mark; a restarted nsimad resumes them when the file hooks were resumed (their
// maps are the ones the pinned model programs use) and the tag matches. Otherwise it loads
// afresh and carries the previous pinned untrusted marks over before unpinning the old hooks.
// Without a pin directory they end with nsimad.
//
// Owns model_ns (which namespaces are modeled, which enforce), untrusted (processes whose
// accesses an enforcing namespace refuses) and the mevents ring buffer. consume() is called by
// one thread at a time (the pipeline thread); the notifier thread only waits on the ring
// buffer's epoll fd and says "records wait" (never consumes, never blocks the pipeline).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "capture/bpf_maps.h"
#include "common/result.h"
#include "nsima/model_abi.h"

struct nsima_model_bpf;
struct ring_buffer;

namespace nsima::capture {

struct ModelPins {
  std::string dir;        // the file hooks' pin directory; empty: the model hooks are not pinned
  bool resume = false;    // the file hooks were resumed (BpfProgram::resumed())
  std::string hooks_tag;  // the file hooks' tag (BpfProgram::tag())
};

class ModelHooks {
 public:
  // Resumes the model hooks pinned in pins.dir, or opens nsima_model.bpf.o, reuses `shared`'s
  // maps, loads, attaches every program (and pins them when pins.dir is set).
  static Result<std::unique_ptr<ModelHooks>> load(const MapFds& shared, const ModelPins& pins = {},
                                                  uint32_t ringbuf_bytes = 1u << 20);
  // True when the pinned hooks of a previous nsimad were resumed (their marks kept).
  bool resumed() const { return resumed_; }
  // Untrusted marks carried over from replaced pins (a fresh load next to old pins).
  size_t carried() const { return carried_; }
  ~ModelHooks();
  ModelHooks(const ModelHooks&) = delete;
  ModelHooks& operator=(const ModelHooks&) = delete;

  // NSIMA_MODEL_* flags of namespace `ns_id`; 0 removes it (not modeled).
  Result<void> set_namespace(uint32_t ns_id, uint32_t flags);
  // Marks a process untrusted for namespace `ns_id` (its accesses are refused if it enforces).
  Result<void> untrust(const nsima_proc_key& proc, uint32_t ns_id);
  bool is_untrusted(const nsima_proc_key& proc) const;

  // Hands every record now in mevents to `sink` (non-blocking). Returns the count.
  using Sink = std::function<void(std::span<const uint8_t>)>;
  Result<size_t> consume(const Sink& sink);
  // NSIMA_MSTAT_* counter summed over CPUs.
  uint64_t stat(uint32_t index) const;
  // Model events lost per namespace (model_drops: cumulative since the map was created).
  Result<std::map<uint32_t, uint64_t>> model_drops() const;
  uint64_t model_drops_of(uint32_t ns_id) const;

  // Starts the thread that calls `ready` (from that thread) when records wait and no earlier
  // call is still unanswered; the consumer answers with consumed_notice() before consuming.
  void start_notifier(std::function<void()> ready);
  void consumed_notice() { notice_pending_.store(false); }

 private:
  ModelHooks() = default;
  static int on_record(void* ctx, void* data, size_t size) noexcept;

  Result<void> pin(const ModelPins& pins);

  nsima_model_bpf* skel_ = nullptr;  // loaded here; null when resumed
  std::vector<int> owned_fds_;       // resumed: maps and links from bpf_obj_get
  int model_ns_fd_ = -1, untrusted_fd_ = -1, mevents_fd_ = -1, mstats_fd_ = -1;
  int model_drops_fd_ = -1;
  bool resumed_ = false;
  size_t carried_ = 0;
  ring_buffer* rb_ = nullptr;
  const Sink* sink_ = nullptr;  // during consume()
  size_t consumed_ = 0;
  std::atomic<bool> notice_pending_{false};
  std::atomic<bool> stop_{false};
  std::thread notifier_;
};

}  // namespace nsima::capture

// SPDX-License-Identifier: Apache-2.0
// Loading nsima's BPF-LSM programs: probe (root, BTF, BPF-LSM active), then either resume the
// hooks a previous nsimad pinned (same object, same sizes: its maps and links are re-opened
// from bpffs, nothing is loaded or attached again) or open -> configure (ring-buffer size, map
// sizes) -> load -> attach -> pin. Each step checked and named; a failure ends in one sentence
// that says what is missing and how to enable it.
//
// Pins (LoaderOptions::pin_dir, default /sys/fs/bpf/nsima): every map under its own name,
// every link as link_<program>, and `tag` (struct nsima_tag: sha256 of the BPF object bytes
// and the map sizes) written last, so a directory without a valid tag is never resumed. While
// no nsimad runs, the pinned hooks keep capturing into the pinned ring buffer, keep refusing
// what the verdict map denies and keep counting. An flock on the directory keeps two nsimads
// (or nsimad and `nsimad --unload`) from using the same pins at once.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "capture/bpf_maps.h"
#include "common/result.h"

struct nsima_bpf;

namespace nsima::capture {

inline constexpr const char* kDefaultPinDir = "/sys/fs/bpf/nsima";

struct LoaderOptions {
  uint32_t ringbuf_bytes = 8u << 20;  // power of two, multiple of the page size
  uint32_t verdict_entries = 262144;
  uint32_t cgroup_cache_entries = NSIMA_CG_CACHE_ENTRIES;  // cg_cache LRU size
  uint32_t trusted_entries = NSIMA_TRUSTED_ENTRIES;        // trusted map size
  // nsimad's pid: written with its start time into the ctl map before the hooks are attached
  // (or, when resuming, before anything else), so its own opens are never events. 0: none.
  uint32_t self_tgid = 0;
  std::string pin_dir = kDefaultPinDir;  // empty: no pins, the hooks end with this process
};

// How the running hooks came to be.
enum class LoadKind {
  kResumed,   // a previous nsimad's pinned hooks, re-opened: they kept capturing, nothing missed
  kFresh,     // loaded now, nothing was pinned before (first start since boot, or after unload)
  kReplaced,  // loaded now, replacing pins of another object or other sizes (upgrade, new
              // --ringbuf-size ...): their unconsumed records and counters are gone
  kUnpinned,  // loaded now without pins (pin_dir empty)
};
const char* to_string(LoadKind k);

// Checks the kernel can run nsima's programs, without loading anything. The error message is
// the one sentence to show the user.
Result<void> probe_bpf_lsm();

// Routes libbpf's own log into the "libbpf" spdlog logger.
void route_libbpf_log();

// The identity the pins must carry for `opts`: hex sha256 of the embedded BPF object and the
// map sizes.
std::string object_tag(const LoaderOptions& opts);

// nsimad --unload: detaches the hooks pinned under `pin_dir` and removes the pins and the
// directory. Returns false if nothing was pinned there. Fails while an nsimad holds the pins.
Result<bool> unload_pinned(const std::string& pin_dir);

class BpfProgram {
 public:
  static Result<std::unique_ptr<BpfProgram>> load_and_attach(const LoaderOptions& opts);
  ~BpfProgram();
  BpfProgram(const BpfProgram&) = delete;
  BpfProgram& operator=(const BpfProgram&) = delete;

  // True when the hooks were resumed from pins: the previous nsimad's hooks kept capturing
  // while it was down and their records wait in the ring buffer. False: capture had a gap
  // (except kFresh on a first start, which the caller may tell apart with kind()).
  bool resumed() const { return kind_ == LoadKind::kResumed; }
  LoadKind kind() const { return kind_; }
  // Empty when resumed; else why capture had a gap, for nsima:capture-gap:<reason>:
  // "hooks-loaded" (nothing was pinned: first start since boot, or after --unload),
  // "hooks-replaced" (pins of another build or other sizes), "hooks-unpinned" (no --pin-dir).
  std::string capture_gap() const;
  bool pinned() const { return !pin_dir_.empty(); }
  const std::string& tag() const { return tag_; }

  int events_fd() const;
  MapFds map_fds() const;
  // fd of the object's map `name` (self-protection's maps: protect_cfg, protected_*), or -1.
  int map_fd(const std::string& name) const;
  // Detaches the hooks now and removes the pins (they would keep the hooks attached): for an
  // unpinned run's shutdown and for uninstall. A pinned run's SIGTERM must NOT call this.
  void detach();

 private:
  BpfProgram() = default;

  nsima_bpf* skel_ = nullptr;         // loaded here (kFresh, kReplaced, kUnpinned)
  std::map<std::string, int> fds_;    // map name -> fd (resumed: from bpf_obj_get)
  std::vector<int> link_fds_;         // resumed: link fds from bpf_obj_get
  std::string pin_dir_;
  int lock_fd_ = -1;                  // flock on pin_dir_
  LoadKind kind_ = LoadKind::kUnpinned;
  std::string tag_;
};

}  // namespace nsima::capture

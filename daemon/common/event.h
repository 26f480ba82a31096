// SPDX-License-Identifier: Apache-2.0
// The daemon's view of one access: struct nsima_event (include/nsima/bpf_abi.h) decoded into
// owned C++ values. Everything downstream of capture (namespace tree, policy, measurement) works
// on this type, never on the raw ring-buffer record.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "nsima/bpf_abi.h"

namespace nsima {

enum class Hook : uint32_t {
  kFileOpen = NSIMA_HOOK_FILE_OPEN,
  kMmapFile = NSIMA_HOOK_MMAP_FILE,
  kBprmCheck = NSIMA_HOOK_BPRM_CHECK,
  // Not an access: security.ima was written (bpf/setxattr.bpf.c). Never judged as one; the
  // pipeline appraises the file for every access class (Pipeline::setxattr_event).
  kSetxattr = NSIMA_HOOK_SETXATTR,
  // Not an access: an attempt on nsima refused by self-protection (bpf/protect.bpf.c): kind
  // in `mask`, detail in `prot`, target in `reqprot`/`kdev`/`ino`/`path`
  // (include/nsima/protect_abi.h). A host-list violation (Pipeline::protect_event).
  kProtect = NSIMA_HOOK_PROTECT,
};

std::string_view hook_name(Hook h);  // "file_open", "mmap_file", "bprm_check"

struct Creds {
  uint32_t uid = 0, euid = 0, suid = 0;
  uint32_t gid = 0, egid = 0, sgid = 0;
  uint64_t cap_effective = 0;
  uint32_t fsuid = 0, fsgid = 0;  // a model's COE; IMA's conditions do not read them
  bool cap_setuid() const { return cap_effective & (1ull << 7); }
  bool cap_setgid() const { return cap_effective & (1ull << 6); }
};

struct Stamp {
  int64_t ctime_sec = 0;
  uint32_t ctime_nsec = 0;
  uint64_t i_version = 0;
  uint64_t size = 0;
  bool operator==(const Stamp&) const = default;
};

struct Event {
  uint64_t seq = 0;  // intake order, 1, 2, ... per nsimad run (set by the ring-buffer consumer)
  Hook hook = Hook::kFileOpen;
  uint32_t flags = 0;  // NSIMA_EV_*
  uint64_t ktime_ns = 0;
  uint32_t pid = 0, tgid = 0;
  uint64_t cgroup_id = 0;
  uint32_t ns_id = 0;  // namespace the BPF side resolved (deepest registered ancestor)
  uint32_t mnt_ns = 0, user_ns = 0, pid_ns = 0;
  Creds cred;      // current credentials
  Creds new_cred;  // bprm->cred, for CREDS_CHECK (bprm events only)
  uint64_t kdev = 0;  // kernel dev_t (major << 20 | minor) as the verdict map keys it
  uint64_t ino = 0;
  uint32_t generation = 0;
  uint32_t i_mode = 0;
  uint32_t i_uid = 0, i_gid = 0;  // fowner, fgroup
  Stamp stamp;
  uint64_t fs_magic = 0;
  std::array<uint8_t, 16> fs_uuid{};
  std::string fs_name;
  uint32_t f_flags = 0, f_mode = 0;
  uint32_t mask = 0;  // NSIMA_MAY_*, as IMA computes it for this access
  uint32_t prot = 0, reqprot = 0, mmap_flags = 0;
  int32_t i_writecount = 0;  // opens for write of the inode at the time of the access
  int32_t i_readcount = -1;  // read-only opens; -1 when the kernel does not count them
  uint64_t root_kdev = 0, root_ino = 0;  // the task's root directory (kernel dev_t)
  uint64_t start_boottime_ns = 0;        // its process's start (CLOCK_BOOTTIME)
  uint64_t self_exec_id = 0;             // the task's exec count (task->self_exec_id)
  std::string comm;
  std::string path;  // as the process sees it (relative to its root); empty if unknown
  // NSIMA_EV_KERNEL_DIGEST: the sha256 the hook computed of the content at `stamp` (and only
  // that version: Pipeline::submit puts it in the digest cache under this event's stamp)
  std::optional<std::array<uint8_t, 32>> kernel_sha256;

  dev_t dev() const;  // userspace dev_t (what stat's st_dev holds)
  bool path_known() const { return !(flags & (NSIMA_EV_PATH_TRUNCATED | NSIMA_EV_PATH_ERROR)); }
  bool deleted() const { return flags & NSIMA_EV_DELETED; }
  // Access class bit index (NSIMA_CLASS_*) used by verdicts to silence repeats.
  uint32_t access_class() const;
};

// Decodes one ring-buffer record of `size` bytes. Errors name what is wrong with the record.
Result<Event> decode_event(const void* data, size_t size);

// JSON object (one line) describing the event; used by `nsimactl watch` and logs.
std::string event_to_json(const Event& ev);

// Kernel dev_t <-> userspace dev_t.
dev_t kdev_to_dev(uint64_t kdev);
uint64_t dev_to_kdev(dev_t dev);

}  // namespace nsima

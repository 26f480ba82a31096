// SPDX-License-Identifier: Apache-2.0
#include "common/event.h"

#include <cstdio>

#include <sys/sysmacros.h>

#include <cstddef>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/hex.h"

namespace nsima {

std::string_view hook_name(Hook h) {
  switch (h) {
    case Hook::kFileOpen: return "file_open";
    case Hook::kMmapFile: return "mmap_file";
    case Hook::kBprmCheck: return "bprm_check";
    case Hook::kSetxattr: return "setxattr";
    case Hook::kProtect: return "protect";
  }
  return "unknown";
}

dev_t kdev_to_dev(uint64_t kdev) {
  // include/linux/kdev_t.h: MINORBITS 20
  return makedev(static_cast<unsigned>(kdev >> 20), static_cast<unsigned>(kdev & 0xfffff));
}

uint64_t dev_to_kdev(dev_t dev) {
  return (static_cast<uint64_t>(major(dev)) << 20) | (minor(dev) & 0xfffff);
}

dev_t Event::dev() const { return kdev_to_dev(kdev); }

uint32_t Event::access_class() const {
  switch (hook) {
    case Hook::kFileOpen: return NSIMA_CLASS_FILE(mask);
    case Hook::kMmapFile:
      return (prot & NSIMA_PROT_EXEC) ? NSIMA_CLASS_MMAP_PROT : NSIMA_CLASS_MMAP_REQPROT;
    case Hook::kBprmCheck: return NSIMA_CLASS_BPRM;
    case Hook::kSetxattr: break;  // not an access: no class of its own
    case Hook::kProtect: break;
  }
  return NSIMA_CLASS_BPRM;
}

namespace {

Creds decode_cred(const nsima_cred& c) {
  return Creds{c.uid, c.euid, c.suid, c.gid, c.egid, c.sgid, c.cap_effective, c.fsuid, c.fsgid};
}

std::string bounded_string(const char* s, size_t max) { return std::string(s, strnlen(s, max)); }

constexpr std::string_view kDeletedSuffix = " (deleted)";

}  // namespace

Result<Event> decode_event(const void* data, size_t size) {
  if (size < NSIMA_EVENT_HEADER_SIZE)
    return make_error(EINVAL, "record of " + std::to_string(size) + " bytes is shorter than the " +
                                  std::to_string(NSIMA_EVENT_HEADER_SIZE) + "-byte event header",
                      "ring buffer");
  // The record may be shorter than struct nsima_event (the path is cut); copy the header only.
  nsima_event raw;
  std::memcpy(&raw, data, NSIMA_EVENT_HEADER_SIZE);
  if ((raw.hook < NSIMA_HOOK_FILE_OPEN || raw.hook >= NSIMA_HOOK_MAX) &&
      raw.hook != NSIMA_HOOK_SETXATTR && raw.hook != NSIMA_HOOK_PROTECT)
    return make_error(EINVAL, "unknown hook " + std::to_string(raw.hook), "ring buffer");

  Event ev;
  ev.hook = static_cast<Hook>(raw.hook);
  ev.flags = raw.flags;
  ev.ktime_ns = raw.ktime_ns;
  ev.pid = raw.pid;
  ev.tgid = raw.tgid;
  ev.cgroup_id = raw.cgroup_id;
  ev.ns_id = raw.ns_id;
  ev.mnt_ns = raw.mnt_ns;
  ev.user_ns = raw.user_ns;
  ev.pid_ns = raw.pid_ns;
  ev.cred = decode_cred(raw.cred);
  ev.new_cred = decode_cred(raw.new_cred);
  ev.kdev = raw.dev;
  ev.ino = raw.ino;
  ev.generation = raw.generation;
  ev.i_mode = raw.i_mode;
  ev.i_uid = raw.i_uid;
  ev.i_gid = raw.i_gid;
  ev.stamp = Stamp{raw.stamp.ctime_sec, raw.stamp.ctime_nsec, raw.stamp.i_version,
                   raw.stamp.size};
  ev.fs_magic = raw.fs_magic;
  std::memcpy(ev.fs_uuid.data(), raw.fs_uuid, sizeof raw.fs_uuid);
  ev.fs_name = bounded_string(raw.fs_name, sizeof raw.fs_name);
  ev.f_flags = raw.f_flags;
  ev.f_mode = raw.f_mode;
  ev.mask = raw.mask;
  ev.prot = raw.prot;
  ev.reqprot = raw.reqprot;
  ev.mmap_flags = raw.mmap_flags;
  ev.i_writecount = raw.i_writecount;
  ev.i_readcount = raw.i_readcount;
  ev.root_kdev = raw.root_dev;
  ev.root_ino = raw.root_ino;
  ev.start_boottime_ns = raw.start_boottime;
  ev.self_exec_id = raw.self_exec_id;
  ev.comm = bounded_string(raw.comm, sizeof raw.comm);
  if (raw.flags & NSIMA_EV_KERNEL_DIGEST) {
    std::array<uint8_t, 32> d;
    std::memcpy(d.data(), raw.kernel_sha256, d.size());
    ev.kernel_sha256 = d;
  }

  if (raw.path_len > 0) {
    if (raw.path_len > NSIMA_PATH_MAX ||
        size < NSIMA_EVENT_HEADER_SIZE + static_cast<size_t>(raw.path_len))
      return make_error(EINVAL,
                        "path length " + std::to_string(raw.path_len) + " exceeds the record",
                        "ring buffer");
    const char* p = static_cast<const char*>(data) + NSIMA_EVENT_HEADER_SIZE;
    ev.path = bounded_string(p, static_cast<size_t>(raw.path_len));
    // d_path() appends " (deleted)" to unlinked files; IMA's names never carry it.
    if ((ev.flags & NSIMA_EV_DELETED) && ev.path.size() > kDeletedSuffix.size() &&
        std::string_view(ev.path).ends_with(kDeletedSuffix))
      ev.path.resize(ev.path.size() - kDeletedSuffix.size());
  } else if (!(ev.flags & (NSIMA_EV_PATH_TRUNCATED | NSIMA_EV_PATH_ERROR))) {
    ev.flags |= NSIMA_EV_PATH_ERROR;
  }
  return ev;
}

std::string event_to_json(const Event& ev) {
  nlohmann::json j;
  j["hook"] = hook_name(ev.hook);
  j["pid"] = ev.pid;
  j["tgid"] = ev.tgid;
  j["comm"] = ev.comm;
  j["cgroup_id"] = ev.cgroup_id;
  j["ns_id"] = ev.ns_id;
  j["mnt_ns"] = ev.mnt_ns;
  j["user_ns"] = ev.user_ns;
  j["pid_ns"] = ev.pid_ns;
  j["uid"] = ev.cred.uid;
  j["euid"] = ev.cred.euid;
  j["suid"] = ev.cred.suid;
  j["gid"] = ev.cred.gid;
  j["egid"] = ev.cred.egid;
  j["sgid"] = ev.cred.sgid;
  j["fsuid"] = ev.cred.fsuid;
  j["fsgid"] = ev.cred.fsgid;
  j["cap_effective"] = ev.cred.cap_effective;
  if (ev.hook == Hook::kBprmCheck) {
    j["new_uid"] = ev.new_cred.uid;
    j["new_euid"] = ev.new_cred.euid;
    j["new_suid"] = ev.new_cred.suid;
    j["new_gid"] = ev.new_cred.gid;
    j["new_egid"] = ev.new_cred.egid;
    j["new_sgid"] = ev.new_cred.sgid;
  }
  j["dev"] = static_cast<uint64_t>(ev.dev());
  j["ino"] = ev.ino;
  j["generation"] = ev.generation;
  j["mode"] = ev.i_mode;
  j["fowner"] = ev.i_uid;
  j["fgroup"] = ev.i_gid;
  j["ctime_sec"] = ev.stamp.ctime_sec;
  j["ctime_nsec"] = ev.stamp.ctime_nsec;
  j["i_version"] = ev.stamp.i_version;
  j["size"] = ev.stamp.size;
  {
    char magic[2 + 16 + 1];  // hex, as policies write it (fsmagic=0xef53)
    std::snprintf(magic, sizeof magic, "0x%llx", static_cast<unsigned long long>(ev.fs_magic));
    j["fsmagic"] = magic;
  }
  j["fsname"] = ev.fs_name;
  j["fsuuid"] = to_hex(ev.fs_uuid);
  j["mask"] = ev.mask;
  j["f_flags"] = ev.f_flags;
  j["f_mode"] = ev.f_mode;
  if (ev.hook == Hook::kMmapFile) {
    j["prot"] = ev.prot;
    j["reqprot"] = ev.reqprot;
    j["mmap_flags"] = ev.mmap_flags;
  }
  j["writers"] = ev.i_writecount;
  j["readers"] = ev.i_readcount;
  j["root_dev"] = static_cast<uint64_t>(kdev_to_dev(ev.root_kdev));
  j["root_ino"] = ev.root_ino;
  j["start_boottime"] = ev.start_boottime_ns;
  j["path"] = ev.path;
  j["flags"] = ev.flags;
  if (ev.kernel_sha256) j["kernel_sha256"] = to_hex(*ev.kernel_sha256);
  if (ev.flags & NSIMA_EV_PATH_TRUNCATED) j["path_truncated"] = true;
  if (ev.flags & NSIMA_EV_DELETED) j["deleted"] = true;
  if (ev.flags & NSIMA_EV_DENIED) j["denied"] = true;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace nsima

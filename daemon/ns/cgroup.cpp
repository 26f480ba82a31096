// SPDX-License-Identifier: Apache-2.0
#include "ns/cgroup.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace nsima::ns {

Result<uint64_t> cgroup_id_of(const std::string& path) {
  struct statfs sfs;
  if (statfs(path.c_str(), &sfs) != 0)
    return make_error(errno, std::string("cannot stat: ") + strerror(errno), path);
  if (static_cast<unsigned long>(sfs.f_type) != CGROUP2_SUPER_MAGIC)
    return make_error(EINVAL, "not a cgroup v2 directory (mount cgroup2, e.g. at /sys/fs/cgroup)",
                      path);
  // The cgroup id is the kernfs node id, exported as an 8-byte file handle (as systemd and
  // bpftool read it).
  struct {
    struct file_handle fh;
    uint64_t id;
  } h{};
  h.fh.handle_bytes = sizeof(uint64_t);
  int mount_id = 0;
  if (name_to_handle_at(AT_FDCWD, path.c_str(), &h.fh, &mount_id, 0) != 0)
    return make_error(errno, std::string("name_to_handle_at failed: ") + strerror(errno), path);
  uint64_t id;
  std::memcpy(&id, h.fh.f_handle, sizeof id);
  return id;
}

Result<std::string> canonical_dir(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::canonical(path, ec);
  if (ec) return make_error(ec.value(), ec.message(), path);
  if (!std::filesystem::is_directory(p, ec)) return make_error(ENOTDIR, "not a directory", path);
  return p.string();
}

Result<std::string> cgroup_of_pid(int pid, const std::string& cgroup_root) {
  std::string file = "/proc/" + std::to_string(pid) + "/cgroup";
  std::ifstream in(file);
  if (!in) return make_error(ESRCH, "cannot read (process gone?)", file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) {
      std::string rel = line.substr(3);
      return rel == "/" ? cgroup_root : cgroup_root + rel;
    }
  }
  return make_error(ENOENT, "no cgroup v2 entry", file);
}

}  // namespace nsima::ns

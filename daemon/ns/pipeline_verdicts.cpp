// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/hex.h"
#include "common/log.h"
#include "measure/list_format.h"
#include "measure/template.h"
#include "ns/cgroup.h"
#include "ns/pipeline.h"
#include "ns/pipeline_actor.h"
#include "tpm/esys_tpm.h"
#include "tpm/pcr_policy.h"

namespace nsima::ns {

namespace fs = std::filesystem;

namespace {

// The first live process in `dir` or a cgroup below it (at most a few hundred directories).
pid_t live_process_in(const std::string& dir) {
  std::vector<std::string> todo{dir};
  for (size_t i = 0; i < todo.size() && i < 512; ++i) {
    FILE* f = fopen((todo[i] + "/cgroup.procs").c_str(), "re");
    if (f) {
      long pid = 0;
      while (fscanf(f, "%ld", &pid) == 1)
        if (pid > 0 && kill(static_cast<pid_t>(pid), 0) == 0) {
          fclose(f);
          return static_cast<pid_t>(pid);
        }
      fclose(f);
    }
    std::error_code ec;
    for (auto& d : fs::directory_iterator(todo[i], ec))
      if (d.is_directory(ec)) todo.push_back(d.path().string());
  }
  return -1;
}

// Opens `path` for reading inside `root_fd` as a process with that root would: symlinks cannot
// leave it, magic links are refused, and only a regular file is opened (never a FIFO or device).
Result<UniqueFd> open_regular_in(int root_fd, const std::string& path) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long p = -1;
  for (int i = 0; i < 8; ++i) {
    p = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
    if (p >= 0 || errno != EAGAIN) break;
  }
  if (p < 0) return make_error(errno, std::string("cannot open: ") + strerror(errno), path);
  UniqueFd pathfd(static_cast<int>(p));
  struct stat st;
  if (fstat(pathfd.get(), &st) != 0) return make_error(errno, strerror(errno), path);
  if (!S_ISREG(st.st_mode)) return make_error(EINVAL, "is not a regular file", path);
  std::string self = "/proc/self/fd/" + std::to_string(pathfd.get());
  UniqueFd fd(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) return make_error(errno, std::string("cannot open: ") + strerror(errno), path);
  return fd;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// operator verdicts

Result<void> Pipeline::set_file_verdict(const std::string& cgroup_path, const std::string& file,
                                        bool allow, const std::string& root) {
  // An operator verdict never creates a namespace as a side effect.
  auto ns_id = ensure_namespace(cgroup_path, /*create=*/false);
  if (!ns_id) return tl::unexpected(ns_id.error());
  if (!maps_) return make_error(ENOTSUP, "no BPF programs loaded", file);
  auto where = call([&]() -> std::pair<std::string, bool> {
    Namespace* n = reg_.find(*ns_id);
    return {n ? n->cgroup_path : "", n && n->is_host()};
  });
  // The file as the namespace's processes see it.
  UniqueFd root_fd;
  std::string root_desc;
  if (!root.empty()) {
    root_fd.reset(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    root_desc = root;
  } else if (where.second) {
    root_fd.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    root_desc = "/";
  } else {
    pid_t pid = live_process_in(where.first);
    if (pid < 0)
      return make_error(ESRCH,
                        "namespace " + std::to_string(*ns_id) +
                            " has no process to resolve the path in; pass the container's root "
                            "directory as nsimad sees it (--root DIR)",
                        file);
    root_desc = "/proc/" + std::to_string(pid) + "/root";
    root_fd.reset(::open(root_desc.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  }
  if (!root_fd)
    return make_error(errno, std::string("cannot open the root: ") + strerror(errno), root_desc);
  // Open the file ourselves: the hook records the kernel's key and stamp of nsimad's own opens
  // (i_version is invisible to userspace), keyed by our thread id.
  auto fd = open_regular_in(root_fd.get(), file);
  if (!fd) {
    Error e = fd.error();
    e.where = root_desc + ": " + file;
    return tl::unexpected(e);
  }
  struct stat st;
  if (fstat(fd->get(), &st) != 0) return make_error(errno, strerror(errno), file);
  auto self = maps_->self_open(static_cast<uint32_t>(syscall(SYS_gettid)));
  if (!self || self->ino != st.st_ino)
    return make_error(EIO, "the kernel did not report the stamp of nsimad's open", file);
  FileRef f{self->dev, self->ino, self->generation};
  Stamp stamp = capture::from_abi(self->stamp);
  auto r = call([&]() -> Result<void> {
    Namespace* n = reg_.find(*ns_id);
    if (!n) return make_error(ENOENT, "namespace deleted meanwhile", std::to_string(*ns_id));
    if (!allow) return verdicts_.deny(n->id, f, stamp, file, reg_.subtree_ids(n));
    auto chain = reg_.chain_ids(n);
    std::vector<uint32_t> ancestors(chain.begin() + 1, chain.end());
    return verdicts_.allow(n->id, f, ancestors, reg_.subtree_ids(n));
  });
  if (!r) return r;
  logger("ns")->info("{} {} ({}) in namespace {}", allow ? "allow" : "deny", file, root_desc,
                     *ns_id);
  return {};
}

std::vector<Override> Pipeline::overrides() { return verdicts_.overrides(); }

}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
#include "service/instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace nsima::service {

Result<InstanceLock> InstanceLock::acquire(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) ::chmod(dir.c_str(), 0700);
  if (ec) return make_error(ec.value(), "cannot create the run directory: " + ec.message(), dir);
  std::string path = dir + "/nsimad.pid";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) return make_error(errno, std::string("cannot open: ") + strerror(errno), path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return make_error(errno, std::string("flock: ") + strerror(errno), path);
    char buf[32] = {};
    ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
    long pid = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
    std::string who = pid > 0 ? "pid " + std::to_string(pid) : "its pid is not in the file yet";
    return make_error(EBUSY, "nsimad is already running (" + who + "; it holds " + path + ")");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    return make_error(errno, std::string("cannot write the pid: ") + strerror(errno), path);
  return InstanceLock(std::move(fd), std::move(path));
}

}  // namespace nsima::service

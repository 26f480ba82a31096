// SPDX-License-Identifier: Apache-2.0
#include "common/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace nsima {

Result<void> write_file_atomic(const std::string& path, std::string_view body, mode_t mode) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return make_error(errno, std::string("cannot write: ") + strerror(errno), tmp);
  size_t done = 0;
  while (done < body.size()) {
    ssize_t n = ::write(fd, body.data() + done, body.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      ::close(fd);
      return make_error(err, std::string("cannot write: ") + strerror(err), tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return make_error(err, std::string("fsync: ") + strerror(err), tmp);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(errno, std::string("cannot rename into place: ") + strerror(errno), path);
  return {};
}

Result<void> write_dir_atomic(const std::string& dir, const std::vector<NamedFile>& files,
                              const std::string& tmp_tag) {
  namespace fs = std::filesystem;
  const fs::path tmp = dir + "." + tmp_tag;
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return make_error(ec.value(), "cannot create: " + ec.message(), tmp.string());
  for (const auto& [name, text] : files)
    if (auto w = write_file_atomic((tmp / name).string(), text); !w) return w;
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir, ec);
  if (ec) return make_error(ec.value(), "cannot rename into place: " + ec.message(), dir);
  return {};
}

}  // namespace nsima

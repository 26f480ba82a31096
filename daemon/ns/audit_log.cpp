// SPDX-License-Identifier: Apache-2.0
#include "ns/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace nsima::ns {

Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return make_error(errno, std::string("cannot open audit log: ") + strerror(errno), path);
  return std::unique_ptr<AuditLog>(new AuditLog(path, std::move(fd)));
}

Result<void> AuditLog::append(const nlohmann::json& record) {
  std::string line;
  try {
    line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (...) {
    errors_++;
    return make_error(EINVAL, "audit record cannot be encoded", path_);
  }
  line += '\n';
  struct stat st {};
  const off_t before = ::fstat(fd_.get(), &st) == 0 ? st.st_size : -1;
  ssize_t n;
  do {
    n = ::write(fd_.get(), line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(line.size())) {
    lines_++;
    return {};
  }
  int err = n < 0 ? errno : ENOSPC;
  // A partial line would glue to the next record: cut it away (the pipeline thread is the only
  // writer, so `before` is still the end of the last whole line).
  if (n > 0 && before >= 0) (void)::ftruncate(fd_.get(), before);
  errors_++;
  return make_error(err, std::string("audit log append failed: ") + strerror(err), path_);
}

}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
// A namespace's audit log: <state_dir>/ns/<name>/audit.log, one JSON object per line (audit rules
// and every appraisal that failed or was denied). Appended by the pipeline thread with one
// write(2) per line on an O_APPEND descriptor, so a reader never sees half a record from a
// completed write; a short write (ENOSPC) is cut back to the last whole line.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nsima::ns {

inline constexpr const char* kAuditLogFile = "audit.log";

class AuditLog {
 public:
  static Result<std::unique_ptr<AuditLog>> open(const std::string& path);
  // Appends `record` as one line. Never throws; a failure is counted and returned.
  Result<void> append(const nlohmann::json& record);
  const std::string& path() const { return path_; }
  uint64_t lines() const { return lines_; }
  uint64_t errors() const { return errors_; }

 private:
  AuditLog(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
  uint64_t lines_ = 0, errors_ = 0;
};

}  // namespace nsima::ns

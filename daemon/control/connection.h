// SPDX-License-Identifier: Apache-2.0
// One end of a control-socket connection: newline-delimited JSON lines over an AF_UNIX stream.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nsima::control {

class Connection {
 public:
  explicit Connection(UniqueFd fd) : fd_(std::move(fd)) {}

  // Writes one line (a newline is appended). False if the peer is gone.
  bool send_line(const std::string& line);
  // Invalid UTF-8 in a string (a path is bytes) is replaced by U+FFFD instead of throwing.
  bool send(const nlohmann::json& j) {
    return send_line(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  // Reads one line (without the newline). nullopt on EOF, error, timeout or a line longer than
  // `max_bytes`; `error()` then says which.
  std::optional<std::string> read_line(size_t max_bytes,
                                       std::chrono::milliseconds timeout = std::chrono::hours(1));
  // True once the peer has closed its end (checked without blocking).
  bool peer_closed();
  const std::string& error() const { return error_; }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  std::string buf_;
  std::string error_;
};

// Connects to nsimad's socket. Errors say whether nsimad is not running or access is refused.
Result<Connection> connect_to(const std::string& socket_path);

}  // namespace nsima::control

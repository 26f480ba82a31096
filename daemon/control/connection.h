// SPDX-License-Identifier: Apache-2.0
// One end of a control-socket connection: newline-delimited JSON lines over an AF_UNIX stream.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nsima::control {

// Request bytes buffered across every connection of a server (lines not yet complete): each
// connection takes from it as it reads and gives back when a line is consumed or it closes.
struct ByteBudget {
  explicit ByteBudget(size_t max) : limit(max) {}
  const size_t limit;
  std::atomic<size_t> used{0};
};

// read_line's error() texts that callers tell apart.
inline constexpr const char* kErrTimedOut = "timed out";
inline constexpr const char* kErrClosed = "connection closed";

class Connection {
 public:
  explicit Connection(UniqueFd fd) : fd_(std::move(fd)) {}
  Connection(Connection&& o) noexcept;
  Connection& operator=(Connection&& o) noexcept;
  ~Connection() { release(held_); }

  // Server side, before the first read: buffered bytes count against `budget`; a request line
  // begun must end within `line_timeout` (a client that sends half a line and waits is cut off).
  void set_budget(ByteBudget* budget) { budget_ = budget; }
  void set_line_timeout(std::chrono::milliseconds t) { line_timeout_ = t; }
  // Bytes of a line received but not yet ended by its newline.
  size_t buffered() const { return buf_.size(); }

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
  void release(size_t n);

  UniqueFd fd_;
  std::string buf_;
  std::string error_;
  ByteBudget* budget_ = nullptr;
  size_t held_ = 0;  // bytes of buf_ taken from budget_
  std::chrono::milliseconds line_timeout_{0};  // 0: none
  std::chrono::steady_clock::time_point line_started_{};  // first byte of the pending line
};

// Connects to nsimad's socket. Errors say whether nsimad is not running or access is refused.
Result<Connection> connect_to(const std::string& socket_path);

}  // namespace nsima::control

// SPDX-License-Identifier: Apache-2.0
#include "control/connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace nsima::control {

Connection::Connection(Connection&& o) noexcept
    : fd_(std::move(o.fd_)),
      buf_(std::move(o.buf_)),
      error_(std::move(o.error_)),
      budget_(o.budget_),
      held_(o.held_),
      line_timeout_(o.line_timeout_),
      line_started_(o.line_started_) {
  o.budget_ = nullptr;
  o.held_ = 0;
  o.buf_.clear();
}

Connection& Connection::operator=(Connection&& o) noexcept {
  if (this == &o) return *this;
  release(held_);
  fd_ = std::move(o.fd_);
  buf_ = std::move(o.buf_);
  error_ = std::move(o.error_);
  budget_ = o.budget_;
  held_ = o.held_;
  line_timeout_ = o.line_timeout_;
  line_started_ = o.line_started_;
  o.budget_ = nullptr;
  o.held_ = 0;
  o.buf_.clear();
  return *this;
}

void Connection::release(size_t n) {
  n = std::min(n, held_);
  if (budget_ && n) budget_->used.fetch_sub(n);
  held_ -= n;
}

bool Connection::send_line(const std::string& line) {
  std::string out = line + "\n";
  size_t off = 0;
  while (off < out.size()) {
    ssize_t n = ::send(fd_.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = strerror(errno);
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

std::optional<std::string> Connection::read_line(size_t max_bytes,
                                                  std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      release(held_ - std::min(held_, buf_.size()));  // the budget holds what stays buffered
      line_started_ = Clock::now();
      return line;
    }
    if (buf_.size() > max_bytes) {
      error_ = "request line longer than " + std::to_string(max_bytes) + " bytes";
      return std::nullopt;
    }
    auto wait = timeout;
    if (line_timeout_.count() > 0 && !buf_.empty()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          line_started_ + line_timeout_ - Clock::now());
      if (left.count() <= 0) {
        error_ = "request line not completed within " + std::to_string(line_timeout_.count()) +
                 " ms";
        return std::nullopt;
      }
      wait = std::min(wait, left);
    }
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(wait.count()));
    if (r == 0) {
      if (wait < timeout) continue;  // the line deadline: checked above
      error_ = kErrTimedOut;
      return std::nullopt;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      error_ = strerror(errno);
      return std::nullopt;
    }
    char tmp[65536];
    ssize_t n = ::recv(fd_.get(), tmp, sizeof tmp, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = strerror(errno);
      return std::nullopt;
    }
    if (n == 0) {
      error_ = kErrClosed;
      if (!buf_.empty()) {  // a last line without newline
        std::string line;
        line.swap(buf_);
        release(held_);
        return line;
      }
      return std::nullopt;
    }
    if (budget_) {
      size_t before = budget_->used.fetch_add(static_cast<size_t>(n));
      if (before + static_cast<size_t>(n) > budget_->limit) {
        budget_->used.fetch_sub(static_cast<size_t>(n));
        error_ = "nsimad's request buffers are full (" + std::to_string(budget_->limit) +
                 " bytes across all connections): try again";
        return std::nullopt;
      }
      held_ += static_cast<size_t>(n);
    }
    if (buf_.empty()) line_started_ = Clock::now();
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

bool Connection::peer_closed() {
  pollfd p{fd_.get(), POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
  if (p.revents & POLLIN) {
    char c;
    ssize_t n = ::recv(fd_.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0;
  }
  return false;
}

Result<Connection> connect_to(const std::string& socket_path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return make_error(errno, strerror(errno), "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path)
    return make_error(ENAMETOOLONG, "socket path too long", socket_path);
  std::strcpy(addr.sun_path, socket_path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    std::string why = e == ENOENT || e == ECONNREFUSED
                          ? "nsimad is not running (no listener on this socket)"
                      : e == EACCES ? "permission denied (nsimactl must run as root)"
                                    : strerror(e);
    return make_error(e, why, socket_path);
  }
  return Connection(std::move(fd));
}

}  // namespace nsima::control

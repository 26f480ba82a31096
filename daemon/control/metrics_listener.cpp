// SPDX-License-Identifier: Apache-2.0
#include "control/metrics_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace nsima::control {
namespace {

constexpr size_t kMaxRequest = 8192;

tl::unexpected<Error> refused(const std::string& addr, const std::string& why) {
  return make_error(EINVAL, why, "[metrics] listen " + addr);
}

// "HOST:PORT" -> a loopback socket address, or why not.
Result<sockaddr_storage> loopback_address(const std::string& addr, socklen_t* len) {
  const size_t colon = addr.rfind(':');
  if (colon == std::string::npos || colon + 1 == addr.size())
    return refused(addr, "is not HOST:PORT (e.g. 127.0.0.1:9464)");
  std::string host = addr.substr(0, colon), port_s = addr.substr(colon + 1);
  unsigned long port = 0;
  for (char c : port_s) {
    if (c < '0' || c > '9' || port > 65535) return refused(addr, "has a port that is not 0-65535");
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port > 65535) return refused(addr, "has a port that is not 0-65535");
  sockaddr_storage ss{};
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &s6->sin6_addr) != 1)
      return refused(addr, "has an IPv6 address that does not parse");
    if (!IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
      return refused(addr, "is not a loopback address ([::1]): the metrics listener has no "
                           "authentication and its counters name namespaces and containers");
    *len = sizeof(sockaddr_in6);
    return ss;
  }
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  s4->sin_family = AF_INET;
  s4->sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &s4->sin_addr) != 1)
    return refused(addr, "has a host that is not an IPv4 address, [IPv6] or localhost");
  if ((ntohl(s4->sin_addr.s_addr) >> 24) != 127)
    return refused(addr, "is not a loopback address (127.0.0.0/8): the metrics listener has no "
                         "authentication and its counters name namespaces and containers");
  *len = sizeof(sockaddr_in);
  return ss;
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

std::string response(int code, const char* reason, const std::string& type,
                     const std::string& body) {
  return "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
}

}  // namespace

Result<std::unique_ptr<MetricsListener>> MetricsListener::start(const std::string& addr,
                                                                 Body body,
                                                                 std::chrono::milliseconds timeout) {
  socklen_t len = 0;
  auto ss = loopback_address(addr, &len);
  if (!ss) return tl::unexpected(ss.error());
  int fd = ::socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return make_error(errno, std::string("socket: ") + std::strerror(errno), addr);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&*ss), len) != 0 || ::listen(fd, 16) != 0) {
    int e = errno;
    ::close(fd);
    return make_error(e, std::string("cannot listen: ") + std::strerror(e), "[metrics] listen " + addr);
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  int port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  std::unique_ptr<MetricsListener> l(new MetricsListener(fd, port, std::move(body), timeout));
  if (::pipe2(l->wake_, O_CLOEXEC | O_NONBLOCK) != 0)
    return make_error(errno, std::string("pipe: ") + std::strerror(errno), addr);
  l->thread_ = std::thread([p = l.get()] { p->run(); });
  return l;
}

MetricsListener::MetricsListener(int fd, int port, Body body, std::chrono::milliseconds timeout)
    : fd_(fd), port_(port), body_(std::move(body)), timeout_(timeout) {}

MetricsListener::~MetricsListener() {
  stop();
  ::close(fd_);
  for (int f : wake_)
    if (f >= 0) ::close(f);
}

void MetricsListener::stop() {
  if (!thread_.joinable()) return;
  char c = 1;
  (void)!::write(wake_[1], &c, 1);
  thread_.join();
}

void MetricsListener::run() {
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EMFILE || errno == ENFILE) ::poll(nullptr, 0, 50);  // never spin
      continue;
    }
    serve(c);
    ::close(c);
  }
}

// One request: its head must arrive within the timeout and kMaxRequest bytes.
void MetricsListener::serve(int c) {
  std::string req;
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return send_all(c, response(408, "Request Timeout", "text/plain", "request not completed in time\n"));
    pollfd p[2] = {{c, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(p, 2, static_cast<int>(left.count())) <= 0) continue;
    if (p[1].revents) return;
    char buf[2048];
    ssize_t n = ::recv(c, buf, sizeof buf, 0);
    if (n <= 0) return;
    req.append(buf, static_cast<size_t>(n));
    if (req.size() > kMaxRequest)
      return send_all(c, response(431, "Request Header Fields Too Large", "text/plain", "request too large\n"));
  }
  const std::string_view line(req.data(), req.find_first_of("\r\n"));
  const bool get = line.starts_with("GET "), head = line.starts_with("HEAD ");
  std::string_view target = line.substr(line.find(' ') + 1);
  target = target.substr(0, target.find(' '));
  if (!get && !head)
    return send_all(c, response(405, "Method Not Allowed", "text/plain", "only GET /metrics\n"));
  if (target != "/metrics" && !target.starts_with("/metrics?"))
    return send_all(c, response(404, "Not Found", "text/plain", "only GET /metrics\n"));
  auto body = body_();
  std::string r = body ? response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", *body)
                       : response(503, "Service Unavailable", "text/plain", body.error().to_string() + "\n");
  if (head) r = r.substr(0, r.find("\r\n\r\n") + 4);
  served_.fetch_add(1);
  send_all(c, r);
}

}  // namespace nsima::control

// SPDX-License-Identifier: Apache-2.0
// The loopback metrics listener: GET /metrics answers the body (Prometheus content type), other
// paths and methods are refused, a non-loopback address is refused at start with a sentence, a
// client that sends half a request is cut off after the request timeout and the next scrape is
// served, a failing body is a 503 with its sentence.
#include "control/metrics_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include <gtest/gtest.h>

namespace nsima::control {
namespace {

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << strerror(errno);
  return fd;
}

// Sends REQUEST, reads the whole answer (the listener closes after each), 10 s at most.
std::string fetch(int port, const std::string& request) {
  int fd = connect_to(port);
  EXPECT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

TEST(MetricsListener, GetMetricsServesTheBody) {
  auto l = MetricsListener::start("127.0.0.1:0", [] {
    return Result<std::string>("# HELP nsima_x x\n# TYPE nsima_x gauge\nnsima_x 1\n");
  });
  ASSERT_TRUE(l) << l.error().to_string();
  const int port = (*l)->port();
  ASSERT_GT(port, 0);
  std::string r = fetch(port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(r,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            "Content-Length: 48\r\nConnection: close\r\n\r\n"
            "# HELP nsima_x x\n# TYPE nsima_x gauge\nnsima_x 1\n");
  EXPECT_EQ(fetch(port, "GET / HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u);
  EXPECT_EQ(fetch(port, "POST /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405 ", 0), 0u);
  std::string head = fetch(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n") << "HEAD has no body";
  EXPECT_EQ((*l)->served(), 2u);
}

TEST(MetricsListener, OnlyLoopbackAddresses) {
  for (const char* bad : {"0.0.0.0:9464", "10.0.0.1:9464", "[::]:9464"}) {
    auto l = MetricsListener::start(bad, [] { return Result<std::string>(""); });
    ASSERT_FALSE(l) << bad;
    EXPECT_NE(l.error().to_string().find("is not a loopback address"), std::string::npos)
        << l.error().to_string();
    EXPECT_EQ(l.error().where, std::string("[metrics] listen ") + bad);
  }
  auto noport = MetricsListener::start("127.0.0.1", [] { return Result<std::string>(""); });
  ASSERT_FALSE(noport);
  EXPECT_EQ(noport.error().to_string(),
            "[metrics] listen 127.0.0.1: is not HOST:PORT (e.g. 127.0.0.1:9464)");
  auto name = MetricsListener::start("example.org:80", [] { return Result<std::string>(""); });
  ASSERT_FALSE(name);
  auto local = MetricsListener::start("localhost:0", [] { return Result<std::string>("x"); });
  EXPECT_TRUE(local) << local.error().to_string();
}

TEST(MetricsListener, AStalledClientIsCutOffAndTheNextScrapeServed) {
  auto l = MetricsListener::start(
      "127.0.0.1:0", [] { return Result<std::string>("nsima_up 1\n"); },
      std::chrono::milliseconds(300));
  ASSERT_TRUE(l) << l.error().to_string();
  int stalled = connect_to((*l)->port());
  ASSERT_EQ(::send(stalled, "GET /metr", 9, MSG_NOSIGNAL), 9);  // half a request, then nothing
  auto t0 = std::chrono::steady_clock::now();
  std::string r = fetch((*l)->port(), "GET /metrics HTTP/1.1\r\n\r\n");
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_NE(r.find("\r\n\r\nnsima_up 1\n"), std::string::npos) << r;
  EXPECT_LT(waited, std::chrono::seconds(5));
  char buf[256];
  ssize_t n = ::recv(stalled, buf, sizeof buf, 0);  // the stalled one got its 408 and was closed
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)).rfind("HTTP/1.1 408 ", 0), 0u);
  ::close(stalled);
}

TEST(MetricsListener, AFailingBodyIsA503WithItsSentence) {
  auto l = MetricsListener::start("127.0.0.1:0", [] {
    return Result<std::string>(tl::unexpected(Error{EIO, "BPF map stats unreadable", "maps"}));
  });
  ASSERT_TRUE(l) << l.error().to_string();
  std::string r = fetch((*l)->port(), "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("\r\n\r\nmaps: BPF map stats unreadable\n"), std::string::npos) << r;
}

}  // namespace
}  // namespace nsima::control

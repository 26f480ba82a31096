// SPDX-License-Identifier: Apache-2.0
// The opt-in loopback listener for Prometheus scrapers ([metrics] listen = "127.0.0.1:9464"):
// `GET /metrics` answers the same text as `nsimactl metrics`. Loopback only: the counters name
// namespaces and containers, and the listener has no authentication (a scraper elsewhere goes
// through a local agent or an SSH tunnel). One thread, one client at a time, each bounded: a
// request must arrive whole within 2 s and within 8 KiB, so a stalled client delays the next
// scrape by at most 2 s and never reaches nsimad's control socket or pipeline.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/result.h"

namespace nsima::control {

class MetricsListener {
 public:
  // What GET /metrics answers (a failure is answered 503 with its sentence).
  using Body = std::function<Result<std::string>()>;

  // ADDR is "127.0.0.1:PORT", any 127.0.0.0/8 address, "localhost:PORT" or "[::1]:PORT"; port 0
  // picks a free one (port()). Anything else is refused with a sentence naming ADDR.
  static Result<std::unique_ptr<MetricsListener>> start(const std::string& addr, Body body,
                                                        std::chrono::milliseconds request_timeout =
                                                            std::chrono::milliseconds(2000));
  ~MetricsListener();
  MetricsListener(const MetricsListener&) = delete;
  MetricsListener& operator=(const MetricsListener&) = delete;

  int port() const { return port_; }
  uint64_t served() const { return served_.load(); }
  void stop();

 private:
  MetricsListener(int fd, int port, Body body, std::chrono::milliseconds timeout);
  void run();
  void serve(int client);

  int fd_;
  int port_;
  int wake_[2] = {-1, -1};
  Body body_;
  std::chrono::milliseconds timeout_;
  std::atomic<uint64_t> served_{0};
  std::thread thread_;
};

}  // namespace nsima::control

// SPDX-License-Identifier: Apache-2.0
#include "service/heartbeat.h"

#include <systemd/sd-daemon.h>

#include <algorithm>

namespace nsima::service {

std::chrono::microseconds watchdog_interval() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) return std::chrono::microseconds(usec);
  return std::chrono::microseconds(0);
}

Heartbeat::Heartbeat(std::function<std::string()> status, std::chrono::milliseconds status_every)
    : status_(std::move(status)), period_(status_every) {
  auto wd = watchdog_interval();
  if (wd.count() > 0) {
    watchdog_ = true;
    period_ = std::min(period_, std::chrono::duration_cast<std::chrono::milliseconds>(wd / 3));
    period_ = std::max(period_, std::chrono::milliseconds(10));
  }
  thread_ = std::thread([this] { run(); });
}

Heartbeat::~Heartbeat() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Heartbeat::run() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    l.unlock();
    std::string text = status_();  // blocks while the pipeline thread does not answer
    std::string msg = "STATUS=" + text;
    if (watchdog_) msg += "\nWATCHDOG=1";
    sd_notify(0, msg.c_str());
    l.lock();
    cv_.wait_for(l, period_, [this] { return stop_; });
  }
}

}  // namespace nsima::service

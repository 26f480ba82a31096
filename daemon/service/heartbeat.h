// SPDX-License-Identifier: Apache-2.0
// systemd service protocol (sd_notify(3)) beyond READY/STOPPING: a thread that, while nsimad
// runs, sends STATUS= (a one-line summary) and, when the unit sets WatchdogSec=, WATCHDOG=1 at a
// third of the watchdog interval. Each beat first calls the probe, which goes through the
// pipeline thread: a pipeline that stops answering stops the beats, and systemd restarts nsimad
// (Restart=on-failure) instead of leaving a daemon that measures nothing. Without NOTIFY_SOCKET
// (nsimad run by hand) every sd_notify call is a no-op and the thread only sleeps.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace nsima::service {

// The watchdog interval systemd asked for (WATCHDOG_USEC for this pid), or 0 when none.
std::chrono::microseconds watchdog_interval();

class Heartbeat {
 public:
  // `status` is called on the heartbeat thread; it returns the STATUS= text.
  explicit Heartbeat(std::function<std::string()> status,
                     std::chrono::milliseconds status_every = std::chrono::seconds(5));
  ~Heartbeat();  // stops the thread
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // How often a beat is sent (the smaller of status_every and a third of the watchdog).
  std::chrono::milliseconds period() const { return period_; }

 private:
  void run();

  std::function<std::string()> status_;
  std::chrono::milliseconds period_;
  bool watchdog_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace nsima::service

// SPDX-License-Identifier: Apache-2.0
// The ring-buffer consumer: its own thread polls nsima's ring buffer, decodes each record into
// an Event and hands it to a sink. The sink may block (a full pipeline queue): the ring buffer
// then fills and the hooks count drops, which the daemon turns into violation entries.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>

#include "common/event.h"
#include "common/result.h"

struct ring_buffer;

namespace nsima::capture {

class EventSource {
 public:
  using Sink = std::function<void(Event&&)>;

  EventSource(int ringbuf_fd, Sink sink);
  ~EventSource();
  EventSource(const EventSource&) = delete;
  EventSource& operator=(const EventSource&) = delete;

  Result<void> start();
  void stop();  // joins the thread; records still in the ring buffer are consumed first

  // Test/diagnostic knob: sleep this long after each poll (simulates a slow consumer).
  void set_poll_delay(std::chrono::milliseconds d) { poll_delay_ = d; }

  uint64_t decoded() const { return decoded_.load(std::memory_order_relaxed); }
  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }

  // The libbpf sample callback (public for the decode benchmark). `ctx` is the EventSource.
  static int on_sample(void* ctx, void* data, size_t size) noexcept;

 private:
  void run();

  int fd_;
  Sink sink_;
  ring_buffer* rb_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::chrono::milliseconds poll_delay_{0};
  std::atomic<uint64_t> decoded_{0};
  std::atomic<uint64_t> errors_{0};
};

}  // namespace nsima::capture

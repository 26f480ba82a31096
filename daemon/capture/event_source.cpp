// SPDX-License-Identifier: Apache-2.0
#include "capture/event_source.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <string.h>

#include "common/log.h"

namespace nsima::capture {

EventSource::EventSource(int ringbuf_fd, Sink sink) : fd_(ringbuf_fd), sink_(std::move(sink)) {}

EventSource::~EventSource() {
  stop();
  if (rb_) ring_buffer__free(rb_);
}

int EventSource::on_sample(void* ctx, void* data, size_t size) noexcept {
  auto* self = static_cast<EventSource*>(ctx);
  auto ev = decode_event(data, size);
  if (!ev) {
    // Rate-limited by construction: a malformed record means an ABI mismatch, logged once.
    if (self->errors_.fetch_add(1, std::memory_order_relaxed) == 0)
      logger("capture")->error("undecodable event: {}", ev.error().to_string());
    return 0;
  }
  self->decoded_.fetch_add(1, std::memory_order_relaxed);
  try {
    self->sink_(std::move(*ev));
  } catch (const std::exception& e) {
    logger("capture")->error("event sink failed: {}", e.what());
  }
  return 0;
}

Result<void> EventSource::start() {
  rb_ = ring_buffer__new(fd_, &EventSource::on_sample, this, nullptr);
  if (!rb_)
    return make_error(errno, std::string("cannot open the ring buffer: ") + strerror(errno),
                      "ring_buffer__new");
  thread_ = std::thread([this] { run(); });
  return {};
}

void EventSource::stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  thread_.join();
  if (rb_) ring_buffer__consume(rb_);  // what the hooks submitted before detach
}

void EventSource::run() {
  auto log = logger("capture");
  while (!stop_.load(std::memory_order_relaxed)) {
    int n = ring_buffer__poll(rb_, 100 /* ms */);
    if (n < 0 && n != -EINTR) {
      log->error("ring_buffer__poll failed: {}", strerror(-n));
      break;
    }
    if (poll_delay_.count() > 0) std::this_thread::sleep_for(poll_delay_);
  }
}

}  // namespace nsima::capture

// SPDX-License-Identifier: Apache-2.0
// The ring-buffer consumer: its own thread waits on nsima's ring buffer (epoll, with an eventfd
// to be woken on request), decodes each record into an Event numbered 1, 2, 3 ... (ev.seq) and
// hands it to a sink. The sink may block (a full pipeline queue): the ring buffer then fills
// and the hooks count drops, which the daemon turns into violation entries.
//
// The ring buffer may be a pinned one that outlives nsimad: records a previous nsimad left
// unconsumed are the first this one hands over (the consumer position lives in the map).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "common/event.h"
#include "capture/journal.h"
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

  // Every record is copied into `journal` before the ring buffer forgets it, and the journal's
  // records left by a previous nsimad are handed to the sink first, in start(). The pipeline acks
  // each seq once it is recorded. Set before start(); may be null.
  void set_journal(Journal* journal) { journal_ = journal; }
  Result<void> start();
  // Joins the thread. With `drain`, the records still in the ring buffer are consumed first
  // (the hooks were detached: nobody else will read them); without, they stay in the ring
  // buffer for the next nsimad (pinned hooks).
  void stop(bool drain = true);

  // Barrier, callable from any thread: returns once every record committed to the ring buffer
  // before the call has been decoded and handed to the sink, with the highest seq handed so
  // far (>= the seq of each such record). ETIMEDOUT (saying how many bytes were still
  // unconsumed) if the consumer could not get there in `timeout` (a blocked sink).
  Result<uint64_t> sync(std::chrono::milliseconds timeout);

  // Bytes committed or being written by the hooks and not yet consumed.
  uint64_t pending_bytes() const;

  // Where the intake stands, without waiting; callable from any thread, nullopt until start()
  // mapped the ring buffer. `committed`: the producer position now (every record committed
  // before the call lies below it). `consumed`: the consumer position, and `handed_seq` a seq
  // >= that of every record below it (each was handed to the sink). A record committed before
  // `committed` was read is handed once a later progress() has consumed >= committed.
  struct Progress {
    uint64_t committed = 0, consumed = 0, handed_seq = 0;
  };
  std::optional<Progress> progress() const;

  // Test/diagnostic knob: sleep this long after each wake-up (simulates a slow consumer).
  void set_poll_delay(std::chrono::milliseconds d) { poll_delay_ = d; }

  uint64_t decoded() const { return decoded_.load(std::memory_order_relaxed); }
  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  uint64_t last_seq() const { return seq_.load(std::memory_order_acquire); }

  // The libbpf sample callback (public for the decode benchmark). `ctx` is the EventSource.
  static int on_sample(void* ctx, void* data, size_t size) noexcept;

 private:
  void run();
  void publish_progress();
  uint64_t consumer_pos() const;
  uint64_t producer_pos() const;

  int fd_;
  Sink sink_;
  Journal* journal_ = nullptr;
  ring_buffer* rb_ = nullptr;
  int efd_ = -1;   // eventfd: sync() and stop() wake the thread
  int epfd_ = -1;  // epoll over libbpf's epoll fd and efd_
  // Read-only mappings of the ring buffer's consumer and producer pages.
  const uint64_t* cons_ = nullptr;
  const uint64_t* prod_ = nullptr;
  std::atomic<bool> mapped_{false};  // cons_ and prod_ set (progress() from other threads)
  size_t page_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::chrono::milliseconds poll_delay_{0};
  std::atomic<uint64_t> decoded_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> seq_{0};
  std::atomic<int> waiters_{0};  // sync() calls waiting

  std::mutex mu_;
  std::condition_variable progress_;
  uint64_t handed_pos_ = 0;  // consumer position after the last consume (under mu_)
  uint64_t handed_seq_ = 0;  // seq handed by then
  bool running_ = false;     // thread started and not stopped (under mu_)
};

}  // namespace nsima::capture

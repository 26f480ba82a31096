// SPDX-License-Identifier: Apache-2.0
#include "capture/event_source.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"

namespace nsima::capture {

namespace {
constexpr uint64_t kWakeToken = 1;  // epoll data of the eventfd (the ring buffer's is 0)
}

EventSource::EventSource(int ringbuf_fd, Sink sink) : fd_(ringbuf_fd), sink_(std::move(sink)) {}

EventSource::~EventSource() {
  stop();
  mapped_.store(false, std::memory_order_release);
  if (rb_) ring_buffer__free(rb_);
  if (cons_) munmap(const_cast<uint64_t*>(cons_), page_);
  if (prod_) munmap(const_cast<uint64_t*>(prod_), page_);
  if (epfd_ >= 0) close(epfd_);
  if (efd_ >= 0) close(efd_);
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
  ev->seq = self->seq_.fetch_add(1, std::memory_order_acq_rel) + 1;
  // Before libbpf moves the consumer position past it: a crash from here on replays it.
  if (self->journal_) self->journal_->append(ev->seq, data, size);
  try {
    self->sink_(std::move(*ev));
  } catch (const std::exception& e) {
    logger("capture")->error("event sink failed: {}", e.what());
  }
  // A sync() waiting while a flood keeps ring_buffer__consume going: report progress now (the
  // consumer position still excludes this record, a lower bound).
  if (self->waiters_.load(std::memory_order_relaxed) > 0 && self->cons_) self->publish_progress();
  return 0;
}

uint64_t EventSource::consumer_pos() const { return __atomic_load_n(cons_, __ATOMIC_ACQUIRE); }
uint64_t EventSource::producer_pos() const { return __atomic_load_n(prod_, __ATOMIC_ACQUIRE); }

uint64_t EventSource::pending_bytes() const {
  if (!cons_ || !prod_) return 0;
  uint64_t c = consumer_pos(), p = producer_pos();
  return p > c ? p - c : 0;
}

std::optional<EventSource::Progress> EventSource::progress() const {
  if (!mapped_.load(std::memory_order_acquire)) return std::nullopt;
  Progress p;
  // The position first, then seq (as publish_progress): libbpf stores the consumer position
  // after a record's callback returned, and the callback took its seq before.
  p.consumed = consumer_pos();
  p.handed_seq = seq_.load(std::memory_order_acquire);
  p.committed = producer_pos();
  return p;
}

Result<void> EventSource::start() {
  auto fail = [](const char* what) {
    int e = errno;
    return make_error(e, std::string("cannot watch the ring buffer: ") + strerror(e), what);
  };
  rb_ = ring_buffer__new(fd_, &EventSource::on_sample, this, nullptr);
  if (!rb_) return fail("ring_buffer__new");
  // The ring buffer's first page holds the consumer position, the second the producer's
  // (kernel/bpf/ringbuf.c): mapped read-only, they tell sync() how far the hooks have written
  // and how far we have consumed. libbpf keeps its own read-write mapping.
  long pg = sysconf(_SC_PAGESIZE);
  page_ = static_cast<size_t>(pg > 0 ? pg : 4096);
  void* c = mmap(nullptr, page_, PROT_READ, MAP_SHARED, fd_, 0);
  if (c == MAP_FAILED) return fail("mmap(consumer page)");
  cons_ = static_cast<const uint64_t*>(c);
  void* p = mmap(nullptr, page_, PROT_READ, MAP_SHARED, fd_, static_cast<off_t>(page_));
  if (p == MAP_FAILED) return fail("mmap(producer page)");
  prod_ = static_cast<const uint64_t*>(p);
  mapped_.store(true, std::memory_order_release);

  efd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd_ < 0) return fail("eventfd");
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return fail("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, ring_buffer__epoll_fd(rb_), &ev) != 0)
    return fail("epoll_ctl(ring buffer)");
  ev.data.u64 = kWakeToken;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, efd_, &ev) != 0) return fail("epoll_ctl(eventfd)");

  // Records the previous nsimad consumed but did not finish come before the ring's.
  if (journal_) {
    auto n = journal_->replay_previous(
        [this](const uint8_t* data, size_t size) { on_sample(this, const_cast<uint8_t*>(data), size); });
    if (!n) return tl::unexpected(n.error());
    if (*n)
      logger("capture")->info("{} events consumed but not finished by the previous nsimad are "
                              "handled again (intake journal)",
                              *n);
  }
  {
    std::lock_guard lock(mu_);
    handed_pos_ = consumer_pos();
    running_ = true;
  }
  uint64_t left = pending_bytes();
  if (left)
    logger("capture")->info("{} bytes of records wait in the ring buffer (left by the previous "
                            "nsimad)",
                            left);
  thread_ = std::thread([this] { run(); });
  return {};
}

void EventSource::stop(bool drain) {
  if (!thread_.joinable()) return;
  stop_.store(true);
  uint64_t one = 1;
  if (write(efd_, &one, sizeof one) < 0) { /* the 100 ms epoll timeout ends the wait anyway */ }
  thread_.join();
  if (drain && rb_) ring_buffer__consume(rb_);  // what the hooks submitted before detach
  {
    std::lock_guard lock(mu_);
    running_ = false;
  }
  publish_progress();
}

void EventSource::publish_progress() {
  {
    std::lock_guard lock(mu_);
    // The position first, then seq: every record below the position was handed (libbpf
    // stores the position after the callback returns), so its seq is <= the one read after.
    uint64_t pos = consumer_pos();
    handed_seq_ = seq_.load(std::memory_order_acquire);
    if (pos > handed_pos_) handed_pos_ = pos;
  }
  progress_.notify_all();
}

Result<uint64_t> EventSource::sync(std::chrono::milliseconds timeout) {
  if (!cons_ || !prod_) return make_error(ESRCH, "the ring-buffer consumer is not running", "sync");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // Every record committed before now was reserved before now: it lies below this position.
  const uint64_t target = producer_pos();
  std::unique_lock lock(mu_);
  if (handed_pos_ >= target) return handed_seq_;
  if (!running_) return make_error(ESRCH, "the ring-buffer consumer is not running", "sync");
  waiters_.fetch_add(1);
  uint64_t one = 1;
  if (write(efd_, &one, sizeof one) < 0) { /* the thread wakes at its timeout */ }
  bool done =
      progress_.wait_until(lock, deadline, [&] { return handed_pos_ >= target || !running_; });
  waiters_.fetch_sub(1);
  if (done && handed_pos_ >= target) return handed_seq_;
  uint64_t left = target > handed_pos_ ? target - handed_pos_ : 0;
  if (!done)
    return make_error(ETIMEDOUT,
                      "the ring-buffer consumer did not catch up within " +
                          std::to_string(timeout.count()) + " ms: " + std::to_string(left) +
                          " bytes committed before the request are still unconsumed",
                      "sync");
  return make_error(ESRCH,
                    "the ring-buffer consumer stopped with " + std::to_string(left) +
                        " bytes committed before the request unconsumed",
                    "sync");
}

void EventSource::run() {
  auto log = logger("capture");
  epoll_event evs[2];
  while (!stop_.load(std::memory_order_relaxed)) {
    int n = epoll_wait(epfd_, evs, 2, 100 /* ms */);
    if (n < 0 && errno != EINTR) {
      log->error("epoll_wait on the ring buffer failed: {}", strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i)
      if (evs[i].data.u64 == kWakeToken) {
        uint64_t v;
        if (read(efd_, &v, sizeof v) < 0) { /* EAGAIN: already reset */ }
      }
    if (stop_.load(std::memory_order_relaxed)) break;
    int r = ring_buffer__consume(rb_);
    if (r < 0 && r != -EINTR) {
      log->error("ring_buffer__consume failed: {}", strerror(-r));
      break;
    }
    publish_progress();
    if (poll_delay_.count() > 0) std::this_thread::sleep_for(poll_delay_);
  }
  {
    std::lock_guard lock(mu_);
    running_ = false;  // sync() callers stop waiting
  }
  progress_.notify_all();
}

}  // namespace nsima::capture

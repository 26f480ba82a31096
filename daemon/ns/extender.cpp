// SPDX-License-Identifier: Apache-2.0
#include "ns/extender.h"

#include "common/log.h"

namespace nsima::ns {

Extender::Extender(std::shared_ptr<tpm::Tpm> tpm, ErrorFn on_error)
    : tpm_(std::move(tpm)), on_error_(std::move(on_error)), thread_([this] { run(); }) {}

Extender::~Extender() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Extender::push(ExtendJob job) {
  {
    std::lock_guard lock(mu_);
    q_.push_back(std::move(job));
    pushed_++;
  }
  cv_.notify_one();
}

uint64_t Extender::pushed() const {
  std::lock_guard lock(mu_);
  return pushed_;
}

bool Extender::wait(uint64_t mark, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return progress_.wait_for(lock, timeout, [&] { return done_ + failed_ >= mark; });
}

void Extender::drain() {
  std::unique_lock lock(mu_);
  uint64_t mark = pushed_;
  progress_.wait(lock, [&] { return done_ + failed_ >= mark; });
}

uint64_t Extender::done() const {
  std::lock_guard lock(mu_);
  return done_;
}

uint64_t Extender::failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

size_t Extender::pending() const {
  std::lock_guard lock(mu_);
  return q_.size() + (busy_ ? 1 : 0);
}

void Extender::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !q_.empty(); });
    if (q_.empty()) {
      if (stop_) return;
      continue;
    }
    ExtendJob job = std::move(q_.front());
    q_.pop_front();
    busy_ = true;
    lock.unlock();
    auto r = tpm_->extend(job.pcr, job.digests);
    if (!r) {
      logger("tpm")->error("extend of entry {} of list {} into PCR {} failed: {}", job.index,
                           job.list, job.pcr, r.error().to_string());
      // Called without our lock: the callback may take its own.
      if (on_error_) on_error_(job, r.error());
    }
    lock.lock();
    busy_ = false;
    if (r)
      done_++;
    else
      failed_++;
    progress_.notify_all();
  }
}

}  // namespace nsima::ns

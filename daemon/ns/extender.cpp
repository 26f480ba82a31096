// SPDX-License-Identifier: Apache-2.0
#include "ns/extender.h"

#include "common/log.h"

namespace nsima::ns {

Extender::Extender(std::function<void(const ExtendJob&, const Error&)> on_error)
    : on_error_(std::move(on_error)), thread_([this] { run(); }) {}

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
  }
  cv_.notify_one();
}

void Extender::drain() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [&] { return q_.empty() && !busy_; });
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
    auto r = job.tpm->extend(job.pcr, job.digests);
    if (!r) {
      logger("tpm")->error("extend of entry {} of list {} into PCR {} failed: {}", job.index,
                           job.list, job.pcr, r.error().to_string());
      if (on_error_) on_error_(job, r.error());
    }
    lock.lock();
    busy_ = false;
    if (r)
      done_++;
    else
      failed_++;
    if (q_.empty()) idle_.notify_all();
  }
}

}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
// Hash worker pool: bounded queue, coalescing, cache, stamp re-check.
#include "measure/hash_pool.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <exception>

#include "common/log.h"

namespace nsima::measure {

namespace {

bool stamp_matches(const struct stat& st, const Stamp& s) {
  return st.st_ctim.tv_sec == s.ctime_sec &&
         static_cast<uint32_t>(st.st_ctim.tv_nsec) == s.ctime_nsec &&
         static_cast<uint64_t>(st.st_size) == s.size;
}

void deliver(const HashCallback& done, const HashResult& result) {
  try {
    done(result);
  } catch (const std::exception& e) {
    logger("measure")->error("hash callback threw: {}", e.what());
  } catch (...) {
    logger("measure")->error("hash callback threw a non-standard exception");
  }
}

}  // namespace

size_t HashPool::JobKeyHash::operator()(const JobKey& k) const noexcept {
  size_t h = FileKeyHash{}(k.key);
  for (HashAlgo a : k.algos) h = h * 31 + static_cast<size_t>(a);
  return h;
}

HashPool::HashPool(Options options, DigestCache* cache) : options_(options), cache_(cache) {
  const size_t n = std::max<size_t>(options_.threads, 1);
  threads_.reserve(n);
  for (size_t i = 0; i < n; ++i) threads_.emplace_back([this] { worker(); });
}

HashPool::~HashPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  not_empty_.notify_all();
  not_full_.notify_all();
  for (auto& t : threads_) t.join();
}

Result<void> HashPool::submit(HashRequest req) {
  if (req.algos.empty() || !req.open || !req.done)
    return make_error(EINVAL, "hash request needs algorithms, an opener and a callback");

  if (cache_) {
    HashOutcome cached;
    cached.from_cache = true;
    for (HashAlgo a : req.algos) {
      auto d = cache_->get(DigestKey{req.key, a});
      if (!d) break;
      cached.digests.push_back(*d);
    }
    if (cached.digests.size() == req.algos.size()) {
      {
        std::lock_guard lock(mu_);
        ++stats_.submitted;
        ++stats_.cache_hits;
      }
      deliver(req.done, cached);
      return {};
    }
  }

  JobKey jk{req.key, req.algos};
  std::unique_lock lock(mu_);
  bool counted_block = false;
  for (;;) {
    if (stopping_) return make_error(ESHUTDOWN, "hash pool is shutting down");
    if (auto it = inflight_.find(jk); it != inflight_.end()) {
      it->second->waiters.push_back(Waiter{std::move(req.open), std::move(req.done)});
      ++stats_.submitted;
      ++stats_.coalesced;
      return {};
    }
    if (queue_.size() < options_.queue_capacity) break;
    if (!counted_block) {
      ++stats_.blocked_submits;
      counted_block = true;
    }
    not_full_.wait(lock);  // back-pressure: wait, never drop
  }
  auto job = std::make_shared<Job>();
  job->key = req.key;
  job->algos = std::move(req.algos);
  job->waiters.push_back(Waiter{std::move(req.open), std::move(req.done)});
  inflight_.emplace(std::move(jk), job);
  queue_.push_back(std::move(job));
  ++stats_.submitted;
  stats_.max_queue_depth = std::max(stats_.max_queue_depth, queue_.size());
  lock.unlock();
  not_empty_.notify_one();
  return {};
}

void HashPool::drain() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return queue_.empty() && running_ == 0; });
}

HashPool::Stats HashPool::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

size_t HashPool::queue_depth() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void HashPool::worker() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      not_empty_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and nothing left: all work was done
      job = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    not_full_.notify_one();
    run(job);
    {
      std::lock_guard lock(mu_);
      --running_;
      if (queue_.empty() && running_ == 0) idle_.notify_all();
    }
  }
}

void HashPool::run(const std::shared_ptr<Job>& job) {
  // Try the waiters' openers in order until one yields the inode; remember who failed how.
  std::vector<std::pair<size_t, FileError>> failures;
  std::optional<OpenedFile> file;
  for (size_t i = 0;; ++i) {
    Opener open;
    {
      std::lock_guard lock(mu_);
      if (i >= job->waiters.size()) break;
      open = job->waiters[i].open;
    }
    auto f = open();
    if (f) {
      file = std::move(*f);
      break;
    }
    failures.emplace_back(i, std::move(f.error()));
  }

  std::optional<HashResult> result;
  if (file) {
    HashOutcome out;
    out.changed = !stamp_matches(file->st, job->key.stamp);
    auto digests = hash_fd(file->fd.get(), job->algos, file->path, options_.hash);
    if (!digests) {
      result = tl::unexpected(FileError{FileErrorKind::kIoError, digests.error()});
    } else {
      // Written while we read it? Compare with the fstat taken at open.
      struct stat after {};
      if (::fstat(file->fd.get(), &after) != 0 || after.st_ctim.tv_sec != file->st.st_ctim.tv_sec ||
          after.st_ctim.tv_nsec != file->st.st_ctim.tv_nsec || after.st_size != file->st.st_size)
        out.changed = true;
      out.digests = std::move(digests->digests);
      out.bytes = digests->bytes;
      if (!out.changed && cache_)
        for (size_t i = 0; i < job->algos.size(); ++i)
          cache_->put(DigestKey{job->key, job->algos[i]}, out.digests[i]);
      result = std::move(out);
    }
  }

  std::vector<Waiter> waiters;
  {
    std::lock_guard lock(mu_);
    inflight_.erase(JobKey{job->key, job->algos});
    waiters = std::move(job->waiters);
    if (file && result && *result) {
      ++stats_.files_hashed;
      stats_.bytes_hashed += (*result)->bytes;
    }
  }

  for (size_t i = 0; i < waiters.size(); ++i) {
    if (result) {
      deliver(waiters[i].done, *result);
      continue;
    }
    // No opener succeeded: each waiter gets its own opener's error (or the last one seen).
    auto it =
        std::find_if(failures.begin(), failures.end(), [i](const auto& f) { return f.first == i; });
    const FileError& err = it != failures.end() ? it->second : failures.back().second;
    deliver(waiters[i].done, tl::unexpected(err));
  }
}

}  // namespace nsima::measure

// SPDX-License-Identifier: Apache-2.0
// A bounded pool of hashing threads. Hashing is the slow step of a measurement (a large binary
// takes milliseconds to seconds), so it runs off the event loop, on N threads, behind a bounded
// queue: when the queue is full submit() blocks the producer (back-pressure towards the ring
// buffer, whose own overflow is counted and turned into violations) instead of dropping work.
//
// Requests name a file version (FileKey) and the algorithms wanted. The digest cache answers
// repeated versions without I/O; concurrent requests for the same version and algorithms are
// coalesced onto one read, whatever namespace or path they came from: a digest is a property of
// the inode's content, not of the path used to reach it. Each request brings its own opener; if
// the first opener fails (the path vanished in that namespace), the next waiter's opener is tried.
//
// The file's ctime and size are compared with the request's stamp when opened and again after
// hashing. If they differ the outcome says `changed` (the content is newer than the event that
// asked for it, or was being written while read) and nothing is cached.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "measure/digest_cache.h"
#include "measure/file_reader.h"
#include "measure/hasher.h"

namespace nsima::measure {

struct HashOutcome {
  std::vector<Digest> digests;  // one per requested algorithm, in request order
  uint64_t bytes = 0;           // bytes read (0 when answered by the cache)
  bool from_cache = false;
  bool changed = false;  // ctime/size differed from the request's stamp; not cached
};
using HashResult = FileResult<HashOutcome>;
using HashCallback = std::function<void(const HashResult&)>;
// Opens and verifies the file (typically a lambda around open_in_root with the event's identity).
using Opener = std::function<FileResult<OpenedFile>()>;

struct HashRequest {
  FileKey key;
  std::vector<HashAlgo> algos;
  Opener open;
  HashCallback done;  // called exactly once; must not throw (exceptions are caught and logged)
};

class HashPool {
 public:
  struct Options {
    size_t threads = 2;
    size_t queue_capacity = 1024;  // queued (not yet running) distinct files
    HashFileOptions hash;
  };
  struct Stats {
    uint64_t submitted = 0;
    uint64_t cache_hits = 0;    // answered by the cache without queueing
    uint64_t coalesced = 0;     // attached to an identical request already in flight
    uint64_t files_hashed = 0;  // files actually read
    uint64_t bytes_hashed = 0;
    uint64_t blocked_submits = 0;  // submits that waited for queue space
    size_t max_queue_depth = 0;
  };

  // `cache` may be null (no caching); it must outlive the pool.
  HashPool(Options options, DigestCache* cache);
  // Finishes all submitted work (nothing is dropped), then joins the threads.
  ~HashPool();
  HashPool(const HashPool&) = delete;
  HashPool& operator=(const HashPool&) = delete;

  // Queues `req`, blocking while the queue is full. When the cache holds every requested digest,
  // `done` runs inline on the calling thread; otherwise on a pool thread. ESHUTDOWN while the pool
  // is being destroyed.
  Result<void> submit(HashRequest req);
  // Waits until every submitted request has been answered.
  void drain();

  Stats stats() const;
  size_t queue_depth() const;

 private:
  struct Waiter {
    Opener open;
    HashCallback done;
  };
  struct Job {
    FileKey key;
    std::vector<HashAlgo> algos;
    std::vector<Waiter> waiters;  // guarded by mu_
  };
  struct JobKey {
    FileKey key;
    std::vector<HashAlgo> algos;
    bool operator==(const JobKey&) const = default;
  };
  struct JobKeyHash {
    size_t operator()(const JobKey& k) const noexcept;
  };

  void worker();
  void run(const std::shared_ptr<Job>& job);

  const Options options_;
  DigestCache* const cache_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_, not_full_, idle_;
  std::deque<std::shared_ptr<Job>> queue_;                                 // guarded by mu_
  std::unordered_map<JobKey, std::shared_ptr<Job>, JobKeyHash> inflight_;  // guarded by mu_
  size_t running_ = 0;                                                     // guarded by mu_
  bool stopping_ = false;                                                  // guarded by mu_
  Stats stats_;                                                            // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace nsima::measure

// SPDX-License-Identifier: Apache-2.0
// FileAccessor: per-namespace queues served round-robin by worker threads, a supervisor that
// answers requests past their deadline and replaces workers stuck in the kernel.
//
// All state lives in a Core shared (shared_ptr) by the accessor, its workers and its supervisor:
// an abandoned worker may come back from its system call long after the accessor is gone, and
// then touches nothing but the Core (it finds `stopping` set, or its job answered, and exits).
// The RootCache and DigestCache, which only have to outlive the accessor, are used by workers
// only between enter_external() and leave_external(), which the destructor waits out.
#include "access/file_accessor.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/log.h"

namespace nsima::access {

using Clock = std::chrono::steady_clock;

std::string_view access_error_kind_name(AccessErrorKind k) {
  switch (k) {
    case AccessErrorKind::kVanished: return "vanished";
    case AccessErrorKind::kMismatch: return "replaced";  // the path or handle names another inode now
    case AccessErrorKind::kNotRegular: return "not-regular";
    case AccessErrorKind::kDenied: return "denied";
    case AccessErrorKind::kInvalidPath: return "invalid-path";
    case AccessErrorKind::kIoError: return "io-error";
    case AccessErrorKind::kTimeout: return "timeout";
    case AccessErrorKind::kQueueFull: return "queue-full";
    case AccessErrorKind::kShutdown: return "shutdown";
  }
  return "unknown";
}

std::string AccessError::to_string() const {
  return std::string(access_error_kind_name(kind)) + ": " + error.to_string();
}

namespace {

constexpr const char* kImaXattr = "security.ima";
constexpr size_t kMaxXattr = 65536;  // XATTR_SIZE_MAX

AccessErrorKind kind_of(measure::FileErrorKind k) {
  switch (k) {
    case measure::FileErrorKind::kVanished: return AccessErrorKind::kVanished;
    case measure::FileErrorKind::kMismatch: return AccessErrorKind::kMismatch;
    case measure::FileErrorKind::kNotRegular: return AccessErrorKind::kNotRegular;
    case measure::FileErrorKind::kDenied: return AccessErrorKind::kDenied;
    case measure::FileErrorKind::kInvalidPath: return AccessErrorKind::kInvalidPath;
    case measure::FileErrorKind::kIoError: return AccessErrorKind::kIoError;
  }
  return AccessErrorKind::kIoError;
}

AccessError from_file_error(const measure::FileError& e) { return {kind_of(e.kind), e.error}; }

AccessError make_access_error(AccessErrorKind kind, int code, std::string msg, std::string where) {
  return AccessError{kind, Error{code, std::move(msg), std::move(where)}};
}

bool stamp_matches(const struct stat& st, const Stamp& s) {
  return st.st_ctim.tv_sec == s.ctime_sec &&
         static_cast<uint32_t>(st.st_ctim.tv_nsec) == s.ctime_nsec &&
         static_cast<uint64_t>(st.st_size) == s.size;
}

bool same_version(const struct stat& a, const struct stat& b) {
  return a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec &&
         a.st_size == b.st_size;
}

using Done = std::function<void(const AccessResult&)>;

void deliver(const Done& done, const AccessResult& r) noexcept {
  try {
    done(r);
  } catch (const std::exception& e) {
    logger("access")->error("access callback threw: {}", e.what());
  } catch (...) {
    logger("access")->error("access callback threw a non-standard exception");
  }
}

struct JobKey {
  measure::FileKey file;
  std::vector<measure::HashAlgo> algos;
  bool xattr = false;
  bool algo_from_xattr = false;
  bool operator==(const JobKey&) const = default;
};
struct JobKeyHash {
  size_t operator()(const JobKey& k) const noexcept {
    size_t h = measure::FileKeyHash{}(k.file);
    for (auto a : k.algos) h = h * 31 + static_cast<size_t>(a);
    return h * 4 + (k.xattr ? 1 : 0) + (k.algo_from_xattr ? 2 : 0);
  }
};

void lower_priority(int nice) {
  if (nice == 0) return;
  // Both apply to the calling thread only (a Linux thread is a task). SCHED_BATCH: the scheduler
  // treats the worker as CPU-bound and never lets it preempt the workload on wake-up.
  sched_param p{};
  p.sched_priority = 0;
  (void)::sched_setscheduler(0, SCHED_BATCH, &p);
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice);
}

}  // namespace

using Request = FileAccessor::Request;
using Options = FileAccessor::Options;

struct FileAccessor::Impl {
  struct Job {
    JobKey key;
    std::vector<Request> waiters;    // guarded by mu
    std::vector<uint32_t> queued_in;  // queues whose pending list holds it; guarded by mu
    std::atomic<bool> cancel{false};
    bool started = false, answered = false, timed_out = false;  // guarded by mu
    uint32_t home_queue = 0;  // the first requester's: a stuck read is counted against it
    Clock::time_point enqueued, deadline;                       // guarded by mu
  };
  using JobPtr = std::shared_ptr<Job>;

  struct Worker {
    std::thread thread;
    JobPtr job;  // guarded by mu
    bool abandoned = false, exited = false;
    dev_t stalled_dev = 0;
    uint32_t stalled_queue = 0;
  };
  using WorkerPtr = std::shared_ptr<Worker>;

  struct Queue {
    std::deque<JobPtr> pending;
    bool in_ring = false;
    size_t waiting = 0, running = 0;  // this queue's requests not answered, by job state
    uint64_t done = 0, timeouts = 0, rejected = 0;
  };

  struct Delivery {
    Done done;
    AccessResult result;
    bool counted = false;  // in Core::outstanding until delivered (drain waits for it)
  };

  // What a worker found: one result for every waiter, or each tried waiter's own error.
  struct Outcome {
    std::optional<FileFacts> facts;
    std::vector<std::pair<size_t, AccessError>> failures;  // opener i failed so
    std::optional<AccessError> file_error;  // the file was open, reading it failed: for everyone
    bool cancelled = false;
    bool via_handle = false;
  };

  struct Core {
    Options opts;
    RootCache* roots;
    measure::DigestCache* digests;

    std::mutex mu;
    std::condition_variable work_cv, super_cv, idle_cv, exit_cv;
    std::map<uint32_t, Queue> queues;
    std::deque<uint32_t> ring;  // queues with pending jobs, in round-robin order
    std::unordered_map<JobKey, JobPtr, JobKeyHash> inflight;
    std::vector<WorkerPtr> workers;  // not abandoned
    size_t live = 0, stuck = 0;
    size_t outstanding = 0;  // requests accepted into queues, not answered
    std::unordered_map<dev_t, size_t> stalled_devs;
    std::unordered_map<uint32_t, size_t> stalled_queues;
    std::deque<Delivery> deferred;
    size_t delivering = 0;  // deferred deliveries taken by the supervisor, not yet made
    Stats counters;
    bool stopping = false;
    size_t in_external = 0;
  };

  std::shared_ptr<Core> core;
  std::thread supervisor;

  // --- bookkeeping (mu held) ---

  static void add_waiter_locked(Core& c, const JobPtr& job, Request r) {
    Queue& q = c.queues[r.queue];
    if (job->started) {
      ++q.running;
    } else {
      ++q.waiting;
      if (std::find(job->queued_in.begin(), job->queued_in.end(), r.queue) ==
          job->queued_in.end()) {
        job->queued_in.push_back(r.queue);
        q.pending.push_back(job);
        if (!q.in_ring) {
          q.in_ring = true;
          c.ring.push_back(r.queue);
        }
      }
    }
    ++c.outstanding;
    job->waiters.push_back(std::move(r));
  }

  // Takes the waiter out of its queue's accounting; `kind` says how it was answered.
  static void account_answer_locked(Core& c, const Job& job, const Request& r,
                                    const AccessResult& res) {
    auto it = c.queues.find(r.queue);
    if (it != c.queues.end()) {
      Queue& q = it->second;
      size_t& n = job.started ? q.running : q.waiting;
      if (n > 0) --n;
      if (!res && res.error().kind == AccessErrorKind::kTimeout)
        ++q.timeouts;
      else
        ++q.done;
    }
    if (!res) {
      auto k = res.error().kind;
      if (k == AccessErrorKind::kTimeout)
        ++c.counters.timeouts;
      else if (k != AccessErrorKind::kShutdown && k != AccessErrorKind::kQueueFull)
        ++c.counters.failed;
    }
  }

  // Answers every waiter of `job` with `result_for(i)`; the deliveries are made by the caller,
  // outside the lock. Exactly once: a job is answered at most once.
  template <class F>
  static void answer_locked(Core& c, const JobPtr& job, F result_for,
                            std::vector<Delivery>& out) {
    if (job->answered) return;
    job->answered = true;
    for (size_t i = 0; i < job->waiters.size(); ++i) {
      Request& r = job->waiters[i];
      AccessResult res = result_for(i);
      account_answer_locked(c, *job, r, res);
      out.push_back(Delivery{std::move(r.done), std::move(res), true});
    }
    job->waiters.clear();
  }

  static void erase_inflight_locked(Core& c, const JobPtr& job) {
    auto it = c.inflight.find(job->key);
    if (it != c.inflight.end() && it->second == job) c.inflight.erase(it);
  }

  static JobPtr pop_locked(Core& c) {
    while (!c.ring.empty()) {
      uint32_t id = c.ring.front();
      c.ring.pop_front();
      auto it = c.queues.find(id);
      if (it == c.queues.end()) continue;
      Queue& q = it->second;
      q.in_ring = false;
      JobPtr job;
      while (!q.pending.empty() && !job) {
        JobPtr j = std::move(q.pending.front());
        q.pending.pop_front();
        std::erase(j->queued_in, id);
        if (!j->started && !j->answered) job = std::move(j);
      }
      if (!q.pending.empty()) {
        q.in_ring = true;
        c.ring.push_back(id);
      }
      if (job) return job;
    }
    return nullptr;
  }

  static void start_locked(Core& c, const JobPtr& job, const WorkerPtr& w) {
    job->started = true;
    job->deadline = Clock::now() + c.opts.timeout;
    w->job = job;
    for (const Request& r : job->waiters) {
      Queue& q = c.queues[r.queue];
      if (q.waiting > 0) --q.waiting;
      ++q.running;
    }
    c.super_cv.notify_all();
  }

  static void spawn_worker_locked(const std::shared_ptr<Core>& c) {
    auto w = std::make_shared<Worker>();
    c->workers.push_back(w);
    ++c->live;
    w->thread = std::thread([c, w] { worker_main(c, w); });
  }

  // Runs the callbacks (no lock held), then counts them answered: drain() returns only after
  // every callback of what it waits for has returned.
  static void deliver_all(Core& c, std::vector<Delivery>& out) {
    size_t counted = 0;
    for (auto& d : out) {
      deliver(d.done, d.result);
      counted += d.counted ? 1 : 0;
    }
    out.clear();
    std::lock_guard lock(c.mu);
    c.outstanding -= std::min(c.outstanding, counted);
    if (c.outstanding == 0 && c.deferred.empty() && c.delivering == 0) c.idle_cv.notify_all();
  }

  // Hands inline answers to the caller (now) or to the supervisor (answer_inline = false).
  static void deliver_inline(Core& c, Done done, AccessResult res) {
    if (c.opts.answer_inline) {
      deliver(done, res);
      return;
    }
    {
      std::lock_guard lock(c.mu);
      c.deferred.push_back(Delivery{std::move(done), std::move(res)});
    }
    c.super_cv.notify_all();
  }

  // --- external objects (RootCache, DigestCache): only between enter and leave ---

  static bool enter_external(Core& c) {
    std::lock_guard lock(c.mu);
    if (c.stopping) return false;
    ++c.in_external;
    return true;
  }
  static void leave_external(Core& c) {
    std::lock_guard lock(c.mu);
    if (--c.in_external == 0) c.exit_cv.notify_all();
  }

  // --- the work of one job (no lock held) ---

  static tl::expected<measure::OpenedFile, AccessError> open_for(Core& c, Job& job,
                                                                 const Event& ev, bool& via_handle) {
    if (c.opts.hooks.before_open) c.opts.hooks.before_open(ev);
    auto ident = measure::FileIdentity::from_event(ev);
    const std::string where = ev.path.empty() ? "ino " + std::to_string(ev.ino) : ev.path;
    auto shutdown = [&] {
      return tl::unexpected(make_access_error(AccessErrorKind::kShutdown, ESHUTDOWN,
                                              "the accessor is stopping", where));
    };
    if (job.cancel.load()) return shutdown();
    std::optional<AccessError> root_error;
    tl::expected<UniqueFd, AccessError> root = tl::unexpected(make_access_error(
        AccessErrorKind::kVanished, ESRCH, "no root cache: no process root to open it in", where));
    if (!ev.path_known()) {
      // No path (a security.ima write the hook could not name, bpf/setxattr.bpf.c): the
      // inode's handle is the only way to it.
      root = tl::unexpected(make_access_error(AccessErrorKind::kInvalidPath, EINVAL,
                                              "the event has no path", where));
    } else if (c.roots) {
      if (!enter_external(c)) return shutdown();
      root = c.roots->root_for(ev);
      leave_external(c);
    }
    if (root) {
      auto f = measure::open_in_root(root->get(), ev.path, ident);
      if (f) return std::move(*f);
      // The root may have been lent by another process with the same (mnt ns, root dentry) that
      // reaches it through another mount: retry once in the event's own process's root.
      if (c.roots && (f.error().kind == measure::FileErrorKind::kVanished ||
                      f.error().kind == measure::FileErrorKind::kMismatch)) {
        if (!enter_external(c)) return shutdown();
        auto own = c.roots->own_root(ev);
        leave_external(c);
        if (own) {
          auto g = measure::open_in_root(own->get(), ev.path, ident);
          if (g) return std::move(*g);
        }
      }
      // The path is gone in that root (unlinked, renamed away): the inode may still be there.
      if (f.error().kind != measure::FileErrorKind::kVanished || !c.opts.file_handles)
        return tl::unexpected(from_file_error(f.error()));
      root_error = from_file_error(f.error());
    } else {
      root_error = root.error();
      if (!c.opts.file_handles) return tl::unexpected(*root_error);
    }
    if (job.cancel.load()) return shutdown();
    auto h = measure::open_by_inode_handle(ident, where);
    if (h) {
      via_handle = true;
      return std::move(*h);
    }
    if (h.error().error.code == EOPNOTSUPP) return tl::unexpected(*root_error);
    return tl::unexpected(from_file_error(h.error()));
  }

  static Outcome run(Core& c, Job& job) {
    Outcome out;
    std::optional<measure::OpenedFile> file;
    Event ev;
    for (size_t i = 0;; ++i) {
      {
        std::lock_guard lock(c.mu);
        if (i >= job.waiters.size() || job.answered) break;
        ev = job.waiters[i].ev;
      }
      auto f = open_for(c, job, ev, out.via_handle);
      if (f) {
        file = std::move(*f);
        break;
      }
      out.failures.emplace_back(i, std::move(f.error()));
      if (job.cancel.load()) break;
    }
    if (!file) {
      out.cancelled = job.cancel.load();
      return out;
    }
    FileFacts facts;
    const std::string& where = file->path.empty() ? ev.path : file->path;
    if (job.key.xattr) {
      std::vector<uint8_t> buf(kMaxXattr);
      ssize_t n = ::fgetxattr(file->fd.get(), kImaXattr, buf.data(), buf.size());
      if (n >= 0) {
        buf.resize(static_cast<size_t>(n));
        facts.ima_xattr = std::move(buf);
      } else if (errno != ENODATA && errno != ENOTSUP && errno != ERANGE) {
        int err = errno;
        out.file_error = make_access_error(
            AccessErrorKind::kIoError, err,
            std::string("fgetxattr security.ima: ") + std::strerror(err), where);
        out.cancelled = job.cancel.load();
        return out;
      }
    }
    facts.changed = !stamp_matches(file->st, job.key.file.stamp);
    facts.algos = job.key.algos;
    if (facts.ima_xattr && c.opts.xattr_parse) facts.ima_xattr_parsed = c.opts.xattr_parse(*facts.ima_xattr);
    if (job.key.algo_from_xattr && facts.ima_xattr && c.opts.xattr_algo) {
      auto a = c.opts.xattr_algo(*facts.ima_xattr);
      if (a && std::find(facts.algos.begin(), facts.algos.end(), *a) == facts.algos.end())
        facts.algos.push_back(*a);
    }
    if (!facts.algos.empty()) {
      bool all_cached = false;
      if (c.digests && !facts.changed) {
        if (!enter_external(c)) {
          out.cancelled = true;
          return out;
        }
        for (auto a : facts.algos) {
          auto d = c.digests->get(measure::DigestKey{job.key.file, a});
          if (!d) break;
          facts.digests.push_back(*d);
        }
        leave_external(c);
        all_cached = facts.digests.size() == facts.algos.size();
        if (!all_cached) facts.digests.clear();
      }
      if (all_cached) {
        facts.from_cache = true;
      } else {
        if (c.opts.hooks.before_hash) c.opts.hooks.before_hash(ev, file->fd.get());
        measure::HashFileOptions ho;
        ho.chunk_size = c.opts.chunk_size;
        ho.cancel = &job.cancel;
        ho.known_size = static_cast<uint64_t>(file->st.st_size);  // same_version() below
        auto d = measure::hash_fd(file->fd.get(), facts.algos, where, ho);
        if (!d) {
          out.cancelled = job.cancel.load();
          out.file_error = AccessError{AccessErrorKind::kIoError, d.error()};
          return out;
        }
        struct stat after {};
        if (::fstat(file->fd.get(), &after) != 0 || !same_version(after, file->st))
          facts.changed = true;
        facts.digests = std::move(d->digests);
        facts.bytes = d->bytes;
        if (!facts.changed && c.digests && !job.cancel.load() && enter_external(c)) {
          for (size_t i = 0; i < facts.algos.size(); ++i)
            c.digests->put(measure::DigestKey{job.key.file, facts.algos[i]}, facts.digests[i]);
          leave_external(c);
        }
      }
    }
    out.facts = std::move(facts);
    out.cancelled = job.cancel.load();
    return out;
  }

  static void worker_main(std::shared_ptr<Core> c, WorkerPtr w) {
    lower_priority(c->opts.nice);
    std::unique_lock lock(c->mu);
    std::vector<Delivery> out;
    for (;;) {
      c->work_cv.wait(lock, [&] { return c->stopping || w->abandoned || !c->ring.empty(); });
      if (c->stopping || w->abandoned) break;
      JobPtr job = pop_locked(*c);
      if (!job) continue;
      start_locked(*c, job, w);
      lock.unlock();
      Outcome o = run(*c, *job);
      lock.lock();
      w->job.reset();
      if (w->abandoned) {
        // Came back from the kernel after being replaced: the answer was given (timeout).
        ++c->counters.late_results;
        erase_inflight_locked(*c, job);
        if (c->stuck > 0) --c->stuck;
        auto d = c->stalled_devs.find(w->stalled_dev);
        if (d != c->stalled_devs.end() && --d->second == 0) c->stalled_devs.erase(d);
        auto sq = c->stalled_queues.find(w->stalled_queue);
        if (sq != c->stalled_queues.end() && --sq->second == 0) c->stalled_queues.erase(sq);
        logger("access")->info("a stuck worker came back ({} still stuck)", c->stuck);
        break;
      }
      erase_inflight_locked(*c, job);
      if (job->answered) {
        ++c->counters.late_results;
        continue;
      }
      if (o.facts) {
        ++c->counters.files_read;
        if (o.via_handle) ++c->counters.handle_opens;
        c->counters.bytes_read += o.facts->bytes;
        answer_locked(*c, job, [&](size_t) -> AccessResult { return *o.facts; }, out);
      } else {
        answer_locked(
            *c, job,
            [&](size_t i) -> AccessResult {
              if (o.file_error) return tl::unexpected(*o.file_error);
              for (auto& f : o.failures)
                if (f.first == i) return tl::unexpected(f.second);
              if (!o.failures.empty()) return tl::unexpected(o.failures.back().second);
              return tl::unexpected(make_access_error(AccessErrorKind::kShutdown, ESHUTDOWN,
                                                      "the accessor is stopping", ""));
            },
            out);
      }
      lock.unlock();
      deliver_all(*c, out);
      lock.lock();
    }
    if (!w->abandoned && c->live > 0) --c->live;
    w->exited = true;
    c->exit_cv.notify_all();
  }

  static void supervisor_main(std::shared_ptr<Core> c) {
    std::unique_lock lock(c->mu);
    std::vector<Delivery> out;
    while (!c->stopping) {
      auto now = Clock::now();
      auto next = now + std::chrono::hours(1);
      for (size_t wi = 0; wi < c->workers.size(); ++wi) {
        WorkerPtr w = c->workers[wi];
        JobPtr j = w->job;
        if (!j) continue;
        if (!j->answered) {
          if (now >= j->deadline) {
            j->cancel = true;
            j->timed_out = true;
            std::string path = j->waiters.empty() ? std::string() : j->waiters.front().ev.path;
            auto ms = c->opts.timeout.count();
            answer_locked(
                *c, j,
                [&](size_t) -> AccessResult {
                  return tl::unexpected(make_access_error(
                      AccessErrorKind::kTimeout, ETIMEDOUT,
                      "not read within " + std::to_string(ms) + " ms (stalled filesystem or a "
                      "file too large to hash in time)", path));
                },
                out);
          } else {
            next = std::min(next, j->deadline);
          }
        }
        if (j->answered) {
          auto t = j->deadline + c->opts.abandon_after;
          if (now >= t) {
            // Still not back: stuck in a system call that does not return. Abandon it.
            w->abandoned = true;
            w->stalled_dev = j->key.file.dev;
            w->stalled_queue = j->home_queue;
            ++c->stalled_queues[w->stalled_queue];
            w->thread.detach();
            c->workers.erase(c->workers.begin() + static_cast<ptrdiff_t>(wi));
            --wi;
            if (c->live > 0) --c->live;
            ++c->stuck;
            ++c->counters.abandoned;
            ++c->stalled_devs[w->stalled_dev];
            bool replace = c->stuck <= c->opts.max_stuck_workers;
            logger("access")->warn(
                "worker stuck reading {} for {} ms; {} ({} stuck)",
                j->waiters.empty() ? std::string("a file") : j->waiters.front().ev.path,
                std::chrono::duration_cast<std::chrono::milliseconds>(now - j->deadline +
                                                                      c->opts.timeout)
                    .count(),
                replace ? "starting a replacement" : "no replacement (max_stuck_workers)",
                c->stuck);
            if (replace) spawn_worker_locked(c);
          } else {
            next = std::min(next, t);
          }
        }
      }
      // No live worker (all stuck, no replacement allowed): nothing queued would ever start.
      if (c->live == 0) {
        std::vector<JobPtr> expired;
        for (auto& [k, j] : c->inflight) {
          if (j->started || j->answered) continue;
          auto t = j->enqueued + c->opts.timeout;
          if (now >= t)
            expired.push_back(j);
          else
            next = std::min(next, t);
        }
        for (auto& j : expired) {
          erase_inflight_locked(*c, j);
          answer_locked(
              *c, j,
              [&](size_t) -> AccessResult {
                return tl::unexpected(make_access_error(
                    AccessErrorKind::kTimeout, ETIMEDOUT,
                    "no worker left to read it (all stuck in the kernel)", ""));
              },
              out);
        }
      }
      size_t taken = c->deferred.size();
      while (!c->deferred.empty()) {
        out.push_back(std::move(c->deferred.front()));
        c->deferred.pop_front();
      }
      if (!out.empty()) {
        c->delivering += taken;
        lock.unlock();
        deliver_all(*c, out);
        lock.lock();
        c->delivering -= taken;
        if (c->outstanding == 0 && c->deferred.empty() && c->delivering == 0)
          c->idle_cv.notify_all();
        continue;
      }
      c->super_cv.wait_until(lock, next);
    }
  }
};

FileAccessor::FileAccessor(Options o, RootCache* roots, measure::DigestCache* digests)
    : impl_(std::make_unique<Impl>()) {
  auto c = std::make_shared<Impl::Core>();
  if (o.workers == 0) o.workers = 1;
  if (o.timeout.count() <= 0) o.timeout = std::chrono::milliseconds(1);
  c->opts = std::move(o);
  c->roots = roots;
  c->digests = digests;
  impl_->core = c;
  {
    std::lock_guard lock(c->mu);
    for (size_t i = 0; i < c->opts.workers; ++i) Impl::spawn_worker_locked(c);
  }
  impl_->supervisor = std::thread([c] { Impl::supervisor_main(c); });
}

FileAccessor::~FileAccessor() {
  auto& c = *impl_->core;
  std::vector<Impl::Delivery> out;
  {
    std::lock_guard lock(c.mu);
    c.stopping = true;
    for (auto& [k, j] : c.inflight) {
      j->cancel = true;
      Impl::answer_locked(
          c, j,
          [&](size_t) -> AccessResult {
            return tl::unexpected(make_access_error(AccessErrorKind::kShutdown, ESHUTDOWN,
                                                    "the accessor is stopping", ""));
          },
          out);
    }
    for (auto& w : c.workers)
      if (w->job) w->job->cancel = true;
    c.inflight.clear();
    c.ring.clear();
    for (auto& [id, q] : c.queues) q.pending.clear();
    while (!c.deferred.empty()) {
      out.push_back(std::move(c.deferred.front()));
      c.deferred.pop_front();
    }
  }
  c.work_cv.notify_all();
  c.super_cv.notify_all();
  Impl::deliver_all(c, out);
  impl_->supervisor.join();
  // Join what returns within abandon_after; a worker still in the kernel is left detached (it
  // holds the Core and touches nothing else when it comes back).
  std::unique_lock lock(c.mu);
  auto until = Clock::now() + c.opts.abandon_after;
  c.exit_cv.wait_until(lock, until, [&] {
    return std::all_of(c.workers.begin(), c.workers.end(), [](auto& w) { return w->exited; });
  });
  c.exit_cv.wait(lock, [&] { return c.in_external == 0; });
  auto workers = std::move(c.workers);
  lock.unlock();
  for (auto& w : workers) {
    if (w->exited)
      w->thread.join();
    else
      w->thread.detach();
  }
}

void FileAccessor::submit(Request r) {
  auto& c = *impl_->core;
  if (!r.done) {
    logger("access")->error("request seq {} has no callback: ignored", r.seq);
    return;
  }
  const std::string where = r.ev.path;
  // A version already hashed: answered at once, no queue, no I/O.
  if (!r.want_ima_xattr && !r.algo_from_xattr && !r.algos.empty() && c.digests) {
    FileFacts facts;
    facts.from_cache = true;
    facts.algos = r.algos;
    auto key = measure::FileKey::from_event(r.ev);
    for (auto a : r.algos) {
      auto d = c.digests->get(measure::DigestKey{key, a});
      if (!d) break;
      facts.digests.push_back(*d);
    }
    if (facts.digests.size() == r.algos.size()) {
      {
        std::lock_guard lock(c.mu);
        ++c.counters.submitted;
        ++c.counters.cache_hits;
        ++c.queues[r.queue].done;
      }
      Impl::deliver_inline(c, std::move(r.done), std::move(facts));
      return;
    }
  }
  std::optional<AccessError> refused;
  {
    std::lock_guard lock(c.mu);
    ++c.counters.submitted;
    JobKey key{measure::FileKey::from_event(r.ev), r.algos, r.want_ima_xattr || r.algo_from_xattr,
               r.algo_from_xattr};
    auto it = c.inflight.find(key);
    Impl::Queue& q = c.queues[r.queue];
    if (c.stopping) {
      refused = make_access_error(AccessErrorKind::kShutdown, ESHUTDOWN,
                                  "the accessor is stopping", where);
    } else if (it != c.inflight.end() && it->second->timed_out) {
      ++c.counters.timeouts;
      ++q.timeouts;
      refused = make_access_error(AccessErrorKind::kTimeout, ETIMEDOUT,
                                  "the same file version is still being read by a request that "
                                  "timed out",
                                  where);
    } else if (auto sq = c.stalled_queues.find(r.queue);
               sq != c.stalled_queues.end() && sq->second >= c.opts.max_stuck_per_queue) {
      ++c.counters.timeouts;
      ++q.timeouts;
      refused = make_access_error(
          AccessErrorKind::kTimeout, ETIMEDOUT,
          "queue " + std::to_string(r.queue) + " has " + std::to_string(sq->second) +
              " reads stuck in the kernel: not trying another until one returns",
          where);
    } else if (c.stalled_devs.count(r.ev.dev())) {
      ++c.counters.timeouts;
      ++q.timeouts;
      refused = make_access_error(
          AccessErrorKind::kTimeout, ETIMEDOUT,
          "a read on this filesystem is stuck in the kernel: not trying another", where);
    } else if (q.waiting + q.running >= c.opts.queue_capacity ||
               c.outstanding >= c.opts.total_capacity) {
      ++c.counters.rejected;
      ++q.rejected;
      bool own = q.waiting + q.running >= c.opts.queue_capacity;
      refused = make_access_error(
          AccessErrorKind::kQueueFull, EAGAIN,
          own ? "queue " + std::to_string(r.queue) + " holds " +
                    std::to_string(c.opts.queue_capacity) + " requests already"
              : "all queues together hold " + std::to_string(c.opts.total_capacity) +
                    " requests already",
          where);
    } else if (it != c.inflight.end()) {
      ++c.counters.coalesced;
      Impl::add_waiter_locked(c, it->second, std::move(r));
    } else {
      auto job = std::make_shared<Impl::Job>();
      job->key = key;
      job->enqueued = Clock::now();
      job->home_queue = r.queue;
      c.inflight.emplace(std::move(key), job);
      Impl::add_waiter_locked(c, job, std::move(r));
    }
  }
  if (refused) {
    Impl::deliver_inline(c, std::move(r.done), tl::unexpected(std::move(*refused)));
    return;
  }
  c.work_cv.notify_one();
  c.super_cv.notify_all();  // with no live worker, it times queued requests out
}

void FileAccessor::drop_queue(uint32_t queue) {
  auto& c = *impl_->core;
  std::vector<Impl::Delivery> out;
  {
    std::lock_guard lock(c.mu);
    auto qi = c.queues.find(queue);
    if (qi == c.queues.end()) return;
    Impl::Queue& q = qi->second;
    for (auto& job : q.pending) {
      if (job->started || job->answered) continue;
      auto& ws = job->waiters;
      for (auto it = ws.begin(); it != ws.end();) {
        if (it->queue != queue) {
          ++it;
          continue;
        }
        AccessResult res = tl::unexpected(make_access_error(
            AccessErrorKind::kShutdown, ESHUTDOWN,
            "namespace queue " + std::to_string(queue) + " was dropped", it->ev.path));
        Impl::account_answer_locked(c, *job, *it, res);
        out.push_back(Impl::Delivery{std::move(it->done), std::move(res), true});
        it = ws.erase(it);
      }
      std::erase(job->queued_in, queue);
      if (ws.empty()) {
        job->answered = true;
        Impl::erase_inflight_locked(c, job);
      }
    }
    q.pending.clear();
    if (q.waiting + q.running == 0) c.queues.erase(qi);
    if (!c.opts.answer_inline) {
      for (auto& d : out) c.deferred.push_back(std::move(d));
      out.clear();
    }
  }
  c.super_cv.notify_all();
  Impl::deliver_all(c, out);
}

void FileAccessor::drain() {
  auto& c = *impl_->core;
  std::unique_lock lock(c.mu);
  c.idle_cv.wait(lock,
                 [&] { return c.outstanding == 0 && c.deferred.empty() && c.delivering == 0; });
}

FileAccessor::Stats FileAccessor::stats() const {
  auto& c = *impl_->core;
  std::lock_guard lock(c.mu);
  Stats s = c.counters;
  s.workers = c.live;
  s.stuck_workers = c.stuck;
  for (auto& [id, q] : c.queues)
    s.queues.push_back(QueueStats{id, q.waiting, q.running, q.done, q.timeouts, q.rejected});
  return s;
}

}  // namespace nsima::access

// SPDX-License-Identifier: Apache-2.0
// The file accessor: everything nsimad learns from a file an event names, read the way the
// event's process saw it, off the judge's thread and never under any pipeline lock.
//
//  * RootCache: the root a process's paths are relative to (chroot / pivot_root aware), taken as
//    early as possible (on the intake thread, from /proc/PID/root of the very process, checked by
//    its start time against pid reuse and by the root's (dev, ino) the hook reported). A root is
//    held only while a live process lends it (its pidfd), so a dead container's rootfs is never
//    pinned; the cache is bounded.
//  * FileAccessor: per-namespace queues served round-robin by worker threads. A request opens the
//    file once (through its root, identity checked against the event), reads security.ima if
//    asked, hashes it (digest cache first), and answers exactly once. A queue that is full answers
//    kQueueFull at once (never blocks the caller); a request that is not answered within its
//    deadline answers kTimeout, and a worker stuck in the kernel (a FUSE file that never answers)
//    is replaced, so one namespace's stalled file never stops the others.
#pragma once

#include <any>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/event.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "measure/digest_cache.h"
#include "measure/file_reader.h"
#include "measure/hash_algo.h"
#include "measure/hasher.h"

namespace nsima::access {

// Why a file could not be read as its event saw it. Each becomes a violation entry whose name
// says so (see daemon/README.md, "Violations").
enum class AccessErrorKind {
  kVanished,     // the file or the process (and every lender of its root) is gone
  kMismatch,     // the path now names another inode (replaced, renamed over)
  kNotRegular,   // not a regular file any more
  kDenied,       // EACCES/EPERM, or the path tried to leave the root
  kInvalidPath,  // empty / too long / embedded NUL
  kIoError,      // a read or open failed otherwise
  kTimeout,      // not answered within Options::timeout (stalled filesystem, huge file)
  kQueueFull,    // the namespace's queue (or the global cap) was full
  kShutdown,     // the accessor is stopping, or the namespace was dropped
};
std::string_view access_error_kind_name(AccessErrorKind k);  // "vanished", "timeout", ...

struct AccessError {
  AccessErrorKind kind = AccessErrorKind::kIoError;
  Error error;  // where = the path (and root) that failed
  std::string to_string() const;
};

// What a request asked for, once it is answered.
struct FileFacts {
  std::vector<measure::Digest> digests;  // one per `algos`, same order
  // Request::algos, then security.ima's algorithm when Request::algo_from_xattr added one.
  std::vector<measure::HashAlgo> algos;
  std::optional<std::vector<uint8_t>> ima_xattr;  // security.ima if asked and present
  // What Options::xattr_parse made of ima_xattr (the pipeline's confined parse, an
  // appraise::XattrResult), on this worker thread; empty: not parsed.
  std::any ima_xattr_parsed;
  bool changed = false;     // the file changed while being read (or differs from the event's
                            // stamp): the digests are of a newer version; nothing was cached
  bool from_cache = false;  // every digest came from the digest cache (no read)
  uint64_t bytes = 0;       // bytes hashed
};
using AccessResult = tl::expected<FileFacts, AccessError>;

class RootCache {
 public:
  struct Options {
    size_t capacity = 1024;  // roots held at most (LRU beyond)
    // How often a lender still alive is checked to still be in the root's mount namespace (a
    // lender's death itself is seen at once: its pidfd is watched by the sweeper thread).
    std::chrono::milliseconds sweep_interval{1000};
  };
  struct Stats {
    uint64_t hits = 0, captured = 0, pid_reused = 0, process_gone = 0, evicted_dead = 0;
    size_t size = 0;
    uint64_t moved = 0;           // the process lives but its mount ns or root is not the event's
    uint64_t late_captures = 0;   // root_for() found no entry and took the root from the event's
                                  // process, still alive then
    uint64_t evicted_lru = 0;     // beyond capacity
    uint64_t vanished = 0;        // root_for() answers kVanished
    uint64_t own_roots = 0;       // own_root() answered with a root
  };

  explicit RootCache(Options o);
  ~RootCache();

  // On the intake thread, for every event, in Event::seq order: makes sure a root for the
  // event's (mnt_ns, root dev, root ino) is held while a live process lends it. A hit costs no
  // system call (a mutex and an LRU splice).
  void capture(const Event& ev);
  // A new O_PATH fd of the root the event's path is relative to, or why there is none (kVanished:
  // the process is gone and no live process lends that root; the message names the pid, the root
  // and why). An entry captured after `ev.seq` is not used for `ev` (it may be a later namespace
  // that reuses the inode number) unless the event's own process still proves it.
  tl::expected<UniqueFd, AccessError> root_for(const Event& ev);
  // The root of the event's own process, if it is still that process with that mount namespace
  // and root; not cached. For a retry when a root lent by another process with the same key
  // does not resolve the path as the event's process saw it (same root dentry reached through
  // another mount: a bind mount used as chroot sees other submounts).
  tl::expected<UniqueFd, AccessError> own_root(const Event& ev);
  Stats stats() const;
  // One sweep now (the sweeper thread does it every sweep_interval): evicts entries whose lender
  // died or left the root's mount namespace. For tests and callers that want it sooner.
  void sweep();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class FileAccessor {
 public:
  // Fault injection for tests: called on the worker, for the request whose opener is tried
  // (before_open) or whose file is open and about to be hashed (before_hash). A hook that blocks
  // behaves like a system call that never returns.
  struct Hooks {
    std::function<void(const Event&)> before_open;
    std::function<void(const Event&, int fd)> before_hash;
  };
  struct Options {
    size_t workers = 2;
    size_t queue_capacity = 4096;    // per namespace queue: its requests not yet answered
    size_t total_capacity = 65536;   // over all queues
    std::chrono::milliseconds timeout{30000};  // per request, from start of work to answer
    size_t max_stuck_workers = 16;   // workers abandoned in the kernel before no more replacements
    // Stuck workers one queue may cause (its requests' files): beyond, its new requests are
    // answered kTimeout at once, so one namespace (many stalling FUSE mounts) cannot use up
    // max_stuck_workers and stop the others.
    size_t max_stuck_per_queue = 2;
    // After a timeout, how long the worker may take to notice its cancel flag before it is
    // declared stuck (abandoned, replaced). Hashing notices within one chunk.
    std::chrono::milliseconds abandon_after{1000};
    int nice = 10;                   // workers run SCHED_BATCH at this nice value (0: unchanged)
    bool file_handles = true;        // open_by_handle_at when no root is lent (ext4 & co.)
    // false: answers that would be given inline in submit() (cache hit, full queue, shutdown)
    // are handed to the supervisor thread instead, so `done` never runs on the submitter.
    bool answer_inline = true;
    // The hash algorithm a security.ima value asks for (appraise::hash_algo_for_xattr), for
    // Request::algo_from_xattr; unset: none is added.
    std::function<std::optional<measure::HashAlgo>(std::span<const uint8_t>)> xattr_algo;
    // Parses a security.ima value read for a request (FileFacts::ima_xattr_parsed): off the
    // pipeline thread, since the confined parser may take up to its deadline. Unset: none.
    std::function<std::any(std::span<const uint8_t>)> xattr_parse;
    size_t chunk_size = measure::kDefaultChunkSize;  // bytes per read; the cancel granularity
    Hooks hooks;
  };
  struct Request {
    uint64_t seq = 0;     // Event::seq, for messages and barriers
    uint32_t queue = 0;   // namespace id whose queue and quota this request uses
    Event ev;             // identity, stamp, path, root key, pid of the access
    std::vector<measure::HashAlgo> algos;  // digests wanted (may be empty)
    bool want_ima_xattr = false;
    // Also hash with the algorithm security.ima names (Options::xattr_algo), as the kernel's
    // appraisal does. Implies want_ima_xattr.
    bool algo_from_xattr = false;
    // Called exactly once: on a worker, on the supervisor (timeout), or inline in submit()
    // (digest-cache hit, full queue). Must not block for long and must not throw.
    std::function<void(const AccessResult&)> done;
  };
  struct QueueStats {
    uint32_t queue = 0;
    size_t queued = 0, running = 0;
    uint64_t done = 0, timeouts = 0, rejected = 0;
  };
  struct Stats {
    uint64_t submitted = 0, cache_hits = 0, coalesced = 0, files_read = 0, bytes_read = 0;
    uint64_t timeouts = 0, rejected = 0;
    size_t workers = 0, stuck_workers = 0;  // live workers; abandoned ones not returned yet
    std::vector<QueueStats> queues;         // by queue id
    uint64_t abandoned = 0;     // workers ever declared stuck (each replaced while allowed)
    uint64_t late_results = 0;  // work that finished after its request was answered: discarded
    uint64_t handle_opens = 0;  // files opened with open_by_handle_at (no root lent)
    uint64_t failed = 0;        // answered with an error other than timeout/full/shutdown
  };

  // `roots` and `digests` must outlive the accessor.
  FileAccessor(Options o, RootCache* roots, measure::DigestCache* digests);
  // Answers what is unanswered with kShutdown (on the calling thread), joins the workers that
  // return within abandon_after; workers stuck in the kernel stay detached and exit when they
  // return (they touch neither `roots` nor `digests` then).
  ~FileAccessor();
  FileAccessor(const FileAccessor&) = delete;
  FileAccessor& operator=(const FileAccessor&) = delete;

  // Never blocks on I/O or on queue space. Inline answers (Options::answer_inline) run on the
  // calling thread before submit returns: do not hold a lock there that `done` takes.
  // A request with no algorithm and no xattr wanted still opens and checks the file.
  void submit(Request r);
  // Answers every queued request of `queue` with kShutdown (the namespace was deleted); running
  // ones finish. Answers on the calling thread, or on the supervisor with answer_inline = false.
  void drop_queue(uint32_t queue);
  // Waits until every request submitted so far is answered (tests, shutdown).
  void drain();
  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nsima::access

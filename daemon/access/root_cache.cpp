// SPDX-License-Identifier: Apache-2.0
// RootCache: O_PATH roots keyed by (mount ns inode, root dev, root ino), each lent by a live
// process whose pidfd is held and watched. The lender's death (its pidfd becomes readable) is
// seen by the sweeper thread through epoll and evicts the entry at once, so a dead container's
// rootfs is not pinned; a periodic sweep also evicts lenders that moved to another mount
// namespace. nsimad's own mount namespace with "/" as root is a permanent entry.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "access/file_accessor.h"
#include "access/proc.h"
#include "common/log.h"

namespace nsima::access {

namespace {

struct Key {
  uint32_t mnt_ns = 0;
  uint64_t kdev = 0, ino = 0;
  bool operator==(const Key&) const = default;
};
struct KeyHash {
  size_t operator()(const Key& k) const noexcept {
    size_t h = std::hash<uint64_t>{}(k.mnt_ns);
    h ^= std::hash<uint64_t>{}(k.kdev) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= std::hash<uint64_t>{}(k.ino) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
  }
};

// The root an event's path is relative to: its process's mount namespace and root directory.
Key key_of(const Event& ev) { return Key{ev.mnt_ns, ev.root_kdev, ev.root_ino}; }

std::string describe_root(const Key& k) {
  dev_t d = kdev_to_dev(k.kdev);
  return "root " + std::to_string(major(d)) + ":" + std::to_string(minor(d)) + " ino " +
         std::to_string(k.ino) + " of mount namespace " + std::to_string(k.mnt_ns);
}

bool pidfd_alive(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1, 0);
  } while (r < 0 && errno == EINTR);
  return r == 0;  // readable (POLLIN/POLLHUP): the process has exited
}

enum class LendFail { kGone, kPidReused, kMoved };
struct LendError {
  LendFail why;
  std::string message;
};

}  // namespace

struct RootCache::Impl {
  struct Entry {
    Key key;
    UniqueFd root;
    UniqueFd pidfd;  // empty for the permanent entry
    // The lender's mount namespace, held while the entry lives so that its inode number (the
    // key) cannot be reused meanwhile; the lender is in it, so this pins nothing extra (a lender
    // that leaves is evicted by the sweep).
    UniqueFd ns;
    pid_t pid = 0;
    uint64_t first_seq = 0;  // the event whose capture took it: it serves events from there on
    uint64_t serial = 0;
    bool cached = true;                             // guarded by mu
    std::list<std::shared_ptr<Entry>>::iterator lru;  // guarded by mu, valid while cached
  };
  using EntryPtr = std::shared_ptr<Entry>;

  explicit Impl(Options o) : opts(o) {
    if (opts.capacity == 0) opts.capacity = 1;
    ep.reset(::epoll_create1(EPOLL_CLOEXEC));
    stop_fd.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (ep && stop_fd) {
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.u64 = 0;  // serial 0: the stop signal
      ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, stop_fd.get(), &e);
    } else {
      logger("access")->error("root cache: epoll/eventfd failed ({}): dead lenders are found by "
                              "the periodic sweep only", std::strerror(errno));
    }
    add_self();
    sweeper = std::thread([this] { sweep_loop(); });
  }

  ~Impl() {
    if (stop_fd) {
      uint64_t one = 1;
      (void)!::write(stop_fd.get(), &one, sizeof one);
    }
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    stop_cv.notify_all();
    sweeper.join();
  }

  void add_self() {
    struct stat ns {}, root {};
    UniqueFd fd(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (::stat("/proc/self/ns/mnt", &ns) != 0 || !fd || ::fstat(fd.get(), &root) != 0) {
      logger("access")->error("root cache: cannot take nsimad's own root: {}",
                              std::strerror(errno));
      return;
    }
    auto e = std::make_shared<Entry>();
    e->key = Key{static_cast<uint32_t>(ns.st_ino), dev_to_kdev(root.st_dev),
                 static_cast<uint64_t>(root.st_ino)};
    e->root = std::move(fd);
    e->serial = ++next_serial;
    std::lock_guard lock(mu);
    self_key = e->key;
    map.emplace(e->key, e);  // never in the LRU list: permanent
  }

  // Takes the event's root from its process, if that process is still the event's.
  tl::expected<EntryPtr, LendError> lend(const Event& ev) {
    const Key key = key_of(ev);
    const pid_t tgid = static_cast<pid_t>(ev.tgid);
    const std::string who = "process " + std::to_string(ev.tgid);
    if (tgid <= 0) return tl::unexpected(LendError{LendFail::kGone, "event names no process"});
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, tgid, 0)));
    if (!pidfd)
      return tl::unexpected(LendError{LendFail::kGone, who + " has exited"});
    const std::string proc = "/proc/" + std::to_string(tgid);
    if (ev.start_boottime_ns != 0) {
      auto ticks = read_start_ticks(proc);
      if (!ticks) return tl::unexpected(LendError{LendFail::kGone, who + " has exited"});
      if (*ticks != boottime_ns_to_ticks(ev.start_boottime_ns))
        return tl::unexpected(LendError{
            LendFail::kPidReused,
            who + " is another process now (started at tick " + std::to_string(*ticks) +
                ", the event's at " + std::to_string(boottime_ns_to_ticks(ev.start_boottime_ns)) +
                "): its pid was reused"});
    }
    // The thread that made the access may have its own root (unshare(CLONE_FS) + chroot).
    std::string dir = proc;
    if (ev.pid != 0 && ev.pid != ev.tgid) {
      std::string task = proc + "/task/" + std::to_string(ev.pid);
      if (::access(task.c_str(), F_OK) == 0) dir = task;
    }
    UniqueFd nsfd(::open((dir + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC));
    struct stat nst {};
    if (!nsfd || ::fstat(nsfd.get(), &nst) != 0)
      return tl::unexpected(LendError{LendFail::kGone, who + " has exited"});
    if (nst.st_ino != ev.mnt_ns)
      return tl::unexpected(LendError{LendFail::kMoved, who + " is in mount namespace " +
                                                            std::to_string(nst.st_ino) + " now"});
    const std::string rootp = dir + "/root";
    UniqueFd root(::open(rootp.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    struct stat st {};
    if (!root || ::fstat(root.get(), &st) != 0)
      return tl::unexpected(LendError{LendFail::kGone, who + " has exited"});
    if (dev_to_kdev(st.st_dev) != ev.root_kdev || static_cast<uint64_t>(st.st_ino) != ev.root_ino)
      return tl::unexpected(LendError{
          LendFail::kMoved, who + " has another root now (" + std::to_string(major(st.st_dev)) +
                                ":" + std::to_string(minor(st.st_dev)) + " ino " +
                                std::to_string(st.st_ino) + ")"});
    // Everything above was read through the pid: it was this process only if it is still alive.
    if (!pidfd_alive(pidfd.get()))
      return tl::unexpected(LendError{LendFail::kGone, who + " has exited"});
    auto e = std::make_shared<Entry>();
    e->key = key;
    e->root = std::move(root);
    e->pidfd = std::move(pidfd);
    e->ns = std::move(nsfd);
    e->pid = tgid;
    e->first_seq = ev.seq;
    return e;
  }

  void count_failure(const LendError& f) {
    std::lock_guard lock(mu);
    switch (f.why) {
      case LendFail::kGone: ++stats.process_gone; break;
      case LendFail::kPidReused: ++stats.pid_reused; break;
      case LendFail::kMoved: ++stats.moved; break;
    }
  }

  // Inserts `e` unless an entry for its key exists already; returns the entry in the cache.
  EntryPtr insert(EntryPtr e) {
    std::vector<EntryPtr> evicted;
    EntryPtr out;
    {
      std::lock_guard lock(mu);
      if (stopping) return e;
      auto [it, fresh] = map.emplace(e->key, e);
      if (!fresh) return it->second;
      e->serial = ++next_serial;
      lru.push_front(e);
      e->lru = lru.begin();
      by_serial.emplace(e->serial, e);
      if (ep) {
        epoll_event ee{};
        ee.events = EPOLLIN;
        ee.data.u64 = e->serial;
        ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, e->pidfd.get(), &ee);
      }
      ++stats.captured;
      while (lru.size() > opts.capacity) {
        EntryPtr victim = lru.back();
        erase_locked(victim);
        ++stats.evicted_lru;
        evicted.push_back(std::move(victim));
      }
      out = e;
    }
    return out;  // `evicted` closes its fds here, outside the lock
  }

  void erase_locked(const EntryPtr& e) {
    if (!e->cached) return;
    e->cached = false;
    lru.erase(e->lru);
    map.erase(e->key);
    by_serial.erase(e->serial);
    if (ep && e->pidfd) ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, e->pidfd.get(), nullptr);
  }

  // Takes `e` out of the cache and drops the caller's reference, so that its fds are closed now
  // unless a root_for() is using it at this very moment; counted once that is done.
  void evict_dead(EntryPtr&& e) {
    bool erased = false;
    {
      std::lock_guard lock(mu);
      if (e->cached) {
        erase_locked(e);
        erased = true;
      }
    }
    e.reset();
    if (erased) {
      std::lock_guard lock(mu);
      ++stats.evicted_dead;
    }
  }

  // Is the lender alive and still in the key's mount namespace?
  static bool lender_valid(const Entry& e) {
    if (!e.pidfd) return true;
    if (!pidfd_alive(e.pidfd.get())) return false;
    auto ns = read_mnt_ns_inode("/proc/" + std::to_string(e.pid));
    return ns && *ns == e.key.mnt_ns && pidfd_alive(e.pidfd.get());
  }

  void sweep() {
    std::vector<EntryPtr> snapshot;
    {
      std::lock_guard lock(mu);
      snapshot.assign(lru.begin(), lru.end());
    }
    for (auto& e : snapshot)
      if (!lender_valid(*e)) evict_dead(std::move(e));
  }

  void sweep_loop() {
    using clock = std::chrono::steady_clock;
    auto interval = std::max(opts.sweep_interval, std::chrono::milliseconds(1));
    auto next_sweep = clock::now() + interval;
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (stopping) return;
      }
      auto now = clock::now();
      if (now >= next_sweep) {
        sweep();
        next_sweep = now + interval;
      }
      int wait_ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(next_sweep - now).count()) + 1;
      if (!ep) {
        std::unique_lock lock(mu);
        stop_cv.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return stopping; });
        continue;
      }
      epoll_event evs[64];
      int n = ::epoll_wait(ep.get(), evs, 64, wait_ms);
      for (int i = 0; i < n; ++i) {
        if (evs[i].data.u64 == 0) return;  // stop
        // A copy: struct epoll_event is packed on x86-64, so data.u64 is misaligned and
        // find() must not bind its reference to it (UBSan).
        const uint64_t serial = evs[i].data.u64;
        EntryPtr e;
        {
          std::lock_guard lock(mu);
          auto it = by_serial.find(serial);
          if (it != by_serial.end()) e = it->second;
        }
        if (e) evict_dead(std::move(e));  // its pidfd is readable: the lender exited
      }
    }
  }

  Options opts;
  mutable std::mutex mu;
  std::condition_variable stop_cv;
  std::unordered_map<Key, EntryPtr, KeyHash> map;    // guarded by mu
  std::list<EntryPtr> lru;                           // guarded by mu; front = most recent
  std::unordered_map<uint64_t, EntryPtr> by_serial;  // guarded by mu
  Stats stats;                                       // guarded by mu
  Key self_key;
  std::atomic<uint64_t> next_serial{0};
  bool stopping = false;  // guarded by mu
  UniqueFd ep, stop_fd;
  std::thread sweeper;
};

RootCache::RootCache(Options o) : impl_(std::make_unique<Impl>(o)) {}
RootCache::~RootCache() = default;

void RootCache::capture(const Event& ev) {
  const Key key = key_of(ev);
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->map.find(key);
    if (it != impl_->map.end()) {
      auto& e = it->second;
      if (e->pidfd) impl_->lru.splice(impl_->lru.begin(), impl_->lru, e->lru);
      ++impl_->stats.hits;
      return;
    }
  }
  auto e = impl_->lend(ev);
  if (!e) {
    impl_->count_failure(e.error());
    return;
  }
  impl_->insert(std::move(*e));
}

tl::expected<UniqueFd, AccessError> RootCache::root_for(const Event& ev) {
  const Key key = key_of(ev);
  Impl::EntryPtr e;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->map.find(key);
    if (it != impl_->map.end()) e = it->second;
  }
  if (e && !Impl::lender_valid(*e)) impl_->evict_dead(std::move(e));
  std::string why;
  // An entry taken after this event was captured may be another namespace that got the same
  // inode number (and a root with the same dev/ino: a fresh tmpfs): it is not this event's root
  // unless the event's own process still proves it.
  if (e && e->pidfd && ev.seq < e->first_seq) {
    why = "the root held for this key was taken after the event (seq " +
          std::to_string(e->first_seq) + " > " + std::to_string(ev.seq) +
          "), so it may be a later namespace with the same inode number; ";
    e.reset();
    auto own = impl_->lend(ev);
    if (own) {
      e = std::move(*own);  // used for this event only: the key's entry stays
    } else {
      impl_->count_failure(own.error());
      why += own.error().message;
    }
  } else if (!e) {
    auto lent = impl_->lend(ev);
    if (lent) {
      e = impl_->insert(std::move(*lent));
      std::lock_guard lock(impl_->mu);
      ++impl_->stats.late_captures;
    } else {
      impl_->count_failure(lent.error());
      why = lent.error().message;
    }
  }
  if (e) {
    UniqueFd dup(::fcntl(e->root.get(), F_DUPFD_CLOEXEC, 0));
    if (dup) return dup;
    int err = errno;
    return tl::unexpected(AccessError{AccessErrorKind::kIoError,
                                      Error{err, std::string("dup: ") + std::strerror(err),
                                            describe_root(key)}});
  }
  {
    std::lock_guard lock(impl_->mu);
    ++impl_->stats.vanished;
  }
  return tl::unexpected(AccessError{
      AccessErrorKind::kVanished,
      Error{ESRCH, why + " and no live process lends " + describe_root(key),
            "pid " + std::to_string(ev.tgid) + " " + describe_root(key)}});
}

tl::expected<UniqueFd, AccessError> RootCache::own_root(const Event& ev) {
  const Key key = key_of(ev);
  auto own = impl_->lend(ev);
  if (!own) {
    impl_->count_failure(own.error());
    return tl::unexpected(AccessError{
        AccessErrorKind::kVanished,
        Error{ESRCH, own.error().message, "pid " + std::to_string(ev.tgid) + " " +
                                              describe_root(key)}});
  }
  {
    std::lock_guard lock(impl_->mu);
    ++impl_->stats.own_roots;
  }
  return std::move((*own)->root);
}

RootCache::Stats RootCache::stats() const {
  std::lock_guard lock(impl_->mu);
  Stats s = impl_->stats;
  s.size = impl_->map.size();
  return s;
}

void RootCache::sweep() { impl_->sweep(); }

}  // namespace nsima::access

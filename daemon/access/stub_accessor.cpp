// SPDX-License-Identifier: Apache-2.0
// TEMPORARY stand-in for the file accessor (daemon/access/file_accessor.h) until the real one
// lands: roots cached per (mnt ns, root), one shared hashing pool, no timeouts.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <tuple>

#include "access/file_accessor.h"
#include "measure/hash_pool.h"

namespace nsima::access {

std::string_view access_error_kind_name(AccessErrorKind k) {
  switch (k) {
    case AccessErrorKind::kVanished: return "vanished";
    case AccessErrorKind::kMismatch: return "replaced";
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
}  // namespace

struct RootCache::Impl {
  std::mutex mu;
  std::map<std::tuple<uint32_t, uint64_t, uint64_t>, std::shared_ptr<UniqueFd>> roots;
};

RootCache::RootCache(Options) : impl_(std::make_unique<Impl>()) {}
RootCache::~RootCache() = default;

void RootCache::capture(const Event& ev) {
  std::lock_guard lock(impl_->mu);
  auto key = std::make_tuple(ev.mnt_ns, ev.root_kdev, ev.root_ino);
  if (impl_->roots.count(key)) return;
  std::string p = "/proc/" + std::to_string(ev.tgid) + "/root";
  auto fd = std::make_shared<UniqueFd>(::open(p.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (*fd) impl_->roots[key] = fd;
}

tl::expected<UniqueFd, AccessError> RootCache::root_for(const Event& ev) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->roots.find(std::make_tuple(ev.mnt_ns, ev.root_kdev, ev.root_ino));
  if (it == impl_->roots.end())
    return tl::unexpected(AccessError{AccessErrorKind::kVanished,
                                      Error{ESRCH, "no root for the process", ev.path}});
  return UniqueFd(::fcntl(it->second->get(), F_DUPFD_CLOEXEC, 0));
}

RootCache::Stats RootCache::stats() const { return {}; }

struct FileAccessor::Impl {
  RootCache* roots;
  std::unique_ptr<measure::HashPool> pool;
};

FileAccessor::FileAccessor(Options o, RootCache* roots, measure::DigestCache* digests)
    : impl_(std::make_unique<Impl>()) {
  impl_->roots = roots;
  measure::HashPool::Options po;
  po.threads = o.workers;
  impl_->pool = std::make_unique<measure::HashPool>(po, digests);
}

FileAccessor::~FileAccessor() = default;

void FileAccessor::submit(Request r) {
  auto root = impl_->roots->root_for(r.ev);
  if (!root) return r.done(tl::unexpected(root.error()));
  auto shared_root = std::make_shared<UniqueFd>(std::move(*root));
  measure::FileIdentity ident = measure::FileIdentity::from_event(r.ev);
  std::optional<std::vector<uint8_t>> xattr;
  if (r.want_ima_xattr) {
    auto f = measure::open_in_root(shared_root->get(), r.ev.path, ident);
    if (f) {
      std::vector<uint8_t> buf(65536);
      ssize_t n = fgetxattr(f->fd.get(), "security.ima", buf.data(), buf.size());
      if (n > 0) {
        buf.resize(static_cast<size_t>(n));
        xattr = std::move(buf);
      }
    }
  }
  measure::HashRequest req;
  req.key = measure::FileKey::from_event(r.ev);
  req.algos = r.algos;
  std::string path = r.ev.path;
  req.open = [shared_root, path, ident]() { return measure::open_in_root(shared_root->get(), path, ident); };
  auto done = r.done;
  req.done = [done, xattr](const measure::HashResult& h) {
    if (!h) return done(tl::unexpected(AccessError{kind_of(h.error().kind), h.error().error}));
    FileFacts f;
    f.digests = h->digests;
    f.ima_xattr = xattr;
    f.changed = h->changed;
    f.from_cache = h->from_cache;
    f.bytes = h->bytes;
    done(f);
  };
  if (auto s = impl_->pool->submit(std::move(req)); !s)
    done(tl::unexpected(AccessError{AccessErrorKind::kShutdown, s.error()}));
}

void FileAccessor::drop_queue(uint32_t) {}
void FileAccessor::drain() { impl_->pool->drain(); }
FileAccessor::Stats FileAccessor::stats() const { return {}; }

}  // namespace nsima::access

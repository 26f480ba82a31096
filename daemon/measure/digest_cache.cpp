// SPDX-License-Identifier: Apache-2.0
// LRU digest cache (list + hash map under one mutex: lookups are short and rare compared with
// hashing a file, so a single lock is not a bottleneck).
#include "measure/digest_cache.h"

#include <algorithm>

namespace nsima::measure {

namespace {

inline void mix(size_t& h, uint64_t v) {
  // boost::hash_combine-style mixing with a 64-bit constant.
  h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
}

}  // namespace

FileKey FileKey::from_event(const Event& ev) {
  return FileKey{ev.dev(), ev.ino, ev.generation, ev.stamp};
}

FileKey FileKey::from_stat(const struct stat& st, uint32_t generation, uint64_t i_version) {
  return FileKey{st.st_dev, static_cast<uint64_t>(st.st_ino), generation,
                 Stamp{st.st_ctim.tv_sec, static_cast<uint32_t>(st.st_ctim.tv_nsec), i_version,
                       static_cast<uint64_t>(st.st_size)}};
}

size_t FileKeyHash::operator()(const FileKey& k) const noexcept {
  size_t h = 0;
  mix(h, static_cast<uint64_t>(k.dev));
  mix(h, k.ino);
  mix(h, k.generation);
  mix(h, static_cast<uint64_t>(k.stamp.ctime_sec));
  mix(h, k.stamp.ctime_nsec);
  mix(h, k.stamp.i_version);
  mix(h, k.stamp.size);
  return h;
}

size_t DigestKeyHash::operator()(const DigestKey& k) const noexcept {
  size_t h = FileKeyHash{}(k.file);
  mix(h, static_cast<uint64_t>(k.algo));
  return h;
}

DigestCache::DigestCache(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

std::optional<Digest> DigestCache::get(const DigestKey& key) {
  std::lock_guard lock(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) {
    ++stats_.misses;
    return std::nullopt;
  }
  ++stats_.hits;
  if (it->second->origin == Origin::kKernel) ++stats_.kernel_hits;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void DigestCache::put(const DigestKey& key, const Digest& digest, Origin origin) {
  std::lock_guard lock(mu_);
  if (origin == Origin::kKernel) ++stats_.kernel_puts;
  if (auto it = map_.find(key); it != map_.end()) {
    Item& item = *it->second;
    if (origin == Origin::kKernel && item.origin == Origin::kHashed) {
      if (!(item.second == digest)) ++stats_.kernel_mismatches;  // nsimad's read wins
    } else {
      item.second = digest;
      item.origin = origin;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.emplace_front(Item{key, digest, origin});
  map_.emplace(key, lru_.begin());
  while (map_.size() > capacity_) {
    map_.erase(lru_.back().first);
    lru_.pop_back();
    ++stats_.evictions;
  }
}

void DigestCache::erase_inode(dev_t dev, uint64_t ino) {
  std::lock_guard lock(mu_);
  for (auto it = lru_.begin(); it != lru_.end();) {
    if (it->first.file.dev == dev && it->first.file.ino == ino) {
      map_.erase(it->first);
      it = lru_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t DigestCache::size() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

DigestCache::Stats DigestCache::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace nsima::measure

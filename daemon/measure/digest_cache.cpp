// SPDX-License-Identifier: Apache-2.0
// LRU digest cache (items in chunks, an intrusive LRU list and an open-addressing index under one
// mutex: lookups are short and rare compared with hashing a file, so one lock is not a
// bottleneck).
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

// The key packed without padding (48 bytes instead of DigestKey's 64), the digest, the links.
struct DigestCache::Item {
  uint64_t dev = 0, ino = 0;
  int64_t ctime_sec = 0;
  uint64_t i_version = 0, size = 0;
  uint32_t generation = 0, ctime_nsec = 0;
  Digest digest;
  HashAlgo algo = HashAlgo::kSha256;
  Origin origin = Origin::kHashed;
  uint32_t prev = kNone, next = kNone;

  void set_key(const DigestKey& k) {
    dev = static_cast<uint64_t>(k.file.dev);
    ino = k.file.ino;
    ctime_sec = k.file.stamp.ctime_sec;
    i_version = k.file.stamp.i_version;
    size = k.file.stamp.size;
    generation = k.file.generation;
    ctime_nsec = k.file.stamp.ctime_nsec;
    algo = k.algo;
  }
  bool is(const DigestKey& k) const {
    return ino == k.file.ino && ctime_sec == k.file.stamp.ctime_sec &&
           ctime_nsec == k.file.stamp.ctime_nsec && size == k.file.stamp.size &&
           i_version == k.file.stamp.i_version && dev == static_cast<uint64_t>(k.file.dev) &&
           generation == k.file.generation && algo == k.algo;
  }
  DigestKey key() const {
    DigestKey k;
    k.file = FileKey{static_cast<dev_t>(dev), ino, generation,
                     Stamp{ctime_sec, ctime_nsec, i_version, size}};
    k.algo = algo;
    return k;
  }
};
static_assert(sizeof(DigestCache::Item) <= 128, "a cache item stays within 128 bytes");

DigestCache::DigestCache(size_t capacity)
    : capacity_(std::clamp<size_t>(capacity, 1, size_t{UINT32_MAX} - 1)) {}

DigestCache::~DigestCache() = default;

DigestCache::Item& DigestCache::item(uint32_t i) const { return chunks_[i / kChunk][i % kChunk]; }

uint32_t DigestCache::find(const DigestKey& key, size_t& slot) const {
  if (index_.empty()) return kNone;
  const size_t mask = index_.size() - 1;
  slot = DigestKeyHash{}(key) & mask;
  // At most half full, so a run ends long before this bound; it only keeps a broken invariant
  // from becoming an endless loop under the lock.
  for (size_t probes = 0; probes < index_.size(); ++probes, slot = (slot + 1) & mask) {
    uint32_t v = index_[slot];
    if (v == 0) return kNone;
    if (item(v - 1).is(key)) return v - 1;
  }
  return kNone;
}

void DigestCache::unlink(uint32_t i) {
  Item& it = item(i);
  (it.prev == kNone ? head_ : item(it.prev).next) = it.next;
  (it.next == kNone ? tail_ : item(it.next).prev) = it.prev;
  it.prev = it.next = kNone;
}

void DigestCache::push_front(uint32_t i) {
  Item& it = item(i);
  it.prev = kNone;
  it.next = head_;
  if (head_ != kNone) item(head_).prev = i;
  head_ = i;
  if (tail_ == kNone) tail_ = i;
}

void DigestCache::index_insert(uint32_t i) {
  if ((count_ + 1) * 2 > index_.size()) {
    std::vector<uint32_t> old(std::max<size_t>(64, index_.size() * 2), 0);
    old.swap(index_);
    const size_t mask = index_.size() - 1;
    for (uint32_t v : old) {
      if (v == 0) continue;
      size_t s = DigestKeyHash{}(item(v - 1).key()) & mask;
      while (index_[s] != 0) s = (s + 1) & mask;
      index_[s] = v;
    }
  }
  const size_t mask = index_.size() - 1;
  size_t s = DigestKeyHash{}(item(i).key()) & mask;
  while (index_[s] != 0) s = (s + 1) & mask;
  index_[s] = i + 1;
}

// Linear probing without tombstones: shift back every later item of the run whose home slot
// does not lie in (hole, its slot].
void DigestCache::index_erase(size_t hole) {
  const size_t mask = index_.size() - 1;
  index_[hole] = 0;
  for (size_t j = (hole + 1) & mask; index_[j] != 0; j = (j + 1) & mask) {
    size_t home = DigestKeyHash{}(item(index_[j] - 1).key()) & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      index_[hole] = index_[j];
      index_[j] = 0;
      hole = j;
    }
  }
}

void DigestCache::remove(uint32_t i) {
  size_t slot = 0;
  uint32_t found = find(item(i).key(), slot);
  if (found == i) index_erase(slot);
  unlink(i);
  item(i).next = free_;
  free_ = i;
  --count_;
}

std::optional<Digest> DigestCache::get(const DigestKey& key) {
  std::lock_guard lock(mu_);
  size_t slot = 0;
  uint32_t i = find(key, slot);
  if (i == kNone) {
    ++stats_.misses;
    return std::nullopt;
  }
  ++stats_.hits;
  if (item(i).origin == Origin::kKernel) ++stats_.kernel_hits;
  if (head_ != i) {
    unlink(i);
    push_front(i);
  }
  return item(i).digest;
}

void DigestCache::put(const DigestKey& key, const Digest& digest, Origin origin) {
  std::lock_guard lock(mu_);
  if (origin == Origin::kKernel) ++stats_.kernel_puts;
  size_t slot = 0;
  if (uint32_t i = find(key, slot); i != kNone) {
    Item& it = item(i);
    if (origin == Origin::kKernel && it.origin == Origin::kHashed) {
      if (!(it.digest == digest)) ++stats_.kernel_mismatches;  // nsimad's read wins
    } else {
      it.digest = digest;
      it.origin = origin;
    }
    if (head_ != i) {
      unlink(i);
      push_front(i);
    }
    return;
  }
  if (count_ >= capacity_) {
    remove(tail_);  // the least recently used item goes to the free list, taken just below
    ++stats_.evictions;
  }
  uint32_t i;
  if (free_ != kNone) {
    i = free_;
    free_ = item(i).next;
  } else {
    if (allocated_ % kChunk == 0)
      chunks_.push_back(std::make_unique<Item[]>(std::min(kChunk, capacity_)));
    i = allocated_++;
  }
  Item& it = item(i);
  it.set_key(key);
  it.digest = digest;
  it.origin = origin;
  push_front(i);
  index_insert(i);
  ++count_;
}

void DigestCache::erase_inode(dev_t dev, uint64_t ino) {
  std::lock_guard lock(mu_);
  for (uint32_t i = head_; i != kNone;) {
    uint32_t next = item(i).next;
    if (item(i).dev == static_cast<uint64_t>(dev) && item(i).ino == ino) remove(i);
    i = next;
  }
}

size_t DigestCache::size() const {
  std::lock_guard lock(mu_);
  return count_;
}

size_t DigestCache::bytes() const {
  std::lock_guard lock(mu_);
  return chunks_.size() * std::min(kChunk, capacity_) * sizeof(Item) +
         index_.capacity() * sizeof(uint32_t);
}

DigestCache::Stats DigestCache::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace nsima::measure

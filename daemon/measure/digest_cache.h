// SPDX-License-Identifier: Apache-2.0
// Bounded LRU of file digests keyed by inode identity + change stamp + algorithm, so that a file
// shared by many namespaces (a base image layer, a shared library) is hashed once per version
// however many lists record it. The key is what the BPF side reports for the access: (dev, ino,
// i_generation) names the inode, and the stamp (ctime, i_version, size) names its content
// version; any write changes ctime (and i_version where the filesystem keeps one), so a changed
// file misses the cache instead of returning an old digest.
//
// Digests computed by the kernel (NSIMA_EV_KERNEL_DIGEST: a hook hashed the file with
// bpf_ima_file_hash while no writer existed and its stamp did not change) are put with
// Origin::kKernel under the event's identity and stamp, so they answer only for that version;
// a hit on one is counted (kernel_hits): that version was not hashed again by nsimad.
//
// Limit (documented, shared with every ctime-based cache): on a filesystem without i_version, two
// writes inside one coarse ctime tick that keep the size are indistinguishable; the hash pool's
// before/after fstat check narrows this but cannot close it.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "common/event.h"
#include "measure/hash_algo.h"

namespace nsima::measure {

// One version of one inode.
struct FileKey {
  dev_t dev = 0;  // userspace dev_t
  uint64_t ino = 0;
  uint32_t generation = 0;
  Stamp stamp;

  static FileKey from_event(const Event& ev);
  // From fstat(2) of an open file (i_version is not visible to userspace; pass what the capture
  // side reported, or 0 consistently).
  static FileKey from_stat(const struct stat& st, uint32_t generation, uint64_t i_version = 0);
  bool operator==(const FileKey&) const = default;
};

struct DigestKey {
  FileKey file;
  HashAlgo algo = HashAlgo::kSha256;
  bool operator==(const DigestKey&) const = default;
};

struct FileKeyHash {
  size_t operator()(const FileKey& k) const noexcept;
};
struct DigestKeyHash {
  size_t operator()(const DigestKey& k) const noexcept;
};

// One item per (file version, algorithm), 128 bytes each, held once: the items live in chunks of
// 1,024 (allocated as the cache fills, never more than `capacity`), linked in LRU order by
// 32-bit indices, and found through an open-addressing index of 32-bit item numbers (linear
// probing, at most half full). A std::list + std::unordered_map held the key twice and cost
// about 280 bytes per version (daemon/README.md, "Memory under load").
class DigestCache {
 public:
  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;
    uint64_t kernel_puts = 0;  // kernel digests offered (put with Origin::kKernel)
    uint64_t kernel_hits = 0;  // hits on an entry the kernel computed: a hash nsimad did not do
    // kernel digests that differed from nsimad's own digest of the same version (kept nsimad's)
    uint64_t kernel_mismatches = 0;
  };
  enum class Origin : uint8_t { kHashed, kKernel };

  explicit DigestCache(size_t capacity = 65536);
  ~DigestCache();
  DigestCache(const DigestCache&) = delete;
  DigestCache& operator=(const DigestCache&) = delete;

  // Thread-safe. A hit makes the entry most recently used.
  std::optional<Digest> get(const DigestKey& key);
  // A kernel digest never replaces one nsimad computed for the same version; nsimad's replaces
  // the kernel's (and the entry then counts as nsimad's).
  void put(const DigestKey& key, const Digest& digest, Origin origin = Origin::kHashed);
  // Drops every version of an inode (e.g. when the capture side reports it changed or was freed).
  void erase_inode(dev_t dev, uint64_t ino);

  size_t size() const;
  size_t capacity() const { return capacity_; }
  Stats stats() const;
  // Bytes the cache holds now (items allocated + index), for the memory figures.
  size_t bytes() const;

  struct Item;  // digest_cache.cpp

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr size_t kChunk = 1024;

  Item& item(uint32_t i) const;
  uint32_t find(const DigestKey& key, size_t& slot) const;  // kNone if absent (slot: its place)
  void unlink(uint32_t i);
  void push_front(uint32_t i);
  void index_insert(uint32_t i);
  void index_erase(size_t slot);
  void remove(uint32_t i);  // from the index and the LRU, onto the free list

  const size_t capacity_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Item[]>> chunks_;
  uint32_t allocated_ = 0;  // items ever taken from the chunks
  uint32_t free_ = kNone;   // items removed (erase_inode), linked through `next`
  uint32_t head_ = kNone, tail_ = kNone;  // most / least recently used
  size_t count_ = 0;
  std::vector<uint32_t> index_;  // item number + 1; 0 = empty slot
  Stats stats_;
};

}  // namespace nsima::measure

// SPDX-License-Identifier: Apache-2.0
// DigestCache: keyed by inode + change stamp + algorithm, bounded LRU.
#include "measure/digest_cache.h"

#include <gtest/gtest.h>

#include <list>
#include <map>
#include <random>

namespace nsima::measure {
namespace {

DigestKey key(uint64_t ino, int64_t ctime = 100, HashAlgo algo = HashAlgo::kSha256) {
  DigestKey k;
  k.file.dev = 0x801;
  k.file.ino = ino;
  k.file.generation = 7;
  k.file.stamp = Stamp{ctime, 5, 1, 4096};
  k.algo = algo;
  return k;
}

TEST(DigestCache, HitsMissesAndKeyParts) {
  DigestCache c(16);
  auto d = Digest::filled(HashAlgo::kSha256, 0xab);
  EXPECT_FALSE(c.get(key(1)));
  c.put(key(1), d);
  EXPECT_EQ(c.get(key(1)), d);
  EXPECT_FALSE(c.get(key(1, 101)));                   // file changed: new ctime
  EXPECT_FALSE(c.get(key(1, 100, HashAlgo::kSha1)));  // other algorithm
  auto other_gen = key(1);
  other_gen.file.generation = 8;  // inode number reused
  EXPECT_FALSE(c.get(other_gen));
  auto other_iversion = key(1);
  other_iversion.file.stamp.i_version = 2;
  EXPECT_FALSE(c.get(other_iversion));
  auto s = c.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 5u);
}

// A digest the kernel computed (NSIMA_EV_KERNEL_DIGEST) answers for its version only, is
// counted when it saves a hash, and never replaces nsimad's own digest of the same version.
TEST(DigestCache, KernelDigestsAnswerForTheirVersionOnly) {
  DigestCache c(16);
  auto k = Digest::filled(HashAlgo::kSha256, 0x11);
  c.put(key(1), k, DigestCache::Origin::kKernel);
  EXPECT_FALSE(c.get(key(1, 101))) << "another version of the file";
  EXPECT_FALSE(c.get(key(1, 100, HashAlgo::kSha512))) << "another algorithm";
  EXPECT_EQ(c.stats().kernel_hits, 0u);
  EXPECT_EQ(c.get(key(1)), k);
  EXPECT_EQ(c.stats().kernel_puts, 1u);
  EXPECT_EQ(c.stats().kernel_hits, 1u);

  auto mine = Digest::filled(HashAlgo::kSha256, 0x22);
  c.put(key(2), mine);
  c.put(key(2), k, DigestCache::Origin::kKernel);
  EXPECT_EQ(c.get(key(2)), mine) << "nsimad's digest of a version is kept";
  EXPECT_EQ(c.stats().kernel_mismatches, 1u);
  EXPECT_EQ(c.stats().kernel_hits, 1u) << "a hit on nsimad's entry is not the kernel's";
  c.put(key(1), mine);  // nsimad hashed it after all: the entry is nsimad's now
  EXPECT_EQ(c.get(key(1)), mine);
  EXPECT_EQ(c.stats().kernel_hits, 1u);
}

TEST(DigestCache, EvictsLeastRecentlyUsed) {
  DigestCache c(2);
  c.put(key(1), Digest::filled(HashAlgo::kSha256, 1));
  c.put(key(2), Digest::filled(HashAlgo::kSha256, 2));
  ASSERT_TRUE(c.get(key(1)));  // 1 is now most recent
  c.put(key(3), Digest::filled(HashAlgo::kSha256, 3));
  EXPECT_EQ(c.size(), 2u);
  EXPECT_TRUE(c.get(key(1)));
  EXPECT_FALSE(c.get(key(2)));
  EXPECT_TRUE(c.get(key(3)));
  EXPECT_EQ(c.stats().evictions, 1u);
  // Re-putting an existing key replaces the value without growing.
  c.put(key(3), Digest::filled(HashAlgo::kSha256, 9));
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.get(key(3))->hex().substr(0, 2), "09");
}

TEST(DigestCache, EraseInodeDropsAllVersions) {
  DigestCache c(16);
  c.put(key(1, 100), Digest(HashAlgo::kSha256));
  c.put(key(1, 200), Digest(HashAlgo::kSha256));
  c.put(key(1, 200, HashAlgo::kSha1), Digest(HashAlgo::kSha1));
  c.put(key(2), Digest(HashAlgo::kSha256));
  c.erase_inode(0x801, 1);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_TRUE(c.get(key(2)));
}

// The cache against a plain LRU model (std::list of keys): the same hits, the same evictions,
// whatever mix of puts, gets, re-puts and erase_inode, with a small capacity so that items are
// reused, freed and the index shifts back over long probe runs (few distinct inodes).
TEST(DigestCache, BehavesAsAPlainLruUnderRandomOperations) {
  for (size_t capacity : {1, 3, 17, 1500}) {
    DigestCache c(capacity);
    std::list<std::pair<uint64_t, int64_t>> model;  // (ino, ctime), front = most recent
    std::map<std::pair<uint64_t, int64_t>, uint8_t> values;
    std::mt19937 rng(static_cast<uint32_t>(capacity));
    uint64_t evictions = 0;
    for (int step = 0; step < 20000; ++step) {
      uint64_t ino = rng() % 40;
      int64_t ctime = static_cast<int64_t>(rng() % (capacity > 100 ? 80 : 4));
      auto k = std::make_pair(ino, ctime);
      auto in_model = std::find(model.begin(), model.end(), k);
      switch (rng() % 8) {
        case 0: {  // erase every version of one inode
          c.erase_inode(0x801, ino);
          model.remove_if([&](const auto& m) { return m.first == ino; });
          break;
        }
        case 1: case 2: case 3: {
          auto got = c.get(key(ino, ctime));
          ASSERT_EQ(got.has_value(), in_model != model.end()) << "step " << step;
          if (got) {
            EXPECT_EQ(*got, Digest::filled(HashAlgo::kSha256, values[k])) << "step " << step;
            model.splice(model.begin(), model, in_model);
          }
          break;
        }
        default: {
          auto v = static_cast<uint8_t>(rng());
          c.put(key(ino, ctime), Digest::filled(HashAlgo::kSha256, v));
          values[k] = v;
          if (in_model != model.end()) {
            model.splice(model.begin(), model, in_model);
          } else {
            model.push_front(k);
            if (model.size() > capacity) {
              model.pop_back();
              ++evictions;
            }
          }
        }
      }
      ASSERT_EQ(c.size(), model.size()) << "step " << step;
    }
    for (const auto& m : model) EXPECT_TRUE(c.get(key(m.first, m.second)));
    EXPECT_EQ(c.stats().evictions, evictions) << "capacity " << capacity;
    EXPECT_LE(c.bytes(), ((capacity + 1023) / 1024) * 1024 * 128 + 4 * 4096 * 4);
  }
}

}  // namespace
}  // namespace nsima::measure

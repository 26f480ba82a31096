// SPDX-License-Identifier: Apache-2.0
// FileTable (NsRuntime::files): one FileState per (kdev, ino, generation), found again whatever
// was inserted after, references stable across growth, a kdev that does not fit 32 bits kept
// apart instead of truncated onto another file.
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "ns/file_table.h"

namespace nsima::ns {
namespace {

FileRef ref(uint64_t i) { return FileRef{0x800000u + (i % 7), 1000 + i * 13, uint32_t(i % 3)}; }

TEST(FileTable, EveryFileIsFoundAgainWithItsOwnState) {
  FileTable t;
  const uint64_t n = 100000;
  for (uint64_t i = 0; i < n; ++i) {
    FileState& st = t[ref(i)];
    EXPECT_EQ(st.pcrs, 0u) << "a new file starts with a default state";
    st.pcrs = i + 1;
  }
  EXPECT_EQ(t.size(), n);
  for (uint64_t i = 0; i < n; ++i) {
    const FileState* st = t.find(ref(i));
    ASSERT_NE(st, nullptr) << "file " << i << " lost";
    ASSERT_EQ(st->pcrs, i + 1) << "file " << i << " has another file's state";
    ASSERT_EQ(&t[ref(i)], st) << "operator[] of a known file inserts nothing";
  }
  EXPECT_EQ(t.size(), n);
  EXPECT_EQ(t.find(ref(n)), nullptr);
  EXPECT_EQ(t.find(FileRef{0x800000u, 1000, 1}), nullptr) << "same ino, other generation";
  EXPECT_EQ(t.find(FileRef{0x800001u, 1000, 0}), nullptr) << "same ino, other device";
}

// Every part of the key tells files apart, not only the hash: many versions of one inode number
// (other generations, other devices) share probe runs in a well-filled index.
TEST(FileTable, SameInodeNumberOnOtherGenerationsAndDevicesAreOtherFiles) {
  FileTable t;
  for (uint32_t g = 0; g < 2000; ++g) t[FileRef{7, 42, g}].pcrs = g;
  for (uint64_t d = 8; d < 2008; ++d) t[FileRef{d, 42, 0}].pcrs = 10000 + d;
  ASSERT_EQ(t.size(), 4000u);
  for (uint32_t g = 0; g < 2000; ++g) {
    const FileState* st = t.find(FileRef{7, 42, g});
    ASSERT_NE(st, nullptr) << "generation " << g;
    ASSERT_EQ(st->pcrs, g) << "generation " << g << " found another file's state";
  }
  for (uint64_t d = 8; d < 2008; ++d) {
    const FileState* st = t.find(FileRef{d, 42, 0});
    ASSERT_NE(st, nullptr) << "device " << d;
    ASSERT_EQ(st->pcrs, 10000 + d) << "device " << d << " found another file's state";
  }
}

TEST(FileTable, ReferencesSurviveGrowth) {
  FileTable t;
  FileState* first = &t[ref(0)];
  first->must = true;
  for (uint64_t i = 1; i < 50000; ++i) t[ref(i)].pcrs = 1;
  EXPECT_EQ(t.find(ref(0)), first) << "a ChainLink's pointer must not move";
  EXPECT_TRUE(first->must);
}

TEST(FileTable, WideDeviceNumbersAreNotTruncated) {
  FileTable t;
  const FileRef narrow{5, 42, 0}, wide{(uint64_t{1} << 32) | 5, 42, 0};
  t[narrow].pcrs = 1;
  t[wide].pcrs = 2;
  EXPECT_EQ(t.size(), 2u);
  ASSERT_NE(t.find(narrow), nullptr);
  ASSERT_NE(t.find(wide), nullptr);
  EXPECT_EQ(t.find(narrow)->pcrs, 1u);
  EXPECT_EQ(t.find(wide)->pcrs, 2u);
}

TEST(FileTable, ForEachVisitsEveryFileOnceWithItsKeyAndClearEmpties) {
  FileTable t;
  std::map<std::tuple<uint64_t, uint64_t, uint32_t>, uint64_t> want;
  for (uint64_t i = 0; i < 3000; ++i) {
    t[ref(i)].pcrs = i;
    want[{ref(i).kdev, ref(i).ino, ref(i).generation}] = i;
  }
  t[FileRef{uint64_t{1} << 40, 7, 1}].pcrs = 9999;
  want[{uint64_t{1} << 40, 7, 1}] = 9999;
  size_t seen = 0;
  t.for_each([&](const FileRef& f, FileState& st) {
    auto it = want.find({f.kdev, f.ino, f.generation});
    ASSERT_NE(it, want.end()) << "unknown file ino " << f.ino;
    EXPECT_EQ(it->second, st.pcrs);
    want.erase(it);
    seen++;
  });
  EXPECT_EQ(seen, 3001u);
  EXPECT_TRUE(want.empty()) << want.size() << " files not visited";
  t.clear();
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.find(ref(1)), nullptr);
  t[ref(1)].pcrs = 5;  // usable again after clear
  EXPECT_EQ(t.find(ref(1))->pcrs, 5u);
}

}  // namespace
}  // namespace nsima::ns

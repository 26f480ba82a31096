// SPDX-License-Identifier: Apache-2.0
#include "ns/namespace_tree.h"

#include <gtest/gtest.h>

namespace nsima::ns {
namespace {

std::vector<std::string> names(const std::vector<Namespace*>& v) {
  std::vector<std::string> out;
  for (auto* n : v) out.push_back(n->name);
  return out;
}

TEST(NamespaceTree, HostAlwaysExists) {
  NamespaceTree t("/sys/fs/cgroup", 1);
  EXPECT_EQ(t.host().name, "host");
  EXPECT_EQ(t.host().id, kHostNsId);
  EXPECT_EQ(t.find("host"), &t.host());
  EXPECT_EQ(t.find("1"), &t.host()) << "the host id events carry names the host namespace too";
  EXPECT_EQ(t.find(uint32_t{1}), &t.host());
  EXPECT_FALSE(t.remove("host"));
}

TEST(NamespaceTree, NestsUnderNearestAncestorDirectory) {
  NamespaceTree t("/sys/fs/cgroup", 1);
  auto a = t.create("/sys/fs/cgroup/a", 10);
  ASSERT_TRUE(a);
  auto abc = t.create("/sys/fs/cgroup/a/b/c", 12);
  ASSERT_TRUE(abc);
  auto ab2 = t.create("/sys/fs/cgroup/ab", 13);  // a sibling whose name starts like "a"
  ASSERT_TRUE(ab2);
  EXPECT_EQ((*abc)->parent, *a);
  EXPECT_EQ((*ab2)->parent, &t.host());
  EXPECT_EQ(names(t.chain(*abc)), (std::vector<std::string>{(*abc)->name, (*a)->name, "host"}));
  // a namespace created in between re-parents the deeper one
  auto ab = t.create("/sys/fs/cgroup/a/b", 11);
  ASSERT_TRUE(ab);
  EXPECT_EQ((*abc)->parent, *ab);
  EXPECT_EQ((*ab)->parent, *a);
  EXPECT_EQ(names(t.subtree(*a)),
            (std::vector<std::string>{(*a)->name, (*ab)->name, (*abc)->name}));
}

TEST(NamespaceTree, RefusesDuplicatesAndOutsidePaths) {
  NamespaceTree t("/sys/fs/cgroup", 1);
  ASSERT_TRUE(t.create("/sys/fs/cgroup/a", 10));
  auto dup = t.create("/sys/fs/cgroup/a", 10);
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("already bound"), std::string::npos);
  auto out = t.create("/tmp/x", 5);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().where, "/tmp/x");
  EXPECT_FALSE(t.create("/sys/fs/cgroup", 1));
}

TEST(NamespaceTree, DeleteMovesChildrenUp) {
  NamespaceTree t("/sys/fs/cgroup", 1);
  auto a = t.create("/sys/fs/cgroup/a", 10);
  auto ab = t.create("/sys/fs/cgroup/a/b", 11);
  ASSERT_TRUE(a && ab);
  std::string an = (*a)->name;
  ASSERT_TRUE(t.remove(an));
  EXPECT_EQ(t.find(an), nullptr);
  EXPECT_EQ((*ab)->parent, &t.host());
  EXPECT_EQ(t.find_by_cgroup("/sys/fs/cgroup/a/b"), *ab);
  EXPECT_FALSE(t.remove("nope"));
}

TEST(NamespaceTree, RestoredIdsAreKeptAndNotReused) {
  NamespaceTree t("/sys/fs/cgroup", 1);
  auto a = t.create("/sys/fs/cgroup/a", 10, 7);
  ASSERT_TRUE(a);
  EXPECT_EQ((*a)->id, 7u);
  EXPECT_EQ((*a)->name, "7");
  auto b = t.create("/sys/fs/cgroup/b", 11);
  ASSERT_TRUE(b);
  EXPECT_EQ((*b)->id, 8u);
  EXPECT_FALSE(t.create("/sys/fs/cgroup/c", 12, 7));
}

}  // namespace
}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
// What the accessor added to daemon/measure: hash_fd's cancel flag, and open_by_inode_handle
// ({ino32, gen} file handles on ext4: after a rename, with a wrong generation, and refused where
// the filesystem has another handle format, tmpfs).
#include <gtest/gtest.h>

#include <atomic>

#include "access_test_util.h"
#include "measure/file_reader.h"

namespace nsima::access {
namespace {

using namespace testing;

measure::FileIdentity identity_of(const std::string& p) {
  Event ev;
  fill_file(ev, p);
  return measure::FileIdentity::from_event(ev);
}

TEST(HashFdCancel, StopsBeforeTheNextChunk) {
  TempDir dir;
  write_file(dir / "f", std::string(4 << 20, 'x'));
  UniqueFd fd(::open((dir / "f").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd);
  std::atomic<bool> cancel{false};
  measure::HashFileOptions o;
  o.cancel = &cancel;
  auto ok = measure::hash_fd(fd.get(), measure::HashAlgo::kSha256, "f", o);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, sha256_of(std::string(4 << 20, 'x')));
  cancel = true;
  auto r = measure::hash_fd(fd.get(), measure::HashAlgo::kSha256, "f", o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ECANCELED);
}

TEST(OpenByInodeHandle, OpensTheInodeAfterARenameOnExt4) {
  TempDir dir;  // /tmp: ext4 on this host and in CI
  write_file(dir / "a", "by handle\n");
  auto id = identity_of((dir / "a").string());
  ASSERT_TRUE(id.generation);
  std::filesystem::rename(dir / "a", dir / "b");
  auto f = measure::open_by_inode_handle(id, "a");
  ASSERT_TRUE(f) << f.error().to_string();
  auto d = measure::hash_fd(f->fd.get(), measure::HashAlgo::kSha256, "a");
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, sha256_of("by handle\n"));

  auto stale = id;
  *stale.generation += 1;
  auto s = measure::open_by_inode_handle(stale, "a");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().kind, measure::FileErrorKind::kMismatch) << s.error().to_string();
}

TEST(OpenByInodeHandle, RefusedWhereHandlesHaveAnotherFormat) {
  TempDir dir;
  TmpfsMount fs(dir / "t");
  write_file(fs / "f", "tmpfs");
  auto id = identity_of((fs / "f").string());
  id.generation = 7;  // tmpfs has no FS_IOC_GETVERSION; the BPF side would report one
  auto f = measure::open_by_inode_handle(id, "f");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().error.code, EOPNOTSUPP) << f.error().to_string();
  id.generation.reset();
  EXPECT_EQ(measure::open_by_inode_handle(id, "f").error().error.code, EOPNOTSUPP);
}

}  // namespace
}  // namespace nsima::access

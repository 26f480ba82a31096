// SPDX-License-Identifier: Apache-2.0
// open_in_root: resolution stays inside the root (absolute symlinks, ".."), magic links are
// refused, identity (dev, ino, generation) is enforced, FIFOs are rejected without blocking, and
// every failure has the right kind. Runs on the real filesystems of this host: ext4 (/tmp, which
// has i_generation) and tmpfs (/dev/shm, which has none).
#include "measure/file_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "common/unique_fd.h"
#include "test_util.h"

namespace nsima::measure {
namespace {

using testing::TempDir;
using testing::write_file;

FileIdentity identity_of(const std::filesystem::path& p, bool with_generation = true) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  FileIdentity id{st.st_dev, static_cast<uint64_t>(st.st_ino), std::nullopt};
  if (with_generation) {
    UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    long v = 0;
    if (fd && ::ioctl(fd.get(), FS_IOC_GETVERSION, &v) == 0)
      id.generation = static_cast<uint32_t>(v);
  }
  return id;
}

class FileReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path() / "root";
    std::filesystem::create_directories(root_ / "etc");
    std::filesystem::create_directories(root_ / "usr/bin");
    write_file(root_ / "etc/passwd", "inside-root\n");
    write_file(root_ / "usr/bin/tool", "tool\n");
    root_fd_.reset(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_fd_);
  }
  TempDir dir_;
  std::filesystem::path root_;
  UniqueFd root_fd_;
};

TEST_F(FileReaderTest, OpensAndChecksIdentityIncludingGeneration) {
  auto id = identity_of(root_ / "usr/bin/tool");
  ASSERT_TRUE(id.generation) << "ext4 under /tmp is expected to report i_generation";
  auto f = open_in_root(root_fd_.get(), "/usr/bin/tool", id);
  ASSERT_TRUE(f) << f.error().to_string();
  EXPECT_EQ(f->st.st_ino, static_cast<ino_t>(id.ino));
  EXPECT_EQ(f->generation, id.generation);
  char buf[16] = {};
  EXPECT_EQ(::pread(f->fd.get(), buf, sizeof buf, 0), 5);
  EXPECT_STREQ(buf, "tool\n");
  // Readable-only fd.
  EXPECT_EQ(::fcntl(f->fd.get(), F_GETFL) & O_ACCMODE, O_RDONLY);
  // A relative path is also taken relative to the root.
  EXPECT_TRUE(open_in_root(root_fd_.get(), "usr/bin/tool", id));
}

TEST_F(FileReaderTest, AbsoluteSymlinkAndDotDotStayInsideRoot) {
  // /link -> /etc/passwd must mean <root>/etc/passwd, not the host's /etc/passwd.
  std::filesystem::create_symlink("/etc/passwd", root_ / "link");
  auto inside = identity_of(root_ / "etc/passwd");
  auto f = open_in_root(root_fd_.get(), "/link", inside);
  ASSERT_TRUE(f) << f.error().to_string();
  // ".." cannot climb above the root either.
  EXPECT_TRUE(open_in_root(root_fd_.get(), "/../../../../etc/passwd", inside));
  // And the host's /etc/passwd identity does not match what the root resolves to.
  auto host = identity_of("/etc/passwd", false);
  auto g = open_in_root(root_fd_.get(), "/link", host);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().kind, FileErrorKind::kMismatch);
}

TEST_F(FileReaderTest, WrongInodeIsMismatch) {
  auto id = identity_of(root_ / "etc/passwd");
  id.ino += 1;
  auto f = open_in_root(root_fd_.get(), "/etc/passwd", id);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().kind, FileErrorKind::kMismatch);
  EXPECT_NE(f.error().error.message.find("ino"), std::string::npos);
  EXPECT_EQ(f.error().error.where, "/etc/passwd");

  id = identity_of(root_ / "etc/passwd");
  id.dev += 1;
  EXPECT_EQ(open_in_root(root_fd_.get(), "/etc/passwd", id).error().kind, FileErrorKind::kMismatch);
}

TEST_F(FileReaderTest, WrongGenerationIsMismatch) {
  auto id = identity_of(root_ / "etc/passwd");
  ASSERT_TRUE(id.generation);
  id.generation = *id.generation + 1;  // same inode number, another incarnation
  auto f = open_in_root(root_fd_.get(), "/etc/passwd", id);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().kind, FileErrorKind::kMismatch);
  EXPECT_NE(f.error().error.message.find("generation"), std::string::npos);
}

TEST_F(FileReaderTest, ReplacedFileIsMismatchAndRemovedFileVanished) {
  auto id = identity_of(root_ / "etc/passwd");
  std::filesystem::remove(root_ / "etc/passwd");
  auto f = open_in_root(root_fd_.get(), "/etc/passwd", id);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().kind, FileErrorKind::kVanished);
  EXPECT_EQ(f.error().error.code, ENOENT);
  // A new file at the same path: a different inode, or the same number with a new generation.
  write_file(root_ / "etc/passwd", "replaced\n");
  f = open_in_root(root_fd_.get(), "/etc/passwd", id);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().kind, FileErrorKind::kMismatch);
  // A path through a component that is not a directory: vanished too.
  EXPECT_EQ(open_in_root(root_fd_.get(), "/etc/passwd/x", id).error().kind,
            FileErrorKind::kVanished);
}

TEST_F(FileReaderTest, FifoIsRejectedWithoutBlocking) {
  ASSERT_EQ(::mkfifo((root_ / "fifo").c_str(), 0600), 0);
  auto id = identity_of(root_ / "fifo", false);
  auto f = open_in_root(root_fd_.get(), "/fifo", id);  // would hang if opened for reading
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().kind, FileErrorKind::kNotRegular);
}

TEST_F(FileReaderTest, MagicLinksAreRefused) {
  UniqueFd host_root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(host_root);
  auto id = identity_of("/etc/hostname", false);
  auto f = open_in_root(host_root.get(), "/proc/self/root/etc/hostname", id);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().kind, FileErrorKind::kDenied);
  EXPECT_EQ(f.error().error.code, ELOOP);
}

TEST_F(FileReaderTest, InvalidPaths) {
  FileIdentity id;
  EXPECT_EQ(open_in_root(root_fd_.get(), "", id).error().kind, FileErrorKind::kInvalidPath);
  EXPECT_EQ(open_in_root(root_fd_.get(), std::string("/etc\0x", 6), id).error().kind,
            FileErrorKind::kInvalidPath);
  EXPECT_EQ(open_in_root(root_fd_.get(), "/" + std::string(5000, 'a'), id).error().kind,
            FileErrorKind::kInvalidPath);
}

TEST(FileReader, TmpfsHasNoGenerationAndIsStillVerified) {
  struct statfs sfs {};
  ASSERT_EQ(::statfs("/dev/shm", &sfs), 0);
  ASSERT_EQ(sfs.f_type, 0x01021994) << "/dev/shm is expected to be tmpfs on this host";
  auto p = std::filesystem::path("/dev/shm") / ("nsima-measure-" + std::to_string(::getpid()));
  write_file(p, "shm\n");
  auto id = identity_of(p, false);
  id.generation = 12345;  // the event's value; tmpfs cannot report it, so it is not compared
  UniqueFd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  auto f = open_in_root(root.get(), p.string(), id);
  std::filesystem::remove(p);
  ASSERT_TRUE(f) << f.error().to_string();
  EXPECT_FALSE(f->generation);
}

TEST(FileReader, ProcRootFallback) {
  TempDir dir;
  write_file(dir / "f", "x");
  auto id = identity_of(dir / "f");
  auto f = open_via_proc_root(::getpid(), (dir / "f").string(), id);
  ASSERT_TRUE(f) << f.error().to_string();

  // A process that has exited (and been reaped) is kVanished.
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  auto g = open_via_proc_root(child, (dir / "f").string(), id);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().kind, FileErrorKind::kVanished);
  EXPECT_NE(g.error().error.where.find("/proc/" + std::to_string(child)), std::string::npos);
}

}  // namespace
}  // namespace nsima::measure

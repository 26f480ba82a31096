// SPDX-License-Identifier: Apache-2.0
#include "common/event.h"

#include <sys/sysmacros.h>

#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "common/hex.h"

namespace nsima {
namespace {

std::vector<uint8_t> record(const nsima_event& raw, const char* path) {
  size_t n = strlen(path) + 1;
  std::vector<uint8_t> out(NSIMA_EVENT_HEADER_SIZE + n);
  std::memcpy(out.data(), &raw, NSIMA_EVENT_HEADER_SIZE);
  std::memcpy(out.data() + NSIMA_EVENT_HEADER_SIZE, path, n);
  return out;
}

nsima_event base_event() {
  nsima_event raw{};
  raw.hook = NSIMA_HOOK_FILE_OPEN;
  raw.pid = 42;
  raw.tgid = 41;
  raw.cgroup_id = 1234;
  raw.dev = (8ull << 20) | 3;  // 8:3
  raw.ino = 99;
  raw.generation = 7;
  raw.mask = NSIMA_MAY_READ;
  raw.fs_magic = 0xef53;
  raw.cred = nsima_cred{1000, 1001, 1002, 100, 101, 102, 4321, 8765, 1ull << 7};
  std::strcpy(raw.fs_name, "ext4");
  std::strcpy(raw.comm, "cat");
  return raw;
}

TEST(DecodeEvent, DecodesHeaderAndPath) {
  auto raw = base_event();
  raw.path_len = sizeof("/etc/passwd");
  auto rec = record(raw, "/etc/passwd");
  auto ev = decode_event(rec.data(), rec.size());
  ASSERT_TRUE(ev) << ev.error().to_string();
  EXPECT_EQ(ev->hook, Hook::kFileOpen);
  EXPECT_EQ(ev->pid, 42u);
  EXPECT_EQ(ev->tgid, 41u);
  EXPECT_EQ(ev->path, "/etc/passwd");
  EXPECT_EQ(ev->fs_name, "ext4");
  EXPECT_EQ(ev->comm, "cat");
  EXPECT_EQ(ev->cred.euid, 1001u);
  EXPECT_EQ(ev->cred.sgid, 102u);
  EXPECT_EQ(ev->cred.fsuid, 4321u);
  EXPECT_EQ(ev->cred.fsgid, 8765u);
  EXPECT_TRUE(ev->cred.cap_setuid());
  EXPECT_EQ(major(ev->dev()), 8u);
  EXPECT_EQ(minor(ev->dev()), 3u);
  EXPECT_EQ(dev_to_kdev(ev->dev()), raw.dev);
  EXPECT_EQ(ev->access_class(), NSIMA_CLASS_FILE(NSIMA_MAY_READ));
  EXPECT_TRUE(ev->path_known());
}

TEST(DecodeEvent, StripsDeletedSuffixOnlyWhenFlagged) {
  auto raw = base_event();
  raw.flags = NSIMA_EV_DELETED;
  raw.path_len = sizeof("/tmp/x (deleted)");
  auto rec = record(raw, "/tmp/x (deleted)");
  auto ev = decode_event(rec.data(), rec.size());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->path, "/tmp/x");
  raw.flags = 0;
  rec = record(raw, "/tmp/x (deleted)");
  ev = decode_event(rec.data(), rec.size());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->path, "/tmp/x (deleted)");
}

TEST(DecodeEvent, RejectsShortRecordsAndBadLengths) {
  auto raw = base_event();
  raw.path_len = 100;  // longer than what follows
  auto rec = record(raw, "/a");
  auto ev = decode_event(rec.data(), rec.size());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message.find("path length 100"), std::string::npos);
  ev = decode_event(rec.data(), 10);
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message.find("shorter"), std::string::npos);
  raw.hook = 77;
  raw.path_len = 3;
  rec = record(raw, "/a");
  ev = decode_event(rec.data(), rec.size());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message.find("unknown hook 77"), std::string::npos);
}

TEST(DecodeEvent, PathErrorIsFlagged) {
  auto raw = base_event();
  raw.flags = NSIMA_EV_PATH_TRUNCATED;
  raw.path_len = -36;
  auto rec = record(raw, "");
  auto ev = decode_event(rec.data(), NSIMA_EVENT_HEADER_SIZE);
  ASSERT_TRUE(ev);
  EXPECT_FALSE(ev->path_known());
  EXPECT_TRUE(ev->path.empty());
}

// The kernel's digest is taken only with NSIMA_EV_KERNEL_DIGEST (zero bytes otherwise mean
// nothing: the hook did not hash).
TEST(DecodeEvent, KernelDigestOnlyWithItsFlag) {
  auto raw = base_event();
  raw.path_len = 3;
  for (size_t i = 0; i < sizeof raw.kernel_sha256; ++i) raw.kernel_sha256[i] = uint8_t(i + 1);
  auto rec = record(raw, "/a");
  auto ev = decode_event(rec.data(), rec.size());
  ASSERT_TRUE(ev);
  EXPECT_FALSE(ev->kernel_sha256) << "bytes without the flag are not a digest";
  raw.flags = NSIMA_EV_KERNEL_DIGEST;
  rec = record(raw, "/a");
  ev = decode_event(rec.data(), rec.size());
  ASSERT_TRUE(ev);
  ASSERT_TRUE(ev->kernel_sha256);
  EXPECT_EQ((*ev->kernel_sha256)[0], 1);
  EXPECT_EQ((*ev->kernel_sha256)[31], 32);
  EXPECT_EQ(ev->path, "/a");
}

TEST(DecodeEvent, MmapClasses) {
  auto raw = base_event();
  raw.hook = NSIMA_HOOK_MMAP_FILE;
  raw.prot = NSIMA_PROT_READ | NSIMA_PROT_EXEC;
  raw.path_len = 3;
  auto rec = record(raw, "/a");
  auto ev = decode_event(rec.data(), rec.size());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->access_class(), uint32_t{NSIMA_CLASS_MMAP_PROT});
  EXPECT_NE(event_to_json(*ev).find("\"prot\":5"), std::string::npos);
}

TEST(Hex, RoundTrip) {
  std::vector<uint8_t> b{0x00, 0xab, 0xff};
  EXPECT_EQ(to_hex(b), "00abff");
  EXPECT_EQ(*from_hex("00ABff"), b);
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("zz"));
}

}  // namespace
}  // namespace nsima

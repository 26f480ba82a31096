// SPDX-License-Identifier: Apache-2.0
// Binary records and ascii lines byte for byte against layouts built here from ima-facts §2.2/2.3
// (and validators §3.3 item 5), parsing back, and clear errors for truncated/corrupt records.
#include "measure/list_format.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "test_util.h"

namespace nsima::measure {
namespace {

using testing::Bytes;
using testing::to_s;
using testing::unhex;

const char kAbcSha256[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const char kAbcSha1[] = "a9993e364706816aba3e25717850c26c9cd0d89d";
const char kNgSha1[] = "17d12d8c39b875305e17765b890f38e0c107f165";  // template digest (sha1)
const char kNgSha256[] = "da392b737bc8b9cf0d2587a0c058fac0fe218c21fc0d68c1b489b6b51d8d176c";

Entry file_entry() {
  Entry e;
  e.digest = *Digest::from_hex(HashAlgo::kSha256, kAbcSha256);
  e.name = "/usr/bin/my tool";
  return e;
}

Bytes ng_data() {
  Bytes b;
  b.u32(40).str("sha256:").zeros(1).raw(unhex(kAbcSha256));
  b.u32(17).str("/usr/bin/my_tool").zeros(1);
  return b;
}

TEST(ListFormat, BinaryRecordImaNg) {
  auto r = make_record(file_entry(), TemplateKind::kImaNg, 10, HashAlgo::kSha256);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->violation());
  Bytes want;
  want.u32(10).raw(unhex(kNgSha1)).u32(6).str("ima-ng").u32(65).str(ng_data().str());
  std::string out;
  append_binary(*r, out);
  EXPECT_EQ(out, want.str());
  EXPECT_EQ(binary_size(*r), want.size());

  // The _sha256 file differs only in the digest column.
  Bytes want256;
  want256.u32(10).raw(unhex(kNgSha256)).u32(6).str("ima-ng").u32(65).str(ng_data().str());
  std::string out256;
  ASSERT_TRUE(append_binary(*r, HashAlgo::kSha256, out256));
  EXPECT_EQ(out256, want256.str());
}

TEST(ListFormat, AsciiLines) {
  auto r = make_record(file_entry(), TemplateKind::kImaNg, 10, HashAlgo::kSha256);
  std::string line;
  ASSERT_TRUE(append_ascii(*r, HashAlgo::kSha1, line));
  EXPECT_EQ(line,
            std::string("10 ") + kNgSha1 + " ima-ng sha256:" + kAbcSha256 + " /usr/bin/my_tool\n");
  line.clear();
  ASSERT_TRUE(append_ascii(*r, HashAlgo::kSha256, line));
  EXPECT_EQ(line, std::string("10 ") + kNgSha256 + " ima-ng sha256:" + kAbcSha256 +
                      " /usr/bin/my_tool\n");

  // PCR < 10 is right-aligned ("%2d "); an unsigned ima-sig entry ends in a space.
  auto s = make_record(file_entry(), TemplateKind::kImaSig, 9, HashAlgo::kSha256);
  line.clear();
  ASSERT_TRUE(append_ascii(*s, HashAlgo::kSha1, line));
  EXPECT_EQ(line.substr(0, 3), " 9 ");
  EXPECT_EQ(line.substr(line.size() - 19), " /usr/bin/my_tool \n");

  // A signed one renders the whole xattr in hex.
  Entry e = file_entry();
  e.ima_xattr = {0x03, 0x02, 0x04, 0xde, 0xad};
  auto sg = make_record(e, TemplateKind::kImaSig, 10, HashAlgo::kSha256);
  line.clear();
  ASSERT_TRUE(append_ascii(*sg, HashAlgo::kSha1, line));
  EXPECT_EQ(line.substr(line.size() - 29), " /usr/bin/my_tool 030204dead\n");
}

TEST(ListFormat, ViolationRecord) {
  Entry e;
  e.violation = true;
  e.name = "/tmp/tomtou.txt";
  auto r = make_record(e, TemplateKind::kImaNg, 10, HashAlgo::kSha256);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->violation());
  std::string line;
  ASSERT_TRUE(append_ascii(*r, HashAlgo::kSha1, line));
  EXPECT_EQ(line, "10 " + std::string(40, '0') + " ima-ng sha256:" + std::string(64, '0') +
                      " /tmp/tomtou.txt\n");
  // Per-bank column: zeros of the bank size.
  line.clear();
  ASSERT_TRUE(append_ascii(*r, HashAlgo::kSha256, line));
  EXPECT_EQ(line.substr(3, 65), std::string(64, '0') + " ");
}

TEST(ListFormat, LegacyImaRecord) {
  Entry e;
  e.digest = *Digest::from_hex(HashAlgo::kSha1, kAbcSha1);
  e.name = "/etc/passwd";
  auto r = make_record(e, TemplateKind::kIma, 10, HashAlgo::kSha1);
  ASSERT_TRUE(r);
  // No template-data length word for `ima`.
  Bytes want;
  want.u32(10).raw(unhex("b9f28d0f693a31435828c974186f06fd65ff6c53")).u32(3).str("ima");
  want.raw(unhex(kAbcSha1)).u32(11).str("/etc/passwd");
  std::string out;
  append_binary(*r, out);
  EXPECT_EQ(out, want.str());
  std::string line;
  ASSERT_TRUE(append_ascii(*r, HashAlgo::kSha1, line));
  EXPECT_EQ(line, std::string("10 b9f28d0f693a31435828c974186f06fd65ff6c53 ima ") + kAbcSha1 +
                      " /etc/passwd\n");
  Record back;
  auto used = parse_record(testing::bytes_of(out), 0, back);
  ASSERT_TRUE(used) << used.error().to_string();
  EXPECT_EQ(*used, out.size());
  EXPECT_EQ(back.data, r->data);
}

TEST(ListFormat, ParseRoundTripAndTruncation) {
  auto r = make_record(file_entry(), TemplateKind::kImaSig, 11, HashAlgo::kSha256);
  std::string bin;
  append_binary(*r, bin);
  Record back;
  auto used = parse_record(testing::bytes_of(bin), 100, back);
  ASSERT_TRUE(used);
  EXPECT_EQ(*used, bin.size());
  EXPECT_EQ(back.pcr, 11u);
  EXPECT_EQ(back.digest, r->digest);
  EXPECT_EQ(back.template_name, "ima-sig");
  EXPECT_EQ(back.data, r->data);
  // Every strict prefix is "truncated" and names the record's absolute offset.
  for (size_t n = 0; n < bin.size(); ++n) {
    auto t = parse_record(testing::bytes_of(bin.substr(0, n)), 100, back);
    ASSERT_FALSE(t) << n;
    EXPECT_EQ(t.error().code, kErrTruncated) << n;
    EXPECT_EQ(t.error().where, "offset 100");
  }
}

TEST(ListFormat, CorruptRecords) {
  auto r = make_record(file_entry(), TemplateKind::kImaNg, 10, HashAlgo::kSha256);
  std::string good;
  append_binary(*r, good);
  Record back;
  auto expect_corrupt = [&](std::string bin, const char* what) {
    auto res = parse_record(testing::bytes_of(bin), 7, back);
    ASSERT_FALSE(res) << what;
    EXPECT_EQ(res.error().code, kErrCorrupt) << what << ": " << res.error().to_string();
    EXPECT_EQ(res.error().where, "offset 7") << what;
  };
  std::string b = good;
  b[0] = 64;  // PCR 64
  expect_corrupt(b, "pcr");
  b = good;
  b[24] = 0;  // template name length 0
  expect_corrupt(b, "empty name");
  b = good;
  b[24] = 0;
  b[25] = 1;  // name length 256
  expect_corrupt(b + std::string(300, 'x'), "long name");
  b = good;
  b[28] = 'X';  // "Xma-ng": unknown template
  expect_corrupt(b, "unknown template");
  b = good;
  b[34 + 3] = 0x10;  // data length 256 MiB
  expect_corrupt(b, "huge data");
  b = good;
  b[38] = 41;  // first field length no longer adds up
  expect_corrupt(b, "field lengths");
  b = good;
  b[42 + 6] = 'X';  // d-ng "sha256X" NUL digest: no "<algo>:" prefix, cannot be rendered
  expect_corrupt(b, "d-ng prefix");
}

TEST(ListFormat, RecordReaderStreamsAndReportsTornTail) {
  testing::TempDir dir;
  std::string bin;
  std::vector<uint64_t> offsets;
  for (int i = 0; i < 5; ++i) {
    Entry e = file_entry();
    e.name += std::to_string(i);
    offsets.push_back(bin.size());
    append_binary(*make_record(e, TemplateKind::kImaNg, 10, HashAlgo::kSha256), bin);
  }
  const size_t full = bin.size();
  bin += bin.substr(0, 30);  // half a record
  testing::write_file(dir / "list", bin);
  UniqueFd fd(::open((dir / "list").c_str(), O_RDONLY | O_CLOEXEC));
  // A tiny buffer forces refills and buffer growth across record boundaries.
  RecordReader reader(fd.get(), 0, bin.size(), "list", 64);
  Record rec;
  for (int i = 0; i < 5; ++i) {
    auto ok = reader.next(rec);
    ASSERT_TRUE(ok) << ok.error().to_string();
    ASSERT_TRUE(*ok);
    EXPECT_EQ(reader.record_offset(), offsets[i]);
    EXPECT_EQ(testing::to_s(std::vector<uint8_t>(rec.data.end() - 2, rec.data.end())),
              std::to_string(i) + std::string(1, '\0'));
  }
  auto torn = reader.next(rec);
  ASSERT_FALSE(torn);
  EXPECT_EQ(torn.error().code, kErrTruncated);
  EXPECT_EQ(torn.error().where, "list: offset " + std::to_string(full));
  EXPECT_EQ(reader.offset(), full);

  RecordReader exact(fd.get(), 0, full, "list");
  int n = 0;
  while (true) {
    auto ok = exact.next(rec);
    ASSERT_TRUE(ok);
    if (!*ok) break;
    ++n;
  }
  EXPECT_EQ(n, 5);
}

}  // namespace
}  // namespace nsima::measure

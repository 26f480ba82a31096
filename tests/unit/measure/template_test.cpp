// SPDX-License-Identifier: Apache-2.0
// Template data bytes and template digests against vectors computed by hand (the expected bytes
// are built here with an independent little-endian builder; the digests were computed with
// Python's hashlib over those bytes, not with the code under test).
#include "measure/template.h"

#include <gtest/gtest.h>

#include "measure/hasher.h"
#include "test_util.h"

namespace nsima::measure {
namespace {

using testing::Bytes;
using testing::unhex;

const char kAbcSha256[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const char kAbcSha1[] = "a9993e364706816aba3e25717850c26c9cd0d89d";

Digest dig(HashAlgo a, const char* hex) { return *Digest::from_hex(a, hex); }

Entry file_entry() {
  Entry e;
  e.digest = dig(HashAlgo::kSha256, kAbcSha256);
  e.name = "/usr/bin/my tool";  // the space must become '_'
  return e;
}

// "sha256:" NUL digest | "/usr/bin/my_tool" NUL
Bytes ima_ng_bytes() {
  Bytes b;
  b.u32(40).str("sha256:").zeros(1).raw(unhex(kAbcSha256));
  b.u32(17).str("/usr/bin/my_tool").zeros(1);
  return b;
}

TEST(Template, NamesAndFormats) {
  EXPECT_EQ(template_name(TemplateKind::kImaSig), "ima-sig");
  EXPECT_EQ(template_format(TemplateKind::kImaSig), "d-ng|n-ng|sig");
  EXPECT_EQ(template_format(TemplateKind::kImaSigV2), "d-ngv2|n-ng|sig");
  EXPECT_EQ(template_format(TemplateKind::kImaBuf), "d-ng|n-ng|buf");
  EXPECT_EQ(template_kind("ima-ngv2"), TemplateKind::kImaNgV2);
  EXPECT_EQ(template_kind("d-ng|n-ng"), TemplateKind::kImaNg);  // a format string names it too
  EXPECT_FALSE(template_kind("ima-sigv3"));  // does not exist in any kernel (ima-facts §2.4)
  auto f = template_fields("evm-sig");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->size(), 9u);
  EXPECT_FALSE(template_fields("d-ng|bogus"));
}

TEST(Template, ImaNgBytesAndDigestsPerBank) {
  auto data = encode_template_data(TemplateKind::kImaNg, file_entry(), HashAlgo::kSha256);
  ASSERT_TRUE(data) << data.error().to_string();
  EXPECT_EQ(*data, ima_ng_bytes().vec());
  EXPECT_EQ(template_digest("ima-ng", *data, HashAlgo::kSha1)->hex(),
            "17d12d8c39b875305e17765b890f38e0c107f165");
  EXPECT_EQ(template_digest("ima-ng", *data, HashAlgo::kSha256)->hex(),
            "da392b737bc8b9cf0d2587a0c058fac0fe218c21fc0d68c1b489b6b51d8d176c");
  EXPECT_EQ(template_digest("ima-ng", *data, HashAlgo::kSha384)->hex(),
            "d37341fe1ad279cc35632a74d1dc5638a37b165672eccce0dcd8fe7ef8e8d70a"
            "934874374e9ed8c58c60b52eac782bbe");
  EXPECT_EQ(template_digest("ima-ng", *data, HashAlgo::kSha512)->hex(),
            "42bcfd6fdb207becb1b4387b9904db059644efd457d3263345a5990fa82ca949"
            "978d8dc679336903a604e06d6bffc1518fd86d8113e863495e72d4019d5e3ca7");
  // Extend value of a normal entry = the bank's template digest.
  EXPECT_EQ(*extend_value("ima-ng", *data, false, HashAlgo::kSha256),
            *template_digest("ima-ng", *data, HashAlgo::kSha256));
}

TEST(Template, ImaSigKeepsOnlySignatureXattrs) {
  const std::vector<uint8_t> sig = {0x03, 0x02, 0x04, 0x89, 0xa8, 0x9d, 0x7b,
                                    0x00, 0x04, 0x01, 0x02, 0x03, 0x04};
  Entry e = file_entry();
  e.ima_xattr = sig;
  auto data = encode_template_data(TemplateKind::kImaSig, e, HashAlgo::kSha256);
  ASSERT_TRUE(data);
  Bytes want = ima_ng_bytes();
  want.u32(13).raw(sig);
  EXPECT_EQ(*data, want.vec());
  EXPECT_EQ(template_digest("ima-sig", *data, HashAlgo::kSha1)->hex(),
            "66ccc81633a8df9eccefbd3ae6e4879506147982");
  EXPECT_EQ(template_digest("ima-sig", *data, HashAlgo::kSha256)->hex(),
            "7ef2397d5666c4ee8c67faf35bf3804e65c08f0e8635ce170bd7df539a5ebd26");

  // A hash-only xattr (0x04 IMA_XATTR_DIGEST_NG) is not a signature: empty sig field.
  e.ima_xattr = unhex(std::string("0404") + kAbcSha256);
  Bytes empty = ima_ng_bytes();
  empty.u32(0);
  EXPECT_EQ(*encode_template_data(TemplateKind::kImaSig, e, HashAlgo::kSha256), empty.vec());
  // ...unless security.evm holds a portable signature (0x05): then that is recorded.
  e.evm_xattr = {0x05, 0x02, 0x04, 0xaa};
  Bytes evm = ima_ng_bytes();
  evm.u32(4).raw({0x05, 0x02, 0x04, 0xaa});
  EXPECT_EQ(*encode_template_data(TemplateKind::kImaSig, e, HashAlgo::kSha256), evm.vec());
  // A verity signature (0x06) is kept like a digsig.
  e.evm_xattr.clear();
  e.ima_xattr = {0x06, 0x03, 0x04, 0x01};
  Bytes verity = ima_ng_bytes();
  verity.u32(4).raw({0x06, 0x03, 0x04, 0x01});
  EXPECT_EQ(*encode_template_data(TemplateKind::kImaSig, e, HashAlgo::kSha256), verity.vec());
}

TEST(Template, LegacyImaTemplate) {
  Entry e;
  e.digest = dig(HashAlgo::kSha1, kAbcSha1);
  e.name = "/etc/passwd";
  auto data = encode_template_data(TemplateKind::kIma, e, HashAlgo::kSha1);
  ASSERT_TRUE(data);
  // d[20] with no length word, then u32 strlen + name without NUL.
  Bytes want;
  want.raw(unhex(kAbcSha1)).u32(11).str("/etc/passwd");
  EXPECT_EQ(*data, want.vec());
  // Digest over d || name zero-padded to 256 bytes.
  EXPECT_EQ(template_digest("ima", *data, HashAlgo::kSha1)->hex(),
            "b9f28d0f693a31435828c974186f06fd65ff6c53");
  EXPECT_EQ(template_digest("ima", *data, HashAlgo::kSha256)->hex(),
            "773bd41c684093274d5bee5c251793915c4fabaf50b03cec134e12c340e9fe41");
  // `ima` only carries SHA-1 digests.
  EXPECT_FALSE(encode_template_data(TemplateKind::kIma, file_entry(), HashAlgo::kSha1));
  // Long names: the last component replaces a path over 255 bytes.
  std::string longdir(300, 'd');
  EXPECT_EQ(legacy_event_name("/" + longdir + "/file name"), "file_name");
  EXPECT_EQ(legacy_event_name(std::string(300, 'x')), std::string(255, 'x'));
}

TEST(Template, Violation) {
  Entry e;
  e.violation = true;
  e.name = "/tmp/tomtou.txt";
  e.ima_xattr = {0x03, 0x02};  // ignored for a violation (the kernel has no xattr_value then)
  auto data = encode_template_data(TemplateKind::kImaSig, e, HashAlgo::kSha256);
  ASSERT_TRUE(data);
  Bytes want;
  want.u32(40).str("sha256:").zeros(1).zeros(32);
  want.u32(16).str("/tmp/tomtou.txt").zeros(1);
  want.u32(0);
  EXPECT_EQ(*data, want.vec());
  // The extend value is 0xFF of the bank size, whatever the data.
  EXPECT_EQ(extend_value("ima-sig", *data, true, HashAlgo::kSha1)->hex(), std::string(40, 'f'));
  EXPECT_EQ(extend_value("ima-sig", *data, true, HashAlgo::kSha384)->hex(), std::string(96, 'f'));
  // A sha1 namespace records 20 zero bytes.
  auto d1 = encode_template_data(TemplateKind::kImaNg, e, HashAlgo::kSha1);
  Bytes want1;
  want1.u32(26).str("sha1:").zeros(1).zeros(20).u32(16).str("/tmp/tomtou.txt").zeros(1);
  EXPECT_EQ(*d1, want1.vec());
  // Legacy template: 20 zero bytes in `d`.
  auto dl = encode_template_data(TemplateKind::kIma, e, HashAlgo::kSha1);
  Bytes wantl;
  wantl.zeros(20).u32(15).str("/tmp/tomtou.txt");
  EXPECT_EQ(*dl, wantl.vec());
}

TEST(Template, NgV2AndBuf) {
  Entry e = file_entry();
  auto v2 = encode_template_data(TemplateKind::kImaNgV2, e, HashAlgo::kSha256);
  Bytes want;
  want.u32(44).str("ima:sha256:").zeros(1).raw(unhex(kAbcSha256));
  want.u32(17).str("/usr/bin/my_tool").zeros(1);
  EXPECT_EQ(*v2, want.vec());
  e.digest_type = DigestType::kVerity;
  auto v2v = encode_template_data(TemplateKind::kImaSigV2, e, HashAlgo::kSha256);
  Bytes wantv;
  wantv.u32(47).str("verity:sha256:").zeros(1).raw(unhex(kAbcSha256));
  wantv.u32(17).str("/usr/bin/my_tool").zeros(1).u32(0);
  EXPECT_EQ(*v2v, wantv.vec());

  auto be = make_buffer_entry("kexec-cmdline", {'a', 'b', 'c'}, HashAlgo::kSha256);
  ASSERT_TRUE(be);
  auto buf = encode_template_data(TemplateKind::kImaBuf, *be, HashAlgo::kSha256);
  Bytes wantb;
  wantb.u32(40).str("sha256:").zeros(1).raw(unhex(kAbcSha256));
  wantb.u32(14).str("kexec-cmdline").zeros(1).u32(3).str("abc");
  EXPECT_EQ(*buf, wantb.vec());
}

TEST(Template, SplitAndAsciiFields) {
  Entry e = file_entry();
  e.ima_xattr = {0x03, 0xab};
  auto data = *encode_template_data(TemplateKind::kImaSig, e, HashAlgo::kSha256);
  auto fields = split_template_data("ima-sig", data);
  ASSERT_TRUE(fields);
  ASSERT_EQ(fields->size(), 3u);
  std::string out;
  for (auto& f : *fields) {
    ASSERT_TRUE(append_field_ascii(f, out));
    out += '|';
  }
  EXPECT_EQ(out, std::string("sha256:") + kAbcSha256 + "|/usr/bin/my_tool|03ab|");
  // Lengths that do not add up are corrupt.
  data.push_back(0);
  EXPECT_EQ(split_template_data("ima-sig", data).error().code, EBADMSG);
  data.resize(data.size() - 3);
  EXPECT_EQ(split_template_data("ima-sig", data).error().code, EBADMSG);
  EXPECT_EQ(split_template_data("no-such-template", data).error().code, EINVAL);
}

}  // namespace
}  // namespace nsima::measure

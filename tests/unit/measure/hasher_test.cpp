// SPDX-License-Identifier: Apache-2.0
// Hasher: FIPS 180 vectors, streaming == one-shot, files larger than the read chunk (checked
// against the real openssl/sha*sum tools), several algorithms in one pass, read errors.
#include "measure/hasher.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "common/unique_fd.h"
#include "test_util.h"

namespace nsima::measure {
namespace {

using testing::run;
using testing::TempDir;

std::span<const uint8_t> sp(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Hasher, KnownVectors) {
  // FIPS 180-2 "abc" vectors.
  EXPECT_EQ(hash_bytes(HashAlgo::kSha1, sp("abc"))->hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(hash_bytes(HashAlgo::kSha256, sp("abc"))->hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hash_bytes(HashAlgo::kSha384, sp("abc"))->hex(),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
            "8086072ba1e7cc2358baeca134c825a7");
  EXPECT_EQ(hash_bytes(HashAlgo::kSha512, sp("abc"))->hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_EQ(hash_bytes(HashAlgo::kSha1, {})->hex(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}

TEST(Hasher, StreamingEqualsOneShotAndResets) {
  auto h = Hasher::create(HashAlgo::kSha256);
  ASSERT_TRUE(h);
  ASSERT_TRUE(h->update(sp("a")));
  ASSERT_TRUE(h->update(sp("bc")));
  auto d = h->finish();
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, *hash_bytes(HashAlgo::kSha256, sp("abc")));
  // After finish() the hasher starts a new message.
  ASSERT_TRUE(h->update(sp("abc")));
  EXPECT_EQ(*h->finish(), *d);
  EXPECT_EQ(*hash_parts(HashAlgo::kSha256, {sp("ab"), sp(""), sp("c")}), *d);
}

TEST(Hasher, UnsupportedAlgorithmIsAnError) {
  auto h = Hasher::create(HashAlgo::kStreebog256);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().message.find("streebog256"), std::string::npos);
}

TEST(Hasher, PcrExtend) {
  Digest zero(HashAlgo::kSha256);
  auto v = Digest::filled(HashAlgo::kSha256, 0xff);
  std::string cat(32, '\0');
  cat.append(32, '\xff');
  EXPECT_EQ(*pcr_extend(zero, v), *hash_bytes(HashAlgo::kSha256, sp(cat)));
  EXPECT_FALSE(pcr_extend(zero, Digest(HashAlgo::kSha1)));
}

// A file bigger than the chunk (and not a multiple of it) hashed in one pass for four
// algorithms; each digest is compared with the real command-line tools.
TEST(Hasher, LargeFileMultiAlgoMatchesCoreutils) {
  TempDir dir;
  auto path = dir / "big.bin";
  std::string content((3u << 20) + 12345, '\0');
  std::mt19937_64 rng(42);
  for (auto& c : content) c = static_cast<char>(rng());
  testing::write_file(path, content);

  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd);
  const HashAlgo algos[] = {HashAlgo::kSha1, HashAlgo::kSha256, HashAlgo::kSha384,
                            HashAlgo::kSha512};
  for (size_t chunk : {size_t{4096}, size_t{1} << 20, size_t{7}}) {
    HashFileOptions o;
    o.chunk_size = chunk;
    auto r = hash_fd(fd.get(), algos, path.string(), o);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->bytes, content.size());
    const char* tools[] = {"sha1sum", "sha256sum", "sha384sum", "sha512sum"};
    for (size_t i = 0; i < 4; ++i) {
      auto out = run(std::string(tools[i]) + " " + path.string());
      ASSERT_EQ(out.rc, 0) << tools[i] << " missing or failed: " << out.output;
      EXPECT_EQ(out.output.substr(0, out.output.find(' ')), r->digests[i].hex())
          << tools[i] << " chunk " << chunk;
    }
  }
  // openssl as a second, independent implementation for the default chunk path.
  auto out = run("openssl dgst -sha256 -r " + path.string());
  ASSERT_EQ(out.rc, 0) << out.output;
  EXPECT_EQ(out.output.substr(0, 64), hash_fd(fd.get(), HashAlgo::kSha256, path.string())->hex());
  // The fd offset is not moved (pread), so a caller can keep using it.
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_CUR), 0);
}

TEST(Hasher, KnownSizeStopsThereWithoutTheEofRead) {
  // known_size is the fstat size the caller will check again after: hashing stops at it (a file
  // that grew meanwhile is the caller's to see), and reads to EOF when unset or not reached.
  TempDir dir;
  auto path = dir / "f.bin";
  testing::write_file(path, std::string(100, 'a'));
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd);
  HashFileOptions o;
  o.chunk_size = 40;
  o.known_size = 80;
  auto r = hash_fd(fd.get(), HashAlgo::kSha256, path.string(), o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->hex(), hash_bytes(HashAlgo::kSha256, sp(std::string(80, 'a')))->hex());
  o.known_size = 90;  // not at a chunk's end: read on to EOF
  r = hash_fd(fd.get(), HashAlgo::kSha256, path.string(), o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->hex(), hash_bytes(HashAlgo::kSha256, sp(std::string(100, 'a')))->hex());
  o.known_size.reset();
  o.advise_sequential = false;
  r = hash_fd(fd.get(), HashAlgo::kSha256, path.string(), o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->hex(), hash_bytes(HashAlgo::kSha256, sp(std::string(100, 'a')))->hex());
}

TEST(Hasher, ReadErrorNamesThePath) {
  TempDir dir;
  UniqueFd fd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(fd);
  auto r = hash_fd(fd.get(), HashAlgo::kSha256, "/some/dir");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EISDIR);
  EXPECT_EQ(r.error().where, "/some/dir");
  EXPECT_NE(r.error().message.find("offset 0"), std::string::npos);
}

}  // namespace
}  // namespace nsima::measure

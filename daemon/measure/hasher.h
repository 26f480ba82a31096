// SPDX-License-Identifier: Apache-2.0
// Digests with OpenSSL EVP: one-shot over bytes, streaming (Hasher), and over a whole file
// descriptor read once in large chunks, optionally for several algorithms in the same pass (a list
// that needs the sha256 file digest and a sha1 `d` field reads the file once, not twice).
//
// Files are read with pread(2) from offset 0 into a per-thread buffer; they are never mmap()ed,
// because a container can truncate a file while we hash it and a mapped page beyond EOF would kill
// the daemon with SIGBUS. Read errors carry the path in Error::where.
#pragma once

#include <openssl/evp.h>

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "measure/hash_algo.h"

namespace nsima::measure {

// The OpenSSL digest for a kernel algorithm, fetched once per process; nullptr when this OpenSSL
// has none (streebog, tiger, rmd128/256/320; md4 without the legacy provider).
const EVP_MD* evp_md(HashAlgo algo);

struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;

// Streaming digest of one algorithm. Move-only; after finish() it is ready for a new message.
class Hasher {
 public:
  static Result<Hasher> create(HashAlgo algo);

  Result<void> update(std::span<const uint8_t> data);
  Result<Digest> finish();
  HashAlgo algo() const { return algo_; }

 private:
  Hasher(HashAlgo algo, const EVP_MD* md, EvpMdCtxPtr ctx)
      : algo_(algo), md_(md), ctx_(std::move(ctx)) {}

  HashAlgo algo_;
  const EVP_MD* md_;
  EvpMdCtxPtr ctx_;
};

Result<Digest> hash_bytes(HashAlgo algo, std::span<const uint8_t> data);
// Digest of the concatenation of `parts` (no copy).
Result<Digest> hash_parts(HashAlgo algo, std::initializer_list<std::span<const uint8_t>> parts);
// TPM extend semantics: H(pcr || value). Both must be of the same algorithm (EINVAL otherwise).
Result<Digest> pcr_extend(const Digest& pcr, const Digest& value);

inline constexpr size_t kDefaultChunkSize = size_t{1} << 20;

struct HashFileOptions {
  size_t chunk_size = kDefaultChunkSize;  // bytes per pread(2)
  // Checked before every chunk: once it reads true, hash_fd stops and fails with ECANCELED, so a
  // huge (or endlessly growing) file is abandoned within one chunk of the request. Null: never.
  const std::atomic<bool>* cancel = nullptr;
  // The size fstat(2) gave just before: reading stops once that many bytes are in, without the
  // read that would only say EOF. The caller then checks the size (and ctime) again: growth
  // while the file was read is seen that way, not here. Unset: read to EOF.
  std::optional<uint64_t> known_size;
  // posix_fadvise(SEQUENTIAL) first (a readahead hint); off where the caller advised already.
  bool advise_sequential = true;
};

struct FileDigests {
  std::vector<Digest> digests;  // in the order of the requested algorithms
  uint64_t bytes = 0;           // bytes hashed (the file size at the time it was read)
};

// Hashes the content of `fd` from offset 0 to EOF, once, feeding every algorithm in `algos`.
// `path` only names the file in errors. Does not move the fd's file offset. ECANCELED when
// `options.cancel` was set.
Result<FileDigests> hash_fd(int fd, std::span<const HashAlgo> algos, std::string_view path,
                            const HashFileOptions& options = {});
Result<Digest> hash_fd(int fd, HashAlgo algo, std::string_view path,
                       const HashFileOptions& options = {});

}  // namespace nsima::measure

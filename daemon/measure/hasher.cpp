// SPDX-License-Identifier: Apache-2.0
// OpenSSL EVP digests. EVP_MD objects are fetched once (explicit fetch avoids the per-call
// provider lookup OpenSSL 3 does for EVP_sha256() & co.) and kept for the life of the process.
#include "measure/hasher.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

namespace nsima::measure {

namespace {

// OpenSSL names for kernel algorithms; empty where OpenSSL has no implementation.
constexpr std::array<const char*, kHashAlgoCount> kOpenSslNames = {
    "MD4", "MD5", "SHA1", "RIPEMD160", "SHA256",   "SHA384",    "SHA512",   "SHA224",
    "",    "",    "",     "",          "",         "WHIRLPOOL", "",         "",
    "",    "SM3", "",     "",          "SHA3-256", "SHA3-384",  "SHA3-512",
};
// wp256/wp384 are truncations the kernel computes itself; only wp512 is OpenSSL's WHIRLPOOL.
static_assert(kOpenSslNames.size() == kHashAlgoCount);

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Result<const EVP_MD*> require_md(HashAlgo algo) {
  const EVP_MD* md = evp_md(algo);
  if (!md)
    return make_error(ENOTSUP, std::string("hash algorithm ") + std::string(hash_algo_name(algo)) +
                                   " is not available in OpenSSL");
  return md;
}

// One reusable read buffer per thread: pool workers hash file after file without reallocating.
uint8_t* thread_buffer(size_t size) {
  thread_local std::unique_ptr<uint8_t[]> buf;
  thread_local size_t cap = 0;
  if (cap < size) {
    buf = std::make_unique_for_overwrite<uint8_t[]>(size);
    cap = size;
  }
  return buf.get();
}

}  // namespace

const EVP_MD* evp_md(HashAlgo algo) {
  // Fetched once, never freed: digests may be used by pool threads until the process exits.
  static const std::array<EVP_MD*, kHashAlgoCount> table = [] {
    std::array<EVP_MD*, kHashAlgoCount> t{};
    for (size_t i = 0; i < kHashAlgoCount; ++i)
      if (kOpenSslNames[i][0] != '\0') t[i] = EVP_MD_fetch(nullptr, kOpenSslNames[i], nullptr);
    ERR_clear_error();  // failed fetches (MD4 without the legacy provider) leave queue entries
    return t;
  }();
  const EVP_MD* md = table[static_cast<size_t>(algo)];
  // Guard against a provider whose size disagrees with the kernel's (would corrupt Digest).
  if (md && static_cast<size_t>(EVP_MD_get_size(md)) != hash_digest_size(algo)) return nullptr;
  return md;
}

Result<Hasher> Hasher::create(HashAlgo algo) {
  auto md = require_md(algo);
  if (!md) return tl::unexpected(md.error());
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return make_error(ENOMEM, "EVP_MD_CTX_new failed");
  if (EVP_DigestInit_ex(ctx.get(), *md, nullptr) != 1)
    return make_error(EIO, "EVP_DigestInit_ex: " + openssl_error());
  return Hasher(algo, *md, std::move(ctx));
}

Result<void> Hasher::update(std::span<const uint8_t> data) {
  if (EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1)
    return make_error(EIO, "EVP_DigestUpdate: " + openssl_error());
  return {};
}

Result<Digest> Hasher::finish() {
  Digest d(algo_);
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_.get(), d.data(), &len) != 1)
    return make_error(EIO, "EVP_DigestFinal_ex: " + openssl_error());
  if (EVP_DigestInit_ex(ctx_.get(), md_, nullptr) != 1)
    return make_error(EIO, "EVP_DigestInit_ex: " + openssl_error());
  return d;
}

Result<Digest> hash_bytes(HashAlgo algo, std::span<const uint8_t> data) {
  return hash_parts(algo, {data});
}

Result<Digest> hash_parts(HashAlgo algo, std::initializer_list<std::span<const uint8_t>> parts) {
  auto h = Hasher::create(algo);
  if (!h) return tl::unexpected(h.error());
  for (auto part : parts)
    if (auto r = h->update(part); !r) return tl::unexpected(r.error());
  return h->finish();
}

Result<Digest> pcr_extend(const Digest& pcr, const Digest& value) {
  if (pcr.algo() != value.algo())
    return make_error(EINVAL, "cannot extend a " + std::string(hash_algo_name(pcr.algo())) +
                                  " PCR with a " + std::string(hash_algo_name(value.algo())) +
                                  " value");
  return hash_parts(pcr.algo(), {pcr.bytes(), value.bytes()});
}

Result<FileDigests> hash_fd(int fd, std::span<const HashAlgo> algos, std::string_view path,
                            const HashFileOptions& options) {
  const std::string where(path);
  if (algos.empty()) return make_error(EINVAL, "no hash algorithm requested", where);
  const size_t chunk = options.chunk_size == 0 ? kDefaultChunkSize : options.chunk_size;

  std::vector<Hasher> hashers;
  hashers.reserve(algos.size());
  for (HashAlgo a : algos) {
    auto h = Hasher::create(a);
    if (!h) return make_error(h.error().code, h.error().message, where);
    hashers.push_back(std::move(*h));
  }

  // Readahead hint only; failure (e.g. on a pipe-like fd) changes nothing.
  if (options.advise_sequential) (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  uint8_t* buf = thread_buffer(chunk);
  uint64_t off = 0;
  for (;;) {
    if (options.cancel && options.cancel->load(std::memory_order_relaxed))
      return make_error(ECANCELED, "cancelled after " + std::to_string(off) + " bytes", where);
    ssize_t n = ::pread(fd, buf, chunk, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      return make_error(
          err, "read failed at offset " + std::to_string(off) + ": " + std::strerror(err), where);
    }
    if (n == 0) break;
    std::span<const uint8_t> part(buf, static_cast<size_t>(n));
    for (auto& h : hashers)
      if (auto r = h.update(part); !r) return make_error(r.error().code, r.error().message, where);
    off += static_cast<uint64_t>(n);
    if (options.known_size && off == *options.known_size) break;
  }

  FileDigests out;
  out.bytes = off;
  out.digests.reserve(hashers.size());
  for (auto& h : hashers) {
    auto d = h.finish();
    if (!d) return make_error(d.error().code, d.error().message, where);
    out.digests.push_back(*d);
  }
  return out;
}

Result<Digest> hash_fd(int fd, HashAlgo algo, std::string_view path,
                       const HashFileOptions& options) {
  const HashAlgo one[] = {algo};
  auto r = hash_fd(fd, one, path, options);
  if (!r) return tl::unexpected(r.error());
  return r->digests.front();
}

}  // namespace nsima::measure

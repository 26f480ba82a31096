// SPDX-License-Identifier: Apache-2.0
// Hash algorithm identities as the kernel and the TPM number them, and Digest, a fixed-size value
// type that carries its algorithm. The kernel's `enum hash_algo` (include/uapi/linux/hash_info.h)
// is ABI: its numbers appear in security.ima headers and its names in `d-ng` template fields, so
// they are spelled here exactly as crypto/hash_info.c spells them. TPM_ALG_ID values come from the
// TCG algorithm registry; they are what PCR banks are keyed by. OpenSSL stays out of this header.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nsima::measure {

// Values must equal the kernel's enum hash_algo (uapi, stable).
enum class HashAlgo : uint8_t {
  kMd4 = 0,
  kMd5 = 1,
  kSha1 = 2,
  kRmd160 = 3,
  kSha256 = 4,
  kSha384 = 5,
  kSha512 = 6,
  kSha224 = 7,
  kRmd128 = 8,
  kRmd256 = 9,
  kRmd320 = 10,
  kWp256 = 11,
  kWp384 = 12,
  kWp512 = 13,
  kTgr128 = 14,
  kTgr160 = 15,
  kTgr192 = 16,
  kSm3_256 = 17,
  kStreebog256 = 18,
  kStreebog512 = 19,
  kSha3_256 = 20,
  kSha3_384 = 21,
  kSha3_512 = 22,
};
inline constexpr size_t kHashAlgoCount = 23;  // HASH_ALGO__LAST in the 6.12 uapi header
inline constexpr size_t kMaxDigestSize = 64;  // IMA_MAX_DIGEST_SIZE (SHA-512)

// TPM_ALG_ID values for the banks a PC TPM allocates (TCG Algorithm Registry).
inline constexpr uint16_t kTpmAlgSha1 = 0x0004;
inline constexpr uint16_t kTpmAlgSha256 = 0x000B;
inline constexpr uint16_t kTpmAlgSha384 = 0x000C;
inline constexpr uint16_t kTpmAlgSha512 = 0x000D;
inline constexpr uint16_t kTpmAlgSm3_256 = 0x0012;
inline constexpr uint16_t kTpmAlgSha3_256 = 0x0027;
inline constexpr uint16_t kTpmAlgSha3_384 = 0x0028;
inline constexpr uint16_t kTpmAlgSha3_512 = 0x0029;

// Kernel name (hash_algo_name[]): "sha1", "sha256", "sm3", "sha3-256", ...
std::string_view hash_algo_name(HashAlgo algo);
// hash_digest_size[] in bytes.
size_t hash_digest_size(HashAlgo algo);
// TPM_ALG_ID of the algorithm, nullopt when the TPM has no such algorithm.
std::optional<uint16_t> tpm_alg_id(HashAlgo algo);

std::optional<HashAlgo> hash_algo_from_name(std::string_view name);  // kernel names only
std::optional<HashAlgo> hash_algo_from_id(uint32_t id);              // enum hash_algo value
std::optional<HashAlgo> hash_algo_from_tpm(uint16_t tpm_alg);        // TPM_ALG_ID

// A digest and its algorithm, stored inline (no allocation) so that caches and queues can hold
// many of them cheaply. A default-constructed Digest is the SHA-1 zero digest.
class Digest {
 public:
  Digest() : Digest(HashAlgo::kSha1) {}
  // All-zero digest of `algo` (what IMA records for a violation or a missing TPM).
  explicit Digest(HashAlgo algo);

  static Digest filled(HashAlgo algo, uint8_t byte);  // e.g. 0xFF.. for a violation extend
  // Fails (EINVAL) when bytes.size() differs from the algorithm's digest size.
  static Result<Digest> from_bytes(HashAlgo algo, std::span<const uint8_t> bytes);
  static Result<Digest> from_hex(HashAlgo algo, std::string_view hex);

  HashAlgo algo() const { return algo_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {bytes_.data(), size_}; }
  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  bool is_zero() const;
  std::string hex() const;
  // "sha256:<hex>", the form the ascii list uses for d-ng.
  std::string to_string() const;

  bool operator==(const Digest& o) const;

 private:
  std::array<uint8_t, kMaxDigestSize> bytes_{};
  HashAlgo algo_;
  uint8_t size_;
};

}  // namespace nsima::measure

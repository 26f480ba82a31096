// SPDX-License-Identifier: Apache-2.0
// Tables for enum hash_algo (names and sizes from crypto/hash_info.c) and the TPM algorithm ids.
#include "measure/hash_algo.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/hex.h"

namespace nsima::measure {

namespace {

struct AlgoInfo {
  std::string_view name;
  uint8_t size;
  uint16_t tpm;  // 0: no TPM algorithm
};

// Indexed by enum hash_algo. Names/sizes must stay identical to crypto/hash_info.c.
constexpr std::array<AlgoInfo, kHashAlgoCount> kAlgos = {{
    {"md4", 16, 0},
    {"md5", 16, 0},
    {"sha1", 20, kTpmAlgSha1},
    {"rmd160", 20, 0},
    {"sha256", 32, kTpmAlgSha256},
    {"sha384", 48, kTpmAlgSha384},
    {"sha512", 64, kTpmAlgSha512},
    {"sha224", 28, 0},
    {"rmd128", 16, 0},
    {"rmd256", 32, 0},
    {"rmd320", 40, 0},
    {"wp256", 32, 0},
    {"wp384", 48, 0},
    {"wp512", 64, 0},
    {"tgr128", 16, 0},
    {"tgr160", 20, 0},
    {"tgr192", 24, 0},
    {"sm3", 32, kTpmAlgSm3_256},
    {"streebog256", 32, 0},
    {"streebog512", 64, 0},
    {"sha3-256", 32, kTpmAlgSha3_256},
    {"sha3-384", 48, kTpmAlgSha3_384},
    {"sha3-512", 64, kTpmAlgSha3_512},
}};

const AlgoInfo& info(HashAlgo algo) { return kAlgos[static_cast<size_t>(algo)]; }

}  // namespace

std::string_view hash_algo_name(HashAlgo algo) { return info(algo).name; }

size_t hash_digest_size(HashAlgo algo) { return info(algo).size; }

std::optional<uint16_t> tpm_alg_id(HashAlgo algo) {
  uint16_t id = info(algo).tpm;
  if (id == 0) return std::nullopt;
  return id;
}

std::optional<HashAlgo> hash_algo_from_name(std::string_view name) {
  for (size_t i = 0; i < kAlgos.size(); ++i)
    if (kAlgos[i].name == name) return static_cast<HashAlgo>(i);
  return std::nullopt;
}

std::optional<HashAlgo> hash_algo_from_id(uint32_t id) {
  if (id >= kHashAlgoCount) return std::nullopt;
  return static_cast<HashAlgo>(id);
}

std::optional<HashAlgo> hash_algo_from_tpm(uint16_t tpm_alg) {
  if (tpm_alg == 0) return std::nullopt;
  for (size_t i = 0; i < kAlgos.size(); ++i)
    if (kAlgos[i].tpm == tpm_alg) return static_cast<HashAlgo>(i);
  return std::nullopt;
}

Digest::Digest(HashAlgo algo) : algo_(algo), size_(info(algo).size) {}

Digest Digest::filled(HashAlgo algo, uint8_t byte) {
  Digest d(algo);
  std::memset(d.bytes_.data(), byte, d.size_);
  return d;
}

Result<Digest> Digest::from_bytes(HashAlgo algo, std::span<const uint8_t> bytes) {
  Digest d(algo);
  if (bytes.size() != d.size_)
    return make_error(EINVAL, std::string(hash_algo_name(algo)) + " digest must be " +
                                  std::to_string(d.size_) + " bytes, got " +
                                  std::to_string(bytes.size()));
  std::copy(bytes.begin(), bytes.end(), d.bytes_.begin());
  return d;
}

Result<Digest> Digest::from_hex(HashAlgo algo, std::string_view hex) {
  auto raw = nsima::from_hex(hex);
  if (!raw) return make_error(EINVAL, "not a hex string: '" + std::string(hex) + "'");
  return from_bytes(algo, *raw);
}

bool Digest::is_zero() const {
  return std::all_of(bytes_.begin(), bytes_.begin() + size_, [](uint8_t b) { return b == 0; });
}

std::string Digest::hex() const { return to_hex(bytes_.data(), size_); }

std::string Digest::to_string() const { return std::string(hash_algo_name(algo_)) + ":" + hex(); }

bool Digest::operator==(const Digest& o) const {
  return algo_ == o.algo_ && std::memcmp(bytes_.data(), o.bytes_.data(), size_) == 0;
}

}  // namespace nsima::measure

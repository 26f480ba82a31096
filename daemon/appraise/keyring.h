// SPDX-License-Identifier: Apache-2.0
// Appraisal keys: X.509 certificates (DER or PEM) holding RSA or NIST-curve EC public keys, as
// the kernel's `.ima`/`_ima` keyring takes them (ima-facts §4.3, §4.6), per namespace.
//
// Key id (the 4 bytes in a signature header, printed "%08x"):
//   - the last 4 bytes of the certificate's subjectKeyIdentifier: the kernel matches "id:%08x"
//     as a suffix of the SKID, and evmctl ima_sign writes the SKID's tail when the key file carries
//     the certificate;
//   - a certificate without SKID gets evmctl's calc_keyid_v2(): the last 4 bytes of SHA-1 over the
//     subjectPublicKey BIT STRING contents, which is what `evmctl ima_sign --key KEY` writes when
//     it has no certificate and what `evmctl ima_verify --key CERT` computes for every cert.
//     (The kernel itself could then only match the tail of the issuer+serial id: such a
//     certificate verifies evmctl signatures here but not in kernel IMA; list() says so.)
// For certificates made with `subjectKeyIdentifier=hash` (RFC 5280 method 1, validators.md §1.2)
// both ids are the same.
//
// Verification uses OpenSSL 3 EVP: RSA PKCS#1 v1.5 with the DigestInfo of the header's hash
// algorithm, ECDSA with a DER X9.62 signature; the digest's length must be the algorithm's.
// Every OpenSSL object has one owner (unique_ptr deleters below).
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "appraise/ima_xattr.h"
#include "common/result.h"
#include "measure/hash_algo.h"

namespace nsima::appraise {

struct X509Deleter {
  void operator()(X509* x) const noexcept { X509_free(x); }
};
struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct EvpPkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* c) const noexcept { EVP_PKEY_CTX_free(c); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, EvpPkeyCtxDeleter>;

enum class KeyType { kRsa, kEc };

// What `nsimactl keys list` shows for one key.
struct KeyInfo {
  uint32_t keyid = 0;
  std::string keyid_hex;           // 8 hex digits
  bool keyid_from_skid = false;    // false: no SKID in the cert, id = SHA-1 of the public key
  uint32_t pubkey_keyid = 0;       // evmctl calc_keyid_v2() id (equal to keyid for SKID=hash)
  std::string subject;             // RFC 2253, e.g. "CN=IMA test signing key,O=nsima"
  std::string issuer;
  KeyType type = KeyType::kRsa;
  std::string algorithm;           // "rsa-2048", "ec-prime256v1"
  std::string not_before, not_after;  // "YYYY-MM-DDTHH:MM:SSZ"
  std::string fingerprint;         // sha256 of the DER certificate, hex
};

// Outcome of one signature check, with the kernel's error code (digsig_asymmetric.c).
struct SignatureCheck {
  enum class Outcome {
    kOk,
    kUnknownKey,    // no key with this id: ENOKEY
    kBadSignature,  // a key with this id exists and none verified it: EKEYREJECTED/EBADMSG
    kBadDigest,     // the digest's size is not the header algorithm's: EINVAL
  };
  Outcome outcome = Outcome::kUnknownKey;
  int error = 0;                      // 0, ENOKEY, EKEYREJECTED, EINVAL
  std::shared_ptr<const KeyInfo> key;  // the key that verified (kOk) or the last one tried
  size_t tried = 0;                   // keys with a matching id that were tried
  std::string reason;                 // "unknown key id 89a89d7b", "bad signature (2 keys ...)"
  bool ok() const { return outcome == Outcome::kOk; }
};

// One certificate and its public key. Immutable once built; verify() may be called from several
// threads (each call uses its own EVP_PKEY_CTX unless it gets the cached one).
class Key {
 public:
  // DER or PEM ("-----BEGIN CERTIFICATE-----"); anything else fails (EINVAL) with a reason
  // naming `source` (a file name) and what the bytes look like (private key, CSR, garbage).
  static Result<Key> from_bytes(std::span<const uint8_t> bytes, std::string_view source = {});
  static Result<Key> from_file(const std::filesystem::path& path);

  const KeyInfo& info() const { return *info_; }
  const std::shared_ptr<const KeyInfo>& info_ptr() const { return info_; }
  uint32_t keyid() const { return info_->keyid; }
  const std::vector<uint8_t>& der() const { return *der_; }
  EVP_PKEY* pkey() const { return state_->pkey.get(); }

  // True iff `signature` is a valid signature by this key over `digest`, which must be a digest
  // of `algo` (PKCS#1 v1.5 DigestInfo for RSA, DER ECDSA for EC).
  bool verify(measure::HashAlgo algo, std::span<const uint8_t> digest,
              std::span<const uint8_t> signature) const;

 private:
  struct State {
    EvpPkeyPtr pkey;
    // One prepared verify context per hash algorithm, reused by whoever holds the mutex (the
    // common case: one pipeline thread); concurrent callers build their own.
    std::mutex mu;
    std::array<EvpPkeyCtxPtr, measure::kHashAlgoCount> ctx;
  };
  Key() = default;
  std::shared_ptr<const KeyInfo> info_;
  std::shared_ptr<const std::vector<uint8_t>> der_;
  std::shared_ptr<State> state_;
};

// A namespace's keys. Several keys may share an id (the kernel keeps both; a signature is tried
// against each). Copies share the keys.
class Keyring {
 public:
  // EEXIST if the same certificate (same DER) is already in the ring.
  Result<void> add(Key key);
  // Removes every key with this id; returns how many.
  size_t remove(uint32_t keyid);
  std::vector<const Key*> find(uint32_t keyid) const;
  std::vector<KeyInfo> list() const;  // sorted by key id, then fingerprint
  size_t size() const { return keys_.size(); }
  bool empty() const { return keys_.empty(); }

  // Checks an IMA v2/v3 signature against the keys whose id is the header's key id.
  // `signed_digest` is what was signed: the file digest (v2) or sigv3_signed_digest() (v3).
  SignatureCheck verify(const ImaXattr& sig, std::span<const uint8_t> signed_digest) const;
  // Checks a detached signature (openssl dgst -sign) over a digest against every key.
  SignatureCheck verify_any(measure::HashAlgo algo, std::span<const uint8_t> digest,
                            std::span<const uint8_t> signature) const;

 private:
  std::vector<Key> keys_;
  std::unordered_multimap<uint32_t, size_t> by_id_;
  void reindex();
};

// The persistent key store of one namespace: a directory of DER certificates named
// `<keyid>-<first 16 hex of the sha256 fingerprint>.der` (so keys sharing an id can coexist),
// each written atomically (temp file, fsync, rename, fsync of the directory).
class KeyStore {
 public:
  // Creates `dir` (mode 0700) if missing.
  static Result<KeyStore> open(const std::filesystem::path& dir);

  // Adds one certificate given as DER or PEM. Fails with EINVAL for anything that is not a
  // usable certificate and EEXIST (naming the stored file) for a certificate already stored.
  Result<KeyInfo> add(std::span<const uint8_t> cert, std::string_view source = {});
  Result<KeyInfo> add_file(const std::filesystem::path& path);
  // Removes every stored key with this id (ENOENT if none); returns what was removed.
  Result<std::vector<KeyInfo>> remove(uint32_t keyid);
  // Every stored certificate; a file that does not parse fails the load, naming it.
  Result<Keyring> load() const;

  const std::filesystem::path& dir() const { return dir_; }

 private:
  explicit KeyStore(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;
};

// `<state>/ns/<id>/keys`, where the pipeline keeps a namespace's key store.
std::filesystem::path namespace_keys_dir(const std::filesystem::path& state_dir, uint64_t ns_id);

// Parses "89a89d7b" (8 hex digits, optional "0x" or "id:" prefix) into a key id.
std::optional<uint32_t> parse_keyid(std::string_view text);

}  // namespace nsima::appraise

// SPDX-License-Identifier: Apache-2.0
// X.509 keys, key ids as evmctl and the kernel compute them, EVP signature checks, the on-disk
// key store. See keyring.h.
#include "appraise/keyring.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "common/atomic_file.h"
#include "common/hex.h"
#include "measure/hasher.h"

namespace nsima::appraise {

using measure::HashAlgo;

namespace {

struct BioDeleter {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::string hex32(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

uint32_t tail32(const uint8_t* p, size_t n) {
  if (n < 4) {
    uint32_t v = 0;
    for (size_t i = 0; i < n; ++i) v = v << 8 | p[i];
    return v;
  }
  p += n - 4;
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

std::string name_string(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return {};
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

std::string time_string(const ASN1_TIME* t) {
  struct tm tm {};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// What the bytes look like when they are not a certificate, for the error message.
std::string describe_non_cert(std::string_view text) {
  auto has = [&](std::string_view s) { return text.find(s) != std::string_view::npos; };
  if (has("PRIVATE KEY-----")) return "a private key, not a certificate (give the .pem/.der cert)";
  if (has("PUBLIC KEY-----")) return "a bare public key; IMA keys are X.509 certificates";
  if (has("CERTIFICATE REQUEST-----")) return "a certificate request, not a certificate";
  if (has("-----BEGIN ")) return "PEM, but not a CERTIFICATE block";
  return "neither a DER nor a PEM X.509 certificate";
}

bool is_supported_curve(const std::string& group) {
  // The kernel's ecdsa akcipher implements the NIST prime curves (crypto/ecdsa.c).
  return group == "prime192v1" || group == "prime256v1" || group == "secp384r1" ||
         group == "secp521r1" || group == "P-256" || group == "P-384" || group == "P-521";
}

EvpPkeyCtxPtr make_verify_ctx(EVP_PKEY* pkey, HashAlgo algo) {
  const EVP_MD* md = measure::evp_md(algo);
  if (!md) return nullptr;
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) return nullptr;
  if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA &&
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1)
    return nullptr;
  if (EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1) return nullptr;
  return ctx;
}

}  // namespace

// ---------------------------------------------------------------- Key

Result<Key> Key::from_bytes(std::span<const uint8_t> bytes, std::string_view source) {
  const std::string where(source);
  if (bytes.empty()) return make_error(EINVAL, "empty file: not a certificate", where);
  X509Ptr x;
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (text.find("-----BEGIN CERTIFICATE-----") != std::string_view::npos) {
    BioPtr bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
    if (!bio) return make_error(ENOMEM, "BIO_new_mem_buf failed", where);
    x.reset(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!x) return make_error(EINVAL, "bad PEM certificate: " + openssl_error(), where);
  } else {
    const unsigned char* p = bytes.data();
    x.reset(d2i_X509(nullptr, &p, static_cast<long>(bytes.size())));
    if (!x) {
      ERR_clear_error();
      return make_error(EINVAL, describe_non_cert(text), where);
    }
    if (p != bytes.data() + bytes.size())
      return make_error(EINVAL,
                        "DER certificate followed by " +
                            std::to_string(bytes.data() + bytes.size() - p) + " extra bytes",
                        where);
  }

  EvpPkeyPtr pkey(X509_get_pubkey(x.get()));
  if (!pkey) return make_error(EINVAL, "certificate has no usable public key: " + openssl_error(), where);

  auto info = std::make_shared<KeyInfo>();
  const int base = EVP_PKEY_get_base_id(pkey.get());
  if (base == EVP_PKEY_RSA) {
    info->type = KeyType::kRsa;
    info->algorithm = "rsa-" + std::to_string(EVP_PKEY_get_bits(pkey.get()));
  } else if (base == EVP_PKEY_EC) {
    char group[64] = {};
    size_t glen = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey.get(), OSSL_PKEY_PARAM_GROUP_NAME, group,
                                       sizeof group, &glen) != 1)
      return make_error(EINVAL, "EC key without a named curve (explicit parameters)", where);
    if (!is_supported_curve(group))
      return make_error(EINVAL,
                        std::string("EC curve ") + group +
                            " cannot verify IMA signatures (the kernel's ecdsa supports the NIST "
                            "curves P-192/P-256/P-384/P-521)",
                        where);
    info->type = KeyType::kEc;
    info->algorithm = std::string("ec-") + group;
  } else {
    const char* tn = EVP_PKEY_get0_type_name(pkey.get());
    return make_error(EINVAL,
                      std::string("key type ") + (tn ? tn : "?") +
                          " cannot verify IMA signatures (RSA or NIST-curve ECDSA only)",
                      where);
  }

  // evmctl calc_keyid_v2(): SHA-1 over the subjectPublicKey BIT STRING contents.
  const unsigned char* pk = nullptr;
  int pklen = 0;
  if (X509_PUBKEY_get0_param(nullptr, &pk, &pklen, nullptr, X509_get_X509_PUBKEY(x.get())) != 1)
    return make_error(EINVAL, "cannot read the subjectPublicKey: " + openssl_error(), where);
  uint8_t sha1[SHA_DIGEST_LENGTH];
  SHA1(pk, static_cast<size_t>(pklen), sha1);
  info->pubkey_keyid = tail32(sha1, sizeof sha1);

  const ASN1_OCTET_STRING* skid = X509_get0_subject_key_id(x.get());
  if (skid && ASN1_STRING_length(skid) > 0) {
    info->keyid = tail32(ASN1_STRING_get0_data(skid), static_cast<size_t>(ASN1_STRING_length(skid)));
    info->keyid_from_skid = true;
  } else {
    info->keyid = info->pubkey_keyid;
  }
  ERR_clear_error();
  info->keyid_hex = hex32(info->keyid);
  info->subject = name_string(X509_get_subject_name(x.get()));
  info->issuer = name_string(X509_get_issuer_name(x.get()));
  info->not_before = time_string(X509_get0_notBefore(x.get()));
  info->not_after = time_string(X509_get0_notAfter(x.get()));

  auto der = std::make_shared<std::vector<uint8_t>>();
  int dlen = i2d_X509(x.get(), nullptr);
  if (dlen <= 0) return make_error(EINVAL, "cannot re-encode the certificate: " + openssl_error(), where);
  der->resize(static_cast<size_t>(dlen));
  unsigned char* out = der->data();
  i2d_X509(x.get(), &out);
  auto fp = measure::hash_bytes(HashAlgo::kSha256, *der);
  if (!fp) return tl::unexpected(fp.error());
  info->fingerprint = fp->hex();

  Key key;
  key.info_ = std::move(info);
  key.der_ = std::move(der);
  key.state_ = std::make_shared<State>();
  key.state_->pkey = std::move(pkey);
  return key;
}

Result<Key> Key::from_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(errno ? errno : ENOENT, std::string("cannot open: ") + strerror(errno), path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string s = ss.str();
  if (s.size() > (1u << 20)) return make_error(EINVAL, "larger than 1 MiB: not a certificate", path.string());
  return from_bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()}, path.string());
}

bool Key::verify(HashAlgo algo, std::span<const uint8_t> digest,
                 std::span<const uint8_t> signature) const {
  if (digest.size() != measure::hash_digest_size(algo) || signature.empty()) return false;
  auto run = [&](EVP_PKEY_CTX* ctx) {
    const int rc = EVP_PKEY_verify(ctx, signature.data(), signature.size(), digest.data(),
                                   digest.size());
    if (rc != 1) ERR_clear_error();
    return rc == 1;
  };
  const size_t slot = static_cast<size_t>(algo);
  std::unique_lock lock(state_->mu, std::try_to_lock);
  if (lock.owns_lock()) {
    auto& cached = state_->ctx[slot];
    if (!cached) cached = make_verify_ctx(state_->pkey.get(), algo);
    if (!cached) {
      ERR_clear_error();
      return false;
    }
    return run(cached.get());
  }
  EvpPkeyCtxPtr ctx = make_verify_ctx(state_->pkey.get(), algo);
  if (!ctx) {
    ERR_clear_error();
    return false;
  }
  return run(ctx.get());
}

// ---------------------------------------------------------------- Keyring

void Keyring::reindex() {
  by_id_.clear();
  for (size_t i = 0; i < keys_.size(); ++i) by_id_.emplace(keys_[i].keyid(), i);
}

Result<void> Keyring::add(Key key) {
  for (const auto& k : keys_)
    if (k.info().fingerprint == key.info().fingerprint)
      return make_error(EEXIST, "certificate already in the keyring (key id " +
                                    k.info().keyid_hex + ", " + k.info().subject + ")");
  by_id_.emplace(key.keyid(), keys_.size());
  keys_.push_back(std::move(key));
  return {};
}

size_t Keyring::remove(uint32_t keyid) {
  const size_t before = keys_.size();
  std::erase_if(keys_, [&](const Key& k) { return k.keyid() == keyid; });
  reindex();
  return before - keys_.size();
}

std::vector<const Key*> Keyring::find(uint32_t keyid) const {
  std::vector<const Key*> out;
  auto [lo, hi] = by_id_.equal_range(keyid);
  for (auto it = lo; it != hi; ++it) out.push_back(&keys_[it->second]);
  std::sort(out.begin(), out.end());  // insertion order (keys_ is a vector)
  return out;
}

std::vector<KeyInfo> Keyring::list() const {
  std::vector<KeyInfo> out;
  for (const auto& k : keys_) out.push_back(k.info());
  std::sort(out.begin(), out.end(), [](const KeyInfo& a, const KeyInfo& b) {
    return a.keyid != b.keyid ? a.keyid < b.keyid : a.fingerprint < b.fingerprint;
  });
  return out;
}

SignatureCheck Keyring::verify(const ImaXattr& sig, std::span<const uint8_t> signed_digest) const {
  SignatureCheck r;
  if (signed_digest.size() != measure::hash_digest_size(sig.algo)) {
    r.outcome = SignatureCheck::Outcome::kBadDigest;
    r.error = EINVAL;
    r.reason = "digest is " + std::to_string(signed_digest.size()) + " bytes, " +
               std::string(measure::hash_algo_name(sig.algo)) + " needs " +
               std::to_string(measure::hash_digest_size(sig.algo));
    return r;
  }
  auto candidates = find(sig.keyid);
  if (candidates.empty()) {
    r.outcome = SignatureCheck::Outcome::kUnknownKey;
    r.error = ENOKEY;
    r.reason = "unknown key id " + sig.keyid_hex() + " (" + std::to_string(keys_.size()) +
               " keys in the keyring)";
    return r;
  }
  for (const Key* k : candidates) {
    ++r.tried;
    r.key = k->info_ptr();
    if (k->verify(sig.algo, signed_digest, sig.signature)) {
      r.outcome = SignatureCheck::Outcome::kOk;
      r.reason = "signed by key " + k->info().keyid_hex + " (" + k->info().subject + ")";
      return r;
    }
  }
  r.outcome = SignatureCheck::Outcome::kBadSignature;
  r.error = EKEYREJECTED;
  r.reason = "bad signature: " + std::string(measure::hash_algo_name(sig.algo)) +
             " signature does not verify with " +
             (r.tried == 1 ? std::string("key ") + sig.keyid_hex() + " (" + r.key->subject + ")"
                           : std::to_string(r.tried) + " keys with id " + sig.keyid_hex());
  return r;
}

SignatureCheck Keyring::verify_any(HashAlgo algo, std::span<const uint8_t> digest,
                                   std::span<const uint8_t> signature) const {
  SignatureCheck r;
  if (digest.size() != measure::hash_digest_size(algo)) {
    r.outcome = SignatureCheck::Outcome::kBadDigest;
    r.error = EINVAL;
    r.reason = "digest size does not match " + std::string(measure::hash_algo_name(algo));
    return r;
  }
  if (keys_.empty()) {
    r.outcome = SignatureCheck::Outcome::kUnknownKey;
    r.error = ENOKEY;
    r.reason = "the keyring is empty";
    return r;
  }
  for (const auto& k : keys_) {
    ++r.tried;
    if (k.verify(algo, digest, signature)) {
      r.outcome = SignatureCheck::Outcome::kOk;
      r.key = k.info_ptr();
      r.reason = "signed by key " + k.info().keyid_hex + " (" + k.info().subject + ")";
      return r;
    }
  }
  r.outcome = SignatureCheck::Outcome::kBadSignature;
  r.error = EKEYREJECTED;
  r.reason = "signature verifies with none of the " + std::to_string(r.tried) + " keys";
  return r;
}

// ---------------------------------------------------------------- KeyStore

namespace {

std::string key_file_name(const KeyInfo& info) {
  return info.keyid_hex + "-" + info.fingerprint.substr(0, 16) + ".der";
}

Result<void> fsync_dir(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error(errno, std::string("cannot open directory: ") + strerror(errno), dir.string());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return make_error(err, std::string("fsync: ") + strerror(err), dir.string());
  return {};
}

bool is_key_file(const std::filesystem::directory_entry& e) {
  const auto name = e.path().filename().string();
  return e.is_regular_file() && name.size() == 8 + 1 + 16 + 4 && name.ends_with(".der");
}

}  // namespace

std::filesystem::path namespace_keys_dir(const std::filesystem::path& state_dir, uint64_t ns_id) {
  return state_dir / "ns" / std::to_string(ns_id) / "keys";
}

std::optional<uint32_t> parse_keyid(std::string_view s) {
  if (s.starts_with("id:")) s.remove_prefix(3);
  if (s.starts_with("0x") || s.starts_with("0X")) s.remove_prefix(2);
  if (s.size() != 8) return std::nullopt;
  auto bytes = from_hex(s);
  if (!bytes) return std::nullopt;
  return tail32(bytes->data(), 4);
}

Result<KeyStore> KeyStore::open(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(ec.value(), "cannot create key store: " + ec.message(), dir.string());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace, ec);
  if (!std::filesystem::is_directory(dir))
    return make_error(ENOTDIR, "key store is not a directory", dir.string());
  return KeyStore(dir);
}

Result<KeyInfo> KeyStore::add(std::span<const uint8_t> cert, std::string_view source) {
  auto key = Key::from_bytes(cert, source);
  if (!key) return tl::unexpected(key.error());
  const KeyInfo& info = key->info();
  const auto path = dir_ / key_file_name(info);
  std::error_code ec;
  if (std::filesystem::exists(path, ec))
    return make_error(EEXIST,
                      "certificate already in the key store (key id " + info.keyid_hex + ", " +
                          info.subject + ")",
                      path.string());
  const auto& der = key->der();
  auto w = write_file_atomic(path.string(),
                             std::string_view(reinterpret_cast<const char*>(der.data()), der.size()),
                             0644);
  if (!w) return tl::unexpected(w.error());
  if (auto s = fsync_dir(dir_); !s) return tl::unexpected(s.error());
  return info;
}

Result<KeyInfo> KeyStore::add_file(const std::filesystem::path& path) {
  auto key = Key::from_file(path);
  if (!key) return tl::unexpected(key.error());
  return add(key->der(), path.string());
}

Result<std::vector<KeyInfo>> KeyStore::remove(uint32_t keyid) {
  auto ring = load();
  if (!ring) return tl::unexpected(ring.error());
  std::vector<KeyInfo> removed;
  for (const Key* k : ring->find(keyid)) {
    const auto path = dir_ / key_file_name(k->info());
    std::error_code ec;
    if (!std::filesystem::remove(path, ec) || ec)
      return make_error(ec ? ec.value() : ENOENT, "cannot remove: " + ec.message(), path.string());
    removed.push_back(k->info());
  }
  if (removed.empty())
    return make_error(ENOENT, "no key with id " + hex32(keyid) + " in the key store", dir_.string());
  if (auto s = fsync_dir(dir_); !s) return tl::unexpected(s.error());
  return removed;
}

Result<Keyring> KeyStore::load() const {
  Keyring ring;
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec))
    if (is_key_file(e)) files.push_back(e.path());
  if (ec) return make_error(ec.value(), "cannot list key store: " + ec.message(), dir_.string());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto key = Key::from_file(f);
    if (!key) return tl::unexpected(key.error());
    if (f.filename().string() != key_file_name(key->info()))
      return make_error(EINVAL, "file name does not match its certificate (expected " +
                                    key_file_name(key->info()) + ")", f.string());
    if (auto a = ring.add(std::move(*key)); !a) return make_error(EEXIST, a.error().message, f.string());
  }
  return ring;
}

}  // namespace nsima::appraise

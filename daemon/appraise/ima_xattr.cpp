// SPDX-License-Identifier: Apache-2.0
// security.ima parsing. Every check names the offset it failed at; see ima_xattr.h for the forms.
#include "appraise/ima_xattr.h"

#include <cerrno>
#include <cstdio>

#include "common/hex.h"
#include "measure/hasher.h"

namespace nsima::appraise {

using measure::HashAlgo;

namespace {

tl::unexpected<XattrError> fail(XattrErrorKind kind, std::string reason) {
  return tl::unexpected<XattrError>(XattrError{kind, std::move(reason)});
}

std::string num(size_t n) { return std::to_string(n); }

// enum hash_algo id at `offset`; HASH_ALGO__LAST (23) and above are unknown to the kernel.
tl::expected<HashAlgo, XattrError> algo_at(std::span<const uint8_t> v, size_t offset) {
  auto algo = measure::hash_algo_from_id(v[offset]);
  if (!algo)
    return fail(XattrErrorKind::kUnknownAlgorithm,
                "hash algorithm id " + num(v[offset]) + " at offset " + num(offset) +
                    " is not a kernel enum hash_algo value (0-" +
                    num(measure::kHashAlgoCount - 1) + ")");
  return *algo;
}

XattrResult parse_digest(std::span<const uint8_t> v, XattrType type) {
  ImaXattr x;
  x.type = type;
  size_t start = 1;
  if (type == XattrType::kDigest) {
    // Legacy form: the algorithm is implied by the length (ima_get_hash_algo): 1 + 20 is sha1,
    // unless its last 4 bytes are zero, which is an md5 digest padded to 20 bytes by old kernels;
    // 1 + 16 is md5.
    if (v.size() == 21) {
      const bool padded_md5 = v[17] == 0 && v[18] == 0 && v[19] == 0 && v[20] == 0;
      x.algo = padded_md5 ? HashAlgo::kMd5 : HashAlgo::kSha1;
    } else if (v.size() == 17) {
      x.algo = HashAlgo::kMd5;
    } else {
      return fail(v.size() < 17 ? XattrErrorKind::kTruncated : XattrErrorKind::kSizeMismatch,
                  "legacy digest (type 0x01) is " + num(v.size() - 1) +
                      " bytes after the type byte; only sha1 (20) or md5 (16) are legacy forms");
    }
  } else {
    if (v.size() < 2)
      return fail(XattrErrorKind::kTruncated,
                  "digest (type 0x04) ends before its algorithm byte at offset 1");
    auto algo = algo_at(v, 1);
    if (!algo) return tl::unexpected(algo.error());
    x.algo = *algo;
    start = 2;
  }
  const size_t size = measure::hash_digest_size(x.algo);
  const size_t have = v.size() - start;
  if (have < size)
    return fail(XattrErrorKind::kTruncated,
                std::string(measure::hash_algo_name(x.algo)) + " digest needs " + num(size) +
                    " bytes from offset " + num(start) + ", the value has " + num(have));
  if (have > size && !(type == XattrType::kDigest && x.algo == HashAlgo::kMd5))
    return fail(XattrErrorKind::kSizeMismatch,
                std::string(measure::hash_algo_name(x.algo)) + " digest is " + num(size) +
                    " bytes but the value carries " + num(have) + " from offset " + num(start));
  x.digest.assign(v.begin() + static_cast<std::ptrdiff_t>(start),
                  v.begin() + static_cast<std::ptrdiff_t>(start + size));
  x.raw.assign(v.begin(), v.end());
  return x;
}

XattrResult parse_signature(std::span<const uint8_t> v, XattrType type) {
  const char* tname = type == XattrType::kDigsig ? "signature (type 0x03)"
                                                 : "verity signature (type 0x06)";
  if (v.size() < 2)
    return fail(XattrErrorKind::kTruncated,
                std::string(tname) + " ends before its version byte at offset 1");
  const uint8_t version = v[1];
  if (type == XattrType::kDigsig) {
    if (version == 1)
      return fail(XattrErrorKind::kUnsupportedVersion,
                  "signature version 1 (evmctl --rsa, deprecated) is not supported; re-sign "
                  "with evmctl ima_sign (version 2)");
    if (version != 2)
      return fail(XattrErrorKind::kUnknownVersion,
                  "signature (type 0x03) has version " + num(version) +
                      " at offset 1; only version 2 is valid for this type (3 needs type 0x06)");
  } else if (version != 3) {
    return fail(XattrErrorKind::kUnknownVersion,
                "verity signature (type 0x06) has version " + num(version) +
                    " at offset 1; only version 3 is valid");
  }
  if (v.size() <= kSignatureHeaderSize)
    return fail(XattrErrorKind::kTruncated,
                std::string(tname) + " is " + num(v.size()) + " bytes; the header alone is " +
                    num(kSignatureHeaderSize) + " and a signature must follow it");
  auto algo = algo_at(v, 2);
  if (!algo) return tl::unexpected(algo.error());
  const size_t sig_size = static_cast<size_t>(v[7]) << 8 | v[8];
  const size_t have = v.size() - kSignatureHeaderSize;
  if (sig_size != have)
    return fail(have < sig_size ? XattrErrorKind::kTruncated : XattrErrorKind::kSizeMismatch,
                "sig_size at offset 7 says " + num(sig_size) + " signature bytes, the value has " +
                    num(have) + " after the 9-byte header");
  ImaXattr x;
  x.type = type;
  x.version = version;
  x.algo = *algo;
  x.keyid = static_cast<uint32_t>(v[3]) << 24 | static_cast<uint32_t>(v[4]) << 16 |
            static_cast<uint32_t>(v[5]) << 8 | v[6];
  x.signature.assign(v.begin() + kSignatureHeaderSize, v.end());
  x.raw.assign(v.begin(), v.end());
  return x;
}

}  // namespace

std::string_view xattr_error_kind_name(XattrErrorKind kind) {
  switch (kind) {
    case XattrErrorKind::kEmpty: return "empty";
    case XattrErrorKind::kOversized: return "oversized";
    case XattrErrorKind::kUnknownType: return "unknown-type";
    case XattrErrorKind::kNotImaType: return "evm-type-in-ima";
    case XattrErrorKind::kTruncated: return "truncated";
    case XattrErrorKind::kSizeMismatch: return "size-mismatch";
    case XattrErrorKind::kUnknownAlgorithm: return "unknown-algorithm";
    case XattrErrorKind::kUnknownVersion: return "unknown-version";
    case XattrErrorKind::kUnsupportedVersion: return "unsupported-version";
    case XattrErrorKind::kParserCrashed: return "parser-crashed";
    case XattrErrorKind::kParserTimeout: return "parser-timeout";
    case XattrErrorKind::kParserFailed: return "parser-failed";
  }
  return "unknown";
}

std::string ImaXattr::keyid_hex() const {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", keyid);
  return buf;
}

XattrResult parse_ima_xattr(std::span<const uint8_t> v) {
  if (v.empty()) return fail(XattrErrorKind::kEmpty, "security.ima is empty");
  if (v.size() > kXattrSizeMax)
    return fail(XattrErrorKind::kOversized,
                "security.ima is " + num(v.size()) + " bytes, more than XATTR_SIZE_MAX (" +
                    num(kXattrSizeMax) + ")");
  switch (v[0]) {
    case 0x01: return parse_digest(v, XattrType::kDigest);
    case 0x04: return parse_digest(v, XattrType::kDigestNg);
    case 0x03: return parse_signature(v, XattrType::kDigsig);
    case 0x06: return parse_signature(v, XattrType::kVerityDigsig);
    case 0x02:
      return fail(XattrErrorKind::kNotImaType,
                  "type 0x02 (EVM HMAC) belongs in security.evm, not security.ima");
    case 0x05:
      return fail(XattrErrorKind::kNotImaType,
                  "type 0x05 (EVM portable signature) belongs in security.evm, not security.ima");
    default: {
      char hex[5];
      std::snprintf(hex, sizeof hex, "0x%02x", v[0]);
      return fail(XattrErrorKind::kUnknownType,
                  std::string("type byte ") + hex + " at offset 0 is not an IMA xattr type "
                  "(0x01 digest, 0x03 signature, 0x04 digest-ng, 0x06 verity signature)");
    }
  }
}

HashAlgo hash_algo_for_xattr(std::span<const uint8_t> v, HashAlgo ima_hash) {
  // Mirrors ima_get_hash_algo(): any header it cannot read leaves the default.
  if (v.size() < 2) return ima_hash;
  switch (v[0]) {
    case 0x03:
    case 0x06: {
      const uint8_t want = v[0] == 0x03 ? 2 : 3;
      if (v[1] != want || v.size() <= kSignatureHeaderSize) return ima_hash;
      return measure::hash_algo_from_id(v[2]).value_or(ima_hash);
    }
    case 0x04:
      return measure::hash_algo_from_id(v[1]).value_or(ima_hash);
    case 0x01:
      if (v.size() == 21)
        return (v[17] | v[18] | v[19] | v[20]) == 0 ? HashAlgo::kMd5 : HashAlgo::kSha1;
      if (v.size() == 17) return HashAlgo::kMd5;
      return ima_hash;
    default:
      return ima_hash;
  }
}

Result<measure::Digest> sigv3_signed_digest(const measure::Digest& digest) {
  // struct ima_file_id { u8 hash_type; u8 hash_algorithm; u8 hash[HASH_MAX_DIGESTSIZE]; },
  // of which only 2 + digest size bytes are hashed.
  const uint8_t head[2] = {static_cast<uint8_t>(XattrType::kVerityDigsig),
                           static_cast<uint8_t>(digest.algo())};
  return measure::hash_parts(digest.algo(), {std::span<const uint8_t>(head), digest.bytes()});
}

}  // namespace nsima::appraise

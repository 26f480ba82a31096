// SPDX-License-Identifier: Apache-2.0
// security.ima values, every form kernel IMA reads (ima-facts §4.1-§4.5; the kernel's
// security/integrity/integrity.h, ima_appraise.c, digsig_asymmetric.c):
//
//   0x01 IMA_XATTR_DIGEST      legacy: 01 || sha1[20]  (also md5: 16 bytes, or 16 + 4 zero bytes)
//   0x04 IMA_XATTR_DIGEST_NG   04 || algo (enum hash_algo) || digest
//   0x03 EVM_IMA_XATTR_DIGSIG  signature v2: 03 02 algo keyid[4, BE] size[2, BE] sig[size]
//                              (RSA PKCS#1 v1.5 with DigestInfo, or DER ECDSA, over the file digest)
//   0x06 IMA_VERITY_DIGSIG     signature v3: 06 03 algo keyid size sig, over
//                              H_algo(0x06 || algo || fs-verity digest)  (struct ima_file_id)
//
// Parsing never crashes and never throws: a malformed value is an XattrError whose kind says what
// is wrong and whose reason names the byte offset. Nothing here verifies a signature (keyring.h)
// or compares a digest (appraiser.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "common/result.h"
#include "measure/hash_algo.h"

namespace nsima::appraise {

// XATTR_SIZE_MAX (include/uapi/linux/limits.h): setxattr(2) refuses larger values with E2BIG and
// vfs_getxattr_alloc() never returns more, so a longer value cannot have come from the kernel.
inline constexpr size_t kXattrSizeMax = 65536;
// sizeof(struct signature_v2_hdr): type, version, hash_algo, keyid[4], sig_size[2].
inline constexpr size_t kSignatureHeaderSize = 9;

// enum evm_ima_xattr_type (integrity.h). IMA_XATTR_LAST = 7.
enum class XattrType : uint8_t {
  kDigest = 0x01,          // IMA_XATTR_DIGEST
  kEvmHmac = 0x02,         // EVM_XATTR_HMAC (security.evm only)
  kDigsig = 0x03,          // EVM_IMA_XATTR_DIGSIG
  kDigestNg = 0x04,        // IMA_XATTR_DIGEST_NG
  kEvmPortable = 0x05,     // EVM_XATTR_PORTABLE_DIGSIG (security.evm only)
  kVerityDigsig = 0x06,    // IMA_VERITY_DIGSIG
};

enum class XattrErrorKind {
  kEmpty,              // zero bytes (setxattr refuses it: EINVAL)
  kOversized,          // more than kXattrSizeMax bytes
  kUnknownType,        // type byte 0 or >= 7
  kNotImaType,         // an EVM type (0x02 HMAC, 0x05 portable signature) in security.ima
  kTruncated,          // shorter than its header or its digest
  kSizeMismatch,       // sig_size (or the digest length) disagrees with the value's length
  kUnknownAlgorithm,   // hash algorithm id >= HASH_ALGO__LAST (23)
  kUnknownVersion,     // signature version the kernel does not know for this type
  kUnsupportedVersion, // signature v1 (evmctl --rsa, deprecated): known, not supported by nsima
  // Not the value's fault: the confined parser (daemon/confine) gave no parse. Never produced
  // by parse_ima_xattr; the appraisal fails all the same.
  kParserCrashed,      // the worker died during the parse (a signal, a seccomp kill)
  kParserTimeout,      // no answer within the parse deadline (the worker was killed)
  kParserFailed,       // no worker could be started, or its reply did not decode
};
std::string_view xattr_error_kind_name(XattrErrorKind kind);  // "truncated", "size-mismatch", ...

struct XattrError {
  XattrErrorKind kind;
  std::string reason;  // one sentence naming the offset and the values, e.g. for a log line
};

// A well-formed security.ima value. `raw` is the whole value, as the ima-sig `sig` field wants it.
struct ImaXattr {
  XattrType type = XattrType::kDigestNg;
  measure::HashAlgo algo = measure::HashAlgo::kSha256;  // of the digest, or the signature's
  std::vector<uint8_t> digest;     // kDigest, kDigestNg: exactly hash_digest_size(algo) bytes
  uint8_t version = 0;             // kDigsig: 2; kVerityDigsig: 3
  uint32_t keyid = 0;              // signatures: the header's key id (host order)
  std::vector<uint8_t> signature;  // signatures: the sig_size bytes after the header
  std::vector<uint8_t> raw;

  bool is_signature() const {
    return type == XattrType::kDigsig || type == XattrType::kVerityDigsig;
  }
  std::string keyid_hex() const;  // 8 lower-case hex digits, as the kernel's "id:%08x"
};

using XattrResult = tl::expected<ImaXattr, XattrError>;

// Parses one security.ima value. Accepts what kernel IMA can appraise, with one deliberate
// strictness (README): a digest value must be exactly header + digest long (the kernel ignores
// trailing bytes; the md5-in-20 legacy form is the exception). A signature's sig_size must equal
// the remaining length, as in the kernel (EBADMSG).
XattrResult parse_ima_xattr(std::span<const uint8_t> value);

// The algorithm the kernel hashes the file with before appraising it: ima_get_hash_algo() — the
// xattr's algorithm when its header is readable, else `ima_hash` (the namespace's default). The
// pipeline hashes the file with this algorithm (as well as with its list's) before appraise().
measure::HashAlgo hash_algo_for_xattr(std::span<const uint8_t> value, measure::HashAlgo ima_hash);

// What a v3 (sigv3) signature signs: H_algo(0x06 || algo || digest), the used prefix of
// struct ima_file_id hashed with the digest's own algorithm (ima_appraise.c calc_file_id_hash).
// `digest` is the fs-verity file digest (what `fsverity digest` prints) when the rule says
// digest_type=verity.
Result<measure::Digest> sigv3_signed_digest(const measure::Digest& digest);

}  // namespace nsima::appraise

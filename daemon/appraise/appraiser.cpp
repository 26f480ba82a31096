// SPDX-License-Identifier: Apache-2.0
// appraise(): see appraiser.h for the order of checks and where each comes from in the kernel.
#include "appraise/appraiser.h"

#include <cerrno>
#include <cstring>

#include "common/hex.h"

namespace nsima::appraise {

using measure::Digest;
using measure::HashAlgo;

std::string_view status_name(Status s) {
  switch (s) {
    case Status::kPass: return "pass";
    case Status::kNotAppraised: return "not-appraised";
    case Status::kMissingHash: return "missing-hash";
    case Status::kSignatureRequired: return "IMA-signature-required";
    case Status::kVeritySignatureRequired: return "verity-signature-required";
    case Status::kInvalidHash: return "invalid-hash";
    case Status::kInvalidSignature: return "invalid-signature";
    case Status::kUnknownKey: return "unknown-key";
    case Status::kInvalidSignatureVersion: return "invalid-signature-version";
    case Status::kInvalidVeritySignature: return "invalid-verity-signature";
    case Status::kNoVerityDigest: return "no-verity-digest";
    case Status::kUnknownImaData: return "unknown-ima-data";
    case Status::kDeniedHashAlgorithm: return "denied-hash-algorithm";
    case Status::kRevoked: return "revoked";
    case Status::kDigestUnavailable: return "digest-unavailable";
  }
  return "unknown";
}

std::string_view kernel_cause(Status s) {
  switch (s) {
    case Status::kUnknownKey: return "invalid-signature";  // rc -ENOKEY, same cause string
    case Status::kRevoked: return "blacklisted-hash";
    case Status::kDigestUnavailable: return "collect_data";
    default: return status_name(s);
  }
}

std::string_view source_name(Source s) {
  switch (s) {
    case Source::kNone: return "none";
    case Source::kXattrDigest: return "security.ima digest";
    case Source::kXattrSignature: return "security.ima signature";
    case Source::kXattrVerity: return "security.ima verity signature";
    case Source::kDigestList: return "digest list";
    case Source::kSignedDigestList: return "signed digest list";
  }
  return "unknown";
}

HashAlgo required_hash_algo(std::optional<std::span<const uint8_t>> ima_xattr, HashAlgo ima_hash) {
  if (!ima_xattr) return ima_hash;
  return hash_algo_for_xattr(*ima_xattr, ima_hash);
}

namespace {

Appraisal result(bool pass, Status status, Source source, std::string reason, int error = 0) {
  Appraisal a;
  a.pass = pass;
  a.status = status;
  a.source = source;
  a.reason = std::move(reason);
  a.error = error;
  return a;
}

Appraisal fail(Status status, Source source, std::string reason, int error = EACCES) {
  return result(false, status, source, std::move(reason), error);
}

const Digest* digest_of(std::span<const Digest> digests, HashAlgo algo) {
  for (const auto& d : digests)
    if (d.algo() == algo) return &d;
  return nullptr;
}

std::string algo_str(HashAlgo a) { return std::string(measure::hash_algo_name(a)); }

// Whether a signature is required, and which (IMA_DIGSIG_REQUIRED, IMA_VERITY_REQUIRED).
Status required_signature_status(const policy::Decision& d) {
  return d.verity_required ? Status::kVeritySignatureRequired : Status::kSignatureRequired;
}

// Step 6: the algorithm the verdict rests on must be in appraise_algos= when set.
Appraisal check_algos(Appraisal a, const policy::Decision& d, HashAlgo algo) {
  a.algo = algo;
  if (a.pass && d.appraise_algos_mask != 0 &&
      (d.appraise_algos_mask & (1u << static_cast<unsigned>(algo))) == 0) {
    Appraisal denied = fail(Status::kDeniedHashAlgorithm, a.source,
                            algo_str(algo) + " is not in the rule's appraise_algos");
    denied.keyid = a.keyid;
    denied.algo = algo;
    return denied;
  }
  return a;
}

Appraisal verify_signature(const ImaXattr& x, const AppraiseInput& in, const policy::Decision& d) {
  const bool v3 = x.type == XattrType::kVerityDigsig;
  const Source source = v3 ? Source::kXattrVerity : Source::kXattrSignature;
  const Status bad = v3 ? Status::kInvalidVeritySignature : Status::kInvalidSignature;

  // What was signed: v2, the file digest in the header's algorithm; v3, H(0x06||algo||digest) of
  // the fs-verity digest when the rule says digest_type=verity, else of the file digest (the
  // kernel's iint->ima_hash, which then cannot verify a real verity signature).
  Digest signed_digest;
  if (v3 && d.verity_required) {
    if (!in.verity_digest)
      return fail(Status::kNoVerityDigest, source,
                  "the rule requires an fs-verity signature and the file has no fs-verity digest");
    if (in.verity_digest->algo() != x.algo)
      return fail(bad, source,
                  "verity signature header says " + algo_str(x.algo) +
                      ", the file's fs-verity digest is " + algo_str(in.verity_digest->algo()),
                  EBADMSG);
    auto id = sigv3_signed_digest(*in.verity_digest);
    if (!id) return fail(bad, source, "sigv3 hashing error: " + id.error().message);
    signed_digest = *id;
  } else {
    const Digest* fd = digest_of(in.file_digests, x.algo);
    if (!fd)
      return fail(Status::kDigestUnavailable, source,
                  "no " + algo_str(x.algo) + " digest of the file was given (hash it with " +
                      "required_hash_algo())", EINVAL);
    if (v3) {
      auto id = sigv3_signed_digest(*fd);
      if (!id) return fail(bad, source, "sigv3 hashing error: " + id.error().message);
      signed_digest = *id;
    } else {
      signed_digest = *fd;
    }
  }

  if (!in.keys || in.keys->empty()) {
    Appraisal a = fail(Status::kUnknownKey, source,
                       "unknown key id " + x.keyid_hex() + ": the namespace has no keys", ENOKEY);
    a.keyid = x.keyid;
    return a;
  }
  SignatureCheck check;
  const SignatureMemo::Item* known = nullptr;
  if (in.memo)
    for (const auto& it : in.memo->items)
      if (it.keys == in.keys && it.keyid == x.keyid && it.algo == x.algo &&
          std::ranges::equal(it.signature, x.signature) &&
          std::ranges::equal(it.signed_digest, signed_digest.bytes())) {
        known = &it;
        break;
      }
  if (known) {
    check = known->check;
    in.memo->hits++;
  } else {
    check = in.keys->verify(x, signed_digest.bytes());
    if (in.memo) {
      in.memo->verifications++;
      auto sd = signed_digest.bytes();
      in.memo->items.push_back({in.keys, x.keyid, x.algo, {x.signature.begin(), x.signature.end()},
                                {sd.begin(), sd.end()}, check});
    }
  }
  Appraisal a;
  switch (check.outcome) {
    case SignatureCheck::Outcome::kOk:
      a = result(true, Status::kPass, source, check.reason);
      break;
    case SignatureCheck::Outcome::kUnknownKey:
      a = fail(v3 ? bad : Status::kUnknownKey, source, check.reason, ENOKEY);
      break;
    case SignatureCheck::Outcome::kBadSignature:
    case SignatureCheck::Outcome::kBadDigest:
      a = fail(bad, source, check.reason, check.error);
      break;
  }
  a.keyid = x.keyid;
  return check_algos(std::move(a), d, x.algo);
}

}  // namespace

Appraisal appraise(const AppraiseInput& in) {
  static const policy::Decision kNone{};
  const policy::Decision& d = in.decision ? *in.decision : kNone;
  if (!d.appraise) return result(true, Status::kNotAppraised, Source::kNone, "no appraise rule");

  // 2-3. The digest store decides by content, before any xattr.
  if (in.digests) {
    DigestLookup hit = in.digests->lookup(in.file_digests);
    if (!hit.revoked && in.verity_digest) {
      DigestLookup v = in.digests->lookup(*in.verity_digest);
      if (v.revoked) hit = v;
    }
    if (hit.revoked)
      return check_algos(fail(Status::kRevoked, Source::kDigestList,
                              hit.digest->to_string() + " is revoked in this namespace"),
                         kNone, hit.digest->algo());
    if (hit.listed) {
      const Source src = hit.signed_listed ? Source::kSignedDigestList : Source::kDigestList;
      const bool enough = !d.digsig_required || (hit.signed_listed && !d.verity_required);
      if (enough)
        return check_algos(result(true, Status::kPass, src,
                                  hit.digest->to_string() + " is in a " +
                                      (hit.signed_listed ? "signed" : "loaded") + " digest list"),
                           d, hit.digest->algo());
      // Listed but not enough for this rule: fall through to security.ima, which may still pass.
    }
  }

  // 4. No security.ima (an empty value reads as none: the kernel's xattr_len == 0).
  if (!in.ima_xattr || in.ima_xattr->empty()) {
    if (d.digsig_required)
      return fail(required_signature_status(d), Source::kNone,
                  d.verity_required ? "no security.ima; the rule requires an fs-verity signature"
                                    : "no security.ima; the rule requires a signature "
                                      "(appraise_type=imasig)");
    return fail(Status::kMissingHash, Source::kNone,
                "no security.ima and the file's digest is in no digest list");
  }

  // 5. By type, as xattr_verify(); the type byte decides even when the rest is malformed.
  const std::span<const uint8_t> raw = *in.ima_xattr;
  XattrResult parsed = in.ima_xattr_parsed ? *in.ima_xattr_parsed : parse_ima_xattr(raw);
  const uint8_t type = raw.empty() ? 0 : raw[0];
  auto malformed = [&](Status status, Source source) {
    Appraisal a = fail(status, source, "malformed security.ima: " + parsed.error().reason,
                       status == Status::kInvalidSignature ? EBADMSG : EINVAL);
    a.malformed = parsed.error().kind;
    return a;
  };

  switch (type) {
    case 0x01:
    case 0x04: {
      if (d.digsig_required)
        return fail(required_signature_status(d), Source::kXattrDigest,
                    "security.ima holds a digest, the rule requires a signature");
      if (!parsed) return malformed(Status::kInvalidHash, Source::kXattrDigest);
      const Digest* fd = digest_of(in.file_digests, parsed->algo);
      if (!fd)
        return fail(Status::kDigestUnavailable, Source::kXattrDigest,
                    "no " + algo_str(parsed->algo) + " digest of the file was given", EINVAL);
      if (fd->size() != parsed->digest.size() ||
          std::memcmp(fd->data(), parsed->digest.data(), fd->size()) != 0)
        return fail(Status::kInvalidHash, Source::kXattrDigest,
                    "security.ima says " + algo_str(parsed->algo) + ":" + to_hex(parsed->digest) +
                        ", the file is " + fd->to_string());
      return check_algos(result(true, Status::kPass, Source::kXattrDigest,
                                "file matches its security.ima " + algo_str(parsed->algo) +
                                    " digest"),
                         d, parsed->algo);
    }
    case 0x03: {
      if (d.digsig_required && d.verity_required)
        return fail(Status::kVeritySignatureRequired, Source::kXattrSignature,
                    "security.ima holds a v2 signature, the rule requires an fs-verity (v3) one");
      if (raw.size() >= 2 && raw[1] >= 3) {
        Appraisal a = fail(Status::kInvalidSignatureVersion, Source::kXattrSignature,
                           "signature type 0x03 with version " + std::to_string(raw[1]) +
                               " (only 2 is valid)");
        a.malformed = XattrErrorKind::kUnknownVersion;
        return a;
      }
      if (!parsed) return malformed(Status::kInvalidSignature, Source::kXattrSignature);
      return verify_signature(*parsed, in, d);
    }
    case 0x06: {
      if (d.digsig_required && !d.verity_required)
        return fail(Status::kSignatureRequired, Source::kXattrVerity,
                    "security.ima holds an fs-verity (v3) signature, the rule requires a v2 "
                    "file signature");
      if (raw.size() >= 2 && raw[1] != 3) {
        Appraisal a = fail(Status::kInvalidSignatureVersion, Source::kXattrVerity,
                           "verity signature with version " + std::to_string(raw[1]) +
                               " (only 3 is valid)");
        a.malformed = XattrErrorKind::kUnknownVersion;
        return a;
      }
      if (!parsed) return malformed(Status::kInvalidVeritySignature, Source::kXattrVerity);
      return verify_signature(*parsed, in, d);
    }
    default: {
      Appraisal a = fail(Status::kUnknownImaData, Source::kNone,
                         parsed ? std::string("unknown security.ima data")
                                : "security.ima: " + parsed.error().reason,
                         EINVAL);
      if (!parsed) a.malformed = parsed.error().kind;
      return a;
    }
  }
}

ChainAppraisal appraise_chain(std::span<const AppraiseInput> chain) {
  ChainAppraisal out;
  out.each.reserve(chain.size());
  for (const auto& in : chain) {
    out.each.push_back(appraise(in));
    if (!out.each.back().pass && !out.failed) {
      out.pass = false;
      out.failed = out.each.size() - 1;
    }
  }
  return out;
}

}  // namespace nsima::appraise

// SPDX-License-Identifier: Apache-2.0
// The appraiser: a pure function from (what the policy decided for one access in one namespace,
// the file's digests, its security.ima, that namespace's keys and digest store) to a verdict with
// the kernel's status string and a human reason. It reads no file, writes no map, extends no PCR;
// the pipeline calls it once per (access, namespace) beside judge(), and an access passes only if
// it passes in its namespace and in every ancestor (each with its own keys and store).
//
// Kernel semantics (ima_appraise.c ima_appraise_measurement()/xattr_verify(), ima_main.c
// process_measurement(), digsig_asymmetric.c), in this order:
//   1. no appraise action                 -> pass "not-appraised"
//   2. a file digest revoked in the store -> fail "revoked" (whatever lists or signs it; nsima's
//      per-namespace form of the kernel's blacklist)
//   3. a file digest listed in the store  -> pass, if the rule needs no signature; a digest from
//      a signed manifest also satisfies appraise_type=imasig (not digest_type=verity, which wants
//      an fs-verity signature)
//   4. no security.ima                    -> "missing-hash", or "IMA-signature-required" /
//                                            "verity-signature-required" when a signature is
//   5. the value by type (xattr_verify):
//        0x01/0x04 digest: signature required -> "IMA-signature-required"
//                          (or "verity-signature-required"); else compare with the file digest
//                          of the xattr's algorithm -> pass or "invalid-hash"
//        0x03 v2 signature: verity required -> "verity-signature-required"; version != 2 ->
//                          "invalid-signature-version"; keyring check over the file digest ->
//                          pass, "invalid-signature" (kernel) / status "unknown-key" (ENOKEY)
//        0x06 v3 signature: imasig without verity -> "IMA-signature-required"; version != 3 ->
//                          "invalid-signature-version"; keyring check over
//                          H(0x06 || algo || digest) -> pass or "invalid-verity-signature"
//        anything else     -> "unknown-ima-data"
//      A value that does not parse fails with the kernel cause its type leads to (digest:
//      "invalid-hash", signature: "invalid-signature", unknown type: "unknown-ima-data") and the
//      parser's reason; `malformed` says which XattrErrorKind.
//   6. appraise_algos= set and the algorithm used is not in it -> "denied-hash-algorithm"
//
// Not modelled (nsima never sees them or has no such state): EVM (the kernel proceeds when EVM is
// not initialised, as here), modsig (MODULE/KEXEC funcs only), fix mode, the "new file" grace for
// files created under an appraise rule, SB_I_IMA_UNVERIFIABLE_SIGNATURE filesystems.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "appraise/digest_list.h"
#include "appraise/ima_xattr.h"
#include "appraise/keyring.h"
#include "measure/hash_algo.h"
#include "policy/policy.h"

namespace nsima::appraise {

enum class Status : uint8_t {
  kPass,                      // "pass"
  kNotAppraised,              // "not-appraised": no appraise rule decided (pass)
  kMissingHash,               // "missing-hash"
  kSignatureRequired,         // "IMA-signature-required"
  kVeritySignatureRequired,   // "verity-signature-required"
  kInvalidHash,               // "invalid-hash"
  kInvalidSignature,          // "invalid-signature"
  kUnknownKey,                // "unknown-key" (the kernel's cause is "invalid-signature", ENOKEY)
  kInvalidSignatureVersion,   // "invalid-signature-version"
  kInvalidVeritySignature,    // "invalid-verity-signature"
  kNoVerityDigest,            // "no-verity-digest": verity required, file has no fs-verity
  kUnknownImaData,            // "unknown-ima-data"
  kDeniedHashAlgorithm,       // "denied-hash-algorithm"
  kRevoked,                   // "revoked" (nsima; the kernel's blacklist says "blacklisted-hash")
  kDigestUnavailable,         // "digest-unavailable": caller did not hash with the needed algo
};

std::string_view status_name(Status s);
// The cause string kernel IMA would write in its AUDIT_INTEGRITY_DATA record for this outcome
// ("pass" where the kernel logs nothing).
std::string_view kernel_cause(Status s);

// What made the verdict.
enum class Source : uint8_t {
  kNone,             // no appraisal (not appraised), or failed before any evidence
  kXattrDigest,      // security.ima 0x01/0x04
  kXattrSignature,   // security.ima 0x03 (v2)
  kXattrVerity,      // security.ima 0x06 (v3)
  kDigestList,       // the namespace's digest store (unsigned manifest)
  kSignedDigestList, // the namespace's digest store, from a signed manifest
};
std::string_view source_name(Source s);

struct Appraisal {
  bool pass = false;
  Status status = Status::kNotAppraised;
  Source source = Source::kNone;
  std::string reason;  // one sentence for the audit log: what was checked and what was wrong
  int error = 0;       // the kernel's rc where it has one: ENOKEY, EKEYREJECTED, EBADMSG, EACCES
  std::optional<uint32_t> keyid;            // signatures: the header's key id
  std::optional<XattrErrorKind> malformed;  // security.ima did not parse
  std::optional<measure::HashAlgo> algo;    // the algorithm the verdict rests on

  std::string_view status_str() const { return status_name(status); }
  std::string_view cause() const { return kernel_cause(status); }
};

// Signature checks already made for one file's facts (one set of digests and one security.ima),
// for a caller that appraises the same file several times: once per access class, as
// pre-appraisal and a security.ima written at run time do (19 classes, each rule of the chain
// appraising most of them). The same keyring, signature and signed digest give the same answer,
// so each asymmetric verification is made once instead of once per class. Not shared between
// threads; it must not outlive the keyrings it names (one pipeline pass).
struct SignatureMemo {
  struct Item {
    const Keyring* keys = nullptr;
    uint32_t keyid = 0;
    measure::HashAlgo algo = measure::HashAlgo::kSha256;
    std::vector<uint8_t> signature, signed_digest;
    SignatureCheck check;
  };
  std::vector<Item> items;
  uint64_t verifications = 0;  // made by a keyring (the misses)
  uint64_t hits = 0;
};

struct AppraiseInput {
  const policy::Decision* decision = nullptr;      // this namespace's decision for the access
  std::span<const measure::Digest> file_digests;   // content digests, any algorithms
  std::optional<measure::Digest> verity_digest;    // fs-verity digest, when the file has one
  std::optional<std::span<const uint8_t>> ima_xattr;  // nullopt: no security.ima
  const Keyring* keys = nullptr;                   // this namespace's keys (null = none)
  const DigestStore* digests = nullptr;            // this namespace's store (null = none)
  // The confined parser's parse of `ima_xattr` (daemon/confine; an error of kind kParser* when
  // it gave none). Null: parsed here, in process (unit tests; nsimad always gives it). Last, so
  // that positional initialisers of the fields above stay valid.
  const XattrResult* ima_xattr_parsed = nullptr;
  SignatureMemo* memo = nullptr;  // null: every signature is verified
};

// Pure, no I/O, never throws. Safe to call concurrently for different inputs.
Appraisal appraise(const AppraiseInput& in);

// One access judged in a namespace chain (the event's namespace first, then each ancestor, each
// input with that namespace's decision, keys and store). A child never relaxes an ancestor: the
// access passes only if every namespace passes. `failed` is the index of the first namespace that
// failed (its verdict is `verdict`); every namespace is appraised, so `each` has one verdict per
// input (each namespace's audit log gets its own).
struct ChainAppraisal {
  bool pass = true;
  std::optional<size_t> failed;
  std::vector<Appraisal> each;
  const Appraisal* verdict() const { return failed ? &each[*failed] : nullptr; }
};
ChainAppraisal appraise_chain(std::span<const AppraiseInput> chain);

// The algorithms the pipeline must hash the file with before appraise(): the one
// hash_algo_for_xattr() names (the kernel hashes with the xattr's algorithm) and the namespace's
// ima_hash (for the digest store, whose manifests are sha256 by default).
measure::HashAlgo required_hash_algo(std::optional<std::span<const uint8_t>> ima_xattr,
                                     measure::HashAlgo ima_hash);

}  // namespace nsima::appraise

// SPDX-License-Identifier: Apache-2.0
// The attestation key (AK) that signs nsima's quotes, and the formats a quote is handed out in.
//
// Why a primary key from a fixed template: a primary key is derived from the hierarchy's seed and
// the template alone, so re-creating it gives the same key every time — no persistent handle, no
// key blob on disk, nothing to provision, and the same AK after a daemon restart (for a vTPM, for
// as long as its state directory lives). It is a restricted signing key, so the TPM only signs
// structures it generated itself (quotes), never caller-chosen data that could mimic one.
// It is created under the endorsement hierarchy by default, whose seed survives TPM2_Clear.
//
// The formats are those of tpm2-tools 5.4 (tools/tpm2_quote.c, lib/pcr.c), so that a stock
// tpm2_checkquote verifies nsima's output:
//   - message: the TPM2B_ATTEST payload (marshaled TPMS_ATTEST) as returned by TPM2_Quote;
//   - signature: Tss2_MU_TPMT_SIGNATURE_Marshal of the signature (tpm2_quote's default "tss");
//   - pcrs: the "serialized" format of pcr_fwrite_serialized(): the in-memory TPML_PCR_SELECTION
//     (count and hash little-endian), a little-endian UINT32 number of TPML_DIGEST lists, then
//     that many in-memory TPML_DIGEST structs (count and sizes little-endian), each holding at most
//     8 digests, in selection order (bank by bank, PCR index ascending).
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "tpm/tpm.h"

namespace nsima::tpm {

enum class AkAlgorithm {
  kEccP256,  // ECDSA P-256 / SHA-256: created in milliseconds even on hardware TPMs (default)
  kRsa2048,  // RSASSA-PKCS1-v1_5 / SHA-256: for verifiers without ECDSA
};

// The fixed public template of the AK.
TPM2B_PUBLIC ak_template(AkAlgorithm alg);

// SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----") of an RSA or ECC P-256 TPM public area.
Result<std::string> public_to_pem(const TPMT_PUBLIC& pub);

// Bytes of the tpm2_quote -o file for `selection` and `digests` (all selected PCR values, in
// selection order). Fails if the number of digests does not match the selection.
Result<std::vector<uint8_t>> serialize_pcrs_file(const TPML_PCR_SELECTION& selection,
                                                 const std::vector<std::vector<uint8_t>>& digests);

// H(digest_1 || ... || digest_n): the PCR composite a quote signs.
Result<std::vector<uint8_t>> pcr_composite_digest(Bank hash,
                                                  const std::vector<std::vector<uint8_t>>& digests);

}  // namespace nsima::tpm

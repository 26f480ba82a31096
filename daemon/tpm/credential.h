// SPDX-License-Identifier: Apache-2.0
// The verifier's side of TPM attestation, in software (OpenSSL + tpm2-tss marshaling, no TPM):
// TPM2_MakeCredential for an RSA EK, TPM object names, the EK certificate chain to a CA, and the
// check of a quote (signature by the AK, nonce, PCR digest). nsimactl verify uses these; the
// attester's side (TPM2_ActivateCredential) is Tpm::activate_credential.
//
// Why credential activation (README.md, "EK certificates and the AK"): a quote proves only that
// the AK signed it. The EK certificate proves the EK lives in a vTPM nsimad's CA manufactured;
// MakeCredential encrypts a secret to that EK such that the TPM releases it only when the named
// AK is loaded in the same TPM (its name is bound into the credential's HMAC and key derivation).
// A caller who returns the secret therefore holds an AK in the TPM that owns the certified EK.
//
// MakeCredential follows TPM 2.0 Part 1 §24 (Credential Protection) and Part 3 §12.6:
//   seed      random, nameAlg-sized;  encryptedSecret = RSA-OAEP(EK, seed, label "IDENTITY\0")
//   symKey    KDFa(nameAlg, seed, "STORAGE", name(AK), "", EK's symmetric key bits)
//   encIdent  AES-CFB(symKey, IV 0, TPM2B_DIGEST(credential))
//   hmacKey   KDFa(nameAlg, seed, "INTEGRITY", "", "", nameAlg bits)
//   idObject  TPM2B(TPM2B_DIGEST(HMAC(hmacKey, encIdent || name(AK))) || encIdent)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "tpm/tpm.h"

namespace nsima::tpm {

struct Credential {
  std::vector<uint8_t> id_object;   // marshaled TPM2B_ID_OBJECT
  std::vector<uint8_t> enc_secret;  // marshaled TPM2B_ENCRYPTED_SECRET
};

// TPM2_MakeCredential in software. `ek_public`: marshaled TPM2B_PUBLIC of an RSA storage key
// (restricted decrypt, AES-CFB symmetric); `ak_name`: TPM2B_NAME contents; `secret`: 1-32
// bytes (the verifier's challenge).
Result<Credential> make_credential(const std::vector<uint8_t>& ek_public,
                                   const std::vector<uint8_t>& ak_name,
                                   const std::vector<uint8_t>& secret);

// The tpm2-tools file format of a credential (tpm2_makecredential -o, tpm2_activatecredential
// -i): BE32 0xBADCC0DE, BE32 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
std::vector<uint8_t> credential_to_tools_file(const Credential& c);
Result<Credential> credential_from_tools_file(const std::vector<uint8_t>& bytes);

// The TPM name of a public area: nameAlg (big-endian u16) || H_nameAlg(marshaled TPMT_PUBLIC).
Result<std::vector<uint8_t>> public_name(const std::vector<uint8_t>& tpm2b_public);
// PEM (SubjectPublicKeyInfo) and the SHA-256 of its DER: "the EK public digest" that the host
// list records for every vTPM (and that `openssl x509 -pubkey | openssl pkey -pubin -outform
// DER | sha256sum` gives from the EK certificate).
Result<std::string> public_pem(const std::vector<uint8_t>& tpm2b_public);
Result<std::vector<uint8_t>> spki_digest(const std::vector<uint8_t>& tpm2b_public,
                                         const char* md = "sha256");

// The AK's public area is a key a TPM will only sign its own structures with: restricted,
// sign, fixedTPM, fixedParent, sensitiveDataOrigin, not decrypt. EPERM otherwise (a key that
// could sign caller-chosen data that looks like a quote).
Result<void> check_ak_attributes(const std::vector<uint8_t>& tpm2b_public);

// The EK certificate (DER) chains to `ca_pem` (the trust anchor) through `chain_pem` (zero or
// more untrusted intermediate certificates), and certifies the same RSA key as `ek_public`.
Result<void> check_ek_certificate(const std::vector<uint8_t>& ek_cert_der,
                                  const std::string& chain_pem, const std::string& ca_pem,
                                  const std::vector<uint8_t>& ek_public);

// What a checked quote says.
struct QuoteClaims {
  std::vector<PcrSelection> selection;  // from TPMS_QUOTE_INFO
  std::vector<uint8_t> pcr_digest;
};

// Checks `message` (TPMS_ATTEST) and `signature` (TPMT_SIGNATURE, tss format) against the AK
// public area: a TPM-generated quote, signed by this AK, with qualifying data == nonce. The kind
// of failure is in Error::where: "signature", "nonce", "format".
Result<QuoteClaims> check_quote_signature(const std::vector<uint8_t>& message,
                                          const std::vector<uint8_t>& signature,
                                          const std::vector<uint8_t>& ak_public,
                                          const std::vector<uint8_t>& nonce);

// Parses a tpm2_quote -o (serialized) PCR file into values per bank, in selection order.
Result<std::map<Bank, std::map<int, std::vector<uint8_t>>>> parse_pcrs_file(
    const std::vector<uint8_t>& bytes);

}  // namespace nsima::tpm

// SPDX-License-Identifier: Apache-2.0
// The TPM as the rest of nsima sees it: an abstract, mockable interface (Tpm) over PCR banks,
// extends, reads and quotes, plus the value types that cross it. Nothing here includes tpm2-tss
// headers, so the measurement pipeline and its tests can use a gmock Tpm without the TSS.
//
// Two real implementations exist: EsysTpm (esys_tpm.h) talks ESAPI to any TCTI — the host's
// /dev/tpmrm0 or a per-namespace swtpm started by VtpmManager (vtpm_manager.h).
//
// IMA contract (shared/ima-facts.md §2.6, §2.8): an entry is extended into EVERY allocated bank,
// each with the digest computed for that bank. Tpm::extend therefore takes one digest per
// allocated bank and refuses a partial set: a bank left behind would make that bank's PCR
// disagree with the measurement list forever.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nsima::tpm {

// A PCR bank, named by its TPM hash algorithm id (TPM2_ALG_ID, TCG Algorithm Registry).
// The enumerators are the banks nsima knows; any other id is still representable
// (static_cast<Bank>(0x1234)) so that banks() can report what the TPM really allocated.
enum class Bank : uint16_t {
  kSha1 = 0x0004,
  kSha256 = 0x000B,
  kSha384 = 0x000C,
  kSha512 = 0x000D,
  kSm3_256 = 0x0012,
  kSha3_256 = 0x0027,
  kSha3_384 = 0x0028,
  kSha3_512 = 0x0029,
};

// "sha1", "sha256", "sha384", "sha512", "sm3_256", "sha3_256", ... (tpm2-tools spelling);
// "alg_0x1234" for an id nsima does not know.
std::string bank_name(Bank bank);
// Accepts the names bank_name() produces (case-insensitive); nullopt otherwise.
std::optional<Bank> bank_from_name(std::string_view name);
// Digest size in bytes, or 0 for an algorithm nsima does not know.
size_t bank_digest_size(Bank bank);
// True when nsima can extend and read this bank through tpm2-tss 3.2 (its TPMU_HA knows the
// algorithm): sha1, sha256, sha384, sha512, sm3_256. SHA-3 banks are reported by banks() but are
// not supported.
bool bank_supported(Bank bank);

// The value extended into one bank.
struct BankDigest {
  Bank bank;
  std::vector<uint8_t> digest;  // exactly bank_digest_size(bank) bytes
};

// The digests kernel IMA extends for a violation (ToMToU, open_writers, lost events): 0xFF
// repeated for each bank's digest size (ima-facts §2.8). Fails for a bank of unknown size.
Result<std::vector<BankDigest>> violation_digests(const std::vector<Bank>& banks);

// PCRs of one bank. quote() canonicalises: PCR indexes sorted and unique, one entry per bank.
struct PcrSelection {
  Bank bank;
  std::vector<int> pcrs;
};

// Everything tpm2_checkquote needs, in the byte formats tpm2_quote writes (tpm2-tools 5.4):
//   tpm2_checkquote -u ak.pub.pem -m quote.msg -s quote.sig -f quote.pcrs -g sha256 -q <nonce hex>
struct Quote {
  std::vector<uint8_t> message;    // marshaled TPMS_ATTEST (TPM2B_ATTEST contents) = tpm2_quote -m
  std::vector<uint8_t> signature;  // marshaled TPMT_SIGNATURE = tpm2_quote -s (format "tss")
  std::vector<uint8_t> pcrs;       // tpm2_quote -o, default "serialized" format (see README.md)
  std::string ak_public_pem;       // the attestation key, SubjectPublicKeyInfo PEM
  Bank hash = Bank::kSha256;       // hash of the signature and the PCR composite (-g)
  std::vector<uint8_t> nonce;      // qualifying data as sent (-q)
  std::vector<PcrSelection> selection;                         // as quoted (canonical)
  std::map<Bank, std::map<int, std::vector<uint8_t>>> values;  // the quoted PCR values
  std::vector<uint8_t> pcr_digest;  // TPMS_QUOTE_INFO.pcrDigest, checked against `values`
};

// Fixed file names inside a quote directory (also what nsimactl hands to a verifier).
inline constexpr std::string_view kQuoteMessageFile = "quote.msg";
inline constexpr std::string_view kQuoteSignatureFile = "quote.sig";
inline constexpr std::string_view kQuotePcrsFile = "quote.pcrs";
inline constexpr std::string_view kQuoteAkPemFile = "ak.pub.pem";
inline constexpr std::string_view kQuoteNonceFile = "nonce.hex";

// Writes quote.msg, quote.sig, quote.pcrs, ak.pub.pem and nonce.hex into `dir` (created if
// missing). Each file is written to a temporary name and renamed, so a reader never sees half a
// quote file.
Result<void> write_quote_files(const Quote& quote, const std::filesystem::path& dir);

// The TPM handles swtpm_setup uses for the RSA-2048 EK and its certificate (TCG EK Credential
// Profile 2.0, section 2.2.1.4: the low-range RSA EK template and NV index).
inline constexpr uint32_t kEkRsaHandle = 0x81010001;
inline constexpr uint32_t kEkRsaCertIndex = 0x01c00002;

// What a verifier needs to trust the AK (daemon/tpm/README.md, "EK certificates and the AK"):
// the EK's public area and certificate (as the TPM holds them), and the AK's public area, whose
// name TPM2_MakeCredential binds a secret to.
struct TpmIdentity {
  std::vector<uint8_t> ek_public;  // marshaled TPM2B_PUBLIC of the EK at kEkRsaHandle
  std::vector<uint8_t> ek_cert;    // DER from NV kEkRsaCertIndex; empty when the TPM has none
  std::vector<uint8_t> ak_public;  // marshaled TPM2B_PUBLIC of the AK quote() signs with
  std::vector<uint8_t> ak_name;    // TPM2B_NAME contents: nameAlg (2 bytes) || H(TPMT_PUBLIC)
};

// The TPM interface. Implementations are thread-safe; every call may block on the TPM.
// Errors carry the failing TPM command and the decoded response code in Error::message and the
// TPM (TCTI string) in Error::where.
class Tpm {
 public:
  virtual ~Tpm() = default;

  // Allocated PCR banks in the TPM's order, including banks nsima cannot use
  // (check bank_supported()).
  virtual Result<std::vector<Bank>> banks() = 0;

  // PCR_B := H_B(PCR_B || digest_B) for every allocated bank B. `digests` must hold exactly one
  // entry per allocated bank (any order). On an I/O failure the extend may or may not have reached
  // the TPM: reconcile with read_pcr() before retrying (the call itself is never retried).
  virtual Result<void> extend(int pcr, const std::vector<BankDigest>& digests) = 0;

  virtual Result<std::vector<uint8_t>> read_pcr(int pcr, Bank bank) {
    auto all = read_pcrs(bank, {pcr});
    if (!all) return tl::unexpected(all.error());
    return std::move((*all)[pcr]);
  }
  virtual Result<std::map<int, std::vector<uint8_t>>> read_pcrs(Bank bank,
                                                                const std::vector<int>& pcrs) = 0;

  // TPM2_Quote over `selection` with `nonce` as qualifying data (at most 64 bytes), signed by the
  // attestation key. The PCR values returned are checked against the quote's PCR digest.
  virtual Result<Quote> quote(const std::vector<PcrSelection>& selection,
                              const std::vector<uint8_t>& nonce) = 0;

  // PEM of the attestation key quote() signs with (stable for a given TPM and key template).
  virtual Result<std::string> attestation_key_pem() = 0;

  // The EK and AK (above). ENOENT when the TPM has no EK at kEkRsaHandle (a vTPM made before
  // nsima manufactured vTPMs with swtpm_setup; a host TPM whose EK was never made persistent).
  virtual Result<TpmIdentity> identity() {
    return make_error(ENOTSUP, "this TPM has no EK/AK identity", describe());
  }
  // TPM2_ActivateCredential with the AK as the activated object and the EK as the decrypting key
  // (authorised by a policy session with PolicySecret(TPM_RH_ENDORSEMENT), the EK's policy).
  // `id_object`, `enc_secret`: marshaled TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET, as
  // TPM2_MakeCredential returns them. Returns the credential (the verifier's secret).
  virtual Result<std::vector<uint8_t>> activate_credential(const std::vector<uint8_t>& id_object,
                                                           const std::vector<uint8_t>& enc_secret) {
    (void)id_object;
    (void)enc_secret;
    return make_error(ENOTSUP, "this TPM cannot activate credentials", describe());
  }

  // Which TPM this is, for logs and errors ("swtpm:path=/run/nsima/vtpm/c1/swtpm.sock").
  virtual std::string describe() const = 0;
};

}  // namespace nsima::tpm

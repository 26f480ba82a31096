// SPDX-License-Identifier: Apache-2.0
// EsysTpm: the Tpm interface over tpm2-tss ESAPI and any TCTI (host /dev/tpmrm0, a vTPM's swtpm
// socket, a TCP simulator).
//
// Threading: an ESYS_CONTEXT is not thread-safe, so every public call takes one mutex for its
// whole TPM conversation (a quote is CreatePrimary + PCR_Read + Quote + FlushContext). The TPM
// serialises commands anyway, so this costs no throughput.
//
// Connection loss: when a call fails below the TPM (TCTI I/O, ESAPI state), the ESYS and TCTI
// contexts are dropped and the call returns a clear error; the next call connects again. Reads and
// quotes, being idempotent, retry once on a fresh connection; extends never do (see Tpm::extend).
// A hung (alive but silent) TPM still blocks the caller: tpm2-tss 3.2's swtpm TCTI has no receive
// timeout. VtpmManager's health check (control channel, with timeouts) is where a hung vTPM shows.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tpm/attestation_key.h"
#include "tpm/esys.h"
#include "tpm/tpm.h"

namespace nsima::tpm {

enum class AkHierarchy {
  kEndorsement,  // default: seed survives TPM2_Clear, auth is empty on nearly every system
  kOwner,        // storage hierarchy: for platforms that lock the endorsement hierarchy
};

struct EsysTpmOptions {
  AkAlgorithm ak_algorithm = AkAlgorithm::kEccP256;
  AkHierarchy ak_hierarchy = AkHierarchy::kEndorsement;
  std::string hierarchy_auth;  // password of that hierarchy, usually empty
  // A PCR in the selection may change between TPM2_Quote and TPM2_PCR_Read (kernel IMA, another
  // process); the composite check then fails and the quote is taken again, this many times.
  int quote_attempts = 3;
};

class EsysTpm final : public Tpm {
 public:
  // Connects at once, so that a malformed TCTI string or an absent TPM fails here with a clear
  // error instead of at the first extend.
  static Result<std::unique_ptr<EsysTpm>> open(const std::string& tcti, EsysTpmOptions opts = {});

  ~EsysTpm() override;
  EsysTpm(const EsysTpm&) = delete;
  EsysTpm& operator=(const EsysTpm&) = delete;

  Result<std::vector<Bank>> banks() override;
  Result<void> extend(int pcr, const std::vector<BankDigest>& digests) override;
  Result<std::map<int, std::vector<uint8_t>>> read_pcrs(Bank bank,
                                                        const std::vector<int>& pcrs) override;
  Result<Quote> quote(const std::vector<PcrSelection>& selection,
                      const std::vector<uint8_t>& nonce) override;
  Result<std::string> attestation_key_pem() override;
  Result<TpmIdentity> identity() override;
  Result<std::vector<uint8_t>> activate_credential(const std::vector<uint8_t>& id_object,
                                                   const std::vector<uint8_t>& enc_secret) override;
  std::string describe() const override { return tcti_; }

  // Whether a connection is currently held (false after a transport failure until the next call).
  bool connected() const;

 private:
  // An allocated bank as TPM2_GetCapability(TPM_CAP_PCRS) reports it.
  struct BankState {
    Bank bank;
    uint8_t size_of_select;
    uint8_t mask[TPM2_PCR_SELECT_MAX];
    bool has(int pcr) const {
      return pcr >= 0 && pcr < size_of_select * 8 && (mask[pcr / 8] & (1u << (pcr % 8))) != 0;
    }
  };
  using Values = std::map<Bank, std::map<int, std::vector<uint8_t>>>;

  EsysTpm(std::string tcti, EsysTpmOptions opts);

  Result<void> connect_locked();
  void drop_connection_locked();
  // Builds the error for a failed TSS call and drops the connection if the transport is suspect.
  Error fail_locked(std::string_view call, TSS2_RC rc);
  // Runs op on a live connection; if op fails because the connection broke and the operation is
  // idempotent, reconnects and runs it once more.
  template <class Op>
  auto run_locked(bool idempotent, Op&& op) -> decltype(op());

  const BankState* find_bank_locked(Bank bank) const;
  Result<TPML_PCR_SELECTION> build_selection_locked(const std::vector<PcrSelection>& sel) const;
  Result<Values> read_selection_locked(const TPML_PCR_SELECTION& sel);
  // Creates the AK (the caller flushes it with a FlushGuard).
  Result<ESYS_TR> create_ak_locked(EsysPtr<TPM2B_PUBLIC>* out_public);
  // The DER of an NV index (empty if the index does not exist).
  Result<std::vector<uint8_t>> read_nv_locked(uint32_t index);
  // Flushes every transient object the TPM reports (stale ones left by a crashed client).
  Result<void> flush_transients_locked();
  // One TPM2_Quote with `ak` plus the PCR values, checked against the quote's PCR digest;
  // *composite_mismatch tells a PCR that changed in between from other failures.
  Result<Quote> quote_once_locked(ESYS_TR ak, const TPML_PCR_SELECTION& sel,
                                  const std::vector<uint8_t>& nonce, bool* composite_mismatch);

  const std::string tcti_;
  const EsysTpmOptions opts_;
  mutable std::mutex mu_;
  std::optional<EsysConnection> conn_;  // guarded by mu_
  bool broken_ = false;                 // guarded by mu_: a transport error hit conn_
  std::vector<BankState> banks_;        // guarded by mu_, valid while conn_ is set
  std::string ak_pem_cache_;            // guarded by mu_, cleared on reconnect
};

}  // namespace nsima::tpm

// SPDX-License-Identifier: Apache-2.0
// EsysTpm: extends, reads and quotes over tpm2-tss ESAPI (see esys_tpm.h for threading and
// reconnect rules, attestation_key.h for the AK and the quote formats).
#include "tpm/esys_tpm.h"

#include <tss2/tss2_mu.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <utility>

#include "common/log.h"

namespace nsima::tpm {

namespace {

// TPM2B_DATA holds sizeof(TPMT_HA) = 66 bytes; nsima caps the nonce at a SHA-512 digest, which is
// what verifiers send (tpm2_checkquote -q takes it as hex).
constexpr size_t kMaxNonce = 64;
// ESYS_TR_PCR0..ESYS_TR_PCR31 are the only PCR handles ESAPI has.
constexpr int kMaxPcrIndex = 31;

std::string bank_list(const std::vector<Bank>& banks) {
  std::string out;
  for (Bank b : banks) {
    if (!out.empty()) out += ", ";
    out += bank_name(b);
  }
  return out;
}

bool bit_set(const TPMS_PCR_SELECTION& s, unsigned pcr) {
  return pcr < s.sizeofSelect * 8u && (s.pcrSelect[pcr / 8] & (1u << (pcr % 8))) != 0;
}

bool selection_empty(const TPML_PCR_SELECTION& sel) {
  for (UINT32 i = 0; i < sel.count; ++i) {
    for (unsigned b = 0; b < sel.pcrSelections[i].sizeofSelect; ++b) {
      if (sel.pcrSelections[i].pcrSelect[b] != 0) return false;
    }
  }
  return true;
}

}  // namespace

EsysTpm::EsysTpm(std::string tcti, EsysTpmOptions opts)
    : tcti_(std::move(tcti)), opts_(std::move(opts)) {}

EsysTpm::~EsysTpm() = default;

Result<std::unique_ptr<EsysTpm>> EsysTpm::open(const std::string& tcti, EsysTpmOptions opts) {
  if (opts.quote_attempts < 1) opts.quote_attempts = 1;
  if (opts.hierarchy_auth.size() > sizeof(TPM2B_AUTH{}.buffer)) {
    return make_error(EINVAL, "hierarchy password longer than 64 bytes", tcti);
  }
  std::unique_ptr<EsysTpm> tpm(new EsysTpm(tcti, std::move(opts)));
  {
    std::lock_guard lock(tpm->mu_);
    if (auto r = tpm->connect_locked(); !r) return tl::unexpected(r.error());
  }
  return tpm;
}

bool EsysTpm::connected() const {
  std::lock_guard lock(mu_);
  return conn_.has_value();
}

void EsysTpm::drop_connection_locked() {
  conn_.reset();
  banks_.clear();
  ak_pem_cache_.clear();  // a reconnect may reach a different TPM (a restarted vTPM)
  broken_ = false;
}

Result<void> EsysTpm::connect_locked() {
  drop_connection_locked();
  auto c = EsysConnection::open(tcti_);
  if (!c) return tl::unexpected(c.error());
  ESYS_CONTEXT* ctx = c->get();

  // TPM_CAP_PCRS both probes the TPM and lists the banks. A TPM that was never started (an swtpm
  // run without startup-clear and without saved volatile state) answers TPM_RC_INITIALIZE; start
  // it, as the kernel would for a hardware TPM.
  EsysPtr<TPMS_CAPABILITY_DATA> cap;
  TPMI_YES_NO more = TPM2_NO;
  TSS2_RC rc = Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_PCRS, 0,
                                  1, &more, esys_out(cap));
  if (rc == TPM2_RC_INITIALIZE) {
    logger("tpm")->info("{}: TPM not started, sending TPM2_Startup(CLEAR)", tcti_);
    rc = Esys_Startup(ctx, TPM2_SU_CLEAR);
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(esys_error("Esys_Startup", rc, tcti_));
    rc = Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_PCRS, 0, 1,
                            &more, esys_out(cap));
  }
  if (rc != TSS2_RC_SUCCESS) return tl::unexpected(esys_error("Esys_GetCapability", rc, tcti_));

  std::vector<BankState> banks;
  const TPML_PCR_SELECTION& assigned = cap->data.assignedPCR;
  for (UINT32 i = 0; i < assigned.count && i < TPM2_NUM_PCR_BANKS; ++i) {
    const TPMS_PCR_SELECTION& s = assigned.pcrSelections[i];
    BankState b{static_cast<Bank>(s.hash), s.sizeofSelect, {}};
    bool any = false;
    for (unsigned k = 0; k < s.sizeofSelect && k < TPM2_PCR_SELECT_MAX; ++k) {
      b.mask[k] = s.pcrSelect[k];
      any = any || s.pcrSelect[k] != 0;
    }
    if (any) banks.push_back(b);  // a bank with no PCR assigned is not allocated
  }
  if (banks.empty()) return make_error(ENODEV, "TPM reports no allocated PCR bank", tcti_);

  conn_.emplace(std::move(*c));
  banks_ = std::move(banks);
  std::vector<Bank> names;
  for (const auto& b : banks_) names.push_back(b.bank);
  logger("tpm")->info("connected to {} (PCR banks: {})", tcti_, bank_list(names));
  return {};
}

Error EsysTpm::fail_locked(std::string_view call, TSS2_RC rc) {
  Error e = esys_error(call, rc, tcti_);
  if (!is_tpm_response(rc)) {
    // The contexts are dropped by run_locked once the operation's scope (and any FlushGuard in it)
    // has ended; dropping them here would leave such a guard with a dangling ESYS_CONTEXT.
    if (!broken_) {
      logger("tpm")->warn("{}: {}; the next call reconnects", tcti_, e.message);
    }
    broken_ = true;
  }
  return e;
}

template <class Op>
auto EsysTpm::run_locked(bool idempotent, Op&& op) -> decltype(op()) {
  for (int attempt = 0;; ++attempt) {
    if (!conn_) {
      if (auto r = connect_locked(); !r) return tl::unexpected(r.error());
    }
    auto result = op();
    if (!broken_) return result;
    drop_connection_locked();
    if (result || !idempotent || attempt > 0) return result;
    // The connection broke under a call that can be repeated safely: one try on a fresh one.
  }
}

const EsysTpm::BankState* EsysTpm::find_bank_locked(Bank bank) const {
  for (const auto& b : banks_) {
    if (b.bank == bank) return &b;
  }
  return nullptr;
}

Result<std::vector<Bank>> EsysTpm::banks() {
  std::lock_guard lock(mu_);
  return run_locked(true, [&]() -> Result<std::vector<Bank>> {
    std::vector<Bank> out;
    for (const auto& b : banks_) out.push_back(b.bank);
    return out;
  });
}

Result<void> EsysTpm::extend(int pcr, const std::vector<BankDigest>& digests) {
  if (pcr < 0 || pcr > kMaxPcrIndex) {
    return make_error(EINVAL, "PCR index " + std::to_string(pcr) + " out of range", tcti_);
  }
  std::lock_guard lock(mu_);
  return run_locked(false, [&]() -> Result<void> {
    // One digest per allocated bank, no more, no less (see tpm.h: the IMA contract).
    TPML_DIGEST_VALUES values{};
    bool seen[TPM2_NUM_PCR_BANKS] = {};
    for (const BankDigest& d : digests) {
      size_t idx = 0;
      while (idx < banks_.size() && banks_[idx].bank != d.bank) ++idx;
      if (idx == banks_.size()) {
        return make_error(EINVAL, "PCR bank " + bank_name(d.bank) + " is not allocated", tcti_);
      }
      if (seen[idx]) {
        return make_error(EINVAL, "two digests for PCR bank " + bank_name(d.bank), tcti_);
      }
      seen[idx] = true;
      const size_t size = bank_digest_size(d.bank);
      if (d.digest.size() != size) {
        return make_error(EINVAL,
                          "digest for bank " + bank_name(d.bank) + " has " +
                              std::to_string(d.digest.size()) + " bytes, expected " +
                              std::to_string(size),
                          tcti_);
      }
      if (!banks_[idx].has(pcr)) {
        return make_error(
            EINVAL, "PCR " + std::to_string(pcr) + " is not allocated in bank " + bank_name(d.bank),
            tcti_);
      }
      TPMT_HA& ha = values.digests[values.count++];
      ha.hashAlg = static_cast<TPMI_ALG_HASH>(d.bank);
      std::memcpy(&ha.digest, d.digest.data(), size);
    }
    for (size_t i = 0; i < banks_.size(); ++i) {
      if (seen[i]) continue;
      if (!bank_supported(banks_[i].bank)) {
        return make_error(ENOTSUP,
                          "PCR bank " + bank_name(banks_[i].bank) +
                              " is allocated but tpm2-tss 3.2 cannot extend it; deallocate it "
                              "(tpm2_pcrallocate) so that every bank stays consistent",
                          tcti_);
      }
      return make_error(EINVAL,
                        "no digest for allocated PCR bank " + bank_name(banks_[i].bank) +
                            " (IMA extends every bank)",
                        tcti_);
    }
    TSS2_RC rc = Esys_PCR_Extend(conn_->get(), ESYS_TR_PCR0 + static_cast<ESYS_TR>(pcr),
                                 ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &values);
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_PCR_Extend", rc));
    return {};
  });
}

Result<TPML_PCR_SELECTION> EsysTpm::build_selection_locked(
    const std::vector<PcrSelection>& selection) const {
  TPML_PCR_SELECTION out{};
  bool any = false;
  for (const PcrSelection& s : selection) {
    const BankState* b = find_bank_locked(s.bank);
    if (b == nullptr) {
      std::vector<Bank> names;
      for (const auto& x : banks_) names.push_back(x.bank);
      return make_error(EINVAL,
                        "PCR bank " + bank_name(s.bank) +
                            " is not allocated (allocated: " + bank_list(names) + ")",
                        tcti_);
    }
    if (!bank_supported(s.bank)) {
      return make_error(ENOTSUP, "PCR bank " + bank_name(s.bank) + " is not supported", tcti_);
    }
    // Merge repeated banks into one entry: the TPM and tpm2_checkquote both expect each bank once.
    UINT32 i = 0;
    while (i < out.count && out.pcrSelections[i].hash != static_cast<TPMI_ALG_HASH>(s.bank)) ++i;
    if (i == out.count) {
      out.pcrSelections[i].hash = static_cast<TPMI_ALG_HASH>(s.bank);
      out.pcrSelections[i].sizeofSelect = b->size_of_select;
      ++out.count;
    }
    TPMS_PCR_SELECTION& dst = out.pcrSelections[i];
    for (int pcr : s.pcrs) {
      if (!b->has(pcr)) {
        return make_error(
            EINVAL, "PCR " + std::to_string(pcr) + " is not allocated in bank " + bank_name(s.bank),
            tcti_);
      }
      dst.pcrSelect[pcr / 8] |= static_cast<BYTE>(1u << (pcr % 8));
      any = true;
    }
  }
  if (!any) return make_error(EINVAL, "empty PCR selection", tcti_);
  return out;
}

Result<EsysTpm::Values> EsysTpm::read_selection_locked(const TPML_PCR_SELECTION& sel) {
  // TPM2_PCR_Read returns at most 8 digests per call (TPML_DIGEST); ask again for what is left.
  TPML_PCR_SELECTION remaining = sel;
  Values out;
  while (!selection_empty(remaining)) {
    UINT32 update_counter = 0;
    EsysPtr<TPML_PCR_SELECTION> sel_out;
    EsysPtr<TPML_DIGEST> digests;
    TSS2_RC rc = Esys_PCR_Read(conn_->get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &remaining,
                               &update_counter, esys_out(sel_out), esys_out(digests));
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_PCR_Read", rc));
    UINT32 k = 0;
    for (UINT32 i = 0; i < sel_out->count; ++i) {
      const TPMS_PCR_SELECTION& s = sel_out->pcrSelections[i];
      TPMS_PCR_SELECTION* rem = nullptr;
      for (UINT32 j = 0; j < remaining.count; ++j) {
        if (remaining.pcrSelections[j].hash == s.hash) rem = &remaining.pcrSelections[j];
      }
      for (unsigned pcr = 0; pcr < s.sizeofSelect * 8u; ++pcr) {
        if (!bit_set(s, pcr)) continue;
        if (k >= digests->count || rem == nullptr) {
          return make_error(EPROTO, "TPM2_PCR_Read returned fewer digests than PCRs", tcti_);
        }
        const TPM2B_DIGEST& d = digests->digests[k++];
        out[static_cast<Bank>(s.hash)][static_cast<int>(pcr)].assign(d.buffer, d.buffer + d.size);
        rem->pcrSelect[pcr / 8] &= static_cast<BYTE>(~(1u << (pcr % 8)));
      }
    }
    if (k == 0) {
      // Without progress the loop would never end; the TPM has nothing for what is left.
      return make_error(EPROTO, "TPM2_PCR_Read returned no value for the selected PCRs", tcti_);
    }
  }
  return out;
}

Result<std::map<int, std::vector<uint8_t>>> EsysTpm::read_pcrs(Bank bank,
                                                               const std::vector<int>& pcrs) {
  std::lock_guard lock(mu_);
  return run_locked(true, [&]() -> Result<std::map<int, std::vector<uint8_t>>> {
    auto sel = build_selection_locked({PcrSelection{bank, pcrs}});
    if (!sel) return tl::unexpected(sel.error());
    auto values = read_selection_locked(*sel);
    if (!values) return tl::unexpected(values.error());
    return std::move((*values)[bank]);
  });
}

Result<void> EsysTpm::flush_transients_locked() {
  EsysPtr<TPMS_CAPABILITY_DATA> cap;
  TPMI_YES_NO more = TPM2_NO;
  TSS2_RC rc =
      Esys_GetCapability(conn_->get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES,
                         TPM2_TRANSIENT_FIRST, TPM2_MAX_CAP_HANDLES, &more, esys_out(cap));
  if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_GetCapability", rc));
  const TPML_HANDLE& handles = cap->data.handles;
  for (UINT32 i = 0; i < handles.count; ++i) {
    ESYS_TR tr = ESYS_TR_NONE;
    rc = Esys_TR_FromTPMPublic(conn_->get(), handles.handle[i], ESYS_TR_NONE, ESYS_TR_NONE,
                               ESYS_TR_NONE, &tr);
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_TR_FromTPMPublic", rc));
    rc = Esys_FlushContext(conn_->get(), tr);
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_FlushContext", rc));
  }
  logger("tpm")->warn("{}: flushed {} stale transient object(s) left by an earlier client", tcti_,
                      handles.count);
  return {};
}

Result<ESYS_TR> EsysTpm::create_ak_locked(EsysPtr<TPM2B_PUBLIC>* out_public) {
  ESYS_CONTEXT* ctx = conn_->get();
  const ESYS_TR hierarchy =
      opts_.ak_hierarchy == AkHierarchy::kEndorsement ? ESYS_TR_RH_ENDORSEMENT : ESYS_TR_RH_OWNER;
  TPM2B_AUTH auth{};
  auth.size = static_cast<UINT16>(opts_.hierarchy_auth.size());
  std::memcpy(auth.buffer, opts_.hierarchy_auth.data(), opts_.hierarchy_auth.size());
  TSS2_RC rc = Esys_TR_SetAuth(ctx, hierarchy, &auth);
  if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_TR_SetAuth", rc));

  const TPM2B_SENSITIVE_CREATE sensitive{};
  const TPM2B_PUBLIC tmpl = ak_template(opts_.ak_algorithm);
  const TPM2B_DATA outside_info{};
  const TPML_PCR_SELECTION creation_pcr{};
  for (int attempt = 0;; ++attempt) {
    ESYS_TR handle = ESYS_TR_NONE;
    EsysPtr<TPM2B_CREATION_DATA> creation_data;
    EsysPtr<TPM2B_DIGEST> creation_hash;
    EsysPtr<TPMT_TK_CREATION> creation_ticket;
    rc = Esys_CreatePrimary(ctx, hierarchy, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                            &sensitive, &tmpl, &outside_info, &creation_pcr, &handle,
                            esys_out(*out_public), esys_out(creation_data), esys_out(creation_hash),
                            esys_out(creation_ticket));
    if (rc == TSS2_RC_SUCCESS) return handle;
    // Without a resource manager, objects a crashed client (or a tpm2-tools run) left loaded fill
    // the TPM's few object slots for good. Flush them once and try again.
    if (rc == TPM2_RC_OBJECT_MEMORY && attempt == 0) {
      if (auto r = flush_transients_locked(); !r) return tl::unexpected(r.error());
      continue;
    }
    Error e = fail_locked("Esys_CreatePrimary", rc);
    // Format-one response codes carry the handle/session number in bits 8-11; mask them off.
    const TSS2_RC fmt1 = rc & (TPM2_RC_FMT1 | 0x3F);
    if ((rc & TPM2_RC_FMT1) && (fmt1 == TPM2_RC_AUTH_FAIL || fmt1 == TPM2_RC_BAD_AUTH)) {
      e.message += " (wrong password for the AK's hierarchy?)";
    }
    return tl::unexpected(std::move(e));
  }
}

Result<Quote> EsysTpm::quote_once_locked(ESYS_TR ak, const TPML_PCR_SELECTION& sel,
                                         const std::vector<uint8_t>& nonce,
                                         bool* composite_mismatch) {
  // The quote signs only a digest of the PCRs, so the values are read separately (as tpm2_quote
  // does) and checked against that digest below. Reading first keeps the window in which another
  // client's extend can slip in down to one round trip: TPM2_Quote computes its digest before it
  // signs, so the (slow, for RSA) signature is outside the window.
  auto values = read_selection_locked(sel);
  if (!values) return tl::unexpected(values.error());

  TPM2B_DATA qualifying{};
  qualifying.size = static_cast<UINT16>(nonce.size());
  std::memcpy(qualifying.buffer, nonce.data(), nonce.size());
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_NULL;  // use the AK's own scheme (ECDSA or RSASSA with SHA-256)
  EsysPtr<TPM2B_ATTEST> quoted;
  EsysPtr<TPMT_SIGNATURE> signature;
  TSS2_RC rc = Esys_Quote(conn_->get(), ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                          &qualifying, &scheme, &sel, esys_out(quoted), esys_out(signature));
  if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_Quote", rc));

  Quote q;
  q.hash = Bank::kSha256;  // the AK template's scheme hash
  q.nonce = nonce;
  std::vector<std::vector<uint8_t>> flat;
  for (UINT32 i = 0; i < sel.count; ++i) {
    const TPMS_PCR_SELECTION& s = sel.pcrSelections[i];
    const Bank bank = static_cast<Bank>(s.hash);
    PcrSelection ps{bank, {}};
    for (unsigned pcr = 0; pcr < s.sizeofSelect * 8u; ++pcr) {
      if (!bit_set(s, pcr)) continue;
      auto& v = (*values)[bank][static_cast<int>(pcr)];
      flat.push_back(v);
      q.values[bank][static_cast<int>(pcr)] = v;
      ps.pcrs.push_back(static_cast<int>(pcr));
    }
    q.selection.push_back(std::move(ps));
  }

  TPMS_ATTEST attest{};
  size_t offset = 0;
  rc = Tss2_MU_TPMS_ATTEST_Unmarshal(quoted->attestationData, quoted->size, &offset, &attest);
  if (rc != TSS2_RC_SUCCESS) {
    return tl::unexpected(Error{EPROTO, format_rc("Tss2_MU_TPMS_ATTEST_Unmarshal", rc), tcti_});
  }
  if (attest.magic != TPM2_GENERATED_VALUE || attest.type != TPM2_ST_ATTEST_QUOTE ||
      attest.extraData.size != nonce.size() ||
      std::memcmp(attest.extraData.buffer, nonce.data(), nonce.size()) != 0) {
    return make_error(EPROTO, "TPM2_Quote returned an attestation that is not our quote", tcti_);
  }
  auto composite = pcr_composite_digest(q.hash, flat);
  if (!composite) return tl::unexpected(composite.error());
  const TPM2B_DIGEST& signed_digest = attest.attested.quote.pcrDigest;
  if (composite->size() != signed_digest.size ||
      std::memcmp(composite->data(), signed_digest.buffer, signed_digest.size) != 0) {
    *composite_mismatch = true;
    return make_error(EAGAIN, "a quoted PCR changed while the quote was taken", tcti_);
  }
  q.pcr_digest = std::move(*composite);

  q.message.assign(quoted->attestationData, quoted->attestationData + quoted->size);
  q.signature.resize(sizeof(TPMT_SIGNATURE));
  offset = 0;
  rc = Tss2_MU_TPMT_SIGNATURE_Marshal(signature.get(), q.signature.data(), q.signature.size(),
                                      &offset);
  if (rc != TSS2_RC_SUCCESS) {
    return tl::unexpected(Error{EPROTO, format_rc("Tss2_MU_TPMT_SIGNATURE_Marshal", rc), tcti_});
  }
  q.signature.resize(offset);

  auto pcrs_file = serialize_pcrs_file(sel, flat);
  if (!pcrs_file) return tl::unexpected(pcrs_file.error());
  q.pcrs = std::move(*pcrs_file);

  return q;
}

Result<Quote> EsysTpm::quote(const std::vector<PcrSelection>& selection,
                             const std::vector<uint8_t>& nonce) {
  if (nonce.size() > kMaxNonce) {
    return make_error(EINVAL, "nonce longer than " + std::to_string(kMaxNonce) + " bytes", tcti_);
  }
  std::lock_guard lock(mu_);
  return run_locked(true, [&]() -> Result<Quote> {
    auto sel = build_selection_locked(selection);
    if (!sel) return tl::unexpected(sel.error());
    EsysPtr<TPM2B_PUBLIC> ak_public;
    auto ak = create_ak_locked(&ak_public);
    if (!ak) return tl::unexpected(ak.error());
    FlushGuard flush(conn_->get(), *ak);
    auto pem = public_to_pem(ak_public->publicArea);
    if (!pem) return tl::unexpected(pem.error());
    ak_pem_cache_ = *pem;

    Result<Quote> last = make_error(EAGAIN, "no quote attempt made", tcti_);
    for (int attempt = 0; attempt < opts_.quote_attempts; ++attempt) {
      bool mismatch = false;
      last = quote_once_locked(*ak, *sel, nonce, &mismatch);
      if (last) {
        last->ak_public_pem = *pem;
        return last;
      }
      if (!mismatch) return last;
      logger("tpm")->debug("{}: PCRs changed during quote, retrying", tcti_);
    }
    return last;
  });
}

Result<std::string> EsysTpm::attestation_key_pem() {
  std::lock_guard lock(mu_);
  return run_locked(true, [&]() -> Result<std::string> {
    if (!ak_pem_cache_.empty()) return ak_pem_cache_;
    EsysPtr<TPM2B_PUBLIC> ak_public;
    auto ak = create_ak_locked(&ak_public);
    if (!ak) return tl::unexpected(ak.error());
    FlushGuard flush(conn_->get(), *ak);
    auto pem = public_to_pem(ak_public->publicArea);
    if (!pem) return tl::unexpected(pem.error());
    ak_pem_cache_ = *pem;
    return pem;
  });
}

namespace {

// A TPM_RC_HANDLE (format one, any handle number): the object or NV index does not exist.
bool is_handle_missing(TSS2_RC rc) {
  return (rc & TPM2_RC_FMT1) && (rc & (TPM2_RC_FMT1 | 0x3F)) == TPM2_RC_HANDLE;
}

template <class T, class Fn>
std::vector<uint8_t> marshal(const T& v, Fn fn) {
  std::vector<uint8_t> out(sizeof(T) + 16);
  size_t off = 0;
  if (fn(&v, out.data(), out.size(), &off) != TSS2_RC_SUCCESS) return {};
  out.resize(off);
  return out;
}

// ESYS_TR of a persistent object or NV index, closed (not flushed) when the scope ends.
class TrCloser {
 public:
  TrCloser(ESYS_CONTEXT* ctx, ESYS_TR tr) : ctx_(ctx), tr_(tr) {}
  ~TrCloser() {
    if (tr_ != ESYS_TR_NONE) Esys_TR_Close(ctx_, &tr_);
  }
  TrCloser(const TrCloser&) = delete;
  TrCloser& operator=(const TrCloser&) = delete;

 private:
  ESYS_CONTEXT* ctx_;
  ESYS_TR tr_;
};

}  // namespace

Result<std::vector<uint8_t>> EsysTpm::read_nv_locked(uint32_t index) {
  ESYS_CONTEXT* ctx = conn_->get();
  ESYS_TR nv = ESYS_TR_NONE;
  TSS2_RC rc = Esys_TR_FromTPMPublic(ctx, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
  if (is_handle_missing(rc)) return std::vector<uint8_t>{};
  if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_TR_FromTPMPublic(NV)", rc));
  TrCloser close(ctx, nv);
  EsysPtr<TPM2B_NV_PUBLIC> pub;
  EsysPtr<TPM2B_NAME> name;
  rc = Esys_NV_ReadPublic(ctx, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, esys_out(pub),
                          esys_out(name));
  if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_NV_ReadPublic", rc));
  const uint16_t size = pub->nvPublic.dataSize;
  std::vector<uint8_t> out;
  // 512 bytes per read stays below every TPM's TPM2_PT_NV_BUFFER_MAX (swtpm: 1024 or more).
  for (uint16_t off = 0; off < size;) {
    const uint16_t n = static_cast<uint16_t>(std::min<int>(512, size - off));
    EsysPtr<TPM2B_MAX_NV_BUFFER> data;
    // The EK certificate index has TPMA_NV_AUTHREAD with an empty auth value.
    rc = Esys_NV_Read(ctx, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, n, off,
                      esys_out(data));
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_NV_Read", rc));
    out.insert(out.end(), data->buffer, data->buffer + data->size);
    off = static_cast<uint16_t>(off + n);
  }
  return out;
}

Result<TpmIdentity> EsysTpm::identity() {
  std::lock_guard lock(mu_);
  return run_locked(true, [&]() -> Result<TpmIdentity> {
    ESYS_CONTEXT* ctx = conn_->get();
    TpmIdentity id;
    ESYS_TR ek = ESYS_TR_NONE;
    TSS2_RC rc =
        Esys_TR_FromTPMPublic(ctx, kEkRsaHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &ek);
    if (is_handle_missing(rc))
      return make_error(ENOENT,
                        "the TPM has no EK at handle 0x81010001 (a vTPM made before nsima "
                        "manufactured vTPMs with an EK certificate?)",
                        tcti_);
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_TR_FromTPMPublic(EK)", rc));
    TrCloser close(ctx, ek);
    EsysPtr<TPM2B_PUBLIC> ek_pub;
    EsysPtr<TPM2B_NAME> ek_name, ek_qname;
    rc = Esys_ReadPublic(ctx, ek, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, esys_out(ek_pub),
                         esys_out(ek_name), esys_out(ek_qname));
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_ReadPublic(EK)", rc));
    id.ek_public = marshal(*ek_pub, Tss2_MU_TPM2B_PUBLIC_Marshal);
    auto cert = read_nv_locked(kEkRsaCertIndex);
    if (!cert) return tl::unexpected(cert.error());
    id.ek_cert = std::move(*cert);

    EsysPtr<TPM2B_PUBLIC> ak_public;
    auto ak = create_ak_locked(&ak_public);
    if (!ak) return tl::unexpected(ak.error());
    FlushGuard flush(ctx, *ak);
    EsysPtr<TPM2B_NAME> ak_name;
    rc = Esys_TR_GetName(ctx, *ak, esys_out(ak_name));
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_TR_GetName(AK)", rc));
    id.ak_public = marshal(*ak_public, Tss2_MU_TPM2B_PUBLIC_Marshal);
    id.ak_name.assign(ak_name->name, ak_name->name + ak_name->size);
    if (id.ek_public.empty() || id.ak_public.empty())
      return make_error(EPROTO, "cannot marshal the EK or AK public area", tcti_);
    return id;
  });
}

Result<std::vector<uint8_t>> EsysTpm::activate_credential(const std::vector<uint8_t>& id_object,
                                                          const std::vector<uint8_t>& enc_secret) {
  TPM2B_ID_OBJECT blob{};
  TPM2B_ENCRYPTED_SECRET secret{};
  size_t off = 0;
  if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(id_object.data(), id_object.size(), &off, &blob) !=
          TSS2_RC_SUCCESS ||
      off != id_object.size())
    return make_error(EINVAL, "credential blob is not a marshaled TPM2B_ID_OBJECT", tcti_);
  off = 0;
  if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(enc_secret.data(), enc_secret.size(), &off,
                                               &secret) != TSS2_RC_SUCCESS ||
      off != enc_secret.size())
    return make_error(EINVAL, "secret is not a marshaled TPM2B_ENCRYPTED_SECRET", tcti_);
  std::lock_guard lock(mu_);
  // Not idempotent in one respect only (a policy session is used up), which a retry on a fresh
  // connection repeats in full: safe to retry.
  return run_locked(true, [&]() -> Result<std::vector<uint8_t>> {
    ESYS_CONTEXT* ctx = conn_->get();
    ESYS_TR ek = ESYS_TR_NONE;
    TSS2_RC rc =
        Esys_TR_FromTPMPublic(ctx, kEkRsaHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &ek);
    if (is_handle_missing(rc))
      return make_error(ENOENT, "the TPM has no EK at handle 0x81010001", tcti_);
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_TR_FromTPMPublic(EK)", rc));
    TrCloser close(ctx, ek);
    EsysPtr<TPM2B_PUBLIC> ak_public;
    auto ak = create_ak_locked(&ak_public);
    if (!ak) return tl::unexpected(ak.error());
    FlushGuard flush_ak(ctx, *ak);
    // The EK's authPolicy is PolicySecret(TPM_RH_ENDORSEMENT) (EK Credential Profile, template
    // L-1): a policy session satisfied with the endorsement hierarchy's (empty) password.
    const TPMT_SYM_DEF sym{.algorithm = TPM2_ALG_NULL, .keyBits = {}, .mode = {}};
    ESYS_TR session = ESYS_TR_NONE;
    rc = Esys_StartAuthSession(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                               ESYS_TR_NONE, nullptr, TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256,
                               &session);
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_StartAuthSession", rc));
    FlushGuard flush_session(ctx, session);
    TPM2B_AUTH auth{};
    auth.size = static_cast<UINT16>(opts_.hierarchy_auth.size());
    std::memcpy(auth.buffer, opts_.hierarchy_auth.data(), opts_.hierarchy_auth.size());
    rc = Esys_TR_SetAuth(ctx, ESYS_TR_RH_ENDORSEMENT, &auth);
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_TR_SetAuth", rc));
    EsysPtr<TPM2B_TIMEOUT> timeout;
    EsysPtr<TPMT_TK_AUTH> ticket;
    rc = Esys_PolicySecret(ctx, ESYS_TR_RH_ENDORSEMENT, session, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                           ESYS_TR_NONE, nullptr, nullptr, nullptr, 0, esys_out(timeout),
                           esys_out(ticket));
    if (rc != TSS2_RC_SUCCESS) return tl::unexpected(fail_locked("Esys_PolicySecret", rc));
    EsysPtr<TPM2B_DIGEST> cert_info;
    rc = Esys_ActivateCredential(ctx, *ak, ek, ESYS_TR_PASSWORD, session, ESYS_TR_NONE, &blob,
                                 &secret, esys_out(cert_info));
    if (rc != TSS2_RC_SUCCESS) {
      Error e = fail_locked("Esys_ActivateCredential", rc);
      e.message += " (the credential was not made for this TPM's EK and AK)";
      return tl::unexpected(std::move(e));
    }
    return std::vector<uint8_t>(cert_info->buffer, cert_info->buffer + cert_info->size);
  });
}

}  // namespace nsima::tpm

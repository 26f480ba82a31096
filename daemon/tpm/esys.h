// SPDX-License-Identifier: Apache-2.0
// RAII for tpm2-tss: the TCTI context (loaded by name from a TCTI string), the ESYS context, every
// ESAPI output buffer (EsysPtr<T>, freed with Esys_Free), transient objects (FlushGuard), and
// error text in the tpm2-tools form "Esys_PCR_Extend(0x902) - tpm:warn(2.0): ...".
//
// Ownership rule (style.md §3 rule 9): one owner per handle. An EsysConnection owns its TCTI and
// its ESYS context and tears them down in reverse order of creation (ESYS first, since
// Esys_Finalize still talks to the TCTI), whatever path leaves the scope.
#pragma once

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nsima::tpm {

// "Esys_PCR_Extend(0x902) - tpm:warn(2.0): out of memory for object contexts".
std::string format_rc(std::string_view call, TSS2_RC rc);

// An Error for a failed TSS call. `where` names the TPM (its TCTI string).
Error esys_error(std::string_view call, TSS2_RC rc, std::string where);

// True when rc came from the TPM itself (a response code), i.e. the transport is fine. Anything
// else (TCTI I/O, ESAPI state errors) means the connection can no longer be trusted.
bool is_tpm_response(TSS2_RC rc);

struct TctiDeleter {
  void operator()(TSS2_TCTI_CONTEXT* tcti) const { Tss2_TctiLdr_Finalize(&tcti); }
};
using TctiPtr = std::unique_ptr<TSS2_TCTI_CONTEXT, TctiDeleter>;

struct EsysContextDeleter {
  void operator()(ESYS_CONTEXT* ctx) const { Esys_Finalize(&ctx); }
};

// Owner of one ESAPI output (TPM2B_PUBLIC*, TPML_DIGEST*, ...).
template <class T>
struct EsysFreeDeleter {
  void operator()(T* p) const { Esys_Free(p); }
};
template <class T>
using EsysPtr = std::unique_ptr<T, EsysFreeDeleter<T>>;

// Adapter so an EsysPtr can be passed where ESAPI wants T**:
//   Esys_PCR_Read(ctx, ..., esys_out(sel_out), esys_out(values));
// The pointer lands in the EsysPtr at the end of the full expression, on every path.
template <class T>
class EsysOut {
 public:
  explicit EsysOut(EsysPtr<T>& owner) : owner_(owner) {}
  ~EsysOut() { owner_.reset(raw_); }
  EsysOut(const EsysOut&) = delete;
  EsysOut& operator=(const EsysOut&) = delete;
  operator T**() { return &raw_; }  // NOLINT(google-explicit-constructor): the point of the type

 private:
  EsysPtr<T>& owner_;
  T* raw_ = nullptr;
};
template <class T>
EsysOut<T> esys_out(EsysPtr<T>& owner) {
  return EsysOut<T>(owner);
}

// TCTI + ESYS context for one TPM. Move-only.
class EsysConnection {
 public:
  // tcti: "device:/dev/tpmrm0", "swtpm:path=/run/x.sock", "swtpm:host=127.0.0.1,port=2321",
  // "mssim:...", or "" for the tctildr default search.
  static Result<EsysConnection> open(const std::string& tcti);

  ESYS_CONTEXT* get() const { return esys_.get(); }
  const std::string& tcti_conf() const { return conf_; }

 private:
  EsysConnection() = default;

  std::string conf_;
  // Declaration order is destruction order reversed: esys_ goes first, then tcti_.
  TctiPtr tcti_;
  std::unique_ptr<ESYS_CONTEXT, EsysContextDeleter> esys_;
};

// Flushes a transient object (key, session) when the scope ends. swtpm has no resource manager,
// so an object left loaded stays there and the next load fails with TPM_RC_OBJECT_MEMORY.
class FlushGuard {
 public:
  FlushGuard(ESYS_CONTEXT* ctx, ESYS_TR handle) : ctx_(ctx), handle_(handle) {}
  ~FlushGuard();
  FlushGuard(const FlushGuard&) = delete;
  FlushGuard& operator=(const FlushGuard&) = delete;

 private:
  ESYS_CONTEXT* ctx_;
  ESYS_TR handle_;
};

}  // namespace nsima::tpm

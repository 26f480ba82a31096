// SPDX-License-Identifier: Apache-2.0
// tpm2-tss RAII helpers and error formatting (see esys.h).
#include "tpm/esys.h"

#include <tss2/tss2_rc.h>

#include <cerrno>
#include <cstdio>

#include "common/log.h"

namespace nsima::tpm {

std::string format_rc(std::string_view call, TSS2_RC rc) {
  char code[16];
  std::snprintf(code, sizeof(code), "0x%X", rc);
  std::string out(call);
  out += '(';
  out += code;
  out += ") - ";
  const char* decoded = Tss2_RC_Decode(rc);  // static buffer inside tss2-rc, copied at once
  out += decoded ? decoded : "unknown";
  return out;
}

bool is_tpm_response(TSS2_RC rc) {
  const TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
  // A resource manager forwards TPM answers in its own layer; those are answers too.
  return layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER;
}

Error esys_error(std::string_view call, TSS2_RC rc, std::string where) {
  // EREMOTEIO: the TPM answered and refused; EIO: we could not talk to it.
  return Error{is_tpm_response(rc) ? EREMOTEIO : EIO, format_rc(call, rc), std::move(where)};
}

Result<EsysConnection> EsysConnection::open(const std::string& tcti) {
  EsysConnection c;
  c.conf_ = tcti;
  TSS2_TCTI_CONTEXT* raw_tcti = nullptr;
  TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti.empty() ? nullptr : tcti.c_str(), &raw_tcti);
  if (rc != TSS2_RC_SUCCESS) {
    Error e = esys_error("Tss2_TctiLdr_Initialize", rc, tcti);
    e.code = rc == TSS2_TCTI_RC_BAD_VALUE || rc == TSS2_TCTI_RC_NOT_SUPPORTED ? EINVAL : EIO;
    e.message +=
        " (TCTI strings look like device:/dev/tpmrm0, swtpm:path=/run/x.sock or "
        "swtpm:host=127.0.0.1,port=2321)";
    return tl::unexpected(std::move(e));
  }
  c.tcti_.reset(raw_tcti);

  ESYS_CONTEXT* raw_esys = nullptr;
  rc = Esys_Initialize(&raw_esys, c.tcti_.get(), nullptr);
  if (rc != TSS2_RC_SUCCESS) return tl::unexpected(esys_error("Esys_Initialize", rc, tcti));
  c.esys_.reset(raw_esys);
  return c;
}

FlushGuard::~FlushGuard() {
  if (ctx_ == nullptr || handle_ == ESYS_TR_NONE) return;
  TSS2_RC rc = Esys_FlushContext(ctx_, handle_);
  if (rc != TSS2_RC_SUCCESS) {
    // Nothing to hand the error to from a destructor; the next object load would show it.
    logger("tpm")->warn("{}", format_rc("Esys_FlushContext", rc));
  }
}

}  // namespace nsima::tpm

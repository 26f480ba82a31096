// SPDX-License-Identifier: Apache-2.0
// OpenSSL handles owned by unique_ptr, and OpenSSL's queued error as an nsima Error: shared by
// the AK's public-key code (attestation_key.cpp) and the verifier's credential and certificate
// checks (credential.cpp).
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/bio.h>

#include <cerrno>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nsima::tpm::ossl {

template <auto Fn>
struct Deleter {
  template <class T>
  void operator()(T* p) const {
    Fn(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;

// WHAT, then OpenSSL's first queued error (if any); the queue is cleared. WHERE: the Error's place.
inline Error error(std::string_view what, const char* where) {
  std::string msg(what);
  unsigned long e = ERR_get_error();
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += ": ";
    msg += buf;
  }
  ERR_clear_error();
  return Error{EPROTO, std::move(msg), where};
}

}  // namespace nsima::tpm::ossl

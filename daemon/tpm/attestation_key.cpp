// SPDX-License-Identifier: Apache-2.0
// AK template, TPM public key -> PEM (OpenSSL 3 EVP_PKEY_fromdata), and the tpm2-tools PCR file.
#include "tpm/attestation_key.h"

#include <endian.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "tpm/openssl_util.h"

namespace nsima::tpm {

namespace {

using ossl::BioPtr;
using ossl::Deleter;
using ossl::MdCtxPtr;
using ossl::PkeyCtxPtr;
using ossl::PkeyPtr;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM_free>>;

Error ssl_error(std::string_view what) { return ossl::error(what, "openssl"); }

// Turns OSSL params into a public EVP_PKEY of the given type ("RSA" or "EC").
Result<PkeyPtr> pkey_from_params(const char* type, OSSL_PARAM_BLD* bld) {
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld));
  if (!params) return tl::unexpected(ssl_error("OSSL_PARAM_BLD_to_param"));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!ctx) return tl::unexpected(ssl_error("EVP_PKEY_CTX_new_from_name"));
  if (EVP_PKEY_fromdata_init(ctx.get()) != 1)
    return tl::unexpected(ssl_error("EVP_PKEY_fromdata_init"));
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return tl::unexpected(ssl_error("EVP_PKEY_fromdata"));
  return PkeyPtr(raw);
}

Result<PkeyPtr> rsa_pkey(const TPMT_PUBLIC& pub) {
  const TPM2B_PUBLIC_KEY_RSA& n = pub.unique.rsa;
  // 0 in the template means the default exponent 2^16+1 (TPM 2.0 Part 2, TPMS_RSA_PARMS).
  const uint32_t exp =
      pub.parameters.rsaDetail.exponent ? pub.parameters.rsaDetail.exponent : 65537u;
  BnPtr bn_n(BN_bin2bn(n.buffer, n.size, nullptr));
  BnPtr bn_e(BN_new());
  if (!bn_n || !bn_e || BN_set_word(bn_e.get(), exp) != 1)
    return tl::unexpected(ssl_error("BIGNUM"));
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1)
    return tl::unexpected(ssl_error("OSSL_PARAM_BLD_push_BN"));
  return pkey_from_params("RSA", bld.get());
}

Result<PkeyPtr> ecc_pkey(const TPMT_PUBLIC& pub) {
  if (pub.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256)
    return make_error(ENOTSUP, "only NIST P-256 attestation keys are supported", "public_to_pem");
  const TPM2B_ECC_PARAMETER& x = pub.unique.ecc.x;
  const TPM2B_ECC_PARAMETER& y = pub.unique.ecc.y;
  constexpr size_t kCoord = 32;
  if (x.size > kCoord || y.size > kCoord)
    return make_error(EINVAL, "malformed ECC point in TPM public area", "public_to_pem");
  // Uncompressed SEC1 point: 04 || X || Y, each coordinate left-padded to the field size.
  uint8_t point[1 + 2 * kCoord] = {0x04};
  std::memcpy(point + 1 + (kCoord - x.size), x.buffer, x.size);
  std::memcpy(point + 1 + kCoord + (kCoord - y.size), y.buffer, y.size);
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
          1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) !=
          1)
    return tl::unexpected(ssl_error("OSSL_PARAM_BLD_push"));
  return pkey_from_params("EC", bld.get());
}

}  // namespace

TPM2B_PUBLIC ak_template(AkAlgorithm alg) {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.nameAlg = TPM2_ALG_SHA256;
  // fixedTPM/fixedParent: the key cannot leave this TPM; sensitiveDataOrigin: the TPM made the
  // private part; userWithAuth: empty password authorises quotes; restricted+sign: an AK.
  p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                       TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                       TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
  if (alg == AkAlgorithm::kEccP256) {
    p.type = TPM2_ALG_ECC;
    p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    p.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  } else {
    p.type = TPM2_ALG_RSA;
    p.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p.parameters.rsaDetail.scheme.scheme = TPM2_ALG_RSASSA;
    p.parameters.rsaDetail.scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
    p.parameters.rsaDetail.keyBits = 2048;
    p.parameters.rsaDetail.exponent = 0;
  }
  return t;
}

Result<std::string> public_to_pem(const TPMT_PUBLIC& pub) {
  Result<PkeyPtr> pkey = make_error(ENOTSUP, "unsupported key type", "public_to_pem");
  if (pub.type == TPM2_ALG_RSA) {
    pkey = rsa_pkey(pub);
  } else if (pub.type == TPM2_ALG_ECC) {
    pkey = ecc_pkey(pub);
  }
  if (!pkey) return tl::unexpected(pkey.error());
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), pkey->get()) != 1)
    return tl::unexpected(ssl_error("PEM_write_bio_PUBKEY"));
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) return tl::unexpected(ssl_error("BIO_get_mem_data"));
  return std::string(data, static_cast<size_t>(len));
}

Result<std::vector<uint8_t>> serialize_pcrs_file(const TPML_PCR_SELECTION& selection,
                                                 const std::vector<std::vector<uint8_t>>& digests) {
  size_t selected = 0;
  for (UINT32 i = 0; i < selection.count; ++i) {
    const TPMS_PCR_SELECTION& s = selection.pcrSelections[i];
    for (unsigned bit = 0; bit < s.sizeofSelect * 8u; ++bit) {
      if (s.pcrSelect[bit / 8] & (1u << (bit % 8))) ++selected;
    }
  }
  if (selected != digests.size()) {
    return make_error(EINVAL,
                      "PCR selection has " + std::to_string(selected) + " PCRs but " +
                          std::to_string(digests.size()) + " values were given",
                      "serialize_pcrs_file");
  }

  // The structs are written as tpm2-tools writes them: whole, in memory layout, with the integer
  // fields converted to little-endian and (unlike tpm2-tools) padding and unused slots zeroed.
  TPML_PCR_SELECTION sel{};
  std::memcpy(&sel, &selection, sizeof(sel));
  for (UINT32 i = 0; i < selection.count; ++i) {
    sel.pcrSelections[i].hash = htole16(selection.pcrSelections[i].hash);
  }
  sel.count = htole32(selection.count);

  constexpr size_t kPerList = sizeof(TPML_DIGEST{}.digests) / sizeof(TPM2B_DIGEST);  // 8
  const size_t lists = (digests.size() + kPerList - 1) / kPerList;
  std::vector<uint8_t> out(sizeof(TPML_PCR_SELECTION) + sizeof(UINT32) +
                           lists * sizeof(TPML_DIGEST));
  uint8_t* p = out.data();
  std::memcpy(p, &sel, sizeof(sel));
  p += sizeof(sel);
  const UINT32 count_le = htole32(static_cast<UINT32>(lists));
  std::memcpy(p, &count_le, sizeof(count_le));
  p += sizeof(count_le);
  for (size_t l = 0; l < lists; ++l) {
    TPML_DIGEST list{};
    UINT32 n = 0;
    for (size_t k = l * kPerList; k < digests.size() && n < kPerList; ++k, ++n) {
      const auto& d = digests[k];
      if (d.size() > sizeof(list.digests[n].buffer))
        return make_error(EINVAL, "PCR value longer than a TPM digest", "serialize_pcrs_file");
      list.digests[n].size = htole16(static_cast<UINT16>(d.size()));
      std::memcpy(list.digests[n].buffer, d.data(), d.size());
    }
    list.count = htole32(n);
    std::memcpy(p, &list, sizeof(list));
    p += sizeof(list);
  }
  return out;
}

Result<std::vector<uint8_t>> pcr_composite_digest(
    Bank hash, const std::vector<std::vector<uint8_t>>& digests) {
  const char* name = hash == Bank::kSha1     ? "SHA1"
                     : hash == Bank::kSha256 ? "SHA256"
                     : hash == Bank::kSha384 ? "SHA384"
                     : hash == Bank::kSha512 ? "SHA512"
                                             : nullptr;
  if (name == nullptr)
    return make_error(ENOTSUP, "no OpenSSL digest for " + bank_name(hash), "pcr_composite_digest");
  const EVP_MD* md = EVP_get_digestbyname(name);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (md == nullptr || !ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1)
    return tl::unexpected(ssl_error("EVP_DigestInit_ex"));
  for (const auto& d : digests) {
    if (EVP_DigestUpdate(ctx.get(), d.data(), d.size()) != 1)
      return tl::unexpected(ssl_error("EVP_DigestUpdate"));
  }
  std::vector<uint8_t> out(static_cast<size_t>(EVP_MD_get_size(md)));
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1)
    return tl::unexpected(ssl_error("EVP_DigestFinal_ex"));
  out.resize(len);
  return out;
}

}  // namespace nsima::tpm

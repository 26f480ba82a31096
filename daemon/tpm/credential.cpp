// SPDX-License-Identifier: Apache-2.0
// Verifier-side TPM checks in software (see credential.h for the construction and references).
#include "tpm/credential.h"

#include <endian.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <tss2/tss2_mu.h>

#include <cstring>
#include <memory>

#include "tpm/attestation_key.h"
#include "tpm/openssl_util.h"

namespace nsima::tpm {

namespace {

using ossl::BioPtr;
using ossl::Deleter;
using ossl::MdCtxPtr;
using ossl::PkeyCtxPtr;
using ossl::PkeyPtr;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, Deleter<EVP_CIPHER_CTX_free>>;

struct X509StackDeleter {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackDeleter>;

Error ssl_error(const std::string& what, const char* where = "verifier") {
  return ossl::error(what, where);
}

Result<TPM2B_PUBLIC> unmarshal_public(const std::vector<uint8_t>& b, const char* what) {
  TPM2B_PUBLIC pub{};
  size_t off = 0;
  if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(b.data(), b.size(), &off, &pub) != TSS2_RC_SUCCESS ||
      off != b.size())
    return make_error(EINVAL, std::string(what) + " is not a marshaled TPM2B_PUBLIC", "format");
  return pub;
}

const EVP_MD* md_of(TPMI_ALG_HASH alg) {
  switch (alg) {
    case TPM2_ALG_SHA1: return EVP_sha1();
    case TPM2_ALG_SHA256: return EVP_sha256();
    case TPM2_ALG_SHA384: return EVP_sha384();
    case TPM2_ALG_SHA512: return EVP_sha512();
    default: return nullptr;
  }
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}
void put_be16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

// TPM 2.0 Part 1 §11.4.10.2 KDFa (SP 800-108 counter mode with HMAC). The label's terminating
// NUL is part of the input.
Result<std::vector<uint8_t>> kdfa(const EVP_MD* md, const std::vector<uint8_t>& key,
                                  const std::string& label, const std::vector<uint8_t>& ctx_u,
                                  const std::vector<uint8_t>& ctx_v, uint32_t bits) {
  std::vector<uint8_t> out;
  const size_t want = (bits + 7) / 8;
  for (uint32_t i = 1; out.size() < want; ++i) {
    std::vector<uint8_t> msg;
    put_be32(msg, i);
    msg.insert(msg.end(), label.begin(), label.end());
    msg.push_back(0);
    msg.insert(msg.end(), ctx_u.begin(), ctx_u.end());
    msg.insert(msg.end(), ctx_v.begin(), ctx_v.end());
    put_be32(msg, bits);
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hl = 0;
    if (!HMAC(md, key.data(), static_cast<int>(key.size()), msg.data(), msg.size(), h, &hl))
      return tl::unexpected(ssl_error("HMAC (KDFa)"));
    out.insert(out.end(), h, h + hl);
  }
  out.resize(want);
  return out;
}

Result<PkeyPtr> pkey_of(const TPMT_PUBLIC& pub) {
  auto pem = public_to_pem(pub);
  if (!pem) return tl::unexpected(pem.error());
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  PkeyPtr k(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!k) return tl::unexpected(ssl_error("cannot read the public key"));
  return k;
}

}  // namespace

Result<std::vector<uint8_t>> public_name(const std::vector<uint8_t>& tpm2b_public) {
  auto pub = unmarshal_public(tpm2b_public, "public area");
  if (!pub) return tl::unexpected(pub.error());
  const EVP_MD* md = md_of(pub->publicArea.nameAlg);
  if (!md) return make_error(ENOTSUP, "unsupported nameAlg", "format");
  std::vector<uint8_t> area(sizeof(TPMT_PUBLIC));
  size_t off = 0;
  if (Tss2_MU_TPMT_PUBLIC_Marshal(&pub->publicArea, area.data(), area.size(), &off) !=
      TSS2_RC_SUCCESS)
    return make_error(EINVAL, "cannot marshal TPMT_PUBLIC", "format");
  unsigned char h[EVP_MAX_MD_SIZE];
  unsigned int hl = 0;
  EVP_Digest(area.data(), off, h, &hl, md, nullptr);
  std::vector<uint8_t> name;
  put_be16(name, pub->publicArea.nameAlg);
  name.insert(name.end(), h, h + hl);
  return name;
}

Result<std::string> public_pem(const std::vector<uint8_t>& tpm2b_public) {
  auto pub = unmarshal_public(tpm2b_public, "public area");
  if (!pub) return tl::unexpected(pub.error());
  return public_to_pem(pub->publicArea);
}

Result<std::vector<uint8_t>> spki_digest(const std::vector<uint8_t>& tpm2b_public,
                                         const char* md_name) {
  auto pub = unmarshal_public(tpm2b_public, "public area");
  if (!pub) return tl::unexpected(pub.error());
  auto k = pkey_of(pub->publicArea);
  if (!k) return tl::unexpected(k.error());
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(k->get(), &der);
  if (n <= 0) return tl::unexpected(ssl_error("i2d_PUBKEY"));
  const EVP_MD* md = EVP_get_digestbyname(md_name);
  unsigned char h[EVP_MAX_MD_SIZE];
  unsigned int hl = 0;
  const bool ok = md && EVP_Digest(der, static_cast<size_t>(n), h, &hl, md, nullptr) == 1;
  OPENSSL_free(der);
  if (!ok) return make_error(EINVAL, std::string("unknown digest ") + md_name, "spki_digest");
  return std::vector<uint8_t>(h, h + hl);
}

Result<Credential> make_credential(const std::vector<uint8_t>& ek_public,
                                   const std::vector<uint8_t>& ak_name,
                                   const std::vector<uint8_t>& secret) {
  if (secret.empty() || secret.size() > 32)
    return make_error(EINVAL, "the credential secret must have 1-32 bytes", "make_credential");
  auto pub = unmarshal_public(ek_public, "EK public");
  if (!pub) return tl::unexpected(pub.error());
  const TPMT_PUBLIC& ek = pub->publicArea;
  if (ek.type != TPM2_ALG_RSA)
    return make_error(ENOTSUP, "only RSA EKs are supported (the vTPM's EK at 0x81010001 is)",
                      "make_credential");
  const TPMT_SYM_DEF_OBJECT& sym = ek.parameters.rsaDetail.symmetric;
  if (sym.algorithm != TPM2_ALG_AES || sym.mode.aes != TPM2_ALG_CFB ||
      (sym.keyBits.aes != 128 && sym.keyBits.aes != 256))
    return make_error(ENOTSUP, "the EK's symmetric scheme is not AES-128/256-CFB",
                      "make_credential");
  const EVP_MD* md = md_of(ek.nameAlg);
  if (!md) return make_error(ENOTSUP, "unsupported EK nameAlg", "make_credential");
  const size_t hlen = static_cast<size_t>(EVP_MD_get_size(md));

  // 1. seed, OAEP-encrypted to the EK with the label "IDENTITY\0".
  std::vector<uint8_t> seed(hlen);
  if (RAND_bytes(seed.data(), static_cast<int>(seed.size())) != 1)
    return tl::unexpected(ssl_error("RAND_bytes"));
  auto k = pkey_of(ek);
  if (!k) return tl::unexpected(k.error());
  PkeyCtxPtr pctx(EVP_PKEY_CTX_new(k->get(), nullptr));
  static const char kLabel[] = "IDENTITY";  // with its NUL
  char* label = static_cast<char*>(OPENSSL_memdup(kLabel, sizeof kLabel));
  size_t enc_len = 0;
  if (!pctx || EVP_PKEY_encrypt_init(pctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(pctx.get(), md) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(pctx.get(), md) != 1 ||
      EVP_PKEY_CTX_set0_rsa_oaep_label(pctx.get(), label, sizeof kLabel) != 1) {
    OPENSSL_free(label);
    return tl::unexpected(ssl_error("RSA-OAEP setup"));
  }
  if (EVP_PKEY_encrypt(pctx.get(), nullptr, &enc_len, seed.data(), seed.size()) != 1)
    return tl::unexpected(ssl_error("RSA-OAEP"));
  TPM2B_ENCRYPTED_SECRET enc{};
  if (enc_len > sizeof enc.secret) return make_error(EINVAL, "EK too large", "make_credential");
  if (EVP_PKEY_encrypt(pctx.get(), enc.secret, &enc_len, seed.data(), seed.size()) != 1)
    return tl::unexpected(ssl_error("RSA-OAEP"));
  enc.size = static_cast<UINT16>(enc_len);

  // 2. the credential, encrypted with a key bound to the AK's name.
  auto sym_key = kdfa(md, seed, "STORAGE", ak_name, {}, sym.keyBits.aes);
  if (!sym_key) return tl::unexpected(sym_key.error());
  std::vector<uint8_t> plain;
  put_be16(plain, static_cast<uint16_t>(secret.size()));
  plain.insert(plain.end(), secret.begin(), secret.end());
  std::vector<uint8_t> enc_ident(plain.size() + 32);
  CipherCtxPtr cctx(EVP_CIPHER_CTX_new());
  const unsigned char iv[16] = {};
  int n1 = 0, n2 = 0;
  if (!cctx ||
      EVP_EncryptInit_ex(cctx.get(), sym.keyBits.aes == 128 ? EVP_aes_128_cfb() : EVP_aes_256_cfb(),
                         nullptr, sym_key->data(), iv) != 1 ||
      EVP_EncryptUpdate(cctx.get(), enc_ident.data(), &n1, plain.data(),
                        static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(cctx.get(), enc_ident.data() + n1, &n2) != 1)
    return tl::unexpected(ssl_error("AES-CFB"));
  enc_ident.resize(static_cast<size_t>(n1 + n2));

  // 3. the outer HMAC over encIdentity || name(AK).
  auto hmac_key = kdfa(md, seed, "INTEGRITY", {}, {}, static_cast<uint32_t>(hlen * 8));
  if (!hmac_key) return tl::unexpected(hmac_key.error());
  std::vector<uint8_t> hmsg = enc_ident;
  hmsg.insert(hmsg.end(), ak_name.begin(), ak_name.end());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (!HMAC(md, hmac_key->data(), static_cast<int>(hmac_key->size()), hmsg.data(), hmsg.size(),
            mac, &mac_len))
    return tl::unexpected(ssl_error("HMAC"));
  TPM2B_ID_OBJECT id{};
  std::vector<uint8_t> body;
  put_be16(body, static_cast<uint16_t>(mac_len));
  body.insert(body.end(), mac, mac + mac_len);
  body.insert(body.end(), enc_ident.begin(), enc_ident.end());
  if (body.size() > sizeof id.credential)
    return make_error(EINVAL, "credential too large", "make_credential");
  std::memcpy(id.credential, body.data(), body.size());
  id.size = static_cast<UINT16>(body.size());

  Credential c;
  c.id_object.resize(sizeof id);
  c.enc_secret.resize(sizeof enc);
  size_t o1 = 0, o2 = 0;
  if (Tss2_MU_TPM2B_ID_OBJECT_Marshal(&id, c.id_object.data(), c.id_object.size(), &o1) !=
          TSS2_RC_SUCCESS ||
      Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal(&enc, c.enc_secret.data(), c.enc_secret.size(),
                                             &o2) != TSS2_RC_SUCCESS)
    return make_error(EINVAL, "cannot marshal the credential", "make_credential");
  c.id_object.resize(o1);
  c.enc_secret.resize(o2);
  return c;
}

std::vector<uint8_t> credential_to_tools_file(const Credential& c) {
  std::vector<uint8_t> out;
  put_be32(out, 0xBADCC0DE);
  put_be32(out, 1);
  out.insert(out.end(), c.id_object.begin(), c.id_object.end());
  out.insert(out.end(), c.enc_secret.begin(), c.enc_secret.end());
  return out;
}

Result<Credential> credential_from_tools_file(const std::vector<uint8_t>& b) {
  auto bad = [](const char* why) {
    return make_error(EINVAL, std::string("not a tpm2_makecredential file: ") + why, "credential");
  };
  if (b.size() < 8) return bad("too short");
  if (b[0] != 0xBA || b[1] != 0xDC || b[2] != 0xC0 || b[3] != 0xDE) return bad("bad magic");
  if (b[4] != 0 || b[5] != 0 || b[6] != 0 || b[7] != 1) return bad("version is not 1");
  TPM2B_ID_OBJECT id{};
  TPM2B_ENCRYPTED_SECRET enc{};
  size_t off = 8, mid = 0;
  if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(b.data(), b.size(), &off, &id) != TSS2_RC_SUCCESS)
    return bad("bad TPM2B_ID_OBJECT");
  mid = off;
  if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(b.data(), b.size(), &off, &enc) != TSS2_RC_SUCCESS ||
      off != b.size())
    return bad("bad TPM2B_ENCRYPTED_SECRET");
  Credential c;
  c.id_object.assign(b.begin() + 8, b.begin() + static_cast<long>(mid));
  c.enc_secret.assign(b.begin() + static_cast<long>(mid), b.end());
  return c;
}

Result<void> check_ak_attributes(const std::vector<uint8_t>& tpm2b_public) {
  auto pub = unmarshal_public(tpm2b_public, "AK public");
  if (!pub) return tl::unexpected(pub.error());
  const TPMA_OBJECT a = pub->publicArea.objectAttributes;
  const TPMA_OBJECT need = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                           TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_RESTRICTED |
                           TPMA_OBJECT_SIGN_ENCRYPT;
  if ((a & need) != need || (a & TPMA_OBJECT_DECRYPT))
    return make_error(EPERM,
                      "the AK is not a restricted signing key that never leaves its TPM "
                      "(fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign, no decrypt)",
                      "ak-attributes");
  return {};
}

Result<void> check_ek_certificate(const std::vector<uint8_t>& ek_cert_der,
                                  const std::string& chain_pem, const std::string& ca_pem,
                                  const std::vector<uint8_t>& ek_public) {
  const unsigned char* p = ek_cert_der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(ek_cert_der.size())));
  if (!cert) return tl::unexpected(ssl_error("the EK certificate is not DER X.509", "ek-cert"));
  StorePtr store(X509_STORE_new());
  {
    BioPtr bio(BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size())));
    int added = 0;
    while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(store.get(), c);
      X509_free(c);
      ++added;
    }
    ERR_clear_error();
    if (added == 0) return make_error(EINVAL, "the CA file holds no PEM certificate", "ca");
  }
  X509StackPtr untrusted(sk_X509_new_null());
  {
    BioPtr bio(BIO_new_mem_buf(chain_pem.data(), static_cast<int>(chain_pem.size())));
    while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr))
      sk_X509_push(untrusted.get(), c);
    ERR_clear_error();
  }
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), untrusted.get()) != 1)
    return tl::unexpected(ssl_error("X509_STORE_CTX_init", "ek-cert"));
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    return make_error(EPERM,
                      std::string("the EK certificate does not chain to the CA: ") +
                          X509_verify_cert_error_string(err),
                      "ek-cert");
  }
  // The certificate is for this EK.
  auto pub = unmarshal_public(ek_public, "EK public");
  if (!pub) return tl::unexpected(pub.error());
  auto k = pkey_of(pub->publicArea);
  if (!k) return tl::unexpected(k.error());
  EVP_PKEY* ck = X509_get0_pubkey(cert.get());
  if (!ck || EVP_PKEY_eq(ck, k->get()) != 1)
    return make_error(EPERM, "the EK certificate certifies another key than the TPM's EK",
                      "ek-cert");
  return {};
}

Result<QuoteClaims> check_quote_signature(const std::vector<uint8_t>& message,
                                          const std::vector<uint8_t>& signature,
                                          const std::vector<uint8_t>& ak_public,
                                          const std::vector<uint8_t>& nonce) {
  auto pub = unmarshal_public(ak_public, "AK public");
  if (!pub) return tl::unexpected(pub.error());
  TPMS_ATTEST attest{};
  size_t off = 0;
  if (Tss2_MU_TPMS_ATTEST_Unmarshal(message.data(), message.size(), &off, &attest) !=
          TSS2_RC_SUCCESS ||
      off != message.size())
    return make_error(EINVAL, "the quote message is not a TPMS_ATTEST", "format");
  TPMT_SIGNATURE sig{};
  off = 0;
  if (Tss2_MU_TPMT_SIGNATURE_Unmarshal(signature.data(), signature.size(), &off, &sig) !=
          TSS2_RC_SUCCESS ||
      off != signature.size())
    return make_error(EINVAL, "the quote signature is not a TPMT_SIGNATURE", "format");
  if (attest.magic != TPM2_GENERATED_VALUE || attest.type != TPM2_ST_ATTEST_QUOTE)
    return make_error(EPERM, "the quote message was not generated by a TPM as a quote", "format");

  auto k = pkey_of(pub->publicArea);
  if (!k) return tl::unexpected(k.error());
  const EVP_MD* md = nullptr;
  std::vector<uint8_t> der;
  if (sig.sigAlg == TPM2_ALG_ECDSA) {
    md = md_of(sig.signature.ecdsa.hash);
    std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG_free>> es(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(sig.signature.ecdsa.signatureR.buffer,
                          sig.signature.ecdsa.signatureR.size, nullptr);
    BIGNUM* s = BN_bin2bn(sig.signature.ecdsa.signatureS.buffer,
                          sig.signature.ecdsa.signatureS.size, nullptr);
    if (!es || !r || !s || ECDSA_SIG_set0(es.get(), r, s) != 1) {
      BN_free(r);
      BN_free(s);
      return tl::unexpected(ssl_error("ECDSA_SIG"));
    }
    unsigned char* d = nullptr;
    int n = i2d_ECDSA_SIG(es.get(), &d);
    if (n <= 0) return tl::unexpected(ssl_error("i2d_ECDSA_SIG"));
    der.assign(d, d + n);
    OPENSSL_free(d);
  } else if (sig.sigAlg == TPM2_ALG_RSASSA) {
    md = md_of(sig.signature.rsassa.hash);
    der.assign(sig.signature.rsassa.sig.buffer,
               sig.signature.rsassa.sig.buffer + sig.signature.rsassa.sig.size);
  } else {
    return make_error(ENOTSUP, "quote signature scheme is neither ECDSA nor RSASSA", "signature");
  }
  if (!md) return make_error(ENOTSUP, "unsupported signature hash", "signature");
  MdCtxPtr mctx(EVP_MD_CTX_new());
  if (!mctx || EVP_DigestVerifyInit(mctx.get(), nullptr, md, nullptr, k->get()) != 1)
    return tl::unexpected(ssl_error("EVP_DigestVerifyInit", "signature"));
  if (EVP_DigestVerify(mctx.get(), der.data(), der.size(), message.data(), message.size()) != 1) {
    ERR_clear_error();
    return make_error(EPERM, "the quote is not signed by this AK", "signature");
  }
  if (attest.extraData.size != nonce.size() ||
      std::memcmp(attest.extraData.buffer, nonce.data(), nonce.size()) != 0)
    return make_error(EPERM, "the quote's qualifying data is not the nonce sent", "nonce");
  QuoteClaims c;
  const TPML_PCR_SELECTION& sel = attest.attested.quote.pcrSelect;
  for (UINT32 i = 0; i < sel.count; ++i) {
    PcrSelection ps{static_cast<Bank>(sel.pcrSelections[i].hash), {}};
    for (unsigned b = 0; b < sel.pcrSelections[i].sizeofSelect * 8u; ++b)
      if (sel.pcrSelections[i].pcrSelect[b / 8] & (1u << (b % 8)))
        ps.pcrs.push_back(static_cast<int>(b));
    c.selection.push_back(std::move(ps));
  }
  const TPM2B_DIGEST& d = attest.attested.quote.pcrDigest;
  c.pcr_digest.assign(d.buffer, d.buffer + d.size);
  return c;
}

Result<std::map<Bank, std::map<int, std::vector<uint8_t>>>> parse_pcrs_file(
    const std::vector<uint8_t>& bytes) {
  auto bad = [](const std::string& why) {
    return make_error(EINVAL, "not a tpm2_quote PCR file: " + why, "format");
  };
  if (bytes.size() < sizeof(TPML_PCR_SELECTION) + 4) return bad("too short");
  TPML_PCR_SELECTION sel{};
  std::memcpy(&sel, bytes.data(), sizeof sel);
  sel.count = le32toh(sel.count);
  if (sel.count > TPM2_NUM_PCR_BANKS) return bad("too many banks");
  uint32_t lists = 0;
  std::memcpy(&lists, bytes.data() + sizeof sel, 4);
  lists = le32toh(lists);
  if (bytes.size() != sizeof sel + 4 + size_t{lists} * sizeof(TPML_DIGEST))
    return bad("size does not match its digest lists");
  std::vector<std::vector<uint8_t>> flat;
  for (uint32_t l = 0; l < lists; ++l) {
    TPML_DIGEST dl{};
    std::memcpy(&dl, bytes.data() + sizeof sel + 4 + l * sizeof(TPML_DIGEST), sizeof dl);
    const uint32_t n = le32toh(dl.count);
    if (n > 8) return bad("digest list over 8 entries");
    for (uint32_t k = 0; k < n; ++k) {
      const uint16_t sz = le16toh(dl.digests[k].size);
      if (sz > sizeof dl.digests[k].buffer) return bad("digest too long");
      flat.emplace_back(dl.digests[k].buffer, dl.digests[k].buffer + sz);
    }
  }
  std::map<Bank, std::map<int, std::vector<uint8_t>>> out;
  size_t next = 0;
  for (UINT32 i = 0; i < sel.count; ++i) {
    const TPMS_PCR_SELECTION& s = sel.pcrSelections[i];
    if (s.sizeofSelect > TPM2_PCR_SELECT_MAX) return bad("selection too large");
    const Bank bank = static_cast<Bank>(le16toh(s.hash));
    for (unsigned b = 0; b < s.sizeofSelect * 8u; ++b) {
      if (!(s.pcrSelect[b / 8] & (1u << (b % 8)))) continue;
      if (next >= flat.size()) return bad("fewer values than selected PCRs");
      out[bank][static_cast<int>(b)] = flat[next++];
    }
  }
  if (next != flat.size()) return bad("more values than selected PCRs");
  return out;
}

}  // namespace nsima::tpm

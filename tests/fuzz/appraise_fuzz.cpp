// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the appraise library: any byte string is (1) parsed as a security.ima
// value, whose accepted forms must be self-consistent, (2) appraised under a hash rule, an imasig
// rule, a verity rule and an appraise_algos rule against a fixed keyring (the certificate named by
// NSIMA_APPRAISE_FUZZ_CERT, made by openssl in run_appraise_fuzz.sh) and a fixed digest store,
// and (3) again with its key id bytes replaced by the fixed key's id, so that fuzzed signature
// bytes reach OpenSSL's verifier; it is also (4) parsed as a sha256sum manifest, which must
// round-trip. Invariant violations trap so that libFuzzer records the input. Built and run by
// run_appraise_fuzz.sh (ctest fuzz.appraise).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "appraise/appraiser.h"
#include "appraise/digest_list.h"
#include "appraise/ima_xattr.h"
#include "appraise/keyring.h"
#include "measure/hasher.h"

namespace {

using namespace nsima::appraise;
using nsima::measure::Digest;
using nsima::measure::HashAlgo;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Fixture {
  Keyring keys;
  uint32_t keyid = 0;
  DigestStore store = DigestStore::in_memory();
  std::vector<Digest> digests;
  Digest verity;
  nsima::policy::Decision hash_rule, sig_rule, verity_rule, algos_rule;
};

Fixture* fixture = nullptr;

Digest digest(HashAlgo a, std::string_view s) {
  auto d = nsima::measure::hash_bytes(a, {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  check(d.has_value());
  return *d;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fixture = new Fixture();
  const char* cert = std::getenv("NSIMA_APPRAISE_FUZZ_CERT");
  if (!cert) {
    std::fprintf(stderr, "NSIMA_APPRAISE_FUZZ_CERT must name a DER certificate\n");
    std::abort();
  }
  auto key = Key::from_file(cert);
  if (!key) {
    std::fprintf(stderr, "%s\n", key.error().to_string().c_str());
    std::abort();
  }
  fixture->keyid = key->keyid();
  check(fixture->keys.add(*key).has_value());
  for (HashAlgo a : {HashAlgo::kSha1, HashAlgo::kSha256, HashAlgo::kSha512})
    fixture->digests.push_back(digest(a, "fuzzed file"));
  fixture->verity = digest(HashAlgo::kSha256, "verity");
  Manifest m;
  m.entries.push_back({digest(HashAlgo::kSha256, "listed"), "/listed", false});
  check(fixture->store.add(m, true).has_value());
  check(fixture->store.revoke(digest(HashAlgo::kSha256, "revoked")).has_value());
  auto& f = *fixture;
  f.hash_rule.appraise = true;
  f.sig_rule = f.hash_rule;
  f.sig_rule.digsig_required = true;
  f.verity_rule = f.sig_rule;
  f.verity_rule.verity_required = true;
  f.algos_rule = f.sig_rule;
  f.algos_rule.appraise_algos_mask = 1u << static_cast<unsigned>(HashAlgo::kSha512);
  return 0;
}

namespace {

void appraise_all(std::span<const uint8_t> v) {
  for (const auto* d : {&fixture->hash_rule, &fixture->sig_rule, &fixture->verity_rule,
                        &fixture->algos_rule}) {
    AppraiseInput in;
    in.decision = d;
    in.file_digests = fixture->digests;
    in.verity_digest = fixture->verity;
    in.ima_xattr = v;
    in.keys = &fixture->keys;
    in.digests = &fixture->store;
    Appraisal a = appraise(in);
    check(!a.reason.empty());
    check(a.pass == (a.status == Status::kPass || a.status == Status::kNotAppraised));
    check(!status_name(a.status).empty() && !kernel_cause(a.status).empty());
    if (a.malformed) check(!a.pass);
    if (a.pass && d->digsig_required)
      check(a.source == Source::kXattrSignature || a.source == Source::kXattrVerity ||
            a.source == Source::kSignedDigestList);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> v(data, size);
  XattrResult x = parse_ima_xattr(v);
  if (x) {
    check(x->raw.size() == size && std::equal(x->raw.begin(), x->raw.end(), data));
    check(size <= kXattrSizeMax);
    check(hash_algo_for_xattr(v, HashAlgo::kSha256) == x->algo);
    if (x->is_signature()) {
      check(x->signature.size() + kSignatureHeaderSize == size);
      check((x->type == XattrType::kDigsig && x->version == 2) ||
            (x->type == XattrType::kVerityDigsig && x->version == 3));
      check(!x->signature.empty());
    } else {
      check(x->digest.size() == nsima::measure::hash_digest_size(x->algo));
    }
  } else {
    check(!x.error().reason.empty());
    check(!xattr_error_kind_name(x.error().kind).empty());
  }
  appraise_all(v);

  // The same bytes with the fixed key's id: fuzzed signatures reach EVP_PKEY_verify.
  if (size > kSignatureHeaderSize && size <= kXattrSizeMax + 16) {
    std::vector<uint8_t> w(data, data + size);
    w[3] = static_cast<uint8_t>(fixture->keyid >> 24);
    w[4] = static_cast<uint8_t>(fixture->keyid >> 16);
    w[5] = static_cast<uint8_t>(fixture->keyid >> 8);
    w[6] = static_cast<uint8_t>(fixture->keyid);
    appraise_all(w);
  }

  // As a manifest: accepted text round-trips through format_manifest.
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto m = parse_manifest(text, "fuzz");
  if (m) {
    auto again = parse_manifest(format_manifest(*m), "fuzz-again");
    check(again.has_value() && again->entries.size() == m->entries.size());
    for (size_t i = 0; i < m->entries.size(); ++i)
      check(again->entries[i].path == m->entries[i].path &&
            again->entries[i].digest == m->entries[i].digest &&
            again->entries[i].binary == m->entries[i].binary);
  } else {
    check(!m.error().where.empty());
  }
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// boot_aggregate computation (ima_calc_boot_aggregate / ima_eventdigest_init semantics).
#include "measure/boot_aggregate.h"

#include <cerrno>
#include <string>

#include "measure/hasher.h"

namespace nsima::measure {

Result<Digest> boot_aggregate(HashAlgo bank, std::span<const Digest> pcrs) {
  // PCR 8-9 (kernel command line, image) are only covered by non-SHA-1 aggregates, so that the
  // SHA-1 value stays what TPM 1.2-era verifiers expect.
  const size_t count = bank == HashAlgo::kSha1 ? 8 : 10;
  if (pcrs.size() < count)
    return make_error(EINVAL, std::string(hash_algo_name(bank)) + " boot_aggregate needs PCR 0-" +
                                  std::to_string(count - 1) + ", got " +
                                  std::to_string(pcrs.size()) + " values");
  auto h = Hasher::create(bank);
  if (!h) return tl::unexpected(h.error());
  for (size_t i = 0; i < count; ++i) {
    if (pcrs[i].algo() != bank)
      return make_error(EINVAL, "PCR " + std::to_string(i) + " is not a " +
                                    std::string(hash_algo_name(bank)) + " value");
    if (auto r = h->update(pcrs[i].bytes()); !r) return tl::unexpected(r.error());
  }
  return h->finish();
}

Result<Digest> boot_aggregate(std::span<const PcrBank> banks, HashAlgo ima_hash) {
  const PcrBank* chosen = nullptr;
  for (const auto& b : banks) {
    if (b.algo == ima_hash) {
      chosen = &b;
      break;
    }
    if (b.algo == HashAlgo::kSha256) chosen = &b;
    if (!chosen && b.algo == HashAlgo::kSha1) chosen = &b;
  }
  if (!chosen) return Digest(ima_hash);
  return boot_aggregate(chosen->algo, chosen->pcrs);
}

Result<Entry> boot_aggregate_entry(std::span<const PcrBank> banks, HashAlgo ima_hash,
                                   std::optional<TemplateKind> kind) {
  Entry e;
  e.tmpl = kind;
  e.name = std::string(kBootAggregateName);
  if (kind == TemplateKind::kIma) {
    e.digest = Digest(HashAlgo::kSha1);
    for (const auto& b : banks) {
      if (b.algo != HashAlgo::kSha1) continue;
      auto d = boot_aggregate(HashAlgo::kSha1, b.pcrs);
      if (!d) return tl::unexpected(d.error());
      e.digest = *d;
    }
    return e;
  }
  auto d = boot_aggregate(banks, ima_hash);
  if (!d) return tl::unexpected(d.error());
  e.digest = *d;
  return e;
}

}  // namespace nsima::measure

// SPDX-License-Identifier: Apache-2.0
// The first entry of every list, `boot_aggregate` (ima-facts §2.7, ima_crypto.c
// ima_calc_boot_aggregate): a digest over the TPM's PCRs 0-7 (SHA-1 bank) or 0-9 (any other bank)
// that ties the runtime list to the boot chain.
//
// Host namespace: computed from the host TPM, exactly as the kernel does; without a TPM it is the
// zero digest of the namespace's hash algorithm (still an ordinary entry with a real template
// digest). Container namespaces: the same computation over the namespace's own vTPM PCRs 0-9
// (see README.md, "First entry of a container list"): a fresh vTPM has zero PCRs, so the entry is
// H(zeros) and evmctl replays it like any other entry.
#pragma once

#include <span>
#include <vector>

#include "common/result.h"
#include "measure/hash_algo.h"
#include "measure/template.h"

namespace nsima::measure {

// PCR 0..9 (at least 0..7 for SHA-1) of one allocated TPM bank, in allocation order.
struct PcrBank {
  HashAlgo algo;
  std::vector<Digest> pcrs;  // pcrs[i] = PCR i
};

// H(PCR0 || ... || PCR7) for SHA-1, H(PCR0 || ... || PCR9) for any other bank.
Result<Digest> boot_aggregate(HashAlgo bank, std::span<const Digest> pcrs);

// The kernel's bank choice: the bank of `ima_hash` if allocated, else SHA-256, else SHA-1; with no
// usable bank (or no TPM: `banks` empty) the zero digest of `ima_hash`.
Result<Digest> boot_aggregate(std::span<const PcrBank> banks, HashAlgo ima_hash);

// The boot_aggregate entry for template `kind` (nullopt: the list's default). For the `ima`
// template the `d` field always carries the SHA-1-bank aggregate (zeros without a SHA-1 bank).
Result<Entry> boot_aggregate_entry(std::span<const PcrBank> banks, HashAlgo ima_hash,
                                   std::optional<TemplateKind> kind = std::nullopt);

}  // namespace nsima::measure

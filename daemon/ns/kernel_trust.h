// SPDX-License-Identifier: Apache-2.0
// The kernel's trusted map (bpf/trust.bpf.h): the (namespace, sha256) pairs whose first exec in
// an enforcing namespace the sleepable bprm_check hook allows without waiting for nsimad. This
// is its only writer on the daemon side. Registry::kernel_trusted() says what a namespace's set
// must be (its chain's digest lists, modes and exec appraise rules); set() makes the map hold
// exactly that, removing before adding, so a digest that loses trust (revoked, a stricter rule
// or mode) is out of the map when set() returns.
//
// A full map: the pairs that do not fit are not written and counted (not_in_map); they are not
// trusted by the kernel, so their first exec takes the first-access rule (denied until
// appraised) and nothing is allowed that should not be. They are tried again the next time the
// namespace's set is computed.
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "capture/bpf_maps.h"
#include "common/result.h"

namespace nsima::ns {

class KernelTrust {
 public:
  explicit KernelTrust(capture::BpfMaps* maps) : maps_(maps) {}

  // The map holds exactly `want` for ns_id afterwards (minus what did not fit), in the set
  // `bit` names: NSIMA_TRUST_LISTED (Registry::kernel_trusted) or NSIMA_TRUST_MODEL (the
  // known executables of an enforcing model, ns/pipeline_model.cpp); the other set's bits of
  // the same pairs are left as they are.
  Result<void> set(uint32_t ns_id, std::vector<capture::Sha256> want,
                   uint32_t bit = NSIMA_TRUST_LISTED);
  Result<void> drop(uint32_t ns_id);
  // Start-up: removes every pair (a resumed map may hold a previous nsimad's); the caller then
  // sets each namespace's. Returns how many were removed.
  Result<size_t> clear_all();

  struct Counters {
    size_t entries = 0;     // pairs in the map written by this nsimad
    size_t not_in_map = 0;  // pairs wanted but refused by a full map (now)
    uint64_t full_events = 0;  // set() calls that met a full map
  };
  Counters counters() const;

 private:
  capture::BpfMaps* maps_;
  using SetKey = std::pair<uint32_t, uint32_t>;  // (bit, namespace)
  std::map<SetKey, std::vector<capture::Sha256>> written_;  // sorted, per set and namespace
  std::map<SetKey, size_t> missing_;
  uint64_t full_events_ = 0;
};

}  // namespace nsima::ns

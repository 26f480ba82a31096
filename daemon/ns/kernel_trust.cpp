// SPDX-License-Identifier: Apache-2.0
#include "ns/kernel_trust.h"

#include <algorithm>
#include <iterator>

#include "common/log.h"

namespace nsima::ns {

Result<void> KernelTrust::set(uint32_t ns_id, std::vector<capture::Sha256> want, uint32_t bit) {
  if (!maps_) return {};
  std::sort(want.begin(), want.end());
  want.erase(std::unique(want.begin(), want.end()), want.end());
  std::vector<capture::Sha256>& have = written_[{bit, ns_id}];
  std::vector<capture::Sha256> gone, added;
  std::set_difference(have.begin(), have.end(), want.begin(), want.end(),
                      std::back_inserter(gone));
  // Out first: what lost trust is out of the map before anything else happens.
  for (const auto& d : gone) {
    if (auto r = maps_->untrust(ns_id, d, bit); !r) {
      logger("appraise")->critical("namespace {}: a digest that lost trust is still in the "
                                   "kernel's trusted map: {}",
                                   ns_id, r.error().to_string());
      return r;
    }
    have.erase(std::lower_bound(have.begin(), have.end(), d));
  }
  size_t missing = 0;
  for (const auto& d : want) {
    if (std::binary_search(have.begin(), have.end(), d)) continue;
    auto r = maps_->trust(ns_id, d, bit);
    if (!r) return tl::unexpected(r.error());
    if (*r)
      added.push_back(d);
    else
      missing++;
  }
  if (!added.empty()) {
    std::vector<capture::Sha256> merged;
    merged.reserve(have.size() + added.size());
    std::sort(added.begin(), added.end());
    std::merge(have.begin(), have.end(), added.begin(), added.end(), std::back_inserter(merged));
    have = std::move(merged);
  }
  if (missing) {
    full_events_++;
    logger("appraise")->warn("namespace {}: the kernel's trusted map is full: {} of {} listed "
                             "digests are not in it (their first exec is denied until "
                             "appraised; raise --trusted-digests)",
                             ns_id, missing, want.size());
    missing_[{bit, ns_id}] = missing;
  } else {
    missing_.erase({bit, ns_id});
  }
  if (have.empty()) written_.erase({bit, ns_id});
  return {};
}

Result<void> KernelTrust::drop(uint32_t ns_id) {
  for (uint32_t bit : {uint32_t{NSIMA_TRUST_LISTED}, uint32_t{NSIMA_TRUST_MODEL}}) {
    if (auto r = set(ns_id, {}, bit); !r) return r;
    missing_.erase({bit, ns_id});
  }
  return {};
}

Result<size_t> KernelTrust::clear_all() {
  if (!maps_) return size_t{0};
  auto keys = maps_->trusted_keys();
  if (!keys) return tl::unexpected(keys.error());
  for (const auto& k : *keys) {
    capture::Sha256 d;
    std::copy(std::begin(k.sha256), std::end(k.sha256), d.begin());
    if (auto r = maps_->untrust(k.ns_id, d, ~0u); !r) return tl::unexpected(r.error());
  }
  written_.clear();
  missing_.clear();
  return keys->size();
}

KernelTrust::Counters KernelTrust::counters() const {
  Counters c;
  for (const auto& [id, v] : written_) c.entries += v.size();
  for (const auto& [id, n] : missing_) c.not_in_map += n;
  c.full_events = full_events_;
  return c;
}

}  // namespace nsima::ns

// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for rpm package bytes (nsimactl digests from-rpm, confine Op::kRpmHeader):
// the worker's whole path in process, serve(kRpmHeader) over appraise::rpm_read_header (librpm's
// rpmReadPackageFile on a memfd), then the daemon's decode_rpm_header of its reply; and
// decode_rpm_header of the raw bytes as a forged reply. Invariants: nothing crashes or throws;
// the worker's reply always decodes (it never sends what the daemon refuses); with no trusted
// key no package gives files (a signed one is NOKEY, an unsigned one refused); a forged reply
// that decodes holds only 32-byte sha256 digests and non-empty paths. Invariant violations trap
// so that libFuzzer records the input. Run by run_fuzz.sh (ctest fuzz.rpm).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "appraise/digest_list.h"
#include "confine/protocol.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nsima::appraise::rpm_prepare_confined();  // the worker's own start (rpmlog silenced)
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nsima::confine;
  const std::span<const uint8_t> bytes(data, size);
  // The worker's answer for these bytes as a package, with no trusted keys.
  const std::vector<uint8_t> reply = serve(Op::kRpmHeader, rpm_header_request({}, bytes));
  auto decoded = decode_rpm_header(reply);
  check(decoded.has_value());    // the worker's own reply is never a bad reply
  check(!decoded->has_value());  // nothing verifies without a key
  check(!decoded->error().empty());
  // The bytes as a reply a subverted worker could send.
  if (auto forged = decode_rpm_header(bytes); forged && *forged) {
    for (const auto& e : (*forged)->entries)
      check(e.digest.size() == 32 && !e.path.empty() && e.path.find('\0') == std::string::npos);
  }
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// Which PCR nsima may extend on the host TPM, and why (README.md, "Host PCR choice").
//
// PCRs are shared by everything that measures on a machine: firmware, boot loaders, the kernel,
// kernel IMA, systemd. Extending a PCR another component owns breaks that component: its event
// log no longer replays (attestation fails) and secrets sealed to the PCR (LUKS keys bound to
// PCR 7/11/15...) no longer unseal. check_host_pcr() refuses every PCR with a registered owner
// (the UAPI group's Linux TPM PCR Registry, the TCG PC Client Platform Firmware Profile) and the
// PCR kernel IMA uses on this machine, naming the owner.
//
// A vTPM belongs to one namespace alone, so there nsima uses PCR 10, where kernel IMA would put it.
#pragma once

#include <filesystem>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nsima::tpm {

// Default PCR of the host namespace on the host TPM: 23, "Application Support" in the TCG PC
// Client PFP, listed by no Linux component in the registry. See README.md for the trade-off
// (PCR 23 is resettable from locality 0).
inline constexpr int kDefaultHostPcr = 23;
// Default PCR of a namespace in its own vTPM: kernel IMA's CONFIG_IMA_MEASURE_PCR_IDX default.
inline constexpr int kDefaultVtpmPcr = 10;
// PCRs of a PC Client TPM (TPM_PT_PCR_COUNT).
inline constexpr int kPcrCount = 24;
// check_host_pcr()'s "this machine has no kernel IMA".
inline constexpr int kNoKernelIma = -1;

// One row of the registry. A PCR may have several rows (PCR 15: three systemd units).
struct PcrOwner {
  int pcr;
  std::string_view owner;     // "systemd-stub", "IMA (Linux kernel)", "grub", ...
  std::string_view measures;  // what goes in
  std::string_view source;    // where the assignment is documented
  bool open_to_applications;  // true only for PCR 23, "Application Support"
};

// The registry as nsima knows it, ordered by PCR. Rows for PCRs 0-15 follow the Linux TPM PCR
// Registry (uapi-group.org/specifications/specs/linux_tpm_pcr_registry); 16-23 the TCG PC Client
// Platform Firmware Profile (PCR 23 has a row too: "Application Support", owner "applications").
std::span<const PcrOwner> pcr_registry();

// Owners of one PCR, joined for a message: "systemd-stub (...); systemd-pcrphase (...)".
// Empty if nobody registered it.
std::string pcr_owners(int pcr);

// Ok if nsima may extend `pcr` on the host TPM. Refuses (EBUSY, naming the owner) the PCR kernel
// IMA uses (`kernel_ima_pcr`, or kNoKernelIma) and every PCR the registry assigns to another
// component; refuses (EINVAL) indexes outside 0-23. Only PCR 23 passes on a standard machine.
Result<void> check_host_pcr(int pcr, int kernel_ima_pcr);

struct KernelIma;
// As above, also refusing every PCR that appears in kernel IMA's runtime list (a policy rule with
// pcr=N makes kernel IMA extend N too).
Result<void> check_host_pcr(int pcr, const KernelIma& ima);

// Where to look for kernel IMA. Tests point these at a fake tree.
struct ImaProbePaths {
  std::filesystem::path securityfs = "/sys/kernel/security";
  std::filesystem::path boot_config;  // empty: /boot/config-$(uname -r)
};

// What detect_kernel_ima() found.
struct KernelIma {
  bool present = false;     // the kernel has IMA
  int pcr = kNoKernelIma;   // the PCR it extends (CONFIG_IMA_MEASURE_PCR_IDX), or kNoKernelIma
  std::set<int> list_pcrs;  // every PCR in the runtime list (policy rules may add pcr=N)
  std::string evidence;     // how it was decided, for logs
};

// Detects kernel IMA and its PCR on the running system, in this order:
//   1. ascii_runtime_measurements (securityfs ima/ or integrity/ima/): the first column of the
//      first entry (boot_aggregate, always on CONFIG_IMA_MEASURE_PCR_IDX) — and all PCRs listed;
//   2. the boot config: CONFIG_IMA=y and CONFIG_IMA_MEASURE_PCR_IDX;
//   3. an ima directory in securityfs, or "ima"/"integrity" in securityfs's lsm list: IMA, PCR 10;
//   4. otherwise no kernel IMA.
// Only an unreadable list that exists is an error (run as root to read securityfs).
Result<KernelIma> detect_kernel_ima(const ImaProbePaths& paths = {});

}  // namespace nsima::tpm

// SPDX-License-Identifier: Apache-2.0
// The PCR registry, the host-PCR check, and kernel IMA detection (see pcr_policy.h, README.md).
#include "tpm/pcr_policy.h"

#include <sys/utsname.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

namespace nsima::tpm {

namespace {

// CONFIG_IMA_MEASURE_PCR_IDX's default (security/integrity/ima/Kconfig).
constexpr int kImaDefaultPcr = 10;
constexpr std::string_view kUapi = "Linux TPM PCR Registry (uapi-group.org)";
constexpr std::string_view kTcg = "TCG PC Client Platform Firmware Profile";

// Keep in sync with README.md "Host PCR choice".
constexpr PcrOwner kRegistry[] = {
    {0, "firmware", "core system firmware executable code", kUapi, false},
    {1, "firmware", "core system firmware data, host platform configuration", kUapi, false},
    {2, "firmware", "extended or pluggable executable code (option ROMs)", kUapi, false},
    {3, "firmware", "extended or pluggable firmware data", kUapi, false},
    {4, "firmware, shim, systemd-stub",
     "boot loader and additional drivers; PE binaries shim loads; sysext images from the ESP",
     kUapi, false},
    {5, "firmware", "GPT/partition table (and boot loader configuration)", kUapi, false},
    {6, "firmware", "host platform manufacturer specific (resume, power state events)", kTcg,
     false},
    {7, "firmware, shim", "Secure Boot state; shim's certificates and SBAT data", kUapi, false},
    {8, "grub", "commands and kernel command line", kUapi, false},
    {9, "grub", "all files read (including the kernel image)", kUapi, false},
    {9, "Linux kernel", "initrds passed with the LOAD_FILE2 protocol", kUapi, false},
    {10, "IMA (Linux kernel)", "the IMA measurement list (CONFIG_IMA_MEASURE_PCR_IDX default)",
     kUapi, false},
    {11, "systemd-stub", "all components of unified kernel images (UKIs)", kUapi, false},
    {11, "systemd-pcrphase", "boot phase strings", kUapi, false},
    {12, "systemd-stub, systemd-boot",
     "kernel command line, system credentials, system configuration images", kUapi, false},
    {13, "systemd-stub", "system extension images for the initrd", kUapi, false},
    {14, "shim", "MOK certificates and hashes", kUapi, false},
    {15, "systemd-cryptsetup@.service", "root file system volume key", kUapi, false},
    {15, "systemd-pcrmachine.service", "machine ID (/etc/machine-id)", kUapi, false},
    {15, "systemd-pcrfs@.service", "root and /var file system identities", kUapi, false},
    {16, "debug", "debug and test measurements; resettable from any locality", kTcg, false},
    {17, "DRTM", "dynamic root of trust (TXT/SKINIT); locality 4 only", kTcg, false},
    {18, "DRTM", "trusted OS started by the DRTM; localities 3-4", kTcg, false},
    {19, "DRTM", "trusted OS; localities 2-4", kTcg, false},
    {20, "DRTM", "trusted OS; localities 1-4", kTcg, false},
    {21, "DRTM", "dynamic OS; locality 2", kTcg, false},
    {22, "DRTM", "dynamic OS; locality 2", kTcg, false},
    {23, "applications", "Application Support; resettable from locality 0", kTcg, true},
};

std::string read_first_line(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

// The PCR column of ascii_runtime_measurements ("10 <template digest> ima-ng sha256:... /path").
std::optional<int> leading_int(const std::string& line) {
  size_t i = 0;
  while (i < line.size() && line[i] == ' ') ++i;
  int v = 0;
  size_t start = i;
  while (i < line.size() && line[i] >= '0' && line[i] <= '9' && i - start < 4) {
    v = v * 10 + (line[i] - '0');
    ++i;
  }
  if (i == start || (i < line.size() && line[i] != ' ')) return std::nullopt;
  return v;
}

}  // namespace

std::span<const PcrOwner> pcr_registry() { return kRegistry; }

std::string pcr_owners(int pcr) {
  std::string out;
  for (const PcrOwner& o : kRegistry) {
    if (o.pcr != pcr) continue;
    if (!out.empty()) out += "; ";
    out +=
        std::string(o.owner) + " (" + std::string(o.measures) + ", " + std::string(o.source) + ")";
  }
  return out;
}

Result<void> check_host_pcr(int pcr, int kernel_ima_pcr) {
  const std::string where = "host PCR " + std::to_string(pcr);
  if (pcr < 0 || pcr >= kPcrCount) {
    return make_error(EINVAL, "PC Client TPMs have PCRs 0-23", where);
  }
  if (pcr == kernel_ima_pcr) {
    return make_error(EBUSY,
                      "PCR " + std::to_string(pcr) +
                          " is kernel IMA's PCR on this machine; nsima's list would interleave "
                          "with the kernel's and neither would replay. Use PCR " +
                          std::to_string(kDefaultHostPcr),
                      where);
  }
  for (const PcrOwner& o : kRegistry) {
    if (o.pcr == pcr && !o.open_to_applications) {
      return make_error(EBUSY,
                        "PCR " + std::to_string(pcr) + " is used by " + pcr_owners(pcr) +
                            "; extending it would break their event log replay or sealed "
                            "secrets. Use PCR " +
                            std::to_string(kDefaultHostPcr),
                        where);
    }
  }
  return {};
}

Result<void> check_host_pcr(int pcr, const KernelIma& ima) {
  if (auto r = check_host_pcr(pcr, ima.pcr); !r) return r;
  if (ima.list_pcrs.count(pcr) != 0) {
    return make_error(EBUSY,
                      "PCR " + std::to_string(pcr) +
                          " appears in kernel IMA's runtime measurement list (a policy rule with "
                          "pcr=" +
                          std::to_string(pcr) + ")",
                      "host PCR " + std::to_string(pcr));
  }
  return {};
}

Result<KernelIma> detect_kernel_ima(const ImaProbePaths& paths) {
  KernelIma res;
  std::error_code ec;

  // 1. The runtime list: its first entry (boot_aggregate) is on CONFIG_IMA_MEASURE_PCR_IDX.
  for (const char* sub : {"ima", "integrity/ima"}) {
    const auto list = paths.securityfs / sub / "ascii_runtime_measurements";
    if (!std::filesystem::exists(list, ec)) continue;
    std::ifstream in(list);
    if (!in) {
      return make_error(errno ? errno : EACCES,
                        std::string("cannot read kernel IMA's list (run as root): ") +
                            std::strerror(errno ? errno : EACCES),
                        list);
    }
    res.present = true;
    // The list can be long on a machine that has been up for months; the PCR column is all we
    // need, and 64 MiB of it is far more than any policy with pcr= rules produces distinct values.
    constexpr size_t kMaxScan = 64 << 20;
    std::string line;
    bool first = true;
    size_t scanned = 0;
    while (scanned < kMaxScan && std::getline(in, line)) {
      scanned += line.size() + 1;
      auto pcr = leading_int(line);
      if (!pcr) continue;
      if (first) res.pcr = *pcr;
      first = false;
      res.list_pcrs.insert(*pcr);
    }
    if (!first) {
      res.evidence = list.string() + " (first entry)";
      return res;
    }
    break;  // an empty list: fall through to the configuration
  }

  // 2. The kernel's build configuration.
  std::filesystem::path config = paths.boot_config;
  if (config.empty()) {
    utsname u{};
    if (::uname(&u) == 0) config = std::string("/boot/config-") + u.release;
  }
  if (!config.empty() && std::filesystem::exists(config, ec)) {
    std::ifstream in(config);
    std::string line;
    bool ima = false;
    int idx = kNoKernelIma;
    while (std::getline(in, line)) {
      if (line == "CONFIG_IMA=y") ima = true;
      constexpr std::string_view kIdx = "CONFIG_IMA_MEASURE_PCR_IDX=";
      if (line.compare(0, kIdx.size(), kIdx) == 0) {
        auto v = leading_int(line.substr(kIdx.size()));
        if (v) idx = *v;
      }
    }
    if (ima) {
      res.present = true;
      res.pcr = idx == kNoKernelIma ? kImaDefaultPcr : idx;
      res.evidence = config.string();
      return res;
    }
  }

  // 3. securityfs without a readable list: IMA is there, its PCR is the default.
  const bool ima_dir = std::filesystem::exists(paths.securityfs / "ima", ec) ||
                       std::filesystem::exists(paths.securityfs / "integrity" / "ima", ec);
  const std::string lsm = read_first_line(paths.securityfs / "lsm");
  std::string lsm_list = "," + lsm + ",";
  const bool lsm_ima = lsm_list.find(",ima,") != std::string::npos ||
                       lsm_list.find(",integrity,") != std::string::npos;
  if (res.present || ima_dir || lsm_ima) {
    res.present = true;
    res.pcr = kImaDefaultPcr;
    res.evidence =
        ima_dir ? (paths.securityfs / "ima").string() : (paths.securityfs / "lsm").string();
    return res;
  }
  res.evidence = "no IMA in " + paths.securityfs.string() +
                 (config.empty() ? std::string() : " nor in " + config.string());
  return res;
}

}  // namespace nsima::tpm

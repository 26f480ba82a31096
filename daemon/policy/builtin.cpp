// SPDX-License-Identifier: Apache-2.0
// The builtin policies, embedded so that nsimad works without policies/ installed. Each text is
// byte for byte the file policies/<name>.policy (tests/unit/policy/builtin_test.cpp checks it):
// edit both together. The kernel ones reproduce ima_policy.c's rule arrays (ima-facts §1.7).
#include <cerrno>

#include "policy/policy.h"

namespace nsima::policy {
namespace {

struct Builtin {
  std::string_view name;
  std::string_view text;
};

// clang-format off
constexpr Builtin kBuiltins[] = {
    {"tcb", R"policy(# SPDX-License-Identifier: Apache-2.0
# nsima builtin "tcb": the kernel's ima_policy=tcb rule list (security/integrity/ima/ima_policy.c,
# 6.12: dont_measure_rules[] then default_measurement_rules[]), in the kernel's order.
#
# Pseudo filesystems are never measured.
# PROC_SUPER_MAGIC
dont_measure fsmagic=0x9fa0
# SYSFS_MAGIC
dont_measure fsmagic=0x62656572
# DEBUGFS_MAGIC
dont_measure fsmagic=0x64626720
# TMPFS_MAGIC
dont_measure fsmagic=0x01021994
# DEVPTS_SUPER_MAGIC
dont_measure fsmagic=0x1cd1
# BINFMTFS_MAGIC
dont_measure fsmagic=0x42494e4d
# SECURITYFS_MAGIC
dont_measure fsmagic=0x73636673
# SELINUX_MAGIC
dont_measure fsmagic=0xf97cff8c
# SMACK_MAGIC
dont_measure fsmagic=0x43415d53
# CGROUP_SUPER_MAGIC
dont_measure fsmagic=0x27e0eb
# CGROUP2_SUPER_MAGIC
dont_measure fsmagic=0x63677270
# NSFS_MAGIC
dont_measure fsmagic=0x6e736673
# EFIVARFS_MAGIC
dont_measure fsmagic=0xde5e81e4
#
# Everything executed or mapped executable, and everything root opens for reading (by real or
# effective uid). The last three funcs are kernel reads that nsima never sees.
measure func=MMAP_CHECK mask=MAY_EXEC
measure func=BPRM_CHECK mask=MAY_EXEC
measure func=FILE_CHECK mask=^MAY_READ euid=0
measure func=FILE_CHECK mask=^MAY_READ uid=0
measure func=MODULE_CHECK
measure func=FIRMWARE_CHECK
measure func=POLICY_CHECK
)policy"},
    {"appraise_tcb", R"policy(# SPDX-License-Identifier: Apache-2.0
# nsima builtin "appraise_tcb": the kernel's ima_policy=appraise_tcb rule list
# (default_appraise_rules[] in security/integrity/ima/ima_policy.c, 6.12), in the kernel's order,
# with the options Debian's 6.1 kernel config implies:
#   CONFIG_IMA_WRITE_POLICY is not set   -> no "appraise func=POLICY_CHECK appraise_type=imasig"
#   CONFIG_IMA_APPRAISE_SIGNED_INIT is not set (IMA_APPRAISE_BUILD_POLICY is off)
#                                        -> "appraise fowner=0" accepts a hash or a signature
#
# Pseudo filesystems are never appraised.
# PROC_SUPER_MAGIC
dont_appraise fsmagic=0x9fa0
# SYSFS_MAGIC
dont_appraise fsmagic=0x62656572
# DEBUGFS_MAGIC
dont_appraise fsmagic=0x64626720
# TMPFS_MAGIC
dont_appraise fsmagic=0x01021994
# RAMFS_MAGIC
dont_appraise fsmagic=0x858458f6
# DEVPTS_SUPER_MAGIC
dont_appraise fsmagic=0x1cd1
# BINFMTFS_MAGIC
dont_appraise fsmagic=0x42494e4d
# SECURITYFS_MAGIC
dont_appraise fsmagic=0x73636673
# SELINUX_MAGIC
dont_appraise fsmagic=0xf97cff8c
# SMACK_MAGIC
dont_appraise fsmagic=0x43415d53
# NSFS_MAGIC
dont_appraise fsmagic=0x6e736673
# EFIVARFS_MAGIC
dont_appraise fsmagic=0xde5e81e4
# CGROUP_SUPER_MAGIC
dont_appraise fsmagic=0x27e0eb
# CGROUP2_SUPER_MAGIC
dont_appraise fsmagic=0x63677270
#
# Every file owned by root, whatever the access.
appraise fowner=0
)policy"},
    {"secure_boot", R"policy(# SPDX-License-Identifier: Apache-2.0
# nsima builtin "secure_boot": the kernel's ima_policy=secure_boot rule list (secure_boot_rules[]
# in security/integrity/ima/ima_policy.c, 6.12). All four funcs are kernel reads (modules,
# firmware, kexec kernel, IMA policy) that nsima never sees: in a container namespace this
# policy accepts those accesses' rules but never matches.
appraise func=MODULE_CHECK appraise_type=imasig
appraise func=FIRMWARE_CHECK appraise_type=imasig
appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig
appraise func=POLICY_CHECK appraise_type=imasig
)policy"},
    {"critical_data", R"policy(# SPDX-License-Identifier: Apache-2.0
# nsima builtin "critical_data": the kernel's ima_policy=critical_data rule list
# (critical_data_rules[] in security/integrity/ima/ima_policy.c, 6.12). CRITICAL_DATA is a
# kernel buffer measurement that nsima never sees.
measure func=CRITICAL_DATA
)policy"},
    {"container-measure", R"policy(# SPDX-License-Identifier: Apache-2.0
# nsima builtin "container-measure": measure what a container executes and maps executable.
# Pseudo filesystems are skipped: the kernel tcb list, less TMPFS_MAGIC. tmpfs is measured on
# purpose: in a container /dev/shm, /run and often /tmp are writable tmpfs mounts, and memfd
# files live on shmem too, so a binary dropped there and executed must reach the list. (The
# kernel skips tmpfs because a host rootfs in an initramfs is tmpfs; a container rootfs is
# overlayfs.)
# PROC_SUPER_MAGIC
dont_measure fsmagic=0x9fa0
# SYSFS_MAGIC
dont_measure fsmagic=0x62656572
# DEBUGFS_MAGIC
dont_measure fsmagic=0x64626720
# DEVPTS_SUPER_MAGIC
dont_measure fsmagic=0x1cd1
# BINFMTFS_MAGIC
dont_measure fsmagic=0x42494e4d
# SECURITYFS_MAGIC
dont_measure fsmagic=0x73636673
# SELINUX_MAGIC
dont_measure fsmagic=0xf97cff8c
# SMACK_MAGIC
dont_measure fsmagic=0x43415d53
# CGROUP_SUPER_MAGIC
dont_measure fsmagic=0x27e0eb
# CGROUP2_SUPER_MAGIC
dont_measure fsmagic=0x63677270
# NSFS_MAGIC
dont_measure fsmagic=0x6e736673
# EFIVARFS_MAGIC
dont_measure fsmagic=0xde5e81e4
#
# Every program a container executes (each binfmt level: a script and its interpreter), and
# every file it maps executable (shared libraries, the dynamic loader).
measure func=BPRM_CHECK mask=MAY_EXEC
measure func=MMAP_CHECK mask=MAY_EXEC
)policy"},
    {"container-appraise", R"policy(# SPDX-License-Identifier: Apache-2.0
# nsima builtin "container-appraise": container-measure plus appraisal: every program executed and
# every file mapped executable must carry a valid security.ima signature (evmctl ima_sign)
# for a key of the namespace.
# Pseudo filesystems are skipped: the kernel tcb list, less TMPFS_MAGIC. tmpfs is measured on
# purpose: in a container /dev/shm, /run and often /tmp are writable tmpfs mounts, and memfd
# files live on shmem too, so a binary dropped there and executed must reach the list. (The
# kernel skips tmpfs because a host rootfs in an initramfs is tmpfs; a container rootfs is
# overlayfs.)
# PROC_SUPER_MAGIC
dont_measure fsmagic=0x9fa0
# SYSFS_MAGIC
dont_measure fsmagic=0x62656572
# DEBUGFS_MAGIC
dont_measure fsmagic=0x64626720
# DEVPTS_SUPER_MAGIC
dont_measure fsmagic=0x1cd1
# BINFMTFS_MAGIC
dont_measure fsmagic=0x42494e4d
# SECURITYFS_MAGIC
dont_measure fsmagic=0x73636673
# SELINUX_MAGIC
dont_measure fsmagic=0xf97cff8c
# SMACK_MAGIC
dont_measure fsmagic=0x43415d53
# CGROUP_SUPER_MAGIC
dont_measure fsmagic=0x27e0eb
# CGROUP2_SUPER_MAGIC
dont_measure fsmagic=0x63677270
# NSFS_MAGIC
dont_measure fsmagic=0x6e736673
# EFIVARFS_MAGIC
dont_measure fsmagic=0xde5e81e4
#
# Every program a container executes (each binfmt level: a script and its interpreter), and
# every file it maps executable (shared libraries, the dynamic loader).
measure func=BPRM_CHECK mask=MAY_EXEC
measure func=MMAP_CHECK mask=MAY_EXEC
#
# Signatures, not just hashes: a hash in security.ima can be rewritten by whoever can write the
# file.
appraise func=BPRM_CHECK appraise_type=imasig
appraise func=MMAP_CHECK mask=MAY_EXEC appraise_type=imasig
)policy"},
    {"container-default", R"policy(# SPDX-License-Identifier: Apache-2.0
# nsima builtin "container-default": what the OCI hook applies to a container when no annotation
# names a policy. Measurement only, never enforcement: a container must not start failing because
# its images are unsigned unless someone asked for appraisal (container-appraise). It measures
# what runs (execs and executable mappings), the part of the TCB that a container changes; the
# same rules as container-measure.
# Pseudo filesystems are skipped: the kernel tcb list, less TMPFS_MAGIC. tmpfs is measured on
# purpose: in a container /dev/shm, /run and often /tmp are writable tmpfs mounts, and memfd
# files live on shmem too, so a binary dropped there and executed must reach the list. (The
# kernel skips tmpfs because a host rootfs in an initramfs is tmpfs; a container rootfs is
# overlayfs.)
# PROC_SUPER_MAGIC
dont_measure fsmagic=0x9fa0
# SYSFS_MAGIC
dont_measure fsmagic=0x62656572
# DEBUGFS_MAGIC
dont_measure fsmagic=0x64626720
# DEVPTS_SUPER_MAGIC
dont_measure fsmagic=0x1cd1
# BINFMTFS_MAGIC
dont_measure fsmagic=0x42494e4d
# SECURITYFS_MAGIC
dont_measure fsmagic=0x73636673
# SELINUX_MAGIC
dont_measure fsmagic=0xf97cff8c
# SMACK_MAGIC
dont_measure fsmagic=0x43415d53
# CGROUP_SUPER_MAGIC
dont_measure fsmagic=0x27e0eb
# CGROUP2_SUPER_MAGIC
dont_measure fsmagic=0x63677270
# NSFS_MAGIC
dont_measure fsmagic=0x6e736673
# EFIVARFS_MAGIC
dont_measure fsmagic=0xde5e81e4
#
# Every program a container executes (each binfmt level: a script and its interpreter), and
# every file it maps executable (shared libraries, the dynamic loader).
measure func=BPRM_CHECK mask=MAY_EXEC
measure func=MMAP_CHECK mask=MAY_EXEC
)policy"},
};
// clang-format on

}  // namespace

std::string_view builtin_text(std::string_view name) {
  for (const auto& b : kBuiltins)
    if (b.name == name) return b.text;
  return {};
}

std::vector<std::string> builtin_names() {
  std::vector<std::string> out;
  for (const auto& b : kBuiltins) out.emplace_back(b.name);
  return out;
}

Result<Policy> builtin_policy(std::string_view name) {
  std::string_view text = builtin_text(name);
  if (text.empty()) {
    std::string known;
    for (const auto& b : kBuiltins) known += (known.empty() ? "" : ", ") + std::string(b.name);
    return make_error(ENOENT,
                      "unknown builtin policy '" + std::string(name) + "' (known: " + known + ")");
  }
  return Policy::parse(text, "builtin:" + std::string(name));
}

}  // namespace nsima::policy

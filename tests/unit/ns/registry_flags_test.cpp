// SPDX-License-Identifier: Apache-2.0
// The flags a namespace's cgroup is registered with in BPF (Registry::first_access_flags): which
// access classes are denied on first access while nsimad has not judged the file.
#include <gtest/gtest.h>

#include "nsima/bpf_abi.h"
#include "ns/registry.h"
#include "policy/policy.h"

namespace nsima::ns {
namespace {

std::shared_ptr<const policy::Policy> parse(const std::string& text) {
  auto p = policy::Policy::parse(text, "test");
  EXPECT_TRUE(p) << p.error().to_string();
  return std::make_shared<policy::Policy>(std::move(*p));
}

TEST(RegistryFlags, SuspendedNamespaceDeniesEveryUnjudgedAccessButTheHostNever) {
  Registry reg(RegistryOptions{"/sys/fs/cgroup", "/nonexistent", 23}, nullptr);
  auto host_rt = std::make_unique<NsRuntime>();
  host_rt->policy = parse("measure func=BPRM_CHECK\n");
  reg.set_rt(&reg.host(), std::move(host_rt));
  NsConfig cfg{"2", 2, "/sys/fs/cgroup/c", false, "p", "measure func=FILE_CHECK\n", ""};
  auto ins = reg.insert("/sys/fs/cgroup/c", 77, cfg, parse("measure func=FILE_CHECK\n"));
  ASSERT_TRUE(ins) << ins.error().to_string();
  Namespace* c = ins->ns;
  EXPECT_EQ(reg.first_access_flags(c), 0u) << "measure-only: no first-access deny";

  reg.rt(c).suspended = true;
  EXPECT_EQ(reg.first_access_flags(c),
            NSIMA_CG_FIRST_DENY | (uint32_t{NSIMA_CLASS_ALL} << NSIMA_CG_FIRST_DENY_SHIFT))
      << "a suspended namespace records nothing: every class waits for a verdict";
  reg.rt(c).suspended = false;
  reg.rt(&reg.host()).suspended = true;
  EXPECT_EQ(reg.first_access_flags(&reg.host()), 0u)
      << "the host's processes (the operator's shell) are never denied for want of space";
}

}  // namespace
}  // namespace nsima::ns

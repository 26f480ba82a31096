// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the policy parser and engine: any byte string goes through
// Policy::parse(); accepted policies are evaluated against a few accesses and their read-back is
// checked to be stable; rejected ones must carry a file:line:col position. Inputs that start with
// '{' are event JSON for `policy explain` instead (no policy starts with '{'), which must never
// throw or crash. Invariant violations trap so that libFuzzer records the input. Built and run by
// run_policy_fuzz.sh (ctest fuzz.policy_parser).
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "nsima/bpf_abi.h"
#include "policy/commands.h"
#include "policy/parser.h"
#include "policy/policy.h"

namespace {

using nsima::policy::Access;
using nsima::policy::Decision;
using nsima::policy::Func;
using nsima::policy::Policy;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

Access make(Func f, uint32_t mask, uint32_t uid, uint64_t fsmagic, const char* fsname) {
  Access a;
  a.func = f;
  a.mask = mask;
  a.uid = a.euid = a.suid = a.gid = a.egid = a.sgid = uid;
  a.cap_setuid = a.cap_setgid = uid == 0;
  a.fowner = a.fgroup = uid;
  a.fsmagic = fsmagic;
  a.fsname = fsname;
  return a;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (!text.empty() && text[0] == '{') {
    for (bool json : {false, true}) {
      std::ostringstream out, err;
      int rc = nsima::policy::cmd_explain("builtin:container-appraise", std::string(text), out, err,
                                          json);
      check(rc == 0 || rc == 2);
      check(rc == 0 ? !out.str().empty() : !err.str().empty());
    }
    return 0;
  }
  auto policy = Policy::parse(text, "fuzz");
  auto errors = nsima::policy::check_rules(text, "fuzz");
  // parse() and check_rules() must agree, and the first error must be the same.
  check(static_cast<bool>(policy) == errors.empty());
  if (!policy) {
    const auto& e = policy.error();
    check(e.where.rfind("fuzz:", 0) == 0);
    check(!e.message.empty());
    check(e.where == errors.front().where && e.message == errors.front().message);
    return 0;
  }
  check(!policy->empty());

  const Access accesses[] = {
      make(Func::kFileCheck, NSIMA_MAY_READ, 0, 0xef53, "ext4"),
      make(Func::kFileCheck, NSIMA_MAY_READ | NSIMA_MAY_WRITE, 1000, 0x9fa0, "proc"),
      make(Func::kBprmCheck, NSIMA_MAY_EXEC, 1000, 0x794c7630, "overlay"),
      make(Func::kMmapCheck, NSIMA_MAY_EXEC, 0, 0x01021994, "tmpfs"),
      make(Func::kMmapCheckReqprot, NSIMA_MAY_EXEC, 5, 0, ""),
      make(Func::kCredsCheck, NSIMA_MAY_EXEC, 0, 0xef53, "ext4"),
      make(Func::kModuleCheck, NSIMA_MAY_READ, 0, 0, ""),
      make(Func::kKeyCheck, 0, 0, 0, ""),
  };
  Decision d;
  for (const Access& a : accesses) {
    policy->evaluate_into(a, d);
    const int n = static_cast<int>(policy->size());
    check(d.measure_rule < n && d.appraise_rule < n && d.audit_rule < n && d.hash_rule < n);
    check(!d.measure || d.measure_rule >= 0);
    check(!d.appraise || d.appraise_rule >= 0);
    check(d.pcr >= -1 && d.pcr < 64);
    Decision fresh = policy->evaluate(a);
    check(fresh.measure == d.measure && fresh.measure_rule == d.measure_rule &&
          fresh.appraise_rule == d.appraise_rule && fresh.hash == d.hash &&
          fresh.cred_dependent == d.cred_dependent && fresh.template_name == d.template_name);
  }

  // Read-back is a fixed point wherever the kernel's own output is loadable.
  for (size_t i = 0; i < policy->size(); ++i) {
    std::string once = policy->rule(i).to_string();
    auto again = nsima::policy::parse_rule(once, "readback", 1);
    if (again) check(again->to_string() == once);
  }
  (void)policy->to_string();
  return 0;
}
